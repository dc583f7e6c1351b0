"""The terminal's own supply monitor: the linux backend over value files, the sim backend, the board node.

The linux backend reads a sysfs GPIO value or an IIO raw count; here those are plain files in a
temporary folder, changed by the test while the monitor polls on virtual time (looptime).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hal.clock import LoopClock
from hal.errors import HalError
from hal.linux.power import AdcInput, GpioInput, InputPowerMonitor, parse_device
from hal.sim import SimPowerMonitor
from runtime.config import parse_board
from runtime.errors import ConfigErrors

REPO = Path(__file__).resolve().parents[2]


def test_gpio_and_adc_inputs_decode_and_refuse_garbage() -> None:
    assert GpioInput("x", active_low=True).decode(b"1\n", True) == (True, None)
    assert GpioInput("x", active_low=True).decode(b"0\n", True) == (False, None)
    assert GpioInput("x", active_low=False).decode(b"1", True) == (False, None)
    with pytest.raises(ValueError, match="expected 0 or 1"):
        GpioInput("x").decode(b"7", True)
    adc = AdcInput("y", scale=0.1, threshold_v=154.0, hysteresis_v=5.0)
    assert adc.decode(b"2200\n", True) == (True, 220.0)
    assert adc.decode(b"1530", True)[0] is False  # below the threshold: lost
    assert adc.decode(b"1560", False)[0] is False  # back needs threshold + hysteresis
    assert adc.decode(b"1600", False)[0] is True
    with pytest.raises(ValueError, match="integer"):
        adc.decode(b"abc", True)
    assert isinstance(parse_device("gpio:/sys/class/gpio/gpio17/value"), GpioInput)
    assert isinstance(parse_device("adc:/x/in_voltage0_raw", adc_scale=0.1), AdcInput)
    with pytest.raises(ValueError, match="gpio or adc"):
        parse_device("spi:/dev/x")


@pytest.mark.looptime
async def test_linux_monitor_reports_each_change_of_the_input(tmp_path: Path) -> None:
    value = tmp_path / "value"
    value.write_text("1\n")
    clock = LoopClock()
    async with InputPowerMonitor(GpioInput(str(value)), clock=clock, holdup_s=30, poll_s=0.02) as mon:
        assert mon.state().powered and mon.holdup_s == 30
        async with mon.changes() as changes:
            await clock.sleep(1.0)
            value.write_text("0\n")
            t_cut = clock.now()
            lost = await anext(changes)
            assert not lost.powered and 0 <= lost.since - t_cut <= 0.021
            value.write_text("1\n")
            back = await anext(changes)
            assert back.powered and mon.state().powered
            value.write_text("garbage")
            await clock.sleep(0.1)
            assert mon.read_errors >= 1 and mon.state().powered  # unreadable: the last state stays
    assert changes.closed


async def test_linux_monitor_without_its_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HalError, match="cannot open"):
        async with InputPowerMonitor(GpioInput(str(tmp_path / "nope")), clock=LoopClock(), holdup_s=30):
            pass


async def test_sim_monitor_is_what_the_simulator_sets() -> None:
    mon = SimPowerMonitor(holdup_s=12.5, since=100.0)
    async with mon.changes() as changes:
        assert mon.set_supply(False, 200.0)
        assert not mon.set_supply(False, 201.0)  # no change, no event
        assert mon.set_supply(True, 260.0)
        got = [await anext(changes), await anext(changes)]
    assert [(s.powered, s.since) for s in got] == [(False, 200.0), (True, 260.0)]
    assert mon.transitions == 2 and mon.holdup_s == 12.5
    with pytest.raises(ValueError, match="positive"):
        SimPowerMonitor(holdup_s=0)
    await asyncio.sleep(0)


def _board(power: str) -> str:
    text = (REPO / "board.toml").read_text(encoding="utf-8")
    start = text.index("[power]")
    end = text.index("\n\n", start)
    return text[:start] + power + text[end:]


def test_board_power_node_is_validated_with_key_paths() -> None:
    board = parse_board((REPO / "board.toml").read_text(encoding="utf-8"), root=REPO)
    assert board.power is not None and board.power.device == "sim:power" and board.power.holdup_s == 30
    with pytest.raises(ConfigErrors, match=r"power.holdup_s"):
        parse_board(_board('[power]\ndevice = "sim:power"\nholdup_s = 0'), root=REPO)
    with pytest.raises(ConfigErrors, match=r"power.device: 'gpio:relative' is not gpio:<value file>"):
        parse_board(_board('[power]\ndevice = "gpio:relative"'), root=REPO)
    with pytest.raises(ConfigErrors, match=r"power.device.*simulated device"):
        text = _board('[power]\ndevice = "sim:power"').replace('backend = "sim"', 'backend = "linux"')
        parse_board(text, root=REPO)
