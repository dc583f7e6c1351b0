"""Register readings -> energies: a day from the daily freezes, its 15-min intervals from the curve.

Layer: apps (lineloss). Pure numpy. A meter's energy over a period is the difference of its
register at the two ends times its comprehensive ratio (综合倍率, ``Layout.multipliers``), as
the back office computes it (同期: both ends are the meter's own frozen values at the same
instants). Must not know scopes or thresholds.

Missing values are NaN. A difference is NaN when either end is missing or the register went
backwards (a replaced or cleared meter: the period cannot be known from its registers).
A reverse register that is missing while the forward one is there counts as zero export and is
counted (``reverse_missing``): meters without export read none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FArray = NDArray[np.float64]

INTERVAL_S = 900
INTERVALS_PER_DAY = 96
HOURS_PER_INTERVAL = INTERVAL_S / 3600.0


def nan_array(*shape: int) -> FArray:
    return np.full(shape, np.nan, dtype=np.float64)


@dataclass
class DayReadings:
    """Everything read for one local day, meters in ``Layout`` order; NaN where not read.

    ``freeze_*``: (n, 2) registers frozen at the day's start and end (local midnights).
    ``curve_*``: (n, 97) curve registers at 00:00, 00:15, ..., 24:00. ``curve_power``: (n, 97)
    the meter's own V x I x PF at the curve points, signed like its active power, kW as the
    meter shows it (secondary for a CT-connected meter, like its registers).
    ``curve_voltage``: (n, 97, 3) the phase voltages at the curve points, V as the meter shows
    them (a single-phase meter reports in the first slot). ``metrology_*``: (97,) the terminal's
    metrology unit (交采) at the same instants, primary kWh (the hal applied its CT/PT).
    """

    start: float  # UTC epoch of the local midnight that starts the day
    freeze_forward: FArray
    freeze_reverse: FArray
    curve_forward: FArray
    curve_reverse: FArray
    curve_power: FArray
    curve_voltage: FArray
    metrology_forward: FArray
    metrology_reverse: FArray

    @classmethod
    def empty(cls, start: float, n: int) -> DayReadings:
        k = INTERVALS_PER_DAY + 1
        return cls(
            start,
            nan_array(n, 2),
            nan_array(n, 2),
            nan_array(n, k),
            nan_array(n, k),
            nan_array(n, k),
            nan_array(n, k, 3),
            nan_array(k),
            nan_array(k),
        )

    @property
    def n(self) -> int:
        return int(self.freeze_forward.shape[0])


@dataclass(frozen=True)
class Energies:
    """Primary energies over periods, kWh: (n,) for a day or (n, T) for its intervals."""

    forward: FArray
    reverse: FArray
    reverse_missing: int = 0

    @property
    def read(self) -> NDArray[np.bool_]:
        return ~np.isnan(self.forward)

    @property
    def net(self) -> FArray:
        return self.forward - self.reverse


def difference(first: FArray, last: FArray) -> FArray:
    """``last - first``, NaN where either is missing or the register went backwards."""
    with np.errstate(invalid="ignore"):
        d = last - first
        return np.where(d >= 0, d, np.nan)


def period_energies(
    forward_first: FArray,
    forward_last: FArray,
    reverse_first: FArray,
    reverse_last: FArray,
    multipliers: FArray,
) -> Energies:
    """Energies between two register readings, any shape whose first axis is the meter."""
    shape = (-1,) + (1,) * (np.ndim(forward_first) - 1)
    m = multipliers.reshape(shape)
    fwd = difference(forward_first, forward_last) * m
    rev = difference(reverse_first, reverse_last) * m
    gap = ~np.isnan(fwd) & np.isnan(rev)
    return Energies(fwd, np.where(gap, 0.0, rev), int(gap.sum()))


def day_energies(day: DayReadings, multipliers: FArray, opening: int = 0) -> Energies:
    """The day per meter, from the daily freezes (the 同期 statistic the back office makes).

    A meter whose freeze was not read but whose curve holds both midnights gets them from the
    curve (the same frozen register, stored by the meter at 00:00). ``opening`` > 0: a partial
    day (the terminal first started during it: no opening freeze was read), from every meter's
    curve point ``opening`` (one instant for all, 同期) to the closing midnight."""
    ff = np.where(np.isnan(day.freeze_forward), day.curve_forward[:, [0, -1]], day.freeze_forward)
    fr = np.where(np.isnan(day.freeze_reverse), day.curve_reverse[:, [0, -1]], day.freeze_reverse)
    if opening:
        ff[:, 0], fr[:, 0] = day.curve_forward[:, opening], day.curve_reverse[:, opening]
    return period_energies(ff[:, 0], ff[:, 1], fr[:, 0], fr[:, 1], multipliers)


def common_opening(day: DayReadings, first: int, share: float = 0.9) -> int:
    """The curve point of a partial day its energies are counted from: the first at or after
    ``first`` at which at least ``share`` of the meters read at any point from ``first`` on were
    read (a terminal's first round takes a while; every meter must start at the same instant)."""
    read = np.isfinite(day.curve_forward[:, first:])
    if not read.any():
        return first
    ever = int(read.any(axis=1).sum())
    enough = np.nonzero(read.sum(axis=0) >= share * ever)[0]
    return first + int(enough[0] if len(enough) else np.argmax(read.sum(axis=0)))


def interval_energies(day: DayReadings, multipliers: FArray) -> Energies:
    """The 96 intervals per meter, from consecutive curve points, shape (n, 96)."""
    f, r = day.curve_forward, day.curve_reverse
    return period_energies(f[:, :-1], f[:, 1:], r[:, :-1], r[:, 1:], multipliers)


def interval_power_energy(day: DayReadings, multipliers: FArray) -> FArray:
    """Primary energy per interval from the meter's own V x I x PF at both ends (trapezoid),
    (n, 96). Independent of the energy register: a stopped or slow register shows against it."""
    p = day.curve_power * multipliers[:, None]
    return (p[:, :-1] + p[:, 1:]) / 2.0 * HOURS_PER_INTERVAL


def interval_voltage(day: DayReadings, pt_ratios: FArray) -> FArray:
    """Primary phase voltages per interval, the mean of both ends, (n, 96, 3)."""
    v = day.curve_voltage * pt_ratios[:, None, None]
    return (v[:, :-1] + v[:, 1:]) / 2.0


__all__ = [
    "HOURS_PER_INTERVAL",
    "INTERVALS_PER_DAY",
    "INTERVAL_S",
    "DayReadings",
    "Energies",
    "common_opening",
    "day_energies",
    "difference",
    "interval_energies",
    "interval_power_energy",
    "interval_voltage",
    "nan_array",
    "period_energies",
]
