"""MeterBus on a real pty, driven through pyserial, with the wire-time model checked on the clock."""

from __future__ import annotations

import asyncio
import calendar
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import pytest
import serial

from hal.clock import LoopClock
from hal.interfaces import SerialSettings
from protocols.dlt645 import (
    Frame,
    Framer,
    broadcast_time_request,
    encode,
    parse_read_response,
    read_address_request,
    read_request,
)
from sim.loads import ConstantProfile
from sim.meters.bus import MeterBus, address_matches
from sim.meters.model import VirtualMeter
from sim.pty import open_pty

MIDNIGHT = calendar.timegm((2024, 3, 3, 16, 0, 0)) * 1.0  # 2024-03-04 00:00 local (UTC+8)
ADDRS = ("000000000001", "000000000002", "000000000003")
SETTINGS = SerialSettings(baud=2400, parity="E")


def meters(n: int = 3) -> list[VirtualMeter]:
    return [
        VirtualMeter(a, profile=ConstantProfile(kw=1.0 + i), start=MIDNIGHT) for i, a in enumerate(ADDRS[:n])
    ]


class Terminal:
    """The terminal's side: pyserial on the slave path, read via loop.add_reader."""

    def __init__(self, port: serial.Serial, clock: LoopClock) -> None:
        self.port = port
        self.clock = clock
        self.framer = Framer()
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.raw = bytearray()

    def on_readable(self) -> None:
        try:
            data = self.port.read(4096)
        except serial.SerialException:  # the simulator closed its side
            asyncio.get_running_loop().remove_reader(self.port.fileno())
            return
        self.raw += data
        for item in self.framer.feed(data):
            if isinstance(item, Frame):
                self.frames.put_nowait(item)

    async def transact(self, frame: Frame) -> tuple[Frame, float]:
        t0 = self.clock.monotonic()
        self.port.write(encode(frame))
        async with self.clock.timeout(2.0):
            reply = await self.frames.get()
        return reply, self.clock.monotonic() - t0

    async def silence(self, seconds: float) -> bool:
        """True if not one byte arrives within ``seconds`` of clock time."""
        before = len(self.raw)
        await self.clock.sleep(seconds)
        return self.frames.empty() and len(self.raw) == before


@asynccontextmanager
async def running(bus: MeterBus, clock: LoopClock) -> AsyncIterator[Terminal]:
    pty = open_pty("rs485-1")
    loop = asyncio.get_running_loop()
    port = serial.Serial(pty.slave_path, 2400, parity="E", timeout=0)
    term = Terminal(port, clock)
    loop.add_reader(port.fileno(), term.on_readable)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(bus.serve(pty), name="test-meter-bus")
            yield term
            task.cancel()
        assert pty.closed  # serve closed the pty on the way out
    finally:
        loop.remove_reader(port.fileno())
        port.close()
        pty.close()


@pytest.mark.looptime
async def test_addressed_meter_answers_with_wire_timing() -> None:
    clock = LoopClock(start=MIDNIGHT + 3600)
    bus = MeterBus(meters(), clock=clock, settings=SETTINGS, response_delay_s=0.1, seed=1)
    async with running(bus, clock) as term:
        request = read_request(ADDRS[1], 0x00010000)
        reply, took = await term.transact(request)
        assert reply.address == ADDRS[1]
        assert parse_read_response(reply).values == (pytest.approx(2.0),)  # 2 kW for one hour
        expected = (
            SETTINGS.wire_seconds(len(encode(request))) + 0.1 + SETTINGS.wire_seconds(len(encode(reply)))
        )
        # 4+16 request bytes and 4+20 reply bytes at 11 bits / 2400 bd: ~0.19 s on the wire
        assert took == pytest.approx(expected, abs=0.005)
        assert expected == pytest.approx((20 + 24) * 11 / 2400 + 0.1)
    assert (bus.counters.requests, bus.counters.replies, bus.counters.ignored) == (1, 1, 0)


