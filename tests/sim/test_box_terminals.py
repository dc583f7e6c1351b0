"""Meter-box terminals (表箱终端): where the scenario asks for them, each measures its box's supply."""

from __future__ import annotations

import pytest

from runtime.errors import ConfigError
from sim.scenarios import parse_scenario
from sim.world import World, build_world

START = 1717200000.0  # 2024-06-01 00:00 UTC
BUSES = ["rs485-1", "rs485-2"]


def world(data: dict[str, object]) -> World:
    sc = parse_scenario({"scenario": {"pv_share": 0.0}, **data}, name="t", source="t.toml")
    return build_world(buses=BUSES, scenario=sc, seed=5, start=START, duration_s=7200.0)


def test_none_by_default_and_listed_boxes_only() -> None:
    assert world({}).box_terminals() == []
    w = world({"monitoring": {"box_terminals": ["F2-X01"]}})
    assert [m.id for m in w.box_terminals()] == ["bt-F2-X01"]
    assert all(not m.box for m in w.branch_units())  # branch units are still only the branch heads


def test_box_energy_is_the_sum_of_its_customers() -> None:
    w = world({"monitoring": {"box_terminals": "all"}})
    boxes = {m.box for m in w.customers()}
    assert {m.box for m in w.box_terminals()} == boxes
    for bt in w.box_terminals():
        members = [m for m in w.customers() if m.box == bt.box]
        before = bt.meter.registers(START).forward[0]
        measured = bt.meter.registers(START + 7200).forward[0] - before
        true = sum(m.replica.horizon.customer_energy_kwh(m.customer, START, START + 7200) for m in members)
        assert measured == pytest.approx(true, abs=0.02)  # 0.01 kWh register resolution


def test_box_outage_darkens_its_terminal_but_a_meter_fuse_does_not() -> None:
    w = world(
        {
            "monitoring": {"box_terminals": "all"},
            "outage": [
                {"level": "box", "target": "F2-X01", "at": "10m", "duration": "10m"},
                {"level": "meter", "target": "m-0001", "at": "40m", "duration": "10m"},
            ],
        }
    )
    w.apply_due(START + 7200)
    box = w.meters["bt-F2-X01"].meter
    assert box.power_down_count == 1 and box.power_downs[0].start == START + 600
    alone = w.meters["m-0001"]
    assert w.meters[f"bt-{alone.box}"].meter.power_down_count == (1 if alone.box == "F2-X01" else 0)


def test_unknown_box_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"monitoring.box_terminals: no such meter box: F9-X99"):
        world({"monitoring": {"box_terminals": ["F9-X99"]}})
    with pytest.raises(ConfigError, match=r"monitoring.box_terminals: must be"):
        world({"monitoring": {"box_terminals": 3}})
