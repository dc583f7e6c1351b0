"""A wrong CT ratio on the 总表: the station's supply is off by one constant factor.

Layer: apps (lineloss). Pure. The 总表 counts secondary energy; the archive's ratio turns it
into primary. A wrong ratio (GRID.md §2: 200/5 recorded, 300/5 fitted) scales the supply by
recorded/fitted at every load, so the loss it causes is proportional to the load. Two
independent references measure the same primary energy at the same place:

* the terminal's own metrology unit (交采) at the transformer LV side, with its own CT;
* the branch monitoring units plus the customers no unit measures (the station section's
  children), short of only the trunk's loss.

When a reference disagrees with the 总表 by more than ``tolerance``, and the two references
agree with each other, the factor is the ratio's error: the ratio really fitted is the recorded
one times the factor, rounded to the nearest standard CT (IEC 61869-2 / GB/T 20840.2 rated
primary currents 10, 12.5, 15, 20, 25, 30, 40, 50, 60, 75 A x 10^n, secondary 5 A).
Without references the interval loss rate alone can only suggest it (weak confidence). The
supply is corrected by the standard ratio's factor when the fit lies within ``snap`` of it (the
fit's own figure stays in the evidence), else by the fitted factor.
Must not classify days or look at customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..energy import FArray
from ..layout import Layout
from ..window import Day
from .anomaly import CT_RATIO, Anomaly, rounded

_DECADE = (10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 75.0)
STANDARD_PRIMARY_A = tuple(sorted({v * 10**e for e in range(4) for v in _DECADE} | {5.0}))
SECONDARY_A = 5.0


@dataclass(frozen=True, slots=True)
class CtSettings:
    tolerance: float = 0.1  # adjacent standard ratios differ by 20-25 %; meter classes by < 1 %
    agree: float = 0.05  # the two references must agree within this
    min_kwh: float = 5.0  # the day's 总表 energy needed to judge
    rate_spread_pp: float = 3.0  # interval-rate IQR for the reference-free suggestion
    # a fitted ratio this close to a standard one is that one: the CT on the 总表 is a standard
    # part, and the measured factor carries the registers' resolution (a small area's 总表 reads
    # whole kWh of secondary energy an interval) and whatever the references miss (a bypass on a
    # customer of the board itself): 5 % of 1.5 is a household's day on a 13-customer area
    snap: float = 0.05


def nearest_standard(ratio: float) -> float:
    """The standard CT ratio (primary / 5 A) nearest to ``ratio`` on a log scale."""
    ratios = np.array(STANDARD_PRIMARY_A) / SECONDARY_A
    return float(ratios[int(np.argmin(np.abs(np.log(ratios / max(ratio, 1e-9)))))])


@dataclass(frozen=True, slots=True)
class CtFinding:
    factor: float  # true / recorded: the nearest standard ratio's when the fit is that close to one
    anomaly: Anomaly


MIN_INTERVALS = 16  # four hours of 15-min points: enough to judge a factor of 20 %


def _ratio(reference: FArray, recorded: FArray, min_kwh: float) -> tuple[float, float, float] | None:
    """reference / recorded over the intervals where both were read: (ratio, reference kWh,
    recorded kWh), None with too few intervals or too little energy."""
    ok = np.isfinite(reference) & np.isfinite(recorded)
    if int(ok.sum()) < MIN_INTERVALS:
        return None
    ref, rec = float(reference[ok].sum()), float(recorded[ok].sum())
    if rec < min_kwh or ref <= 0:
        return None
    return ref / rec, ref, rec


def detect_ct(layout: Layout, day: Day, settings: CtSettings) -> CtFinding | None:
    """On a whole day or on the part of today read so far (interval by interval)."""
    a = layout.assessment
    if a < 0:
        return None
    meter = layout.meters[a]
    station = layout.sections[0]
    children = np.concatenate([station.feeds, station.customers])
    recorded_i = day.intervals.net[a]
    by_metrology = _ratio(day.metrology, recorded_i, settings.min_kwh)
    by_units = (
        _ratio(day.intervals.net[children].sum(axis=0), recorded_i, settings.min_kwh)
        if len(station.feeds)
        else None
    )
    k_m = None if by_metrology is None else by_metrology[0]
    k_b = None if by_units is None else by_units[0]
    recorded = (by_metrology or by_units or (0.0, 0.0, float(np.nansum(recorded_i))))[2]
    metrology = None if by_metrology is None else by_metrology[1]
    branch_units = None if by_units is None else by_units[1]
    rate_median, rate_iqr = _interval_rates(layout, day)
    off = [k for k in (k_m, k_b) if k is not None and abs(k - 1.0) > settings.tolerance]
    if k_m is not None and k_b is not None:
        if len(off) < 2 or abs(k_m / k_b - 1.0) > settings.agree:
            return None
        factor, confidence, basis = k_m, 0.97, "metrology unit and branch units"
    elif off:
        factor = off[0]
        confidence, basis = (0.85, "metrology unit") if k_m is not None else (0.75, "branch units")
    elif k_m is None and k_b is None and rate_median is not None and rate_iqr is not None:
        # no reference: a loss rate that stays at one value whatever the load, far outside
        # anything technical loss does
        if abs(rate_median) <= settings.tolerance * 100 or rate_iqr > settings.rate_spread_pp:
            return None
        factor = 1.0 / (1.0 - rate_median / 100.0)
        confidence, basis = 0.5, "interval loss rate constant at any load"
    else:
        return None
    implied = meter.ct_ratio * factor
    standard = nearest_standard(implied)
    applied = standard / meter.ct_ratio if abs(implied / standard - 1.0) <= settings.snap else factor
    evidence = {
        "basis": basis,
        "factor": rounded(factor),
        "applied_factor": rounded(applied),
        "recorded_ct_ratio": meter.ct_ratio,
        "implied_ct_ratio": rounded(implied, 2),
        "nearest_standard_ct_ratio": standard,
        "assessment_kwh": rounded(recorded, 2),
        "metrology_kwh": None if metrology is None else rounded(metrology, 2),
        "branch_units_kwh": None if branch_units is None else rounded(branch_units, 2),
        "interval_rate_median_pct": None if rate_median is None else rounded(rate_median, 2),
        "interval_rate_iqr_pp": None if rate_iqr is None else rounded(rate_iqr, 2),
    }
    return CtFinding(applied, Anomaly(day.date, CT_RATIO, meter.id, None, confidence, evidence))


def _interval_rates(layout: Layout, day: Day) -> tuple[float | None, float | None]:
    """Median and interquartile range (pp) of the station's 15-min loss rate over the day."""
    a = layout.assessment
    station = layout.scopes[0]
    supply = day.intervals.forward[a] + np.nansum(day.intervals.reverse[station.customers], axis=0)
    sales = day.intervals.forward[station.customers].sum(axis=0) + day.intervals.reverse[a]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (supply - sales) / supply * 100.0
    rate = rate[np.isfinite(rate) & (supply > 0)]
    if len(rate) < 24:
        return None, None
    q1, q2, q3 = np.percentile(rate, [25, 50, 75])
    return float(q2), float(q3 - q1)


__all__ = ["STANDARD_PRIMARY_A", "CtFinding", "CtSettings", "detect_ct", "nearest_standard"]
