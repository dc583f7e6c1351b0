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
_CURVE = _SOURCE_CODE["curve"]
#: a source mark is slot x _MARK + source code (``MeterAnchors._marks``)
_MARK = 4


def _fitted(column: array[int], value: int) -> array[int]:
    """``column``, or a wider copy of it (its "not read" kept) when ``value`` does not fit."""
    while not _NONE[column.typecode] < value <= _MAX[column.typecode]:
        code = column.typecode
        if code not in _WIDER:
            raise OverflowError(f"register offset {value} does not fit int64")
        none, wider = _NONE[code], _WIDER[code]
        column = array(wider, (_NONE[wider] if v == none else v for v in column))
    return column


#: registers are counted in this many units while every difference of two is a multiple of it
#: (a DL/T 645 register's 0.01 kWh), else in units
_COARSE = 100


def _narrowest(column: array[int], values: list[int]) -> array[int]:
    """An empty column of the narrowest typecode, from ``column``'s, that holds ``values``."""
    out = array("h")
    for value in (min(values, default=0), max(values, default=0)):
        out = _fitted(out, value)
    return out


def _mapped(column: array[int], shift: int, factor: int, narrow: bool) -> array[int]:
    """``column``'s values read as (v - shift) x factor ("not read" kept), in the narrowest
    typecode that holds them (``narrow``) or at least as wide as ``column``'s."""
    none = _NONE[column.typecode]
    values = [(v - shift) * factor for v in column if v != none]
    out = _narrowest(column, values) if narrow else array(column.typecode)
    for value in (min(values, default=0), max(values, default=0)):
        out = _fitted(out, value)
    it = iter(values)
    out_none = _NONE[out.typecode]
    out.extend(out_none if v == none else next(it) for v in column)
    return out


