"""Build ``DayReadings`` from interval energies, the way meters would have frozen them."""

from __future__ import annotations

import numpy as np

from apps.lineloss.energy import DayReadings
from apps.lineloss.layout import Layout
from apps.lineloss.window import Day


def readings(
    layout: Layout,
    start: float,
    forward: np.ndarray,
    *,
    reverse: np.ndarray | None = None,
    power_kw: np.ndarray | None = None,
    metrology: np.ndarray | None = None,
    base: float = 100.0,
) -> DayReadings:
    """``forward``/``reverse``: (n, 96) primary kWh per interval; registers count them / ratio.
    ``power_kw``: (n, 97) the meters' own V x I x PF at the points, primary (default: each
    interval's mean power at its start and end, as a step-held load shows it)."""
    n = layout.n
    mult = layout.multipliers[:, None]
    rev = np.zeros_like(forward) if reverse is None else reverse
    day = DayReadings.empty(start, n)
    day.curve_forward[:] = base + np.concatenate(
        [np.zeros((n, 1)), np.cumsum(forward / mult, axis=1)], axis=1
    )
    day.curve_reverse[:] = np.concatenate([np.zeros((n, 1)), np.cumsum(rev / mult, axis=1)], axis=1)
    day.freeze_forward[:] = day.curve_forward[:, [0, -1]]
    day.freeze_reverse[:] = day.curve_reverse[:, [0, -1]]
    if power_kw is None:
        p = (forward - rev) / 0.25
        power_kw = np.concatenate([p, p[:, -1:]], axis=1)
    day.curve_power[:] = power_kw / mult
    day.curve_voltage[:] = 230.0
    if metrology is not None:
        day.metrology_forward[:] = 1000.0 + np.concatenate([[0.0], np.cumsum(metrology)])
        day.metrology_reverse[:] = 0.0
    return day


def window(layout: Layout, days: list[DayReadings]) -> list[Day]:
    return [Day.of(f"2024-06-{2 + k:02d}", d, layout) for k, d in enumerate(days)]
