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
from array import array
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


#: a column's typecodes, narrowest first; a column moves to the next when a value does not fit
_WIDER = {"h": "i", "i": "q"}
#: a column's "not read" (export): its typecode's lowest value, below every offset it holds
_NONE = {"h": -(2**15), "i": -(2**31), "q": -(2**63)}
_MAX = {"h": 2**15 - 1, "i": 2**31 - 1, "q": 2**63 - 1}
_SOURCES: tuple[Source, ...] = ("curve", "catch_up", "freeze")
_SOURCE_CODE = {name: code for code, name in enumerate(_SOURCES)}
_FREEZE = _SOURCE_CODE["freeze"]


def _fitted(column: array[int], value: int) -> array[int]:
    """``column``, or a wider copy of it (its "not read" kept) when ``value`` does not fit."""
    while not _NONE[column.typecode] < value <= _MAX[column.typecode]:
        code = column.typecode
        if code not in _WIDER:
            raise OverflowError(f"register offset {value} does not fit int64")
        none, wider = _NONE[code], _WIDER[code]
        column = array(wider, (_NONE[wider] if v == none else v for v in column))
    return column


class MeterAnchors:
    """The anchors of one meter, by time, packed in parallel columns (``array``: 9 bytes an
    anchor for a meter without export, 11 with -- an ``Anchor`` with its dict entry took ~250,
    and 2,400 meters x 96 points x 4 days of them were ~230 MB of the terminal). Every column
    holds offsets, each in the narrowest integer that holds them, widened for good (``_fitted``)
    by the first value that does not fit: the time as its 15-min slot number less the first
    anchor's (int16: 341 days either way, then int32); the import register less the meter's
    first (int32: 214,748 kWh, then int64); the export register less the first read (int16:
    3.2767 kWh, which a meter without PV never leaves, then int32, then int64), its typecode's
    lowest value where not read. Differences of two stored registers are differences of the
    registers whatever the width. ``Anchor`` values are made when read."""

    __slots__ = (
        "_base", "_exp", "_exp_base", "_imp", "_imp_base", "_slots", "_source", "anomalies", "dirty_from",
    )  # fmt: skip

    def __init__(self) -> None:
        self._slots = array("h")  # anchor time // INTERVAL_S - _base (times are on the 15-min grid)
        self._base = 0  # the first anchor's slot
        self._imp = array("i")  # import register - _imp_base
        self._exp = array("h")  # export register - _exp_base, or _NONE[typecode] where not read
        self._imp_base: int | None = None  # set by the first register kept
        self._exp_base: int | None = None
        self._source = bytearray()
        self.anomalies = 0
        self.dirty_from: int | None = None  # earliest anchor time changed since the last pricing

    @property
    def wide(self) -> bool:
        """True once a register column holds int64 offsets (one did not fit int32)."""
        return "q" in (self._imp.typecode, self._exp.typecode)

    def _stored(self, anchor: Anchor) -> tuple[int, int]:
        """``anchor``'s registers as its columns hold them (widening a column first when it must)."""
        imp, exp = anchor.imp, anchor.exp
        if self._imp_base is None:
            self._imp_base = imp
        imp_offset = imp - self._imp_base
        self._imp = _fitted(self._imp, imp_offset)
        if exp is None:
            return imp_offset, _NONE[self._exp.typecode]
        if self._exp_base is None:
            self._exp_base = exp
        exp_offset = exp - self._exp_base
        self._exp = _fitted(self._exp, exp_offset)
        return imp_offset, exp_offset

    def _slot(self, ts: int) -> int:
        """The slot column's value for anchor time ``ts`` (the column widened when it must)."""
        if not self._slots:
            self._base = ts // INTERVAL_S
        offset = ts // INTERVAL_S - self._base
        self._slots = _fitted(self._slots, offset)
        return offset

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def first(self) -> int | None:
        return (self._slots[0] + self._base) * INTERVAL_S if self._slots else None

    @property
    def last(self) -> int | None:
        return (self._slots[-1] + self._base) * INTERVAL_S if self._slots else None

    def is_newest(self, ts: int) -> bool:
        """True when ``ts`` is after every anchor known (or none is)."""
        slots = self._slots
        return not slots or ts > (slots[-1] + self._base) * INTERVAL_S

    def _index(self, ts: int) -> int | None:
        slot, off = divmod(ts, INTERVAL_S)
        slots = self._slots
        if off:
            return None
        slot -= self._base
        if slots and slots[-1] == slot:  # the usual question: the newest point
            return len(slots) - 1
        i = bisect.bisect_left(slots, slot)
        return i if i < len(slots) and slots[i] == slot else None

    def _anchor(self, i: int) -> Anchor:
        exp = self._exp[i]
        return Anchor(
            (self._slots[i] + self._base) * INTERVAL_S,
            self._imp[i] + (self._imp_base or 0),
            None if exp == _NONE[self._exp.typecode] else exp + (self._exp_base or 0),
            _SOURCES[self._source[i]],
        )

    def get(self, ts: int) -> Anchor | None:
        i = self._index(ts)
        return None if i is None else self._anchor(i)

    def _insert(self, i: int, anchor: Anchor) -> None:
        slot = self._slot(anchor.ts)
        imp, exp = self._stored(anchor)
        self._slots.insert(i, slot)
        self._imp.insert(i, imp)
        self._exp.insert(i, exp)
        self._source.insert(i, _SOURCE_CODE[anchor.source])

    def add(self, anchor: Anchor) -> bool:
        """Keep ``anchor``; True when it changed what is known (a new time, or a freeze that
        corrects a curve record). A curve record never replaces a freeze."""
        if anchor.ts % INTERVAL_S:
            raise ValueError(f"anchor at {anchor.ts} is not on a 15-min boundary")
        slots, base = self._slots, self._base
        slot = anchor.ts // INTERVAL_S - base
        if not slots or slot > slots[-1]:  # the usual case: the newest point
            previous = (slots[-1] + base) * INTERVAL_S if slots else anchor.ts
            slot = self._slot(anchor.ts)
            imp, exp = self._stored(anchor)
            self._slots.append(slot)
            self._imp.append(imp)
            self._exp.append(exp)
            self._source.append(_SOURCE_CODE[anchor.source])
            self.dirty_from = previous if self.dirty_from is None else min(self.dirty_from, previous)
            return True
        i = bisect.bisect_left(slots, slot)
        if i == len(slots) or slots[i] != slot:
            self._insert(i, anchor)
            self._dirty(anchor.ts)
            return True
        if anchor.source != "freeze" or self._source[i] == _FREEZE:
            return False
        known = self._anchor(i)
        kept_exp = anchor.exp if anchor.exp is not None else known.exp
        self._imp[i], self._exp[i] = self._stored(Anchor(anchor.ts, anchor.imp, kept_exp, "freeze"))
        self._source[i] = _FREEZE
        changed = (anchor.imp, kept_exp) != (known.imp, known.exp)
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
        slots, base = self._slots, self._base
        n = len(slots)
        if n < 2:
            return None
        b_ts, a_ts = (slots[-1] + base) * INTERVAL_S, (slots[-2] + base) * INTERVAL_S
        if self.dirty_from != a_ts or b_ts - a_ts != INTERVAL_S:
            return None
        none = _NONE[self._exp.typecode]
        if self._exp[-2] == none or self._exp[-1] == none:
            return None
        return self._anchor(n - 2), self._anchor(n - 1)

    def at_or_before(self, ts: int) -> int | None:
        i = bisect.bisect_right(self._slots, ts // INTERVAL_S - self._base)
        return (self._slots[i - 1] + self._base) * INTERVAL_S if i else None

    def at_or_after(self, ts: int) -> int | None:
        i = bisect.bisect_left(self._slots, -(-ts // INTERVAL_S) - self._base)
        return (self._slots[i] + self._base) * INTERVAL_S if i < len(self._slots) else None

    def intervals(self, start: int, end: int) -> list[Interval]:
        """Every interval starting in [start, end) that two anchors bracket, oldest first."""
        slots, imp, exp_of, base = self._slots, self._imp, self._exp, self._base
        none = _NONE[exp_of.typecode]
        if len(slots) < 2:
            return []
        i = bisect.bisect_left(slots, -(-start // INTERVAL_S) - base)
        first = (slots[i] + base) * INTERVAL_S if i < len(slots) else None
        single = i + 1 < len(slots) and first == start and slots[i + 1] - slots[i] == 1
        if single and start < end and (i + 2 == len(slots) or start + INTERVAL_S >= end):  # only that one
            a_exp, b_exp = exp_of[i], exp_of[i + 1]  # the common case: one interval
            if a_exp != none and b_exp != none:
                a_imp, b_imp = imp[i], imp[i + 1]
                if b_imp < a_imp:
                    self.anomalies += 1
                return [Interval(start, max(b_imp - a_imp, 0), max(b_exp - a_exp, 0))]
        lo = max(0, bisect.bisect_right(slots, start // INTERVAL_S - base) - 1)
        hi = min(len(slots) - 1, bisect.bisect_left(slots, -(-end // INTERVAL_S) - base))
        imports: dict[int, tuple[int, bool]] = {}
        for i in range(lo, hi):
            a_ts = (slots[i] + base) * INTERVAL_S
            n = slots[i + 1] - slots[i]
            energy = imp[i + 1] - imp[i]
            if energy < 0:
                self.anomalies += 1
                energy = 0
            for k, share in enumerate(_split(energy, n)):
                s = a_ts + k * INTERVAL_S
                if start <= s < end:
                    imports[s] = (share, n > 1)
        exports = self._exports(start, end) if imports else {}
        return [Interval(s, e, exports.get(s, 0), est) for s, (e, est) in sorted(imports.items())]

    def _exports(self, start: int, end: int) -> dict[int, int]:
        slots, exp_of, base = self._slots, self._exp, self._base
        none = _NONE[exp_of.typecode]
        i = bisect.bisect_right(slots, start // INTERVAL_S - base) - 1
        while i > 0 and exp_of[i] == none:
            i -= 1
        out: dict[int, int] = {}
        previous: tuple[int, int] | None = None  # (ts, export register)
        for j in range(max(i, 0), len(slots)):
            ts, exp = (slots[j] + base) * INTERVAL_S, exp_of[j]
            if exp == none:
                continue
            if previous is not None:
                n = (ts - previous[0]) // INTERVAL_S
                for k, share in enumerate(_split(max(exp - previous[1], 0), n)):
                    s = previous[0] + k * INTERVAL_S
                    if start <= s < end:
                        out[s] = share
            previous = (ts, exp)
            if ts >= end:
                break
        return out

    def prune(self, before: int) -> None:
        """Forget anchors before ``before``, keeping the last one at or before it (the next gap's start)."""
        keep = self.at_or_before(before)
        if keep is None:
            return
        cut = bisect.bisect_left(self._slots, keep // INTERVAL_S - self._base)
        for column in (self._slots, self._imp, self._exp, self._source):
            del column[:cut]

    def rows(self) -> list[Anchor]:
        return [self._anchor(i) for i in range(len(self._slots))]


__all__ = ["Anchor", "MeterAnchors", "Source"]