@pytest.mark.looptime
async def test_others_stay_silent_and_garbage_is_counted() -> None:
    clock = LoopClock(start=MIDNIGHT)
    bus = MeterBus(meters(), clock=clock, settings=SETTINGS, seed=1)
    async with running(bus, clock) as term:
        term.port.write(encode(read_request("000000000009", 0x00010000)))
        assert await term.silence(1.0)
        bad = bytearray(encode(read_request(ADDRS[0], 0x00010000)))
        bad[-2] ^= 0xFF  # corrupt the checksum
        term.port.write(bytes(bad))
        assert await term.silence(1.0)
        term.port.write(encode(read_address_request()))  # AA..AA on a shared line: nobody answers
        assert await term.silence(1.0)
        reply, _ = await term.transact(read_request(ADDRS[2], 0x02030000))  # the line still works
        assert reply.address == ADDRS[2]
    c = bus.counters
    assert (c.requests, c.replies, c.ignored) == (3, 1, 2)
    assert c.garbage >= 1  # the framer may reject the corrupt frame's second 68 as well while resyncing


@pytest.mark.looptime
async def test_broadcast_time_sync_reaches_every_meter_without_reply() -> None:
    clock = LoopClock(start=MIDNIGHT + 600)
    ms = meters()
    for m in ms:
        m.skew_s = 90.0
    bus = MeterBus(ms, clock=clock, settings=SETTINGS, seed=1)
    async with running(bus, clock) as term:
        term.port.write(encode(broadcast_time_request(datetime(2024, 3, 4, 0, 10, 0))))
        assert await term.silence(1.0)
    assert all(abs(m.skew_s) < 0.5 for m in ms)


@pytest.mark.looptime
async def test_half_duplex_one_exchange_at_a_time() -> None:
    clock = LoopClock(start=MIDNIGHT)
    bus = MeterBus(
        meters(), clock=clock, settings=SETTINGS, response_delay_s={ADDRS[0]: 0.3, ADDRS[1]: 0.05}, seed=1
    )
    async with running(bus, clock) as term:
        r1, r2 = read_request(ADDRS[0], 0x00010000), read_request(ADDRS[1], 0x00010000)
        t0 = clock.monotonic()
        term.port.write(encode(r1) + encode(r2))  # the second request queues behind the first exchange
        async with clock.timeout(3.0):
            first = await term.frames.get()
            t1 = clock.monotonic()
            second = await term.frames.get()
            t2 = clock.monotonic()
        assert (first.address, second.address) == (ADDRS[0], ADDRS[1])
        w = SETTINGS.wire_seconds
        assert t1 - t0 == pytest.approx(w(20) + 0.3 + w(24), abs=0.005)
        assert t2 - t1 == pytest.approx(w(20) + 0.05 + w(24), abs=0.005)


@pytest.mark.looptime
async def test_wildcard_read_address_alone_and_missed_reads() -> None:
    clock = LoopClock(start=MIDNIGHT)
    (meter,) = meters(1)
    bus = MeterBus([meter], clock=clock, settings=SETTINGS, seed=3)
    async with running(bus, clock) as term:
        reply, _ = await term.transact(read_address_request())
        assert reply.address == ADDRS[0] and reply.control == 0x93
        meter.faults.miss_rate = 1.0
        term.port.write(encode(read_request(ADDRS[0], 0x00010000)))
        assert await term.silence(1.0)
        meter.power_off(clock.now())
        meter.faults.miss_rate = 0.0
        term.port.write(encode(read_request(ADDRS[0], 0x00010000)))
        assert await term.silence(1.0)
    assert bus.counters.ignored == 2


def test_address_matching() -> None:
    assert address_matches("000000000001", "000000000001")
    assert address_matches("AAAAAAAAAAAA", "123456789012")
    assert address_matches("AAAAAAAA9012", "123456789012")
    assert not address_matches("AAAAAAAA9013", "123456789012")


async def test_serve_cleans_up_on_cancel() -> None:
    clock = LoopClock(start=MIDNIGHT)
    pty = open_pty("rs485-x")
    bus = MeterBus(meters(1), clock=clock, settings=SETTINGS)
    task = asyncio.create_task(bus.serve(pty), name="test-bus-cancel")
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pty.closed
    with pytest.raises(OSError):
        os.fstat(pty.master_fd)
