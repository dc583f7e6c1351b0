"""A meter's cumulative registers at 15-min points -> the energy of each interval, gaps filled.

Layer: apps (billing). Pure. The anchors are the meter's own registers: its 15-min curve
records (``curve``, or ``catch_up`` when read back later, 补抄) and its daily freezes
(``freeze``, the settlement register at local midnight, which wins over a curve record of the
same instant). Energies are integer units (0.0001 kWh), so the intervals between two anchors
always add up exactly to the difference of their registers: a missed interval is filled, never
lost, and a day between two freezes bills exactly what the meter counted.

Gap rule: when anchors are more than one interval apart, their energy is spread evenly over the
intervals between them (time-proportional; the indivisible remainder goes to the earliest
intervals, one unit each) and those intervals are marked estimated. A register that goes
backwards (meter cleared or replaced) gives zero energy for that gap and is counted as an anomaly.
Export works the same over the anchors that carry an export register (freezes do not).
"""

from __future__ import annotations

import bisect
from typing import Literal, NamedTuple

from .tariff import INTERVAL_S, Interval

Source = Literal["curve", "catch_up", "freeze"]


class Anchor(NamedTuple):
    """One register reading at a 15-min point (a named tuple: one is made for every reading)."""

    ts: int  # UTC epoch s, on a 15-min boundary
    imp: int  # forward (import) register, energy units
    exp: int | None  # reverse (export) register, None when not read
    source: Source

    def to_json(self) -> list[object]:
        return [self.ts, self.imp, self.exp, self.source]


def _split(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if k < extra else 0) for k in range(n)]


class MeterAnchors:
    """The anchors of one meter, by time."""

    __slots__ = ("_rows", "_times", "anomalies", "dirty_from")

    def __init__(self) -> None:
        self._times: list[int] = []
        self._rows: dict[int, Anchor] = {}
        self.anomalies = 0
        self.dirty_from: int | None = None  # earliest anchor time changed since the last pricing

    def __len__(self) -> int:
        return len(self._times)

    @property
    def first(self) -> int | None:
        return self._times[0] if self._times else None

    @property
    def last(self) -> int | None:
        return self._times[-1] if self._times else None

    def is_newest(self, ts: int) -> bool:
        """True when ``ts`` is after every anchor known (or none is)."""
        times = self._times
        return not times or ts > times[-1]

    def get(self, ts: int) -> Anchor | None:
        return self._rows.get(ts)

    def add(self, anchor: Anchor) -> bool:
        """Keep ``anchor``; True when it changed what is known (a new time, or a freeze that
        corrects a curve record). A curve record never replaces a freeze."""
        if anchor.ts % INTERVAL_S:
            raise ValueError(f"anchor at {anchor.ts} is not on a 15-min boundary")
        known = self._rows.get(anchor.ts)
        if known is None:
            times = self._times
            if not times or anchor.ts > times[-1]:  # the usual case: the newest point
                previous = times[-1] if times else anchor.ts
                times.append(anchor.ts)
                self._rows[anchor.ts] = anchor
                self.dirty_from = previous if self.dirty_from is None else min(self.dirty_from, previous)
                return True
            bisect.insort(times, anchor.ts)
            self._rows[anchor.ts] = anchor
            self._dirty(anchor.ts)
            return True
        if anchor.source != "freeze" or known.source == "freeze":
            return False
        exp = anchor.exp if anchor.exp is not None else known.exp
        self._rows[anchor.ts] = Anchor(anchor.ts, anchor.imp, exp, "freeze")
        changed = (anchor.imp, exp) != (known.imp, known.exp)
        if changed:
            self._dirty(anchor.ts)
        return changed

    def _dirty(self, ts: int) -> None:
        # the intervals of the gap before this anchor change too: from the previous anchor on
        previous = self.at_or_before(ts - 1)
        start = ts if previous is None else previous
        self.dirty_from = start if self.dirty_from is None else min(self.dirty_from, start)

    def newest_step(self) -> tuple[Anchor, Anchor] | None:
        """The two newest anchors when only the newest is new since the last pricing, one interval
        after the one before it, both with an export register: the steady state of a meter read
        every cycle, which charging prices without the general path."""
        times = self._times
        if len(times) < 2:
            return None
        b_ts, a_ts = times[-1], times[-2]
        if self.dirty_from != a_ts or b_ts - a_ts != INTERVAL_S:
            return None
        a, b = self._rows[a_ts], self._rows[b_ts]
        if a.exp is None or b.exp is None:
            return None
        return a, b

    def at_or_before(self, ts: int) -> int | None:
        i = bisect.bisect_right(self._times, ts)
        return self._times[i - 1] if i else None

    def at_or_after(self, ts: int) -> int | None:
        i = bisect.bisect_left(self._times, ts)
        return self._times[i] if i < len(self._times) else None

    def intervals(self, start: int, end: int) -> list[Interval]:
        """Every interval starting in [start, end) that two anchors bracket, oldest first."""
        times = self._times
        if len(times) < 2:
            return []
        i = bisect.bisect_left(times, start)
        single = i + 1 < len(times) and times[i] == start and times[i + 1] == start + INTERVAL_S
        if single and (i + 2 == len(times) or times[i + 2] >= end or start + INTERVAL_S >= end):
            a, b = self._rows[start], self._rows[start + INTERVAL_S]  # the common case: one interval
            if a.exp is not None and b.exp is not None:
                if b.imp < a.imp:
                    self.anomalies += 1
                return [Interval(start, max(b.imp - a.imp, 0), max(b.exp - a.exp, 0))]
        lo = max(0, bisect.bisect_right(times, start) - 1)
        hi = min(len(times) - 1, bisect.bisect_left(times, end))
        imports: dict[int, tuple[int, bool]] = {}
        for i in range(lo, hi):
            a, b = self._rows[times[i]], self._rows[times[i + 1]]
            n = (b.ts - a.ts) // INTERVAL_S
            energy = b.imp - a.imp
            if energy < 0:
                self.anomalies += 1
                energy = 0
            for k, share in enumerate(_split(energy, n)):
                s = a.ts + k * INTERVAL_S
                if start <= s < end:
                    imports[s] = (share, n > 1)
        exports = self._exports(start, end) if imports else {}
        return [Interval(s, e, exports.get(s, 0), est) for s, (e, est) in sorted(imports.items())]

    def _exports(self, start: int, end: int) -> dict[int, int]:
        times = self._times
        i = bisect.bisect_right(times, start) - 1
        while i > 0 and self._rows[times[i]].exp is None:
            i -= 1
        out: dict[int, int] = {}
        previous: Anchor | None = None
        for ts in times[max(i, 0) :]:
            row = self._rows[ts]
            if row.exp is None:
                continue
            if previous is not None and previous.exp is not None:
                n = (row.ts - previous.ts) // INTERVAL_S
                for k, share in enumerate(_split(max(row.exp - previous.exp, 0), n)):
                    s = previous.ts + k * INTERVAL_S
                    if start <= s < end:
                        out[s] = share
            previous = row
            if ts >= end:
                break
        return out

    def prune(self, before: int) -> None:
        """Forget anchors before ``before``, keeping the last one at or before it (the next gap's start)."""
        keep = self.at_or_before(before)
        if keep is None:
            return
        cut = bisect.bisect_left(self._times, keep)
        for ts in self._times[:cut]:
            del self._rows[ts]
        del self._times[:cut]

    def rows(self) -> list[Anchor]:
        return [self._rows[t] for t in self._times]


__all__ = ["Anchor", "MeterAnchors", "Source"]
