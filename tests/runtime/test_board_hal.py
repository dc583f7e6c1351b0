"""``BoardHal`` opening expansion slots from a board: the modbus-rtu slot over a real pty.

The I/O module behind the pty is the simulator's ``VirtualIoModule``; real I/O, so no
looptime: a 10x clock keeps the wire/response delays short in wall time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hal.clock import LoopClock
from hal.errors import CapabilityMissing
from hal.interfaces import SerialSettings
from hal.modbus_slot import ModbusIoSlot
from protocols import modbus
from runtime.board_hal import BoardHal
from runtime.config import Board, parse_board
from sim.devices.modbus import ModbusLine, VirtualIoModule
from sim.pty import PtyPair, open_pty

IO = modbus.builtin_profile("io-module")
HEAD = """\
[terminal]
id = "T1"
timezone = "Asia/Shanghai"

[hal]
backend = "{backend}"
"""
DI_DO = """
[[slots]]
name = "slot-1"
module = "di-do"
device = "{device}"
"""
MODBUS = """
[[slots]]
name = "slot-2"
module = "modbus-rtu"
device = "{device}"
baud = 19200
parity = "O"
unit_ids = [3, 4]
"""


def board(text: str, tmp_path: Path) -> Board:
    (tmp_path / "apps").mkdir(exist_ok=True)
    return parse_board(text, source=str(tmp_path / "board.toml"), apps_dir=tmp_path / "apps")


@asynccontextmanager
async def io_modules(clock: LoopClock, *units: int) -> AsyncIterator[tuple[PtyPair, ModbusLine]]:
    line = ModbusLine(
        [VirtualIoModule(IO, u) for u in units], clock=clock, settings=SerialSettings(19200, "O")
    )
    with open_pty("slot-2") as pty:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(line.serve(pty), name="io-modules")
            yield pty, line
            task.cancel()


async def test_sim_board_opens_the_modbus_slot_on_its_simulated_pty(tmp_path: Path) -> None:
    b = board(
        HEAD.format(backend="sim") + DI_DO.format(device="sim:slot-1") + MODBUS.format(device="sim:io"),
        tmp_path,
    )
    clock = LoopClock(start=1_700_000_000.0, speed=10.0)
    async with (
        io_modules(clock, 3, 4) as (pty, line),
        BoardHal(b, clock=clock, sim_devices={"io": pty.slave_path}) as hal,
    ):
        slot = hal.slot("slot-2")
        assert isinstance(slot, ModbusIoSlot) and slot.kind == "modbus-rtu" and slot.unit_ids == (3, 4)
        assert slot.master.port.link.settings.baud == 19200 and slot.master.port.link.settings.parity == "O"
        values = await slot.read_inputs()
        await slot.write_output("u4.do2", True)
        assert (await slot.read_inputs())["u4.do2"] is True
        assert hal.slot("slot-1").kind == "dio"
        assert "slot-2" in hal.traces() and hal.traces()["slot-2"].total > 0
        assert "slot-2" in hal.statistics()
        with pytest.raises(CapabilityMissing):
            hal.rs485("slot-2")  # the slot's UART is the driver's, not an apps' RS-485 port
    assert sorted(values) == sorted(f"u{u}.{p}" for u in (3, 4) for p in IO.registers)
    assert values["u3.di1"] is True and values["u4.do2"] is False
    module = line.device(4)
    assert module is not None and module.get("do2") is True


async def test_a_sim_slot_without_simulator_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = board(HEAD.format(backend="sim") + MODBUS.format(device="sim:io"), tmp_path)
    async with BoardHal(b, clock=LoopClock(), sim_devices={}) as hal:
        with pytest.raises(CapabilityMissing, match="slot-2"):
            hal.slot("slot-2")
        assert "slot-2" not in hal.traces()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["slot slot-2 (modbus-rtu): sim:io has no simulator behind it; not available"]


async def test_linux_board_opens_the_modbus_slot_on_its_tty_and_names_missing_drivers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = LoopClock(start=1_700_000_000.0, speed=10.0)
    async with io_modules(clock, 3, 4) as (pty, _):
        text = (
            HEAD.format(backend="linux")
            + DI_DO.format(device="/dev/ttyS9")
            + MODBUS.format(device=pty.slave_path)
        )
        async with BoardHal(board(text, tmp_path), clock=clock) as hal:
            values = await hal.slot("slot-2").read_inputs()
            with pytest.raises(CapabilityMissing, match="slot-1"):
                hal.slot("slot-1")
    assert values["u4.di2"] is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["slot slot-1 (di-do): no driver for this module on the linux backend; not available"]
