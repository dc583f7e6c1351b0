"""The simulator's modbus-rtu expansion slot: virtual I/O modules served on the slot's own pty.

``ttu sim`` builds the field devices from the board (``sim.runner._field_devices``) and hands
the ptys ``FieldDevices.serve`` yields to the terminal as ``sim_devices``; here the terminal
side is ``BoardHal`` itself, over real ptys (no looptime: a 10x clock keeps delays short).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pytest

from hal.clock import LoopClock
from hal.modbus_slot import ModbusIoSlot
from protocols import modbus
from runtime.board_hal import BoardHal
from runtime.config import load_board
from sim.devices.modbus import VirtualIoModule
from sim.runner import _field_devices
from sim.station import build_station

BOARD = Path(__file__).resolve().parents[2] / "board.toml"
START = 1717200000.0  # 2024-06-01 00:00 UTC
IO = modbus.builtin_profile("io-module")


def top_oil_c(ambient: float, k: float) -> float:
    """IEC 60076-7 steady-state top oil, ONAN: 55 K rise at rated load, R = 6, x = 0.8."""
    return ambient + 55.0 * ((1 + 6 * k * k) / 7) ** 0.8


async def test_ttu_sim_serves_slot_2_and_the_terminal_opens_it_without_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = load_board(BOARD)
    station = build_station(buses=["rs485-1", "rs485-4"], meters_per_bus=1, seed=1, start=START)
    devices = _field_devices(board, station, None)
    assert list(devices.io_lines) == ["slot-2"]
    [module] = devices.io_lines["slot-2"].devices
    assert isinstance(module, VirtualIoModule) and module.unit == 1
    clock = LoopClock(start=START, speed=10.0)
    # only the nodes this test serves: the meter buses and the CCO are the station's business
    terminal_board = dataclasses.replace(board, rs485=(), hplc=None)
    caplog.set_level(logging.WARNING)
    async with devices.serve(clock=clock) as ptys:
        assert set(ptys) == {"metrology", "slot-2"}
        async with BoardHal(terminal_board, clock=clock, sim_devices=ptys) as hal:
            slot = hal.slot("slot-2")
            values = await slot.read_inputs()
            await slot.write_output("u1.do1", True)
            latched = (await slot.read_inputs())["u1.do1"]
    assert isinstance(slot, ModbusIoSlot)
    assert [r.getMessage() for r in caplog.records if "slot" in r.getMessage()] == []
    assert sorted(values) == sorted(f"u1.{p}" for p in IO.registers)
    assert values["u1.di1"] is True  # transformer-room door closed
    assert values["u1.di2"] is True  # surge protector healthy
    assert [values[f"u1.di{i}"] for i in range(3, 9)] == [False] * 6
    assert latched is True and module.get("do1") is True
    # the synthetic station's constant load: 78 kW + 24 kvar on an 800 kVA transformer
    t = module._oil_t
    assert t is not None
    oil = top_oil_c(module.ambient_c(t), math.hypot(78.0, 24.0) / 800.0)
    assert 30.0 < oil < 60.0
    assert values["u1.ai1"] == pytest.approx(4.0 + 16.0 * oil / 150.0, abs=0.05)
    assert values["u1.ai2"] == pytest.approx(4.0 + 16.0 * (module.ambient_c(t) + 40.0) / 120.0, abs=0.05)


def test_top_oil_follows_the_loading_with_the_transformer_thermal_lag() -> None:
    load = {"k": 0.2}
    mod = VirtualIoModule(IO, 1, loading=lambda t: load["k"])
    mod.ambient_c = lambda t: 25.0  # type: ignore[method-assign]
    mod.refresh(START)
    assert mod.oil_c == pytest.approx(top_oil_c(25.0, 0.2))
    cool = float(mod.get("ai1"))
    load["k"] = 1.0  # the evening peak: rated load
    mod.refresh(START + 180 * 60)  # one oil time constant later: 63 % of the way
    expected = top_oil_c(25.0, 0.2) + (top_oil_c(25.0, 1.0) - top_oil_c(25.0, 0.2)) * (1 - math.exp(-1))
    assert mod.oil_c == pytest.approx(expected)
    mod.refresh(START + 24 * 3600)
    assert mod.oil_c == pytest.approx(80.0, abs=0.5)  # 25 °C ambient + 55 K rise at rated load
    hot = float(mod.get("ai1"))
    assert hot == pytest.approx(4.0 + 16.0 * mod.oil_c / 150.0, abs=0.03) and hot > cool + 4.0
    mod.door_closed = False
    mod.surge_protector_ok = False
    mod.refresh(START + 24 * 3600 + 1)
    assert mod.get("di1") is False and mod.get("di2") is False
