"""A Modbus RTU line of virtual devices served on a real pty, with the terminal's Rs485Port on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from hal.clock import LoopClock
from hal.interfaces import SerialSettings
from hal.linux.serial import PySerialLink
from hal.rs485 import Rs485Port
from sim.devices.modbus import ModbusLine
from sim.pty import open_pty


@contextlib.asynccontextmanager
async def served_line(
    devices: Sequence[Any], settings: SerialSettings, *, name: str, start: float = 1_700_000_000.0
) -> AsyncIterator[tuple[Rs485Port, ModbusLine]]:
    """Yield the open port and the line serving ``devices`` until the block ends. The clock runs
    at 2x: this is real pty I/O, so a reply timeout must leave a loaded machine room (at 10x a
    0.5 s timeout was 50 ms of wall time, and tests failed when CI was busy)."""
    clock = LoopClock(start=start, speed=2.0)
    line = ModbusLine(list(devices), clock=clock, settings=settings)
    pty = open_pty(name)
    port = Rs485Port(PySerialLink(pty.slave_path, settings, name=name), clock=clock, name=name)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(line.serve(pty), name=f"modbus-line-{name}")
            async with port:
                yield port, line
            task.cancel()
    finally:
        pty.close()
