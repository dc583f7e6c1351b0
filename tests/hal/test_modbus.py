"""The Modbus RTU master over a real pty against the virtual devices (pymodbus PDUs server side)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest

from hal.errors import DeviceError, TransportTimeout
from hal.interfaces import Priority, SerialSettings
from hal.modbus import ModbusMaster, RtuDecoder, encode_frame, frame_silence
from protocols import modbus
from protocols.errors import EncodeError
from sim.devices.modbus import ModbusLine, VirtualBreaker, VirtualCapacitor, VirtualEnvironment
from tests.hal._modbus_line import served_line

LINE = SerialSettings(9600, "E")
BREAKER = modbus.builtin_profile("breaker")
CAPACITOR = modbus.builtin_profile("capacitor")


def measure(t: float) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    return (230.1, 229.5, 231.0), (101.25, 98.5, 120.0), 72.5


@contextlib.asynccontextmanager
async def bus(*devices: object) -> AsyncIterator[tuple[ModbusMaster, ModbusLine]]:
    async with served_line(devices, LINE, name="rs485-4") as (port, line):
        yield ModbusMaster(port, timeout=2.0), line


async def test_profile_read_in_contiguous_blocks() -> None:
    brk = VirtualBreaker(BREAKER, 3, measure=measure)
    async with bus(brk) as (master, line):
        values = await master.read(3, BREAKER)
    blocks = modbus.plan_blocks(BREAKER.registers.values())
    assert master.exchanges == len(blocks) == line.requests
    assert len(blocks) < len(BREAKER.registers)
    assert values["current_a"] == pytest.approx(101.25)
    assert values["voltage_c"] == pytest.approx(231.0)
    assert values["active_power"] == pytest.approx(72.5)
    assert values["switch_closed"] is True
    assert values["rated_current"] == 250


async def test_every_request_follows_t35_of_idle_line() -> None:
    brk = VirtualBreaker(BREAKER, 3, measure=measure)
    async with bus(brk) as (master, _):
        await master.read(3, BREAKER)
        trace = master.port.trace.snapshot()
    t35 = frame_silence(LINE)
    pairs = [(a, b) for a, b in itertools.pairwise(trace) if (a["direction"], b["direction"]) == ("rx", "tx")]
    assert len(pairs) >= 2
    for reply, request in pairs:
        assert float(request["ts"]) - float(reply["ts"]) >= t35 - 1e-6  # type: ignore[arg-type]


def test_t35_is_three_and_a_half_characters_up_to_19200_baud() -> None:
    assert frame_silence(SerialSettings(9600, "E")) == pytest.approx(3.5 * 11 / 9600)
    assert frame_silence(SerialSettings(19200, "N", stopbits=2)) == pytest.approx(3.5 * 11 / 19200)
    assert frame_silence(SerialSettings(38400, "E")) == pytest.approx(0.00175)


async def test_exception_reply_is_device_error_with_code() -> None:
    brk = VirtualBreaker(BREAKER, 3)
    async with bus(brk) as (master, _):
        hole = modbus.Block("input", 7, 1, ())  # address 7 is not mapped
        with pytest.raises(DeviceError) as info:
            await master.read_block(3, hole)
        assert info.value.code == 2 and "illegal data address" in info.value.reason
        with pytest.raises(EncodeError, match="outside"):
            await master.write(3, BREAKER, "rated_current", 900)  # max 800 in the profile: refused locally


async def test_out_of_range_write_is_refused_by_the_device() -> None:
    cap = VirtualCapacitor(CAPACITOR, 5)
    async with bus(cap) as (master, _):
        from pymodbus.pdu.register_message import WriteSingleRegisterRequest

        with pytest.raises(DeviceError) as info:
            await master.exchange(
                5, WriteSingleRegisterRequest(address=0, registers=[40]), priority=Priority.CONTROL
            )
    assert info.value.code == 3
    assert cap.get("steps_in") == 2


async def test_breaker_open_close_verified_by_read_back() -> None:
    switched: list[tuple[bool, float]] = []
    brk = VirtualBreaker(BREAKER, 7, measure=measure, on_switch=lambda c, t: switched.append((c, t)))
    async with bus(brk) as (master, _):
        assert await master.command(7, BREAKER, "open") is False
        after = await master.read(7, BREAKER, ["trip_cause", "trip_count", "current_a"])
        assert await master.command(7, BREAKER, "close") is True
    assert [c for c, _ in switched] == [False, True]
    assert BREAKER.register("trip_cause").meaning(after["trip_cause"]) == "remote open"
    assert after["trip_count"] == 1 and after["current_a"] == 0


async def test_capacitor_steps_write_with_read_back() -> None:
    cap = VirtualCapacitor(CAPACITOR, 5)
    async with bus(cap) as (master, _):
        assert await master.write(5, CAPACITOR, "steps_in", 6) == 6
        values = await master.read(5, CAPACITOR, ["reactive_power", "steps_in"])
    assert values["reactive_power"] == pytest.approx(60.0)


async def test_environment_float_in_little_word_order() -> None:
    env = VirtualEnvironment(modbus.builtin_profile("environment"), 9)
    env.door_open = True
    async with bus(env) as (master, _):
        values = await master.read(9, env.profile)
    assert values["door_open"] is True and values["water"] is False
    assert -40 < float(values["dew_point"]) < float(values["temperature"]) + 0.01


async def test_absent_unit_times_out() -> None:
    async with bus(VirtualBreaker(BREAKER, 3)) as (master, _):
        with pytest.raises(TransportTimeout, match="modbus:4"):
            await master.read(4, BREAKER, ["trip_cause"], timeout=0.3)


async def test_breaker_write_overtakes_queued_realtime_reads() -> None:
    """On a shared port the CONTROL write runs before realtime reads queued ahead of it."""
    brk = VirtualBreaker(BREAKER, 3, measure=measure)
    order: list[str] = []
    async with bus(brk) as (master, _):

        async def read(n: int) -> None:
            await master.read(3, BREAKER, ["current_a"], priority=Priority.REALTIME)
            order.append(f"read{n}")

        async def open_it() -> None:
            await asyncio.sleep(0)  # queue behind the reads
            await master.command(3, BREAKER, "open")
            order.append("open")

        async with asyncio.TaskGroup() as tg:
            for n in range(4):
                tg.create_task(read(n), name=f"read{n}")
            tg.create_task(open_it(), name="open")
        sent = [e["note"] for e in master.port.trace.snapshot() if e["direction"] == "tx"]
    # read0 already held the bus; the write went on the wire next, ahead of reads 1..3
    assert sent[0] == "realtime request" and sent[1] == "control request", sent
    assert order.index("open") < order.index("read2"), order
    assert not brk.closed


def test_decoder_resynchronizes_after_noise() -> None:
    from pymodbus.pdu.register_message import ReadInputRegistersResponse

    good = encode_frame(3, ReadInputRegistersResponse(registers=[1, 2, 3]))
    corrupt = bytearray(good)
    corrupt[4] ^= 0xFF
    dec = RtuDecoder()
    out = dec.feed(b"\x68\x01\x02" + bytes(corrupt) + good)
    frames = [f for f in out if not isinstance(f, Exception)]
    assert len(frames) == 1 and list(frames[0].pdu.registers) == [1, 2, 3]
    assert dec.errors >= 1 and dec.skipped >= len(corrupt)
