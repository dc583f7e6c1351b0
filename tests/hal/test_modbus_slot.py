"""The modbus-rtu slot driver over a real pty (pyserial) against the simulator's virtual I/O modules.

Real I/O, so no looptime: a 2x clock (tests/hal/_modbus_line.py) keeps the
wire/response delays short in wall time.
Expected values come from the virtual modules' knobs and register images.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from hal.clock import LoopClock
from hal.errors import CapabilityMissing, DeviceError, TransportTimeout
from hal.interfaces import SerialSettings, Slot
from hal.linux.serial import PySerialLink
from hal.modbus import ModbusMaster, WriteNotVerified
from hal.modbus_slot import ModbusIoSlot
from hal.rs485 import Rs485Port
from protocols import modbus
from sim.devices.modbus import ModbusLine, VirtualIoModule, loop_current_ma
from tests.hal._modbus_line import served_line

UART = SerialSettings(9600, "E")
IO = modbus.builtin_profile("io-module")
START = 1_700_000_000.0


@contextlib.asynccontextmanager
async def slot(
    *modules: VirtualIoModule, unit_ids: tuple[int, ...] = (1,), reply_timeout: float = 1.0
) -> AsyncIterator[tuple[ModbusIoSlot, ModbusLine]]:
    async with served_line(modules, UART, name="slot-2", start=START) as (port, line):
        master = ModbusMaster(port, timeout=reply_timeout)
        yield ModbusIoSlot(master, name="slot-2", unit_ids=unit_ids), line


def module(unit: int = 1, *, loading: float = 0.5) -> VirtualIoModule:
    return VirtualIoModule(IO, unit, loading=lambda t: loading)


def test_io_module_profile_has_the_points_of_an_8di_4do_2ai_module() -> None:
    regs = IO.registers
    assert [n for n, r in regs.items() if r.table == "discrete"] == [f"di{i}" for i in range(1, 9)]
    assert [n for n, r in regs.items() if r.table == "coil" and r.writable] == [f"do{i}" for i in range(1, 5)]
    assert [(r.name, r.address) for r in regs.values() if r.table == "input"] == [("ai1", 0), ("ai2", 1)]
    assert modbus.decode_value(regs["ai1"], [12_000]) == pytest.approx(12.0)  # µA -> mA
    assert regs["ai1"].unit == "mA" and not regs["ai1"].writable
    assert IO.kind == "generic"


async def test_reads_every_point_of_every_unit_in_one_request_per_table() -> None:
    one, two = module(1, loading=0.8), module(2, loading=0.2)
    two.door_closed = False
    async with slot(one, two, unit_ids=(1, 2)) as (io, line):
        assert isinstance(io, Slot) and io.kind == "modbus-rtu" and io.name == "slot-2"
        values = await io.read_inputs()
    assert sorted(values) == sorted(f"u{u}.{p}" for u in (1, 2) for p in IO.registers)
    assert line.requests == 2 * 3  # coils, discrete inputs, input registers per unit
    assert values["u1.di1"] is True and values["u2.di1"] is False  # transformer-room door
    assert values["u1.di2"] is True  # surge protector healthy
    assert not any(values[f"u1.di{i}"] for i in range(3, 9))
    assert not any(values[f"u1.do{i}"] for i in range(1, 5))
    assert one.oil_c is not None and two.oil_c is not None
    assert values["u1.ai1"] == pytest.approx(loop_current_ma(one.oil_c, 0.0, 150.0), abs=0.03)
    assert 4.0 < values["u2.ai1"] < values["u1.ai1"] < 20.0  # more loading, hotter oil
    assert values["u1.ai2"] == pytest.approx(loop_current_ma(one.ambient_c(START), -40.0, 80.0), abs=0.03)


async def test_relay_write_is_verified_by_read_back_and_latches() -> None:
    mod = module()
    async with slot(mod) as (io, line):
        await io.write_output("u1.do3", True)
        assert line.requests == 2  # the write, then the coil read back
        values = await io.read_inputs()
        await io.write_output("u1.do3", False)
        after = await io.read_inputs()
    assert values["u1.do3"] is True and not values["u1.do1"]
    assert after["u1.do3"] is False
    assert mod.writes == 2 and mod.get("do3") is False


async def test_unknown_points_raise_capability_missing_naming_point_and_slot() -> None:
    async with slot(module()) as (io, line):
        for point in ("u1.do9", "u3.do1", "do1", "x1.do1", "u.do1", "u1"):
            with pytest.raises(CapabilityMissing, match=rf"slot slot-2: no point '{point}'.*u1\.do1"):
                await io.write_output(point, True)
    assert line.requests == 0


async def test_read_only_and_wrongly_typed_writes_are_refused_before_the_line() -> None:
    mod = module()
    async with slot(mod) as (io, line):
        with pytest.raises(CapabilityMissing, match=r"slot slot-2: point 'u1.di1' is read-only"):
            await io.write_output("u1.di1", True)
        with pytest.raises(CapabilityMissing, match=r"slot slot-2: point 'u1.ai1' is read-only"):
            await io.write_output("u1.ai1", 12.0)
        with pytest.raises(DeviceError, match="takes a bool"):
            await io.write_output("u1.do1", 1.0)
    assert line.requests == 0 and mod.writes == 0


class StuckRelay(VirtualIoModule):
    """A module whose relay 1 is welded open: the write is acknowledged, the coil reads false."""

    def written(self, point: str, value: float | bool, t: float) -> None:
        if point == "do1":
            self.set("do1", False)


async def test_a_relay_that_does_not_follow_fails_the_read_back() -> None:
    async with slot(StuckRelay(IO, 1)) as (io, _):
        with pytest.raises(WriteNotVerified, match="do1"):
            await io.write_output("u1.do1", True)


async def test_a_dead_unit_is_left_out_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hal.modbus_slot")
    one = module(1)
    async with slot(one, unit_ids=(1, 2), reply_timeout=0.5) as (io, line):
        first = await io.read_inputs()
        second = await io.read_inputs()
        stats = io.statistics()
        line.devices.append(module(2))  # unit 2 comes back (powered up, rewired)
        third = await io.read_inputs()
        line.devices.pop()
        with pytest.raises(TransportTimeout, match="modbus:2"):
            await io.write_output("u2.do1", True)  # a write to a dead unit is never silent
    assert sorted(first) == sorted(second) == sorted(f"u1.{p}" for p in IO.registers)
    assert stats["units"] == {
        1: {"answering": True, "failed_reads": 0},
        2: {"answering": False, "failed_reads": 2},
    }
    assert any(k.startswith("u2.") for k in third) and third["u2.di1"] is True
    assert io.statistics()["units"][2] == {"answering": True, "failed_reads": 2}  # type: ignore[index]
    lines = [r.getMessage() for r in caplog.records if r.name == "hal.modbus_slot"]
    assert len([m for m in lines if "unit 2 not read" in m]) == 1
    assert len([m for m in lines if "unit 2 answers again" in m]) == 1


async def test_when_no_unit_answers_the_read_raises_the_timeout_naming_slot_and_unit() -> None:
    async with slot(module(1), unit_ids=(5,), reply_timeout=0.5) as (io, _):
        with pytest.raises(TransportTimeout, match=r"slot-2: modbus:5 did not answer"):
            await io.read_inputs()
    assert io.statistics()["units"] == {5: {"answering": False, "failed_reads": 1}}


def test_unit_ids_are_checked() -> None:
    master = ModbusMaster(Rs485Port(PySerialLink("/dev/null", UART), clock=LoopClock(), name="slot-2"))
    with pytest.raises(ValueError, match="at least one unit id"):
        ModbusIoSlot(master, name="slot-2", unit_ids=())
    with pytest.raises(ValueError, match="unique"):
        ModbusIoSlot(master, name="slot-2", unit_ids=(1, 1))
    with pytest.raises(ValueError, match=r"1\.\.247"):
        ModbusIoSlot(master, name="slot-2", unit_ids=(248,))
    points = ModbusIoSlot(master, name="slot-2", unit_ids=(1, 7)).points
    assert points[0] == "u1.di1" and "u7.ai2" in points and len(points) == 2 * len(IO.registers)
