"""A day's derived energies, and the window of recent days the cause finders look at.

Layer: apps (lineloss). Pure. ``Day.of`` turns one ``DayReadings`` into what every
statistic and cause finder needs, once. Must not classify or decide anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .energy import (
    DayReadings,
    Energies,
    FArray,
    day_energies,
    difference,
    interval_energies,
    interval_power_energy,
    interval_voltage,
)
from .layout import Layout


@dataclass(frozen=True)
class Day:
    date: str  # local date, ISO
    readings: DayReadings
    energy: Energies  # (n,) from the daily freezes
    intervals: Energies  # (n, 96) from the curves
    power: FArray  # (n, 96) from each meter's own V x I x PF
    voltage: FArray  # (n, 96, 3) primary phase voltages, mean of both ends of each interval
    metrology: FArray  # (96,) net interval energy of the metrology unit, NaN where unknown
    metrology_day: float | None  # the day's net energy of the metrology unit
    #: > 0: a partial day, its energies from this curve point on (the terminal first started
    #: during the day, no opening freeze was read)
    opening: int = 0

    @classmethod
    def of(cls, date: str, readings: DayReadings, layout: Layout, *, opening: int = 0) -> Day:
        mult = layout.multipliers
        mf, mr = readings.metrology_forward, readings.metrology_reverse
        fwd, rev = difference(mf[:-1], mf[1:]), difference(mr[:-1], mr[1:])
        metrology = fwd - np.where(np.isnan(rev) & ~np.isnan(fwd), 0.0, rev)
        at = slice(opening, opening + 1)
        day_f, day_r = difference(mf[at], mf[-1:])[0], difference(mr[at], mr[-1:])[0]
        metrology_day = None if np.isnan(day_f) else float(day_f - (0.0 if np.isnan(day_r) else day_r))
        return cls(
            date=date,
            readings=readings,
            energy=day_energies(readings, mult, opening),
            intervals=interval_energies(readings, mult),
            power=interval_power_energy(readings, mult),
            voltage=interval_voltage(readings, layout.pt_ratios),
            metrology=metrology,
            metrology_day=metrology_day,
            opening=opening,
        )


def stacked_voltage(days: list[Day], rows: np.ndarray | list[int]) -> FArray:
    """Phase voltages of meters ``rows`` over ``days``: shape (len(rows), 96 x days, 3)."""
    idx = np.asarray(rows, dtype=np.int64)
    if not days:
        return np.zeros((len(idx), 0, 3))
    return np.concatenate([d.voltage[idx] for d in days], axis=1)


def stacked(days: list[Day], rows: np.ndarray | list[int], what: str = "net") -> FArray:
    """Interval series of meters ``rows`` over ``days`` side by side: shape (len(rows), 96 x days).

    ``what``: "net" (register, forward - reverse), "gross" (forward + reverse) or "power"
    (V x I x PF)."""
    idx = np.asarray(rows, dtype=np.int64)
    parts = []
    for d in days:
        if what == "net":
            parts.append(d.intervals.net[idx])
        elif what == "gross":
            parts.append(d.intervals.forward[idx] + d.intervals.reverse[idx])
        elif what == "power":
            parts.append(d.power[idx])
        else:
            raise ValueError(f"unknown series {what!r}")
    if not parts:
        return np.zeros((len(idx), 0))
    return np.concatenate(parts, axis=1)


__all__ = ["Day", "stacked", "stacked_voltage"]
