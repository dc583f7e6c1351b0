"""The cloud stub against real brokers (amqtt, mosquitto): storage, dedup, rejection, gaps, commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hal.clock import LoopClock
from protocols.cloud import Command, state_topic
from sim.broker import MosquittoBroker, mosquitto_binary
from sim.cloud import CloudStub, CloudStubError
from tests.brokers import AnyBroker

from .conftest import KEY
from .helpers import answer_commands, batch, mqtt, publish, reading

T = "ttu-0001"
needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")
EVENT = {
    "kind": "meter.power_down",
    "source": "m-7",
    "start": 1767225000.0,
    "end": None,
    "data": {"phase": "a"},
}


async def test_readings_events_and_state_arrive_and_are_queryable(stub: CloudStub, broker: AnyBroker) -> None:
    async with mqtt(broker) as term:
        await term.publish(state_topic(T), "online", qos=1, retain=True)
        await publish(term, T, "readings", batch(T, "readings", (1, {"readings": [
            reading("m-1", "voltage.a", 229.5, 1767225600.0),
            reading("m-2", "voltage.a", 231.0, 1767225600.0),
        ]}), (2, {"readings": [reading("m-1", "voltage.a", 230.1, 1767226500.0)]})))  # fmt: skip
        await publish(term, T, "events", batch(T, "events", (1, EVENT)))
        await publish(term, T, "status", batch(T, "status", (1, {"uptime": 12})))
        await stub.wait_until(lambda s: s.handled >= 4)

    rows = await stub.readings(terminal=T, device="m-1")
    assert [(r.device, r.quantity, r.value, r.ts) for r in rows] == [
        ("m-1", "voltage.a", 230.1, 1767226500.0),
        ("m-1", "voltage.a", 229.5, 1767225600.0),
    ]
    assert len(await stub.readings(quantity="voltage.a", since=1767225601.0)) == 1
    assert len(await stub.readings(limit=1)) == 1
    events = await stub.events(terminal=T)
    assert [(e.kind, e.source, e.start, e.end, e.data) for e in events] == [
        ("meter.power_down", "m-7", 1767225000.0, None, {"phase": "a"})
    ]
    (terminal,) = await stub.terminals()
    assert (terminal.id, terminal.state, terminal.messages, terminal.readings) == (T, "online", 4, 3)
    counts = await stub.counts()
    assert counts["readings"] == 3 and counts["events"] == 1 and counts["status"] == 1
    assert counts["rejected"] == 0


async def test_duplicate_keys_are_stored_once_and_counted(stub: CloudStub, broker: AnyBroker) -> None:
    payload = batch(T, "readings", (1, {"readings": [reading("m-1", "voltage.a", 229.5, 1767225600.0)]}))
    async with mqtt(broker) as term:
        await publish(term, T, "readings", payload)
        await publish(term, T, "readings", payload)  # redelivery after a lost PUBACK
        await stub.wait_until(lambda s: s.handled >= 2)
    assert len(await stub.readings()) == 1
    stats = (await stub.statistics())[T]
    assert (stats["messages"], stats["duplicates"], stats["readings"]) == (1, 1, 1)
    assert stats["out_of_order"] == 0  # a duplicate is not a sequence anomaly
    assert (await stub.counts())["duplicates"] == 1


async def test_malformed_payloads_are_rejected_stored_and_the_stub_keeps_working(
    stub: CloudStub, broker: AnyBroker, tmp_path: Path
) -> None:
    async with mqtt(broker) as term:
        await publish(term, T, "readings", b"{not json")
        await publish(term, T, "readings", b'{"terminal": "ttu-0001", "stream": "readings"}')
        await publish(
            term, T, "readings", batch("ttu-9999", "readings", (1, {"readings": []}))
        )  # wrong terminal
        await publish(term, T, "Weather", batch(T, "Weather", (1, {})))  # not a stream name
        await term.publish(state_topic(T), "sleepy", qos=1)
        await term.publish(f"ttu/{T}/up/readings/extra", b"x", qos=1)  # outside the scheme
        await publish(term, T, "readings", batch(T, "readings", (1, {"readings": [
            reading("m-1", "voltage.a", 229.5, 1767225600.0),
            {"device": "m-2", "quantity": "voltage.a", "value": "high", "unit": "V", "ts": 1767225600.0},
        ]})))  # fmt: skip
        await publish(term, T, "events", batch(T, "events", (1, {"kind": "x"})))
        await stub.wait_until(lambda s: s.handled >= 8)

    counts = await stub.counts()
    assert counts["rejected"] == 8
    assert counts["readings"] == 1  # the good reading of the half-bad batch is kept
    assert counts["messages"] == 2
    errors = [r.error for r in await stub._db.run(lambda db: db.rejected(limit=20))]
    assert any("not JSON" in e for e in errors)
    assert any("batch.messages: missing" in e for e in errors)
    assert any("ttu-9999/readings but came on ttu-0001/readings" in e for e in errors)
    assert any("stream 'Weather' is not a stream name" in e for e in errors)
    assert any("state must be 'online' or 'offline'" in e for e in errors)
    assert any("not in the ttu scheme" in e for e in errors)
    assert any("body.readings[1].value: not a number" in e for e in errors)
    assert any("body.source: missing" in e for e in errors)
    rejected = await stub._db.run(lambda db: db.rejected(limit=20))
    assert rejected[-1].excerpt == "{not json" and rejected[-1].topic == f"ttu/{T}/up/readings"
    assert (await stub.statistics())[T]["rejected"] == 7  # the out-of-scheme topic has no terminal

    async with mqtt(broker) as term:  # and it still works
        await publish(
            term, T, "readings", batch(T, "readings", (2, {"readings": [reading("m-3", "voltage.b", 1, 2)]}))
        )
        await stub.wait_until(lambda s: s.handled >= 9)
    assert len(await stub.readings(device="m-3")) == 1


async def test_sequence_gaps_and_out_of_order_are_counted(stub: CloudStub, broker: AnyBroker) -> None:
    async with mqtt(broker) as term:
        for seqs in ((1, 2), (5,), (3,), (6,)):
            await publish(term, T, "events", batch(T, "events", *((s, EVENT) for s in seqs)))
        await publish(term, T, "status", batch(T, "status", (40, {})))  # another stream: its own baseline
        await stub.wait_until(lambda s: s.handled >= 5)
    stats = (await stub.statistics())[T]
    assert (stats["gaps"], stats["missing"], stats["out_of_order"]) == (1, 2, 1)
    streams = {s.stream: s for s in await stub._db.run(lambda db: db.streams())}
    assert streams["events"].last_seq == 6 and streams["events"].messages == 5
    assert streams["status"].gaps == 0


async def test_send_command_round_trip(stub: CloudStub, broker: AnyBroker) -> None:
    seen: list[Command] = []
    async with mqtt(broker) as term, asyncio.TaskGroup() as tg:
        ready = asyncio.Event()
        task = tg.create_task(answer_commands(term, T, KEY, seen=seen, ready=ready), name="fake-terminal")
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            reply = await stub.send_command(T, "echo", {"n": 1}, timeout=10)
            assert reply.ok and reply.result == {"echo": {"n": 1}}
            reply = await stub.send_command(T, "reboot", {}, timeout=10)
            assert not reply.ok and reply.code == "unknown_command"
        finally:
            task.cancel()
    assert [c.name for c in seen] == ["echo", "reboot"]
    assert len({c.id for c in seen}) == 2  # every command has its own id
    assert seen[0].ts > 0 and seen[0].auth
    counts = await stub.counts()
    assert (counts["replies"], counts["commands"]) == (2, 2)


async def test_wrong_key_is_refused_by_the_terminal(broker: AnyBroker, tmp_path: Path) -> None:
    seen: list[Command] = []
    async with (
        CloudStub(
            broker_url=broker.url,
            db_path=tmp_path / "c.sqlite",
            clock=LoopClock(),
            command_keys={T: b"x" * 32},
        ) as stub,
        mqtt(broker) as term,
        asyncio.TaskGroup() as tg,
    ):
        ready = asyncio.Event()
        task = tg.create_task(answer_commands(term, T, KEY, seen=seen, ready=ready), name="fake-terminal")
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            reply = await stub.send_command(T, "echo", {}, timeout=10)
            assert not reply.ok and reply.code == "unauthenticated"
            with pytest.raises(CloudStubError, match="no command key for terminal 'ttu-0002'"):
                await stub.send_command("ttu-0002", "echo", {})
        finally:
            task.cancel()


async def test_send_command_times_out_clearly(broker: AnyBroker, tmp_path: Path) -> None:
    clock = LoopClock(speed=100.0)  # 30 clock seconds pass in 0.3 s
    async with CloudStub(
        broker_url=broker.url, db_path=tmp_path / "c.sqlite", clock=clock, default_key=KEY
    ) as stub:
        with pytest.raises(
            TimeoutError, match=r"command 'echo' \(c-[0-9a-f]+\) to terminal 'ttu-0001': no reply within 30 s"
        ):
            await stub.send_command(T, "echo", {}, timeout=30)
        assert not stub._pending


@needs_mosquitto  # restarted on the same port, which mosquitto makes easy
async def test_reconnects_after_the_broker_restarts(tmp_path: Path) -> None:
    async with MosquittoBroker() as first:
        port = first.port
        stub_cm = CloudStub(
            broker_url=first.url, db_path=tmp_path / "c.sqlite", clock=LoopClock(speed=20.0), default_key=KEY
        )
        stub = await stub_cm.__aenter__()
    try:
        await stub.wait_until(lambda s: s.disconnects >= 1)
        async with MosquittoBroker(port=port) as second:
            await stub.wait_until(lambda s: s.connections >= 2, timeout=20)
            async with mqtt(second) as term:
                await publish(term, T, "events", batch(T, "events", (1, EVENT)))
                await stub.wait_until(lambda s: s.handled >= 1)
            assert len(await stub.events()) == 1
    finally:
        await stub_cm.__aexit__(None, None, None)


@needs_mosquitto
async def test_unreachable_broker_fails_entry_clearly(tmp_path: Path) -> None:
    async with MosquittoBroker() as gone:
        url = gone.url
    with pytest.raises(CloudStubError, match="no connection to broker"):
        async with CloudStub(
            broker_url=url,
            db_path=tmp_path / "c.sqlite",
            clock=LoopClock(speed=50.0),
            default_key=KEY,
            connect_timeout=5.0,
            backoff_initial=1.0,
        ):
            pass


def test_broker_url_and_keys_are_checked() -> None:
    with pytest.raises(CloudStubError, match="scheme 'http'"):
        CloudStub(broker_url="http://x", db_path=":memory:", clock=LoopClock(), default_key=KEY)
    with pytest.raises(CloudStubError, match="needs command_keys or default_key"):
        CloudStub(broker_url="mqtt://127.0.0.1:1", db_path=":memory:", clock=LoopClock())


async def test_a_new_result_stream_gets_its_own_table_without_editing_the_stub(
    stub: CloudStub, broker: AnyBroker
) -> None:
    first = {"computed_at": 1767225600.0, "meters": [{"meter_id": "m-1", "phase": "B"}]}
    second = {"computed_at": 1767312000.0, "meters": [{"meter_id": "m-1", "phase": "C"}]}
    async with mqtt(broker) as term:
        await publish(term, T, "topology", batch(T, "topology", (1, first), (2, second)))
        await publish(term, T, "topology", batch(T, "topology", (2, second)))  # a duplicate delivery
        await publish(term, "ttu-0002", "outage", batch("ttu-0002", "outage", (1, {"level": "box"})))
        await stub.wait_until(lambda s: s.handled >= 3)
    assert await stub.result_streams() == {"outage": {"ttu-0002": 1}, "topology": {T: 2}}
    newest = await stub.latest("topology", terminal=T)
    assert newest is not None and newest.body == second and newest.seq == 2 and newest.stream == "topology"
    assert [r.body for r in await stub.results("topology")] == [second, first]
    assert await stub.results("topology", terminal="ttu-0002") == []
    assert await stub.results("billing") == []  # a stream nobody sent on
    assert (await stub.counts())["rejected"] == 0
