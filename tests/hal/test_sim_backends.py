"""Watchdogs (sim and /dev/watchdog-style), MemorySlot, FrameTrace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hal.clock import LoopClock
from hal.errors import CapabilityMissing, DeviceError, TransportBroken, TransportClosed
from hal.interfaces import SerialSettings, Slot, Watchdog
from hal.linux import DevWatchdog
from hal.sim import MemorySlot, SimWatchdog, memory_link_pair
from hal.trace import FrameTrace


@pytest.mark.looptime
async def test_sim_watchdog_records_kicks_and_missed_deadlines() -> None:
    clock = LoopClock(start=0.0)
    dog = SimWatchdog(clock, timeout=10.0)
    assert isinstance(dog, Watchdog)
    dog.arm()
    for _ in range(3):
        await clock.sleep(9.0)
        await dog.kick()
    assert dog.kicks == pytest.approx((9.0, 18.0, 27.0))
    assert not dog.expired
    await clock.sleep(12.0)
    await dog.kick()
    missed = dog.missed()
    assert len(missed) == 1
    assert missed[0].late_by == pytest.approx(12.0)
    await clock.sleep(10.5)  # a gap still open now counts too
    assert len(dog.missed()) == 2


@pytest.mark.looptime
async def test_sim_watchdog_kicked_for_days_keeps_its_newest_kicks_only() -> None:
    clock = LoopClock(start=0.0)
    dog = SimWatchdog(clock, timeout=60.0)
    for _ in range(5760):  # a day of kicks every 15 s (a quarter of the timeout), for weeks
        await clock.sleep(15.0)
        await dog.kick()
    assert len(dog.kicks) <= 2048 and dog.kicks[-1] == pytest.approx(86400.0)
    assert not dog.expired
    await clock.sleep(61.0)
    assert len(dog.missed()) == 1  # the open gap is still seen


async def test_dev_watchdog_writes_one_byte_per_kick_and_magic_close(tmp_path: Path) -> None:
    path = tmp_path / "watchdog"
    path.write_bytes(b"")
    dog = DevWatchdog(str(path), timeout=30.0)
    assert isinstance(dog, Watchdog)
    with pytest.raises(TransportClosed):
        await dog.kick()
    async with dog:
        await dog.kick()
        await dog.kick()
    assert path.read_bytes() == b"\0\0V"
    assert dog.kicks == 2
    await dog.close()  # idempotent


async def test_dev_watchdog_missing_device_is_named(tmp_path: Path) -> None:
    dog = DevWatchdog(str(tmp_path / "nope" / "watchdog"))
    with pytest.raises(TransportBroken, match="nope/watchdog"):
        await dog.open()


async def test_memory_slot_points() -> None:
    slot = MemorySlot("slot-1", inputs={"di1": False}, outputs={"do1": False, "ao1": 0.0})
    assert isinstance(slot, Slot)
    assert slot.kind == "dio"
    slot.set_input("di1", True)
    await slot.write_output("do1", True)
    await slot.write_output("ao1", 4.5)
    assert await slot.read_inputs() == {"di1": True, "do1": True, "ao1": 4.5}
    assert slot.writes == [("do1", True), ("ao1", 4.5)]
    with pytest.raises(CapabilityMissing, match="slot-1: no output point 'do9'"):
        await slot.write_output("do9", True)
    with pytest.raises(DeviceError, match="takes a bool"):
        await slot.write_output("do1", 1.0)
    with pytest.raises(DeviceError, match="takes a number"):
        await slot.write_output("ao1", True)


def test_frame_trace_ring() -> None:
    trace = FrameTrace(2)
    trace.record("tx", b"\x68\x16", ts=1.0, device="m1", note="req")
    trace.record("rx", b"\xfe", ts=2.0, device="m1")
    trace.record("rx", b"\x01\xab", ts=3.0, device="m2", note="reply")
    assert len(trace) == 2
    assert trace.total == 3
    assert trace.snapshot() == [
        {"ts": 2.0, "direction": "rx", "device": "m1", "hex": "FE", "note": ""},
        {"ts": 3.0, "direction": "rx", "device": "m2", "hex": "01 AB", "note": "reply"},
    ]
    with pytest.raises(ValueError):
        FrameTrace(0)


async def test_a_steady_memory_end_sees_no_hang_up() -> None:
    """The simulator's end of a line (``steady_b``): the terminal closing its port is silence,
    not an error, and the line carries bytes again once the terminal reopens it."""
    settings = SerialSettings()
    terminal, device = memory_link_pair(settings, names=("rs485-1", "sim-rs485-1"), steady_b=True)
    await device.open()
    await terminal.open()
    await terminal.write(b"\x01")
    assert await device.read() == b"\x01"
    await terminal.close()
    await device.write(b"lost")  # nobody listens: dropped, no TransportBroken
    reading = asyncio.ensure_future(device.read())
    await asyncio.sleep(0)
    assert not reading.done()  # silence, not a hang-up
    await terminal.open()
    await terminal.write(b"\x02")
    assert await reading == b"\x02"
    await device.close()
    with pytest.raises(TransportBroken):  # the terminal's end is not steady
        await terminal.read()
