"""Rs485Port on scripted fake devices over a memory pair in virtual time (looptime), and over a pty."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from hal.clock import LoopClock
from hal.errors import TransportClosed, TransportTimeout
from hal.interfaces import Priority, SerialSettings
from hal.linux import PySerialLink
from hal.rs485 import Rs485Port
from hal.sim import MemoryLink, memory_link_pair
from tests.hal._fake_bus import FakeDevices, Frame, Framer, reply_to, running
from tests.hal._peers import PtyPeer

SETTINGS = SerialSettings(baud=2400, parity="E")  # 11 bits per byte: 4.583 ms per byte


@dataclass
class Bus:
    clock: LoopClock
    port: Rs485Port
    devices: FakeDevices
    meter_side: MemoryLink

    async def ask(
        self,
        addr: int,
        seq: int,
        *,
        priority: Priority = Priority.REALTIME,
        timeout: float = 1.0,  # noqa: ASYNC109 (passed through to transact)
    ) -> Frame:
        return await self.port.transact(
            Frame(addr, seq, b"q").encode(),
            decoder=Framer(),
            match=reply_to(addr, seq),
            device=f"m{addr}",
            priority=priority,
            timeout=timeout,
        )


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    clock = LoopClock(start=1_700_000_000.0)
    ours, theirs = memory_link_pair(SETTINGS, names=("rs485-1", "meters"))
    devices = FakeDevices(clock=clock, link=theirs, delays={1: 0.1, 2: 0.1, 3: 0.1, 4: 0.1})
    port = Rs485Port(ours, clock=clock, name="rs485-1", inter_frame_gap=0.01)
    async with port, theirs, running(devices):
        yield Bus(clock, port, devices, theirs)


async def spin(times: int = 20) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


@pytest.mark.looptime
async def test_transaction_returns_matching_reply(bus: Bus) -> None:
    reply = await bus.ask(1, 7)
    assert reply == Frame(1, 7, b"Rq")
    health = bus.port.health("m1")
    assert (health.ok, health.timeouts, health.available) == (1, 0, True)
    assert health.last_ok == pytest.approx(bus.clock.now())
    trace = bus.port.trace.snapshot()
    assert [e["direction"] for e in trace] == ["tx", "rx"]
    assert trace[0]["hex"] == "AA 03 01 07 71"
    assert trace[1]["note"] == "reply"


@pytest.mark.looptime
async def test_priority_order_while_bus_busy(bus: Bus) -> None:
    async with asyncio.TaskGroup() as tg:
        first = tg.create_task(bus.ask(1, 1, priority=Priority.REALTIME), name="holder")
        await spin()  # `first` holds the bus now
        tg.create_task(bus.ask(2, 1, priority=Priority.CURVE), name="curve-1")
        tg.create_task(bus.ask(3, 1, priority=Priority.CURVE), name="curve-2")
        await spin()
        tg.create_task(bus.ask(4, 1, priority=Priority.CONTROL), name="control")
        await spin()
        queue = bus.port.statistics()["queue"]
        assert queue == {"CONTROL": 1, "EVENT": 0, "REALTIME": 0, "CURVE": 2}
    assert first.result().addr == 1
    assert bus.devices.order() == [1, 4, 2, 3]  # CONTROL first, then CURVE in FIFO order
    assert bus.port.statistics()["transactions"] == 4


@pytest.mark.looptime
async def test_dead_device_times_out_without_stalling_others(bus: Bus) -> None:
    bus.devices.delays[9] = None
    t0 = bus.clock.monotonic()
    dead = asyncio.create_task(bus.ask(9, 1, timeout=0.5), name="dead")
    await spin()
    alive = asyncio.create_task(bus.ask(1, 1), name="alive")
    dead_result, alive_result = await asyncio.gather(dead, alive, return_exceptions=True)
    assert isinstance(dead_result, TransportTimeout)
    assert "rs485-1: m9 did not answer within 0.5 s" in str(dead_result)
    assert alive_result == Frame(1, 1, b"Rq")
    # dead: 0.5 s after its request left the wire; then the gap and the live meter's 0.1 s reply
    expected = SETTINGS.wire_seconds(5) + 0.5 + 0.01 + 0.1
    assert bus.clock.monotonic() - t0 == pytest.approx(expected, abs=1e-6)
    assert bus.port.health("m9").timeouts == 1
    assert bus.port.statistics()["devices"]["m9"]["timeouts"] == 1  # type: ignore[index]


@pytest.mark.looptime
async def test_unavailable_and_recovered_are_logged_once(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hal.rs485")
    bus.devices.delays[5] = None
    for seq in range(6):
        t0 = bus.clock.monotonic()
        with pytest.raises(TransportTimeout):
            await bus.ask(5, seq, timeout=1.0)
        spent = bus.clock.monotonic() - t0
        # from the 4th transaction on, the dead meter gets the short timeout
        assert spent < 0.4 if seq >= 3 else spent > 1.0
    health = bus.port.health("m5")
    assert (health.available, health.consecutive_failures, health.timeouts) == (False, 6, 6)
    bus.devices.delays[5] = 0.05
    await bus.ask(5, 100)
    await bus.ask(5, 101)
    messages = [r.getMessage() for r in caplog.records if "m5" in r.getMessage()]
    assert len([m for m in messages if "unavailable" in m]) == 1
    assert len([m for m in messages if "recovered" in m]) == 1
    assert [r.levelno for r in caplog.records if "m5" in r.getMessage()] == [logging.WARNING, logging.INFO]
    assert bus.port.health("m5").available
    assert bus.port.health("m5").consecutive_failures == 0


@pytest.mark.looptime
async def test_garbage_and_stray_frames_before_the_reply_are_tolerated(bus: Bus) -> None:
    bus.devices.prefix = b"\x00\xff\x13" + Frame(3, 99, b"stray").encode() + b"\x55"
    assert await bus.ask(1, 2) == Frame(1, 2, b"Rq")
    stats = bus.port.statistics()
    assert stats["decode_errors"] == 2
    assert stats["unmatched_frames"] == 1
    assert bus.port.health("m1").bad_frames == 3
    notes = [e["note"] for e in bus.port.trace.snapshot()]
    assert any(str(n).startswith("decode error: skipped 3 bytes") for n in notes)
    assert any(str(n).startswith("not the reply") for n in notes)
    assert notes[-1] == "reply"


@pytest.mark.looptime
async def test_cancelled_waiter_leaves_the_queue(bus: Bus) -> None:
    async with asyncio.TaskGroup() as tg:
        holder = tg.create_task(bus.ask(1, 1), name="holder")
        await spin()
        waiter = tg.create_task(bus.ask(2, 1, priority=Priority.CONTROL), name="waiter")
        await spin()
        assert bus.port.statistics()["queue"]["CONTROL"] == 1  # type: ignore[index]
        waiter.cancel()
        await spin()
        assert bus.port.statistics()["queue"]["CONTROL"] == 0  # type: ignore[index]
    assert waiter.cancelled()
    assert holder.result().addr == 1
    assert bus.devices.order() == [1]  # the cancelled request never went out
    assert await bus.ask(3, 1) == Frame(3, 1, b"Rq")  # the bus is free again


@pytest.mark.looptime
async def test_cancel_mid_transaction_releases_bus_and_drops_the_half_reply(bus: Bus) -> None:
    bus.devices.delays[1] = 0.5
    slow = asyncio.create_task(bus.ask(1, 1), name="slow")
    await bus.clock.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert not bus.port.statistics()["busy"]
    # the meter answers the cancelled request late, while the next transaction runs:
    # that reply is counted as not matching, never returned
    assert await bus.ask(1, 2) == Frame(1, 2, b"Rq")
    assert bus.port.statistics()["unmatched_frames"] == 1
    assert bus.port.health("m1").timeouts == 0  # a cancellation is not the meter's fault


@pytest.mark.looptime
async def test_broadcast_holds_the_bus_for_its_wire_time(bus: Bus) -> None:
    frame = Frame(0x99, 0, bytes(98)).encode()  # 102 bytes: 0.4675 s at 2400 8E1
    wire = SETTINGS.wire_seconds(len(frame))
    t0 = bus.clock.monotonic()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(bus.port.send(frame, priority=Priority.CONTROL), name="broadcast")
        await spin()
        tg.create_task(bus.ask(1, 1), name="next")
    sent_at = {addr: t for t, addr, _ in bus.devices.served}
    assert sent_at[0x99] == pytest.approx(t0)
    assert sent_at[1] - t0 >= wire + 0.01 - 1e-9  # wire time + inter-frame gap before the next request
    assert bus.port.statistics()["broadcasts"] == 1


@pytest.mark.looptime
async def test_a_request_waits_for_the_silence_its_protocol_asks(bus: Bus) -> None:
    # the memory pair hands a request over when its write completes: ``served`` is the
    # moment the request left the port
    await bus.ask(1, 1)
    first_idle = bus.clock.monotonic()
    request = Frame(2, 1, b"q").encode()
    await bus.port.transact(
        request, decoder=Framer(), match=reply_to(2, 1), device="m2", silence=0.05
    )  # e.g. Modbus RTU's t3.5
    second_idle = bus.clock.monotonic()
    await bus.ask(3, 1)  # no silence asked: the port's 0.01 s gap
    served = {addr: t for t, addr, _ in bus.devices.served}
    assert served[2] - first_idle == pytest.approx(0.05, abs=1e-3)
    assert served[3] - second_idle == pytest.approx(0.01, abs=1e-3)


@pytest.mark.looptime
async def test_silence_shorter_than_the_gap_keeps_the_gap(bus: Bus) -> None:
    await bus.ask(1, 1)
    idle_from = bus.clock.monotonic()
    request = Frame(2, 1, b"q").encode()
    await bus.port.transact(request, decoder=Framer(), match=reply_to(2, 1), device="m2", silence=0.0)
    served = {addr: t for t, addr, _ in bus.devices.served}
    assert served[2] - idle_from == pytest.approx(0.01, abs=1e-3)


def test_default_gap_is_one_character_time() -> None:
    ours, _ = memory_link_pair(SETTINGS, names=("rs485-1", "meters"))
    port = Rs485Port(ours, clock=LoopClock(), name="rs485-1")
    assert port.inter_frame_gap == pytest.approx(11 / 2400)


@pytest.mark.looptime
async def test_closed_link_fails_fast_and_frees_the_bus(bus: Bus) -> None:
    await bus.port.link.close()
    with pytest.raises(TransportClosed):
        await bus.ask(1, 1)
    assert bus.port.health("m1").errors == 1
    assert not bus.port.statistics()["busy"]


@pytest.mark.looptime
async def test_trace_is_a_bounded_ring() -> None:
    clock = LoopClock(start=0.0)
    ours, theirs = memory_link_pair(SETTINGS)
    devices = FakeDevices(clock=clock, link=theirs, delays={1: 0.02})
    port = Rs485Port(ours, clock=clock, name="rs485-2", trace_size=4)
    async with port, theirs, running(devices):
        for seq in range(5):
            await port.transact(Frame(1, seq).encode(), decoder=Framer(), match=reply_to(1, seq), device="m1")
    snap = port.trace.snapshot()
    assert len(snap) == 4
    assert port.trace.total == 10
    assert snap[-1]["hex"] == "AA 03 01 04 52"
    assert set(snap[0]) == {"ts", "direction", "device", "hex", "note"}


async def test_over_a_real_pty_with_pyserial() -> None:
    """End to end through the linux backend (real I/O, so no looptime: a fast clock bounds the wait)."""
    pty = PtyPeer()
    link = PySerialLink(pty.slave_path, SETTINGS, name="rs485-pty")
    port = Rs485Port(link, clock=LoopClock(speed=1.0), name="rs485-pty", inter_frame_gap=0.0)

    async def meter() -> None:
        framer = Framer()
        while True:
            for item in framer.feed(await pty.receive_some()):
                if isinstance(item, Frame):
                    await pty.send(b"\xfe\xfe" + Frame(item.addr, item.seq, b"ok").encode())

    try:
        async with port, asyncio.TaskGroup() as tg:
            pty.release_slave()
            task = tg.create_task(meter(), name="pty-meter")
            for seq in range(3):
                reply = await port.transact(
                    Frame(1, seq).encode(), decoder=Framer(), match=reply_to(1, seq), device="m1", timeout=5.0
                )
                assert reply == Frame(1, seq, b"ok")
            task.cancel()
    finally:
        await pty.aclose()
    assert port.health("m1").ok == 3
