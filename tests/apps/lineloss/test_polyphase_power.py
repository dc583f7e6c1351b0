"""A polyphase meter's register against its own front end when its phases flow both ways.

A branch unit whose branch has PV exporting on one phase while the others draw: the register (and
the unit's total active power) counts the phases' algebraic sum; the phases' V x I x |PF_total|
adds their magnitudes. Built from physical per-phase powers, through ``MeterDay.power`` (the
quantities a meter reports: phase voltages, signed phase currents, total P, the phases' signed P and
PF) to the check; a unit that does not report its total P is judged on its phases' signed P.
"""

from __future__ import annotations

import numpy as np
import pytest

from apps.lineloss.book import POINTS, Layouts, MeterDay
from apps.lineloss.causes.meters import MeterSettings, check_meters
from apps.lineloss.layout import Layout
from apps.lineloss.window import Day

from ._days import readings, window
from .test_causes import branch_records, loads

HOURS = np.arange(POINTS) * 0.25


def _unit_points(seed: int) -> dict[str, np.ndarray]:
    """A day of a branch unit's front end: A and C draw (PF 0.9 lagging), B draws at night and
    exports PV at unity power factor by day (~7 kW at noon, more than its load)."""
    rng = np.random.default_rng(seed)
    load = 1.5 + 1.0 * np.sin(np.pi * HOURS / 24.0) ** 2 + rng.uniform(0, 0.5, (3, POINTS))  # kW per phase
    pv = 7.0 * np.clip(np.sin(np.pi * (HOURS - 6.0) / 12.0), 0.0, None)
    p = load.copy()
    p[1] -= pv
    q = load * np.tan(np.arccos(0.9))  # the loads' reactive power; the inverter's is zero
    volts = 230.0 + rng.normal(0.0, 2.0, (3, POINTS))
    amps = np.sign(p) * np.hypot(p, q) * 1000.0 / volts  # a meter's phase current is signed (export < 0)
    p_total, q_total = p.sum(axis=0), q.sum(axis=0)
    pf = np.abs(p_total) / np.hypot(p_total, q_total)
    values = {"p": p_total, "pf": pf}
    for k, ph in enumerate("abc"):
        values["v" + ph], values["i" + ph], values["p" + ph] = volts[k], amps[k], p[k]
    return values


def _meter_day(values: dict[str, np.ndarray]) -> MeterDay:
    layouts = Layouts()
    md = MeterDay()
    for item, series in values.items():
        md.set_curve(item, np.round(series, 4), layouts)
    return md


def test_a_polyphase_meter_counts_its_total_active_power_a_single_phase_one_its_v_i_pf() -> None:
    values = _unit_points(1)
    unit = _meter_day(values)
    exporting = values["ib"] < 0
    assert exporting.sum() > 30  # B exports through the middle of the day
    vi_pf = sum(values["v" + ph] * np.abs(values["i" + ph]) for ph in "abc") * values["pf"] / 1000.0
    assert vi_pf[exporting].sum() > 1.3 * np.abs(values["p"][exporting]).sum()  # the magnitudes add
    np.testing.assert_allclose(unit.power(), values["p"], atol=1e-4)
    # a single-phase meter: V x I x |PF|, signed like its active power (PV export negative)
    one = _meter_day({"va": values["va"], "ia": values["ib"], "pf": np.full(POINTS, 0.95), "p": values["p"]})
    np.testing.assert_allclose(
        one.power(), np.sign(values["p"]) * values["va"] * np.abs(values["ib"]) * 0.95 / 1000.0, atol=1e-3
    )


def test_a_polyphase_meter_without_its_total_power_sums_its_phases_signed_powers() -> None:
    values = _unit_points(2)
    values.pop("p")
    np.testing.assert_allclose(
        _meter_day(values).power(), values["pa"] + values["pb"] + values["pc"], atol=1e-3
    )
    gap = dict(values, pb=np.where(np.arange(POINTS) == 48, np.nan, values["pb"]))  # phase B unread at noon
    power = _meter_day(gap).power()
    assert np.isfinite(power).all()
    vi_pf = sum(values["v" + ph] * np.abs(values["i" + ph]) for ph in "abc") * values["pf"] / 1000.0
    assert power[48] == pytest.approx(vi_pf[48], abs=1e-3)  # only there: the phases' V x I x |PF_total|


def _unit_days(slow_pct: float, *, total: bool = True) -> tuple[Layout, list[Day]]:
    """Three days of a feeder whose branch unit's phases flow both ways by day; the unit's
    register counts its total active power, ``slow_pct`` short. ``total``: the unit reports its
    total active power (else only its phases')."""
    rec = branch_records(4)
    lay = rec.layout()
    days = []
    for k in range(3):
        unit = _unit_points(10 + k)
        power = _meter_day(unit if total else {q: x for q, x in unit.items() if q != "p"}).power()
        energy = (unit["p"][:-1] + unit["p"][1:]) / 2.0 * 0.25  # net kWh per interval
        fwd = np.clip(energy, 0.0, None) * (1.0 - slow_pct / 100.0)
        rev = np.clip(-energy, 0.0, None) * (1.0 - slow_pct / 100.0)
        cust = loads(4, seed=20 + k)
        p_cust = np.concatenate([cust, cust[:, -1:]], axis=1) / 0.25
        forward = np.vstack([np.clip(energy, 0, None), fwd, cust])
        reverse = np.vstack([np.clip(-energy, 0, None), rev, np.zeros_like(cust)])
        power_kw = np.vstack([unit["p"], power, p_cust])
        days.append(readings(lay, 86400.0 * k, forward, reverse=reverse, power_kw=power_kw))
    return lay, window(lay, days)


@pytest.mark.parametrize("total", [True, False], ids=["total power", "phase powers"])
def test_a_branch_unit_with_pv_export_on_one_phase_is_not_slow(total: bool) -> None:
    lay, days = _unit_days(0.0, total=total)
    assert check_meters(lay, days, MeterSettings()) == []


@pytest.mark.parametrize("total", [True, False], ids=["total power", "phase powers"])
def test_a_slow_branch_unit_with_pv_export_on_one_phase_is_slow_by_what_it_misses(total: bool) -> None:
    lay, days = _unit_days(12.0, total=total)
    (check,) = check_meters(lay, days, MeterSettings())
    assert lay.meters[check.meter].id == "bu1" and check.kind == "slow"
    assert check.slow_pct == pytest.approx(12.0, abs=0.5)