class MeterAnchors:
    """The anchors of one meter, by time, packed in parallel columns (``array``: ~5 bytes an
    anchor for a household meter read every cycle -- an ``Anchor`` with its dict entry took ~250,
    and 2,400 meters x 96 points x 4 days of them were ~230 MB of the terminal). The time is its
    15-min slot number less the first anchor's: a ``range`` while the anchors are consecutive, else
    an int16 array (341 days either way, then int32). A register column holds the register less a
    base, in steps of 0.01 kWh (``_COARSE`` units) while every register of it is one, else of one
    unit, in the narrowest integer that holds them (``_fitted``: int16, then int32, then int64;
    export: its typecode's lowest value where not read). ``prune`` moves the bases to the oldest
    anchor kept and narrows the columns again: a household's 4 days stay within int16 (327 kWh).
    Differences of stored registers times the step are differences of the registers. The source
    of an anchor is ``curve`` unless marked (``_marks``: ascending slot x 4 + source code, int32,
    of the freezes and catch-up reads only: one a day, not a byte an anchor). ``Anchor`` values
    are made when read."""

    __slots__ = (
        "_base", "_exp", "_exp_base", "_exp_step", "_imp", "_imp_base", "_imp_step", "_marks", "_slots",
        "anomalies", "dirty_from",
    )  # fmt: skip

    def __init__(self) -> None:
        # anchor time // INTERVAL_S - _base (times are on the 15-min grid): a range while they are
        # consecutive (no bytes an anchor), else an array
        self._slots: range | array[int] = range(0)
        self._base = 0  # the first anchor's slot
        self._imp = array("h")  # (import register - _imp_base) / _imp_step
        self._exp = array("h")  # (export register - _exp_base) / _exp_step, _NONE[typecode]: not read
        self._imp_base: int | None = None  # set by the first register kept
        self._exp_base: int | None = None
        self._imp_step = self._exp_step = _COARSE  # 1 from the first register off the 0.01 kWh grid
        # (slot x _MARK + source code) of the anchors not from the curve: no array until the first,
        # then one of exactly their number (a few: one a day)
        self._marks: array[int] | tuple[()] = ()
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
        if imp_offset % self._imp_step:  # off the 0.01 kWh grid: in units from now on
            self._imp, self._imp_step = _mapped(self._imp, 0, self._imp_step, False), 1
        imp_offset //= self._imp_step
        self._imp = _fitted(self._imp, imp_offset)
        if exp is None:
            return imp_offset, _NONE[self._exp.typecode]
        if self._exp_base is None:
            self._exp_base = exp
        exp_offset = exp - self._exp_base
        if exp_offset % self._exp_step:
            self._exp, self._exp_step = _mapped(self._exp, 0, self._exp_step, False), 1
        exp_offset //= self._exp_step
        self._exp = _fitted(self._exp, exp_offset)
        return imp_offset, exp_offset

    def _slot(self, ts: int) -> int:
        """The slot column's value for anchor time ``ts`` (the column widened when it must)."""
        if not self._slots:
            self._base = ts // INTERVAL_S
        offset = ts // INTERVAL_S - self._base
        if isinstance(self._slots, array):
            self._slots = _fitted(self._slots, offset)
        return offset

    def _slot_column(self, extra: int) -> array[int]:
        """The slots as an array (made of the range when they were consecutive) that holds ``extra``."""
        slots = self._slots
        if isinstance(slots, array):
            return slots
        column = _fitted(array("h"), min(slots.start, extra))
        column = _fitted(column, max(slots.stop - 1, extra))
        column.extend(slots)
        self._slots = column
        return column

    def _dense_again(self) -> None:
        """The slots as a range again when they are consecutive (a gap filled, the old ones pruned)."""
        slots = self._slots
        if isinstance(slots, array) and slots and slots[-1] - slots[0] == len(slots) - 1:
            self._slots = range(slots[0], slots[-1] + 1)

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

    def _source(self, i: int) -> int:
        """The source code of the ``i``-th anchor."""
        marks = self._marks
        if not marks:
            return _CURVE
        key = (self._slots[i] + self._base) * _MARK
        j = bisect.bisect_left(marks, key)
        return marks[j] - key if j < len(marks) and marks[j] - key < _MARK else _CURVE

    def _mark(self, slot: int, code: int) -> None:
        """Anchor at ``slot`` (less ``_base``) comes from source ``code`` (set before ``_base`` moves)."""
        marks = self._marks
        key = (slot + self._base) * _MARK
        j = bisect.bisect_left(marks, key)
        if isinstance(marks, array) and j < len(marks) and marks[j] - key < _MARK:
            if code == _CURVE:
                del marks[j]
            else:
                marks[j] = key + code
        elif code != _CURVE:
            self._marks = array("i", (*marks[:j], key + code, *marks[j:]))  # (no spare room)

    def _anchor(self, i: int) -> Anchor:
        exp = self._exp[i]
        return Anchor(
            (self._slots[i] + self._base) * INTERVAL_S,
            self._imp[i] * self._imp_step + (self._imp_base or 0),
            None if exp == _NONE[self._exp.typecode] else exp * self._exp_step + (self._exp_base or 0),
            _SOURCES[self._source(i)],
        )

    def get(self, ts: int) -> Anchor | None:
        i = self._index(ts)
        return None if i is None else self._anchor(i)

    def _insert(self, i: int, anchor: Anchor) -> None:
        slot = self._slot(anchor.ts)
        imp, exp = self._stored(anchor)
        slots = self._slots
        if isinstance(slots, range) and i == 0 and slot == slots.start - 1:
            self._slots = range(slot, slots.stop)
        else:
            self._slot_column(slot).insert(i, slot)
            self._dense_again()
        self._imp.insert(i, imp)
        self._exp.insert(i, exp)
        self._mark(slot, _SOURCE_CODE[anchor.source])

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
            if isinstance(self._slots, range) and slot == self._slots.stop:
                self._slots = range(self._slots.start, slot + 1)
            else:
                self._slot_column(slot).append(slot)
            self._imp.append(imp)
            self._exp.append(exp)
            self._mark(slot, _SOURCE_CODE[anchor.source])
            self.dirty_from = previous if self.dirty_from is None else min(self.dirty_from, previous)
            return True
        i = bisect.bisect_left(slots, slot)
        if i == len(slots) or slots[i] != slot:
            self._insert(i, anchor)
            self._dirty(anchor.ts)
            return True
        if anchor.source != "freeze" or self._source(i) == _FREEZE:
            return False
        known = self._anchor(i)
        kept_exp = anchor.exp if anchor.exp is not None else known.exp
        self._imp[i], self._exp[i] = self._stored(Anchor(anchor.ts, anchor.imp, kept_exp, "freeze"))
        self._mark(slots[i], _FREEZE)
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
                return [
                    Interval(
                        start, max(b_imp - a_imp, 0) * self._imp_step, max(b_exp - a_exp, 0) * self._exp_step
                    )
                ]
        lo = max(0, bisect.bisect_right(slots, start // INTERVAL_S - base) - 1)
        hi = min(len(slots) - 1, bisect.bisect_left(slots, -(-end // INTERVAL_S) - base))
        imports: dict[int, tuple[int, bool]] = {}
        for i in range(lo, hi):
            a_ts = (slots[i] + base) * INTERVAL_S
            n = slots[i + 1] - slots[i]
            energy = (imp[i + 1] - imp[i]) * self._imp_step
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
            exp *= self._exp_step
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
        for column in (self._imp, self._exp):
            del column[:cut]
        marks = self._marks
        if isinstance(marks, array):
            del marks[: bisect.bisect_left(marks, (self._slots[cut] + self._base) * _MARK)]
        self._rebase()
        if isinstance(self._slots, range):
            self._slots = self._slots[cut:]
        else:
            del self._slots[:cut]
            self._dense_again()

    def _rebase(self) -> None:
        """The register bases moved to the oldest registers kept, the columns as narrow as they
        can be again (offsets from a base long pruned away only grow)."""
        imp = self._imp
        if imp and imp[0] and self._imp_base is not None:
            shift = imp[0]
            self._imp, self._imp_base = _mapped(imp, shift, 1, True), self._imp_base + shift * self._imp_step
        exp, none = self._exp, _NONE[self._exp.typecode]
        shift = next((v for v in exp if v != none), 0)
        if shift and self._exp_base is not None:
            self._exp, self._exp_base = _mapped(exp, shift, 1, True), self._exp_base + shift * self._exp_step

    def rows(self) -> list[Anchor]:
        return [self._anchor(i) for i in range(len(self._slots))]


__all__ = ["Anchor", "MeterAnchors", "Source"]
