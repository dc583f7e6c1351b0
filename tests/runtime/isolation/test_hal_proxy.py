"""hal for isolated apps: a DL/T 645 meter read over the bridge, refusals, timeouts, hostile input, steps.

The meters are ``sim.meters`` virtual meters on a memory link behind a real ``Rs485Port``
in the runtime; the app runs in its own host process and reads them through
``ctx.hal.rs485()`` -> ``Rs485Transport`` -> ``Dlt645Master``. Real time, bounded waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from hal.clock import LoopClock
from hal.hplc import EventStream
from hal.hplc._events import EventHub
from hal.interfaces import CarrierEvent, MetrologySnapshot, PhaseValues, SerialSettings
from hal.rs485 import Rs485Port
from hal.sim import MemorySlot, memory_link_pair
from runtime.container.isolation.bridge import violation_topic
from runtime.container.supervisor import AppState
from sim.loads import HouseholdProfile
from sim.meters import MeterBus, VirtualMeter

from .conftest import Core, StubBoard, core

PORT = "rs485-1"
METERS = ("000000000001", "000000000002")
SILENT = "000000009999"  # no meter answers at this address


class FixedMetrology:
    def __init__(self, snapshot: MetrologySnapshot) -> None:
        self.value = snapshot

    async def snapshot(self) -> MetrologySnapshot:
        return self.value


class HubCarrier:
    """A carrier module that only has events: the test publishes them on ``hub``."""

    def __init__(self) -> None:
        self.hub = EventHub(maxlen=16)

    def events(self) -> EventStream:
        return self.hub.stream()

    async def reset(self) -> None:
        raise NotImplementedError

    async def sync_archive(self, addresses: Any, *, protocols: Any = None) -> None:
        raise NotImplementedError

    async def transact(self, address: str, frame: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        raise NotImplementedError

    async def broadcast(self, frame: bytes) -> None:
        raise NotImplementedError


def _snapshot(ts: float) -> MetrologySnapshot:
    three = PhaseValues(230.5, 229.0, 231.25)
    return MetrologySnapshot(ts, three, three, three, three, three, 50.0, 1234.5, None)


@asynccontextmanager
async def station(clock: LoopClock) -> AsyncIterator[tuple[StubBoard, dict[str, VirtualMeter], Rs485Port]]:
    settings = SerialSettings(baud=9600)
    now = clock.now()
    meters = {
        a: VirtualMeter(a, profile=HouseholdProfile.for_customer(3, i), start=now - 86400)
        for i, a in enumerate(METERS)
    }
    for m in meters.values():
        m.advance(now)
    bus = MeterBus(list(meters.values()), clock=clock, settings=settings, response_delay_s=0.01)
    meters_end, terminal_end = memory_link_pair(settings, names=("meters", PORT))
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        port = await stack.enter_async_context(Rs485Port(terminal_end, clock=clock, name=PORT))
        serving = tg.create_task(bus.serve_link(meters_end), name="test-meter-bus")
        stack.callback(serving.cancel)
        board = StubBoard(
            ports={PORT: port},
            slots={"slot-1": MemorySlot("slot-1", inputs={"di1": True}, outputs={"do1": False})},
            unit=FixedMetrology(_snapshot(now)),
        )
        yield board, meters, port


async def _ask(c: Core, what: str, body: Any = None, *, within: float = 10) -> Any:
    return (await c.next(f"reader/{what}/reply", publish=(f"reader/{what}", body), within=within)).payload


async def test_isolated_app_reads_a_virtual_meter_through_the_proxy() -> None:
    clock = LoopClock()
    async with (
        station(clock) as (board, meters, port),
        core(isolated=("reader",), board=board, clock=clock) as c,
    ):
        await c.wait("reader", AppState.RUNNING)
        for address in METERS:
            reply = await _ask(c, "read", {"address": address})
            assert reply["ok"] is True, reply
            truth = meters[address].registers(clock.now()).forward[0]
            assert abs(reply["kwh"] - truth) <= 0.02  # the register's 0.01 kWh resolution
            sent, received = reply["exchange"]
            assert sent > 0 and received > 0
        # The transactions ran on the runtime's own port, counted there like any other.
        stats = port.statistics()
        assert stats["transactions"] == len(METERS)
        assert all(port.health(a).ok == 1 for a in METERS)


async def test_a_runtime_side_timeout_arrives_as_transport_timeout_and_health_follows() -> None:
    clock = LoopClock()
    async with station(clock) as (board, _, port), core(isolated=("reader",), board=board, clock=clock) as c:
        await c.wait("reader", AppState.RUNNING)
        replies = [await _ask(c, "read", {"address": SILENT, "timeout": 0.15}) for _ in range(3)]
        assert [r["type"] for r in replies] == ["TransportTimeout"] * 3
        assert f"{PORT}: {SILENT} did not answer within 0.15 s" in replies[0]["message"]
        # The port's edge-triggered health (3 timeouts -> unavailable) reaches the app's mirror.
        assert [r["available"] for r in replies] == [True, True, False]
        assert port.health(SILENT).timeouts == 3 and not port.health(SILENT).available
        # The line is fine for the others.
        assert (await _ask(c, "read", {"address": METERS[0]}))["ok"] is True


async def test_undeclared_rs485_is_refused_and_reported_even_past_the_context() -> None:
    clock = LoopClock()
    async with (
        station(clock) as (board, _, port),
        core(isolated=("blind",), board=board, clock=clock) as c,
        c.bus.subscribe(violation_topic("blind"), maxsize=10) as violations,
    ):
        await c.wait("blind", AppState.RUNNING)
        answers = c.bus.retained("blind/answers")
        assert answers is not None
        a = answers.payload
        assert a["context"] == {
            "ok": False,
            "type": "CapabilityError",
            "reason": "hal capability 'rs485' not declared",
        }
        assert a["raw"]["ok"] is False and a["raw"]["type"] == "CapabilityError"
        events = []
        async with c.clock.timeout(5):
            while len(events) < 2:
                events.append((await violations.get()).payload)
        assert sorted((e["op"], e["kind"]) for e in events) == [
            ("hal.open", "hal"),
            ("hal.rs485.transact", "hal"),
        ]
        assert c.bridge.statistics()["violations"] == {"blind": 2}
        assert port.statistics()["transactions"] == 0  # nothing reached the line


async def test_hostile_raw_hal_requests_get_clear_errors_and_nothing_breaks() -> None:
    clock = LoopClock()
    async with station(clock) as (board, _, port), core(isolated=("reader",), board=board, clock=clock) as c:
        await c.wait("reader", AppState.RUNNING)
        a = await _ask(c, "raw")
        assert a["no_port"]["type"] == "CapabilityMissing"
        assert "no enabled RS-485 port 'rs485-9' on this board" in a["no_port"]["message"]
        assert "request frame: not base64" in a["bad_base64"]["message"]
        assert a["not_a_frame"]["type"] == "ProtocolError"
        assert "unknown protocol 'iec104'" in a["unknown_protocol"]["message"]
        assert "out of range" in a["huge_timeout"]["message"]
        assert "silence 5 s out of range" in a["huge_silence"]["message"]
        assert a["bad_silence"]["ok"] is False and "long" in a["bad_silence"]["message"]
        assert "unknown priority 'URGENT'" in a["bad_priority"]["message"]
        assert a["missing_field"]["ok"] is False and a["missing_field"]["type"] == "BusError"
        assert not any(answer["ok"] for answer in a.values())
        # Refused before the line: no transaction, no violation (rs485 is declared), no crash.
        assert port.statistics()["transactions"] == 0
        assert c.bridge.statistics()["violations"] == {}
        assert c.bridge.statistics()["protocol_errors"] == 0
        assert (await _ask(c, "read", {"address": METERS[1]}))["ok"] is True
        assert c.sup.state("reader") is AppState.RUNNING


async def test_slot_and_metrology_through_the_proxy() -> None:
    clock = LoopClock()
    async with station(clock) as (board, _, _), core(isolated=("reader",), board=board, clock=clock) as c:
        await c.wait("reader", AppState.RUNNING)
        reply = await _ask(c, "io")
        slot = board.slots["slot-1"]
        assert isinstance(slot, MemorySlot) and slot.writes == [("do1", True)]
        assert reply["kind"] == "dio" and reply["inputs"] == {"di1": True, "do1": True}
        assert board.unit is not None
        expected = (await board.unit.snapshot()).voltage.a
        assert reply["voltage_a"] == expected and reply["energy"] == 1234.5


async def _until(clock: LoopClock, holds: Any, *, within: float = 10) -> None:
    async with clock.timeout(within):
        while not holds():
            await clock.sleep(0.01)


async def test_carrier_events_reach_the_isolated_app_and_its_close_ends_the_forwarding() -> None:
    clock = LoopClock()
    carrier = HubCarrier()
    async with station(clock) as (board, _, _):
        board.carrier = carrier
        async with core(isolated=("reader",), board=board, clock=clock) as c:
            await c.wait("reader", AppState.RUNNING)
            assert await _ask(c, "carrier", {"count": 2}) == "listening"
            await _until(clock, lambda: carrier.hub.subscribers == 1)  # the runtime forwards now
            async with c.bus.subscribe("reader/carrier/events") as events:
                carrier.hub.publish(CarrierEvent("power_off", ("000000000001", "000000000002"), clock.now()))
                carrier.hub.publish(CarrierEvent("power_on", ("000000000001",), clock.now()))
                async with clock.timeout(10):
                    got = (await events.get()).payload
            assert got == [
                {"kind": "power_off", "addresses": ["000000000001", "000000000002"]},
                {"kind": "power_on", "addresses": ["000000000001"]},
            ]
            # the app closed its stream: the runtime stops forwarding and lets go of its own
            await _until(clock, lambda: carrier.hub.subscribers == 0)
            assert c.sup.state("reader") is AppState.RUNNING


async def test_runtime_clock_steps_reach_the_host() -> None:
    clock = LoopClock()
    async with station(clock) as (board, _, _), core(isolated=("reader",), board=board, clock=clock) as c:
        await c.wait("reader", AppState.RUNNING)
        before = await _ask(c, "clock")
        assert abs(before - clock.now()) < 1.0
        async with c.bus.subscribe("reader/woke") as woke:
            assert await _ask(c, "sleep", {"until": clock.now() + 3000}) == "sleeping"
            clock.step(3600)  # a time sync, one hour forward
            async with clock.timeout(5):
                woken = (await woke.get()).payload
        assert abs(woken["now"] - clock.now()) < 1.0
        after = await _ask(c, "clock")
        assert abs(after - clock.now()) < 1.0 and after - before >= 3600
