"""Formulas by hand: register differences x ratio, GRID.md §2 supply/sales with PV, coverage, classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.lineloss.balance import day_balances
from apps.lineloss.classify import Thresholds, classify
from apps.lineloss.energy import DayReadings, Energies, day_energies, interval_energies, period_energies
from apps.lineloss.layout import BoxInfo, BranchInfo, Layout, MeterInfo

NAN = math.nan


def test_energy_is_the_register_difference_times_the_ratio() -> None:
    e = period_energies(
        np.array([100.0, 5.0, 7.0, NAN]),
        np.array([102.5, 4.0, 9.0, 3.0]),  # the second register went backwards: a replaced meter
        np.array([1.0, 0.0, NAN, 0.0]),
        np.array([1.25, 0.0, NAN, 0.0]),
        np.array([200.0, 1.0, 1.0, 1.0]),
    )
    assert e.forward[0] == pytest.approx(500.0) and e.reverse[0] == pytest.approx(50.0)
    assert math.isnan(e.forward[1]) and math.isnan(e.forward[3])
    # a forward register without its reverse one counts as no export, and is counted
    assert e.forward[2] == pytest.approx(2.0) and e.reverse[2] == 0.0 and e.reverse_missing == 1


def test_the_day_comes_from_the_freezes_and_falls_back_on_the_midnight_curve_points() -> None:
    day = DayReadings.empty(0.0, 2)
    day.freeze_forward[0] = [10.0, 14.0]
    day.freeze_reverse[0] = [0.0, 0.0]
    day.curve_forward[1, 0], day.curve_forward[1, -1] = 20.0, 23.5  # meter 2: freeze not read
    day.curve_reverse[1, 0], day.curve_reverse[1, -1] = 1.0, 1.5
    e = day_energies(day, np.ones(2))
    assert list(e.forward) == pytest.approx([4.0, 3.5]) and list(e.reverse) == pytest.approx([0.0, 0.5])
    day.curve_forward[1, 1] = 20.25
    iv = interval_energies(day, np.ones(2))
    assert iv.forward.shape == (2, 96)
    assert iv.forward[1, 0] == pytest.approx(0.25) and math.isnan(iv.forward[1, 1])


def station() -> Layout:
    meters = [
        MeterInfo("T", "assessment", ct_ratio=100.0),
        MeterInfo("bu1", "branch_unit", branch="F1"),
        MeterInfo("bt1", "box_terminal", branch="F1", box="X1"),
        MeterInfo("a", branch="F1", box="X1"),
        MeterInfo("b", branch="F1", box="X1"),
        MeterInfo("c", branch="F2"),  # F2 has no branch unit
    ]
    return Layout.build(
        meters,
        branches=[BranchInfo("F1", monitor="bu1"), BranchInfo("F2")],
        boxes=[BoxInfo("X1", branch="F1", terminal="bt1")],
        assessment="T",
    )


def test_scopes_and_sections() -> None:
    lay = station()
    assert [(s.id, s.level, lay.ids(s.customers)) for s in lay.scopes] == [
        ("station", "station", ["a", "b", "c"]),
        ("F1", "branch", ["a", "b"]),
        ("X1", "box", ["a", "b"]),
    ]
    sec = {s.id: (lay.ids(s.customers), lay.ids(s.feeds)) for s in lay.sections}
    assert sec == {"station": (["c"], ["bu1"]), "F1": ([], ["bt1"]), "X1": (["a", "b"], [])}


def test_balances_follow_grid_md_with_pv() -> None:
    lay = station()
    # kWh over the day: the 总表 counts 1.2 kWh secondary (x100), b exports 3 kWh of PV
    fwd = np.array([1.2, 80.0, 60.0, 30.0, 25.0, 35.0])
    rev = np.array([0.0, 0.0, 0.0, 0.0, 3.0, 0.0])
    e = Energies(fwd * lay.multipliers, rev * lay.multipliers)
    got = {b.scope: b for b in day_balances(lay, e)}
    st = got["station"]
    # supply = 120 + 3 (PV export read by b's reverse register); sales = 30 + 25 + 35 + 0
    assert st.supply_kwh == pytest.approx(123.0) and st.sales_kwh == pytest.approx(90.0)
    assert st.pv_kwh == pytest.approx(3.0) and st.loss_kwh == pytest.approx(33.0)
    assert st.loss_rate == pytest.approx(33.0 / 123.0 * 100) and st.coverage == 1.0
    f1 = got["F1"]
    assert (f1.supply_kwh, f1.sales_kwh, f1.loss_kwh) == pytest.approx((83.0, 55.0, 28.0))
    x1 = got["X1"]
    assert x1.loss_rate == pytest.approx((63.0 - 55.0) / 63.0 * 100)


def test_coverage_is_weighted_by_expected_energy_and_missing_supply_is_incomputable() -> None:
    lay = station()
    fwd = np.array([NAN, 80.0, 60.0, 30.0, NAN, 35.0])
    e = Energies(fwd, np.zeros(6))
    expected = np.array([0.0, 0.0, 0.0, 10.0, 30.0, 20.0])
    got = {b.scope: b for b in day_balances(lay, e, expected)}
    assert got["station"].supply_kwh is None and got["station"].loss_rate is None
    assert got["station"].coverage == pytest.approx(30.0 / 60.0)
    assert got["station"].unread == ("b",) and got["station"].sales_kwh == pytest.approx(65.0)
    assert got["F1"].coverage == pytest.approx(10.0 / 40.0)
    verdict = classify(got["F1"].loss_rate, got["F1"].supply_kwh, got["F1"].coverage, Thresholds())
    assert verdict.klass == "incomputable" and "coverage" in verdict.reason
    assert classify(None, None, 1.0, Thresholds()).reason == "supply meter not read"


@pytest.mark.parametrize(
    ("rate", "klass", "economic"),
    [
        (-1.0, "negative", False),  # <= -1 % is 负损 (inclusive)
        (-0.99, "qualified", False),
        (0.0, "qualified", True),
        (4.0, "qualified", True),  # the economic band is inclusive
        (4.01, "qualified", False),
        (10.0, "qualified", False),
        (10.01, "high", False),
    ],
)
def test_class_boundaries(rate: float, klass: str, economic: bool) -> None:
    v = classify(rate, 100.0, 1.0, Thresholds())
    assert (v.klass, v.economic) == (klass, economic)


def test_thresholds_from_config_and_refusals() -> None:
    t = Thresholds.from_config({"high_min_pct": 6, "other": "x"})
    assert t.high_min_pct == 6.0 and t.negative_max_pct == -1.0
    with pytest.raises(ValueError, match="below"):
        Thresholds(high_min_pct=-2.0)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        Thresholds(min_coverage=1.5)
