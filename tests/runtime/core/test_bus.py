"""The in-process bus: topics, retained values, overflow policies, request/reply."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import pytest

from hal.clock import LoopClock
from runtime.bus import (
    Bus,
    Overflow,
    pattern_covers,
    payload_to_json,
    topic_matches,
    validate_pattern,
    validate_topic,
)
from runtime.errors import BusError, RequestTimeout
from runtime.model import Quality, Reading

START = 1_767_225_600.0


@pytest.mark.parametrize(
    ("pattern", "topic", "match"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/b/c", "a/b", False),
        ("a/b", "a/b/c", False),
        ("a/+/c", "a/x/c", True),
        ("a/+/c", "a/x/y/c", False),
        ("+/+", "a/b", True),
        ("+", "a/b", False),
        ("#", "a/b/c", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/#", "b/a", False),
        ("meter/+/reading", "meter/000000000001/reading", True),
        ("meter/+/reading", "meter/000000000001/event", False),
        ("+/#", "x", True),
    ],
)
def test_topic_matching_table(pattern: str, topic: str, match: bool) -> None:
    assert topic_matches(pattern, topic) is match


@pytest.mark.parametrize("bad", ["", "a//b", "/a", "a/", "a/+/b", "a/#", "a\x00b"])
def test_invalid_topics_rejected(bad: str) -> None:
    with pytest.raises(BusError):
        validate_topic(bad)


@pytest.mark.parametrize("bad", ["", "a/#/b", "a+/b", "a/b#", "#/a", "a//+"])
def test_invalid_patterns_rejected(bad: str) -> None:
    with pytest.raises(BusError):
        validate_pattern(bad)


@pytest.mark.parametrize(
    ("outer", "inner", "covers"),
    [
        ("meter/#", "meter/+/reading", True),
        ("meter/+/reading", "meter/+/reading", True),
        ("meter/+/reading", "meter/#", False),
        ("meter/+/reading", "meter/1/reading", True),
        ("meter/1/reading", "meter/+/reading", False),
        ("#", "anything/#", True),
        ("a/+/#", "a/#", False),
        ("a/#", "a", True),
    ],
)
def test_pattern_covers(outer: str, inner: str, covers: bool) -> None:
    assert pattern_covers(outer, inner) is covers


async def test_publish_delivers_to_matching_subscribers_in_order() -> None:
    bus = Bus(clock=LoopClock(start=START))
    async with bus.subscribe("meter/+/reading") as sub, bus.subscribe("#") as everything:
        bus.publish("meter/1/reading", {"v": 1})
        bus.publish("meter/2/event", {"v": 2})
        bus.publish("meter/2/reading", {"v": 3})
        got = [await sub.get(), await sub.get()]
        assert [m.payload["v"] for m in got] == [1, 3]
        assert got[0].ts == pytest.approx(START, abs=1)
        assert not got[0].retained
        assert everything.depth() == 3
    assert bus.statistics()["subscribers"] == []


async def test_async_iteration_ends_when_closed() -> None:
    bus = Bus(clock=LoopClock(start=START))
    sub = bus.subscribe("x/#")
    received: list[object] = []

    async def consume() -> None:
        async for msg in sub:
            received.append(msg.payload)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(consume(), name="consumer")
        bus.publish("x/1", 1)
        bus.publish("x/2", 2)
        await asyncio.sleep(0)
        sub.close()
    assert received == [1, 2]


async def test_retained_values_delivered_on_subscribe_and_cleared_by_none() -> None:
    bus = Bus(clock=LoopClock(start=START))
    bus.publish("runtime/apps/a/state", "running", retain=True)
    bus.publish("runtime/apps/b/state", "ready", retain=True)
    bus.publish("runtime/apps/b/state", "crashed", retain=True)
    bus.publish("runtime/other", "x")
    async with bus.subscribe("runtime/apps/+/state") as sub:
        msgs = [sub.get_nowait(), sub.get_nowait()]
        assert sub.get_nowait() is None
    assert {(m.topic, m.payload, m.retained) for m in msgs if m} == {
        ("runtime/apps/a/state", "running", True),
        ("runtime/apps/b/state", "crashed", True),
    }
    bus.publish("runtime/apps/a/state", None, retain=True)
    assert bus.retained("runtime/apps/a/state") is None
    assert bus.statistics()["retained"] == 1


async def test_retained_flat_dicts_come_back_equal_and_others_as_published() -> None:
    """A retained flat dict of scalars is kept packed (one key tuple for the topics publishing the
    same keys): a subscriber gets an equal dict, in its key order, at the time published; any
    other payload comes back as the object published."""
    bus = Bus(clock=LoopClock(start=START))
    nested = {"rows": [1, 2], "at": 1.5}
    bus.publish("meter/m1/relay", {"open": True, "at": 10.0, "cause": "unknown"}, retain=True)
    bus.publish("meter/m2/relay", {"open": False, "at": 11.0, "cause": None}, retain=True)
    bus.publish("billing/status", nested, retain=True)
    bus.publish("meter/m3/clock", {1: "not a str key"}, retain=True)
    m1, m2 = bus.retained("meter/m1/relay"), bus.retained("meter/m2/relay")
    assert m1 is not None and m2 is not None and m1.retained and START <= m1.ts <= m2.ts
    assert list(m1.payload.items()) == [("open", True), ("at", 10.0), ("cause", "unknown")]
    assert m2.payload == {"open": False, "at": 11.0, "cause": None}
    kept = bus._retained
    assert kept["meter/m1/relay"].payload is kept["meter/m2/relay"].payload  # one key tuple
    got = bus.retained("billing/status")
    assert got is not None and got.payload is nested
    odd = bus.retained("meter/m3/clock")
    assert odd is not None and odd.payload == {1: "not a str key"}
    async with bus.subscribe("meter/+/relay") as sub:
        msgs = [sub.get_nowait(), sub.get_nowait()]
    assert [(m.topic, m.payload, m.retained) for m in msgs if m] == [
        ("meter/m1/relay", {"open": True, "at": 10.0, "cause": "unknown"}, True),
        ("meter/m2/relay", {"open": False, "at": 11.0, "cause": None}, True),
    ]


async def test_overflow_drop_oldest() -> None:
    bus = Bus(clock=LoopClock(start=START))
    with_sub = bus.subscribe("t/#", maxsize=3, overflow=Overflow.DROP_OLDEST, name="slow")
    for i in range(5):
        bus.publish(f"t/{i}", i)
    assert [with_sub.get_nowait().payload for _ in range(3)] == [2, 3, 4]  # type: ignore[union-attr]
    stats = with_sub.statistics()
    assert stats["dropped"] == 2
    assert stats["high_water"] == 3
    assert stats["delivered"] == 3
    with_sub.close()


async def test_overflow_drop_newest() -> None:
    bus = Bus(clock=LoopClock(start=START))
    sub = bus.subscribe("t/#", maxsize=3, overflow=Overflow.DROP_NEWEST)
    for i in range(5):
        bus.publish(f"t/{i}", i)
    assert [sub.get_nowait().payload for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
    assert sub.statistics()["dropped"] == 2
    sub.close()


async def test_overflow_keep_latest_per_topic_conflates() -> None:
    bus = Bus(clock=LoopClock(start=START))
    sub = bus.subscribe("v/#", maxsize=2, overflow=Overflow.KEEP_LATEST_PER_TOPIC)
    bus.publish("v/a", 1)
    bus.publish("v/b", 1)
    bus.publish("v/a", 2)  # replaces the pending v/a, keeps its turn
    assert sub.depth() == 2
    first, second = sub.get_nowait(), sub.get_nowait()
    assert (first.topic, first.payload) == ("v/a", 2)  # type: ignore[union-attr]
    assert (second.topic, second.payload) == ("v/b", 1)  # type: ignore[union-attr]
    bus.publish("v/a", 3)
    bus.publish("v/b", 3)
    bus.publish("v/c", 3)  # a third distinct topic: the oldest pending topic goes
    assert [m.topic for m in (sub.get_nowait(), sub.get_nowait())] == ["v/b", "v/c"]  # type: ignore[union-attr]
    stats = sub.statistics()
    assert stats["conflated"] == 1
    assert stats["dropped"] == 1
    sub.close()


async def test_publish_rejects_non_json_payload_and_bad_topic() -> None:
    bus = Bus(clock=LoopClock(start=START))
    with pytest.raises(BusError, match="not JSON-able"):
        bus.publish("a", object())
    with pytest.raises(BusError, match="wildcards"):
        bus.publish("a/+", 1)


@pytest.mark.looptime
async def test_request_reply_sync_and_async_handlers() -> None:
    clock = LoopClock(start=START)
    bus = Bus(clock=clock)

    async def archive(payload: dict[str, int]) -> dict[str, int]:
        await clock.sleep(1)
        return {"count": payload["n"] * 2}

    with bus.serve("archive/get", archive), bus.serve("echo/+", lambda p: p):
        assert await bus.request("archive/get", {"n": 21}, timeout=5) == {"count": 42}
        assert await bus.request("echo/x", "hi", timeout=5) == "hi"
        with pytest.raises(BusError, match="already has a responder"):
            bus.serve("echo/+", lambda p: p)
    with pytest.raises(BusError, match="no responder"):
        await bus.request("archive/get", {}, timeout=5)
    stats = bus.statistics()["requests"]
    assert stats == {"ok": 2, "timeouts": 0, "errors": 0, "no_responder": 1}


@pytest.mark.looptime
async def test_request_timeout() -> None:
    clock = LoopClock(start=START)
    bus = Bus(clock=clock)

    async def hangs(payload: object) -> None:
        await clock.sleep(3600)

    with bus.serve("slow", hangs), pytest.raises(RequestTimeout, match="no reply within 2 s"):
        await bus.request("slow", None, timeout=2)
    assert clock.monotonic() == pytest.approx(2)
    assert bus.statistics()["requests"]["timeouts"] == 1


async def test_handler_error_comes_back_as_bus_error_with_cause() -> None:
    bus = Bus(clock=LoopClock(start=START))

    def broken(payload: object) -> None:
        raise ValueError("unknown meter 42")

    with (
        bus.serve("archive/+", broken),
        pytest.raises(BusError, match="ValueError: unknown meter 42") as info,
    ):
        await bus.request("archive/get", None, timeout=1)
    assert isinstance(info.value.__cause__, ValueError)
    assert bus.statistics()["requests"]["errors"] == 1


class Color(enum.Enum):
    RED = "red"


@dataclass
class Plain:
    name: str
    values: tuple[float, ...]
    color: Color


def test_payload_to_json() -> None:
    reading = Reading("m1", "voltage.a", 230.1, "V", START, Quality.CATCH_UP)
    assert payload_to_json([reading]) == [reading.to_json()]
    assert payload_to_json(Plain("x", (1.0, 2.0), Color.RED)) == {
        "name": "x",
        "values": [1.0, 2.0],
        "color": "red",
    }
    with pytest.raises(BusError, match=r"payload\.a\[1\]: nan"):
        payload_to_json({"a": [1.0, float("nan")]})
    with pytest.raises(BusError, match="key 1 is not a string"):
        payload_to_json({1: 2})
    with pytest.raises(BusError, match="set is not JSON-able"):
        payload_to_json({"s": {1}})
