"""Branch monitoring units (分支监测单元): each phase's current is the current its customers on that
phase draw, not a share of the branch's total."""

from __future__ import annotations

import numpy as np

from sim.scenarios import parse_scenario
from sim.world import build_world

START = 1717200000.0  # 2024-06-01 00:00 UTC (08:00 local)
NIGHT_UTC_HOURS = (15, 17, 19, 21)  # 23:00 .. 05:00 local: no PV, every flow one way


def test_a_units_phase_current_is_its_customers_on_that_phase() -> None:
    """With ideal instruments and no PV output, each phase of a branch head carries the sum of
    its customers' currents on that phase (less the few percent of the power factors' spread and
    the voltage drop along the branch). A share of the branch's reactive power by each phase's
    active power, as before, put amperes on the wrong phase."""
    sc = parse_scenario(
        {"scenario": {"pv_share": 0.3}, "metering": {"error_scale": 0}}, name="t", source="t.toml"
    )
    w = build_world(buses=["rs485-1", "rs485-2"], scenario=sc, seed=5, start=START, duration_s=86400.0)
    customers = {m.customer: m for m in w.customers()}
    checked = 0
    for unit in w.branch_units():
        below = [customers[i] for i in unit.meter.profile.customers if i in customers]  # type: ignore[attr-defined]
        for hour in NIGHT_UTC_HOURS:
            t = START + hour * 3600 + 450.0
            measured = np.array(unit.meter.instant(t).current, dtype=float)
            drawn = np.zeros(3)
            for m in below:
                drawn["ABC".index(m.meter.phase)] += m.meter.instant(t).current[0]
            assert np.all(drawn >= 0)  # the night: no export anywhere
            assert np.abs(measured - drawn).max() <= 0.03 * drawn.max() + 0.05, (
                unit.id,
                hour,
                measured,
                drawn,
            )
            checked += 1
    assert checked >= 5 * len(NIGHT_UTC_HOURS)
