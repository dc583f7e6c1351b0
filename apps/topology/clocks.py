"""Meters whose curve points were stamped by a wrong clock: their points until the clock was put
right take no part in an identification.

Layer: apps (topology), pure data. Fed by what acquisition measured before its daily broadcast
time sync (``meter/<id>/clock``: ``ts``, ``offset_s``, ``corrected_at``); must not read the bus
or the store itself.

A meter stamps its 15-minute records by its own clock. With the clock minutes off, the point
stamped ``t`` is the meter's load and voltage of another quarter hour: correlated with the
other meters' points of ``t`` it fits a phase, branch or box by chance, and the day its clock is
corrected the fit changes as if the meter had been moved (the default area's m-0031, 7 minutes
fast until the 02:30 sync, was reported moved B -> A). Realigning is not possible from 15-minute
averages, and the clock was wrong for an unknown time before it was read, so every point of such
a meter stamped up to the correction is dropped (NaN, as a point never read); a clock read off and
not corrected (the broadcast failed) drops all its points until a later read finds it right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from .inputs import Curves

#: a clock off by less than this shifts a 15-minute point by too little to matter
TOLERANCE_S = 60.0


class Clocks:
    """Per meter id: the time up to which its points were stamped by a wrong clock."""

    def __init__(
        self, wrong_until: Mapping[str, float] | None = None, *, tolerance_s: float = TOLERANCE_S
    ) -> None:
        self.wrong_until: dict[str, float] = dict(wrong_until or {})
        self.tolerance_s = tolerance_s

    def note(self, meter: str, body: Any) -> bool:
        """Take one ``meter/<id>/clock`` message; False (ignored) when it is malformed. A clock
        found right again after one found wrong and not corrected was corrected by then."""
        if not isinstance(body, dict):
            return False
        ts, offset, corrected = body.get("ts"), body.get("offset_s"), body.get("corrected_at")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (ts, offset)):
            return False
        if corrected is not None and (not isinstance(corrected, int | float) or isinstance(corrected, bool)):
            return False
        assert isinstance(ts, int | float) and isinstance(offset, int | float)
        if abs(offset) < self.tolerance_s:
            if math.isinf(self.wrong_until.get(meter, 0.0)):
                self.wrong_until[meter] = float(ts)
            return True
        until = math.inf if corrected is None else float(corrected)
        self.wrong_until[meter] = max(until, self.wrong_until.get(meter, -math.inf))
        return True

    def mask(self, curves: Curves) -> Curves:
        """``curves`` without the points of each meter stamped up to its correction (and without
        its energy of the intervals starting there: a register difference across the jump)."""
        index = curves.index()
        hit = [(index[m], until) for m, until in self.wrong_until.items() if m in index]
        if not hit:
            return curves
        voltage, current, energy = curves.voltage.copy(), curves.current.copy(), curves.energy.copy()
        for j, until in hit:
            wrong = curves.times <= until
            voltage[wrong, j, :] = np.nan
            current[wrong, j, :] = np.nan
            energy[wrong[: len(energy)], j] = np.nan
        return replace(curves, voltage=voltage, current=current, energy=energy)

    def to_json(self) -> dict[str, float | None]:
        return {m: None if math.isinf(t) else t for m, t in self.wrong_until.items()}

    @classmethod
    def from_json(cls, saved: Any) -> Clocks:
        if not isinstance(saved, dict):
            return cls()
        out: dict[str, float] = {}
        for meter, until in saved.items():
            if until is None:
                out[str(meter)] = math.inf
            elif isinstance(until, int | float) and not isinstance(until, bool):
                out[str(meter)] = float(until)
        return cls(out)


__all__ = ["TOLERANCE_S", "Clocks"]
