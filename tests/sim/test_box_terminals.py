"""Meter-box terminals (表箱终端): where the scenario asks for them, each measures its box's supply."""

from __future__ import annotations

import pytest

from runtime.errors import ConfigError
from sim.scenarios import parse_scenario
from sim.world import World, build_world

START = 1717200000.0  # 2024-06-01 00:00 UTC
BUSES = ["rs485-1", "rs485-2"]


def world(data: dict[str, object]) -> World:
    sc = parse_scenario(
        {"scenario": {"pv_share": 0.0}, "metering": {"error_scale": 0}, **data}, name="t", source="t.toml"
    )  # ideal instruments: the sums are exact
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


def test_box_phase_currents_stay_within_their_customers_even_when_pv_cancels_the_load() -> None:
    """A box's current on a phase is bounded by the sum of its customers' currents on that phase
    (a phasor sum is never longer than its parts), and close to it when they all draw: PV export
    on one phase cancelling the load on another must not blow the currents up."""
    sc = parse_scenario(
        {"scenario": {"pv_share": 0.6}, "monitoring": {"box_terminals": "all"}}, name="t", source="t"
    )
    w = build_world(buses=BUSES, scenario=sc, seed=5, start=START, duration_s=86400.0)
    drawing = 0
    for bt in w.box_terminals():
        members = [m for m in w.customers() if m.box == bt.box]
        for t in (START + 3600.0 * (0.5 + 3 * k) for k in range(8)):
            box = bt.meter.instant(t).current
            per_phase: dict[int, list[float]] = {0: [], 1: [], 2: []}
            for m in members:
                per_phase["ABC".index(m.meter.phase)].append(m.meter.instant(t).current[0] or 0.0)
            for j, amps in per_phase.items():
                got = box[j] or 0.0
                assert abs(got) <= sum(abs(a) for a in amps) * 1.02 + 0.05, (bt.id, t, j, got, amps)
                if amps and all(a > 0.5 for a in amps):
                    drawing += 1
                    assert got == pytest.approx(sum(amps), rel=0.05), (bt.id, t, j, got, amps)
    assert drawing > 10
