"""Stopped and slow meters: a register that does not follow the meter's own V x I x PF.

Layer: apps (lineloss). Pure. A meter measures voltage, current and power factor in its
metrology front end and accumulates energy in its register; a stopped register (有电流无电量)
or a slow one shows as register energy well below the energy its own instantaneous values
imply. Both are compared over the intervals where both ends of both are read, gross (forward +
reverse register against |P|), so PV export does not cancel consumption. A polyphase meter's
instantaneous side is its total active power (``MeterDay.power``): its register counts the phases'
algebraic sum, which their V x I x |PF_total| overstates when they flow both ways.

A register that stops during the day is found by its trailing run of still intervals (the
register moves by less than half a digit) that hold at least ``stopped_min_kwh`` of V x I x PF
energy; the run's first interval is when it stopped (``stuck`` marks the still intervals, for the
section fits to count the meter's energy there from its V x I x PF).

Must not look at balances (``theft`` adds the branch balance as confirmation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..layout import Layout
from ..window import Day, stacked

RESOLUTION_KWH = 0.01  # a register shows 0.01 kWh: a stopped one moves less than this
MIN_DIGITS = 5  # a still run must have missed this many register digits to be a stopped register
MIN_STRONG = 4  # ... and hold this many intervals in which V x I x PF alone is worth 2 digits
MIN_SLOW_INTERVALS = 96  # a day's worth of intervals before a ratio says "slow"


@dataclass(frozen=True, slots=True)
class MeterSettings:
    stopped_min_kwh: float = 0.5  # V x I energy a day must show before "stopped" is said
    slow_min_pct: float = 5.0  # register below V x I by at least this much is "slow"
    slow_min_kwh: float = 2.0  # V x I energy the window must hold before "slow" is said
    slow_min_z: float = 3.0  # the gap in standard errors of the ratio (instantaneous samples are noisy)
    window_days: int = 3


@dataclass(frozen=True, slots=True)
class MeterCheck:
    meter: int
    kind: str  # stopped | slow
    register_kwh: float
    power_kwh: float
    intervals: int
    days: int
    since: float | None = None  # stopped: the start of the first still interval (UTC epoch)

    @property
    def ratio(self) -> float:
        return self.register_kwh / self.power_kwh if self.power_kwh > 0 else 1.0

    @property
    def slow_pct(self) -> float:
        return (1.0 - self.ratio) * 100.0


def check_meters(layout: Layout, window: list[Day], settings: MeterSettings) -> list[MeterCheck]:
    """Stopped registers on the newest day; slow ones over the last ``window_days`` days."""
    if not window:
        return []
    rows = np.arange(layout.n)
    out = stopped_registers(layout, window[-settings.window_days :], settings)
    stopped = {c.meter for c in out}
    days = window[-settings.window_days :]
    reg, pw, n, spread = _valid_sums(days, rows)
    limit = 1.0 - settings.slow_min_pct / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(pw > 0, reg / pw, 1.0)
        # the ratio's standard error from how far each interval strays from it
        se = np.where(pw > 0, np.sqrt(spread(ratio)) / pw, np.inf)
        z = (1.0 - ratio) / se
    enough = (pw >= settings.slow_min_kwh) & (n >= MIN_SLOW_INTERVALS)
    for i in np.nonzero(enough & (ratio <= limit) & (z >= settings.slow_min_z))[0]:
        if int(i) not in stopped:
            out.append(MeterCheck(int(i), "slow", float(reg[i]), float(pw[i]), int(n[i]), len(days)))
    return out


def still(layout: Layout, day: Day) -> np.ndarray:
    """(n, 96): intervals in which a meter's register moved by less than half a digit (NaN-free:
    an unread interval counts as moving, so it never extends a still run)."""
    gross = day.intervals.forward + day.intervals.reverse
    half = 0.5 * RESOLUTION_KWH * layout.multipliers[:, None]
    with np.errstate(invalid="ignore"):
        return np.asarray(np.nan_to_num(gross, nan=np.inf) < half)


def stopped_registers(layout: Layout, days: list[Day], settings: MeterSettings) -> list[MeterCheck]:
    """Meters whose register stood still from some point up to the last one read (the newest day
    may still be going on) while their own V x I x PF showed ``stopped_min_kwh``.

    The still run is read on the register's own curve points across the consecutive ``days`` (a
    register that stopped yesterday evening is still stopped at 04:00), and an unread point does
    not end it: the register stood still across a gap when it shows the same value on both sides.
    """
    days = _consecutive(days)
    if not days:
        return []
    points = _register_points(days)  # (n, 96 x days + 1), raw register (secondary) kWh
    power = np.nan_to_num(np.abs(stacked(days, np.arange(layout.n), "power")))
    half = 0.5 * RESOLUTION_KWH
    out = []
    for i in range(layout.n):
        read = np.nonzero(~np.isnan(points[i]))[0]
        if len(read) < 2:
            continue
        last = int(read[-1])
        moved = read[np.abs(points[i, read] - points[i, last]) >= half]
        first = int(read[np.searchsorted(read, moved[-1], side="right")]) if len(moved) else int(read[0])
        if first >= last:
            continue
        run = power[i, first:last]
        energy = float(run.sum())
        # enough energy, in enough intervals, for the register to have moved by several digits:
        # a register showing 0.01 kWh (of secondary energy, behind a CT) legitimately stands still
        # for a while at light load, and a net flow near zero (PV) moves it little
        digit = RESOLUTION_KWH * layout.multipliers[i]
        strong = int((run >= 2 * digit).sum())
        if energy >= settings.stopped_min_kwh and energy >= MIN_DIGITS * digit and strong >= MIN_STRONG:
            register = float(points[i, last] - points[i, first]) * float(layout.multipliers[i])
            since = days[0].readings.start + first * 900.0
            spanned = len({k // 96 for k in range(first, last)})
            out.append(MeterCheck(i, "stopped", max(register, 0.0), energy, last - first, spanned, since))
    return out


def _consecutive(days: list[Day]) -> list[Day]:
    """The newest days that follow one another without a missing day between them."""
    out = days[-1:]
    for d in reversed(days[:-1]):
        if not 0 < out[0].readings.start - d.readings.start <= 90_000.0:
            break
        out.insert(0, d)
    return out


def _register_points(days: list[Day]) -> np.ndarray:
    """Forward + reverse register at every curve point of consecutive ``days``, each midnight once
    (the next day's opening point, or the day's closing one where that was not read)."""
    pts = [d.readings.curve_forward + d.readings.curve_reverse for d in days]
    parts = []
    for k, p in enumerate(pts):
        if k + 1 < len(pts):
            opening = pts[k + 1][:, 0]
            pts[k + 1][:, 0] = np.where(np.isnan(opening), p[:, 96], opening)  # a fresh array: safe
            parts.append(p[:, :96])
        else:
            parts.append(p)
    return np.concatenate(parts, axis=1)


def register_ratios(layout: Layout, window: list[Day], settings: MeterSettings) -> np.ndarray:
    """(n,): each meter's register against its own V x I x PF over the window (1 where too
    little is known): a register problem in the making, before it is sure enough to report."""
    reg, pw, _, _ = _valid_sums(window[-settings.window_days :], np.arange(layout.n))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(pw >= settings.stopped_min_kwh, reg / pw, 1.0))


def _valid_sums(
    days: list[Day], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Per meter over the intervals where both are known: register sum, |V x I x PF| sum, count,
    and the sum of squared residuals of ``register = ratio x power`` for given ratios."""
    register = stacked(days, rows, "gross")
    power = np.abs(stacked(days, rows, "power"))
    ok = ~np.isnan(register) & ~np.isnan(power)
    e, p = np.where(ok, register, 0.0), np.where(ok, power, 0.0)

    def spread(ratio: np.ndarray) -> np.ndarray:
        r = e - ratio[:, None] * p
        return (r * r).sum(axis=1)  # type: ignore[no-any-return]

    return e.sum(axis=1), p.sum(axis=1), ok.sum(axis=1), spread


__all__ = ["RESOLUTION_KWH", "MeterCheck", "MeterSettings", "check_meters", "register_ratios"]
