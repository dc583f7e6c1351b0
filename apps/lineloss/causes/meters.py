"""Stopped and slow meters: a register that does not follow the meter's own V x I x PF.

Layer: apps (lineloss). Pure. A meter measures voltage, current and power factor in its
metrology front end and accumulates energy in its register; a stopped register (有电流无电量)
or a slow one shows as register energy well below the energy its own instantaneous values
imply. Both are compared over the intervals where both ends of both are read, gross (forward +
reverse register against |P|), so PV export does not cancel consumption.

Must not look at balances (``theft`` adds the branch balance as confirmation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..layout import Layout
from ..window import Day, stacked

RESOLUTION_KWH = 0.01  # a register shows 0.01 kWh: a stopped one moves less than this


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
    out: list[MeterCheck] = []
    stopped: set[int] = set()
    reg, pw, n, _ = _valid_sums(window[-1:], rows)
    for i in np.nonzero(pw >= settings.stopped_min_kwh)[0]:
        if reg[i] <= max(RESOLUTION_KWH * layout.multipliers[i], 0.02 * pw[i]):
            stopped.add(int(i))
            out.append(MeterCheck(int(i), "stopped", float(reg[i]), float(pw[i]), int(n[i]), 1))
    days = window[-settings.window_days :]
    reg, pw, n, spread = _valid_sums(days, rows)
    limit = 1.0 - settings.slow_min_pct / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(pw > 0, reg / pw, 1.0)
        # the ratio's standard error from how far each interval strays from it
        se = np.where(pw > 0, np.sqrt(spread(ratio)) / pw, np.inf)
        z = (1.0 - ratio) / se
    for i in np.nonzero((pw >= settings.slow_min_kwh) & (ratio <= limit) & (z >= settings.slow_min_z))[0]:
        if int(i) not in stopped:
            out.append(MeterCheck(int(i), "slow", float(reg[i]), float(pw[i]), int(n[i]), len(days)))
    return out


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


__all__ = ["RESOLUTION_KWH", "MeterCheck", "MeterSettings", "check_meters"]
