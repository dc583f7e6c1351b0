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
from typing import Literal, NamedTuple, cast

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
_WIDER = {"B": "h", "h": "i", "i": "q"}
#: a column's "not read" (export): a value none of its steps takes
_NONE = {"B": 255, "h": -(2**15), "i": -(2**31), "q": -(2**63)}
#: the values a column holds, ``_LO[code] <= v <= _HI[code]`` (its "not read" outside them)
_LO = {"B": 0, "h": 1 - 2**15, "i": 1 - 2**31, "q": 1 - 2**63}
_HI = {"B": 254, "h": 2**15 - 1, "i": 2**31 - 1, "q": 2**63 - 1}
_SOURCES: tuple[Source, ...] = ("curve", "catch_up", "freeze")
_SOURCE_CODE = {name: code for code, name in enumerate(_SOURCES)}
_FREEZE = _SOURCE_CODE["freeze"]
_CURVE = _SOURCE_CODE["curve"]
#: a mark is slot x _MARK + flags: the source code, plus _UNREAD (``MeterAnchors._marks``)
_MARK = 8
_SOURCE_BITS = 3
#: the anchor's export was not read (a mark's flag while the export column is quiet)
_UNREAD = 4


def _fitted(column: array[int], value: int) -> array[int]:
    """``column``, or a wider copy of it (its "not read" kept) when ``value`` does not fit."""
    while not _LO[column.typecode] <= value <= _HI[column.typecode]:
        code = column.typecode
        if code not in _WIDER:
            raise OverflowError(f"register step {value} does not fit int64")
        none, wider = _NONE[code], _WIDER[code]
        column = array(wider, (_NONE[wider] if v == none else v for v in column))
    return column


#: registers are counted in this many units while every difference of two is a multiple of it
#: (a DL/T 645 register's 0.01 kWh), else in units
_COARSE = 100


def _mapped(column: array[int], factor: int, narrow: bool) -> array[int]:
    """``column``'s values times ``factor`` ("not read" kept), in the narrowest typecode that
    holds them (``narrow``) or at least as wide as ``column``'s."""
    none = _NONE[column.typecode]
    values = [v * factor for v in column if v != none]
    out = array("B") if narrow else array(column.typecode)
    for value in (min(values, default=0), max(values, default=0)):
        out = _fitted(out, value)
    it = iter(values)
    out_none = _NONE[out.typecode]
    out.extend(out_none if v == none else next(it) for v in column)
    return out


def _sum(column: array[int], end: int | None = None) -> int:
    """The sum of ``column``'s values (of the first ``end``), "not read" left out."""
    part = column if end is None else column[:end]
    none = _NONE[column.typecode]
    return sum(part) - none * part.count(none)


def _put(
    column: array[int], base: int | None, step: int, i: int, value: int | None, insert: bool
) -> tuple[array[int], int | None, int]:
    """A step column (``MeterAnchors``) with register ``value`` at row ``i`` -- a row inserted
    there (``insert``) or row ``i``'s register replaced -- and its base and step after it. The
    next register read after row ``i`` keeps its value: its step is what is left of the old one."""
    if value is None:  # (an insert: a replacement keeps the register it had)
        column.insert(i, _NONE[column.typecode])
        return column, base, step
    if base is None:
        base = value
    if (value - base) % step:  # off the 0.01 kWh grid: in units from now on
        column, step = _mapped(column, step, False), 1
    none = _NONE[column.typecode]
    delta = (value - base - step * _sum(column, i if i < len(column) else None)) // step
    old = 0 if insert or column[i] == none else column[i]
    k = i if insert else i + 1
    n = len(column)
    while k < n and column[k] == none:
        k += 1
    after = column[k] + old - delta if k < n else None  # the next read's step from ``value``
    column = _fitted(column, delta)
    if after is not None:
        column = _fitted(column, after)
    if insert:
        column.insert(i, delta)
        k += 1
    else:
        column[i] = delta
    if after is not None:
        column[k] = after
    return column, base, step


class MeterAnchors:
    """The anchors of one meter, by time, packed in parallel columns (``array``: ~2 bytes an
    anchor for a household meter read every cycle -- an ``Anchor`` with its dict entry took ~250,
    and 2,400 meters x 96 points x 4 days of them were ~230 MB of the terminal). The time is its
    15-min slot number less the first anchor's: a ``range`` while the anchors are consecutive, else
    an int16 array (341 days either way, then int32). A register column holds the STEPS of the
    register: row i the register less the one read before it (row 0: less the column's base), in
    units of 0.01 kWh (``_COARSE`` units) while every register of it is on that grid, else of one
    unit, in the narrowest integer that holds them (``_fitted``: uint8 0..254, then int16, int32,
    int64; export: the typecode's ``_NONE`` where not read, and a step is from the export read
    before). A household's quarter-hour is a byte (2.54 kWh); a register is its column's base plus
    the sum of the steps up to it (``_sum``), an interval's energy is one step. ``prune`` adds the
    steps pruned to the bases and narrows the columns again. The export column is QUIET (None, no
    bytes) while every export read equals its base (a meter with no PV: ~0.5 kB a meter at 4 days);
    its anchors whose export was not read are then marked (``_UNREAD``), and the column is made on
    the first export that moves (or once the marks would take more than it). The source of an
    anchor is ``curve`` unless marked (``_marks``: ascending slot x 8 + flags, int32, of the
    freezes and catch-up reads, and of the exports not read of a quiet column: one or two a day,
    not a byte an anchor). ``Anchor`` values are made when read."""

    __slots__ = (
        "_base", "_exp", "_exp_base", "_exp_step", "_imp", "_imp_base", "_imp_step", "_marks", "_slots",
        "anomalies", "dirty_from",
    )  # fmt: skip

    def __init__(self) -> None:
        # anchor time // INTERVAL_S - _base (times are on the 15-min grid): None while they are
        # consecutive from _base (no bytes: ``_times``), else an array
        self._slots: array[int] | None = None
        self._base = 0  # the first anchor's slot (while consecutive: moves with the first)
        self._imp = array("B")  # (import register - the one before, or _imp_base) / _imp_step
        # (export register - the one read before, or _exp_base) / _exp_step, _NONE[typecode]: not
        # read; None while quiet (every export read is _exp_base)
        self._exp: array[int] | None = None
        self._imp_base: int | None = None  # set by the first register kept: row 0's less its step
        self._exp_base: int | None = None
        self._imp_step = self._exp_step = _COARSE  # 1 from the first register off the 0.01 kWh grid
        # (slot x _MARK + flags) of the anchors not from the curve or (quiet export) not read: no
        # array until the first, then one of exactly their number (a few: one or two a day)
        self._marks: array[int] | tuple[()] = ()
        self.anomalies = 0
        self.dirty_from: int | None = None  # earliest anchor time changed since the last pricing

    @property
    def wide(self) -> bool:
        """True once a register column holds int64 steps (one did not fit int32)."""
        return "q" in (self._imp.typecode, self._exp.typecode if self._exp is not None else "")

    def _put(self, i: int, slot: int, anchor: Anchor, insert: bool) -> None:
        """``anchor``'s registers at row ``i`` (at ``slot``): a row inserted (``insert``) or row
        ``i``'s replaced (its export kept when ``anchor`` has none). The export first: the slots
        (``_times``) are those of the rows before an insert until the import column has it."""
        self._put_exp(i, slot, anchor.exp, insert)
        self._imp, self._imp_base, self._imp_step = _put(
            self._imp, self._imp_base, self._imp_step, i, anchor.imp, insert
        )

    def _put_exp(self, i: int, slot: int, exp: int | None, insert: bool) -> None:
        if not insert and exp is None:
            return
        if self._exp is None:  # quiet
            if exp is None:  # (an insert)
                if 4 * len(self._marks) < len(self._imp) + 64:
                    self._mark(slot, None, unread=True)
                    return
            elif self._exp_base is None or exp == self._exp_base:
                self._exp_base = exp
                if not insert:
                    self._mark(slot, None, unread=False)
                return
            self._exp = self._loud()
        self._exp, self._exp_base, self._exp_step = _put(
            self._exp, self._exp_base, self._exp_step, i, exp, insert
        )

    def _loud(self) -> array[int]:
        """The quiet export column as steps: 0 where read, "not read" where marked (the marks
        lose their ``_UNREAD`` flags)."""
        slots = self._times()
        column = array("B", bytes(len(slots)))
        kept: list[int] = []
        for mark in self._marks:
            if mark % _MARK & _UNREAD:
                i = bisect.bisect_left(slots, mark // _MARK - self._base)
                column[i] = _NONE["B"]
                mark -= _UNREAD
            if mark % _MARK:
                kept.append(mark)
        self._marks = array("i", kept) if kept else ()
        return column

    def _exp_step_at(self, i: int) -> int | None:
        """Row ``i``'s export step (None: not read)."""
        exp = self._exp
        if exp is None:
            return None if self._flags(i) & _UNREAD else 0
        step = exp[i]
        return None if step == _NONE[exp.typecode] else step

    def _times(self) -> range | array[int]:
        """The anchors' slots less ``_base``: ``range(len)`` while they are consecutive from
        ``_base`` (no column kept: ``_slots`` None), else the column."""
        slots = self._slots
        return range(len(self._imp)) if slots is None else slots

    def _slot(self, ts: int) -> int:
        """The slot column's value for anchor time ``ts`` (the column widened when it must)."""
        if not self._imp:
            self._base = ts // INTERVAL_S
        offset = ts // INTERVAL_S - self._base
        if isinstance(self._slots, array):
            self._slots = _fitted(self._slots, offset)
        return offset

    def _slot_column(self, extra: int) -> array[int]:
        """The slots as an array (made when they were consecutive) that holds ``extra``."""
        slots = self._slots
        if slots is not None:
            return slots
        n = len(self._imp)
        column = _fitted(array("h"), min(0, extra))
        column = _fitted(column, max(n - 1, extra))
        column.extend(range(n))
        self._slots = column
        return column

    def _dense_again(self) -> None:
        """No slot column again when they are consecutive (a gap filled, the old ones pruned):
        ``_base`` moves to the first."""
        slots = self._slots
        if slots is not None and slots and slots[-1] - slots[0] == len(slots) - 1:
            self._base += slots[0]
            self._slots = None

    def __len__(self) -> int:
        return len(self._imp)

    @property
    def first(self) -> int | None:
        slots = self._times()
        return (slots[0] + self._base) * INTERVAL_S if slots else None

    @property
    def last(self) -> int | None:
        slots = self._times()
        return (slots[-1] + self._base) * INTERVAL_S if slots else None

    def is_newest(self, ts: int) -> bool:
        """True when ``ts`` is after every anchor known (or none is)."""
        slots = self._times()
        return not slots or ts > (slots[-1] + self._base) * INTERVAL_S

    def _index(self, ts: int) -> int | None:
        slot, off = divmod(ts, INTERVAL_S)
        slots = self._times()
        if off:
            return None
        slot -= self._base
        if slots and slots[-1] == slot:  # the usual question: the newest point
            return len(slots) - 1
        i = bisect.bisect_left(slots, slot)
        return i if i < len(slots) and slots[i] == slot else None

    def _flags(self, i: int) -> int:
        """The mark's flags of the ``i``-th anchor (0: from the curve, export read or not quiet)."""
        marks = self._marks
        if not marks:
            return 0
        key = (self._times()[i] + self._base) * _MARK
        j = bisect.bisect_left(marks, key)
        return marks[j] - key if j < len(marks) and marks[j] - key < _MARK else 0

    def _source(self, i: int) -> int:
        """The source code of the ``i``-th anchor."""
        return self._flags(i) & _SOURCE_BITS

    def _mark(self, slot: int, code: int | None, *, unread: bool | None = None) -> None:
        """Anchor at ``slot`` (less ``_base``) comes from source ``code`` (None: as it was), its
        export is not read (``unread``; None: as it was); set before ``_base`` moves."""
        marks = self._marks
        key = (slot + self._base) * _MARK
        j = bisect.bisect_left(marks, key)
        found = isinstance(marks, array) and j < len(marks) and marks[j] - key < _MARK
        flags = marks[j] - key if found else 0
        if code is not None:
            flags = flags - (flags & _SOURCE_BITS) + code
        if unread is not None:
            flags = flags - (flags & _UNREAD) + (_UNREAD if unread else 0)
        if isinstance(marks, array) and found:
            if flags:
                marks[j] = key + flags
            else:
                del marks[j]
        elif flags:
            self._marks = array("i", (*marks[:j], key + flags, *marks[j:]))  # (no spare room)

    def _anchor(self, i: int) -> Anchor:
        exp, flags = self._exp, self._flags(i)
        exp_register = (
            (None if flags & _UNREAD else self._exp_base)
            if exp is None
            else None
            if exp[i] == _NONE[exp.typecode]
            else (self._exp_base or 0) + self._exp_step * _sum(exp, i + 1)
        )
        return Anchor(
            (self._times()[i] + self._base) * INTERVAL_S,
            (self._imp_base or 0) + self._imp_step * sum(self._imp[: i + 1]),
            exp_register,
            _SOURCES[flags & _SOURCE_BITS],
        )

    def get(self, ts: int) -> Anchor | None:
        i = self._index(ts)
        return None if i is None else self._anchor(i)

    def _insert(self, i: int, anchor: Anchor) -> None:
        slot = self._slot(anchor.ts)
        front = self._slots is None and i == 0 and slot == -1  # one before the first: no column yet
        column = None if front else self._slot_column(slot)  # (of the rows before this one)
        self._put(i, slot, anchor, True)
        self._mark(slot, _SOURCE_CODE[anchor.source])  # (before _base moves)
        if column is None:
            self._base -= 1
        else:
            column.insert(i, slot)
            self._dense_again()

    def add(self, anchor: Anchor) -> bool:
        """Keep ``anchor``; True when it changed what is known (a new time, or a freeze that
        corrects a curve record). A curve record never replaces a freeze."""
        if anchor.ts % INTERVAL_S:
            raise ValueError(f"anchor at {anchor.ts} is not on a 15-min boundary")
        slots, base = self._times(), self._base
        slot = anchor.ts // INTERVAL_S - base
        if not slots or slot > slots[-1]:  # the usual case: the newest point
            previous = (slots[-1] + base) * INTERVAL_S if slots else anchor.ts
            n = len(slots)
            slot = self._slot(anchor.ts)
            column = None if self._slots is None and slot == n else self._slot_column(slot)
            self._put(n, slot, anchor, True)
            if column is not None:
                column.append(slot)
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
        self._put(i, slots[i], anchor, False)
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
        slots, base = self._times(), self._base
        n = len(slots)
        if n < 2:
            return None
        b_ts, a_ts = (slots[-1] + base) * INTERVAL_S, (slots[-2] + base) * INTERVAL_S
        if self.dirty_from != a_ts or b_ts - a_ts != INTERVAL_S:
            return None
        b_step = self._exp_step_at(n - 1)
        if b_step is None or self._exp_step_at(n - 2) is None:
            return None
        b = self._anchor(n - 1)  # (a's registers: b's less one step each)
        b_exp = cast(int, b.exp)  # (read: checked above)
        a_imp, a_exp = b.imp - self._imp[-1] * self._imp_step, b_exp - b_step * self._exp_step
        return Anchor(a_ts, a_imp, a_exp, _SOURCES[self._source(n - 2)]), b

    def at_or_before(self, ts: int) -> int | None:
        slots = self._times()
        i = bisect.bisect_right(slots, ts // INTERVAL_S - self._base)
        return (slots[i - 1] + self._base) * INTERVAL_S if i else None

    def at_or_after(self, ts: int) -> int | None:
        slots = self._times()
        i = bisect.bisect_left(slots, -(-ts // INTERVAL_S) - self._base)
        return (slots[i] + self._base) * INTERVAL_S if i < len(slots) else None

    def intervals(self, start: int, end: int) -> list[Interval]:
        """Every interval starting in [start, end) that two anchors bracket, oldest first."""
        slots, imp, base = self._times(), self._imp, self._base
        if len(slots) < 2:
            return []
        i = bisect.bisect_left(slots, -(-start // INTERVAL_S) - base)
        first = (slots[i] + base) * INTERVAL_S if i < len(slots) else None
        single = i + 1 < len(slots) and first == start and slots[i + 1] - slots[i] == 1
        if single and start < end and (i + 2 == len(slots) or start + INTERVAL_S >= end):  # only that one
            b_exp = self._exp_step_at(i + 1)  # the common case: one interval
            if b_exp is not None and self._exp_step_at(i) is not None:  # (then b's step is from a's)
                b_imp = imp[i + 1]
                if b_imp < 0:
                    self.anomalies += 1
                return [Interval(start, max(b_imp, 0) * self._imp_step, max(b_exp, 0) * self._exp_step)]
        lo = max(0, bisect.bisect_right(slots, start // INTERVAL_S - base) - 1)
        hi = min(len(slots) - 1, bisect.bisect_left(slots, -(-end // INTERVAL_S) - base))
        imports: dict[int, tuple[int, bool]] = {}
        for i in range(lo, hi):
            a_ts = (slots[i] + base) * INTERVAL_S
            n = slots[i + 1] - slots[i]
            energy = imp[i + 1] * self._imp_step
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
        slots, exp_of, base = self._times(), self._exp, self._base
        if exp_of is None:  # quiet: every export read the same register, nothing exported
            return {}
        none = _NONE[exp_of.typecode]
        i = bisect.bisect_right(slots, start // INTERVAL_S - base) - 1
        while i > 0 and exp_of[i] == none:
            i -= 1
        out: dict[int, int] = {}
        previous: int | None = None  # the time of the export read before
        for j in range(max(i, 0), len(slots)):
            ts, step = (slots[j] + base) * INTERVAL_S, exp_of[j]
            if step == none:
                continue
            if previous is not None:
                n = (ts - previous) // INTERVAL_S
                for k, share in enumerate(_split(max(step * self._exp_step, 0), n)):
                    s = previous + k * INTERVAL_S
                    if start <= s < end:
                        out[s] = share
            previous = ts
            if ts >= end:
                break
        return out

    def prune(self, before: int) -> None:
        """Forget anchors before ``before``, keeping the last one at or before it (the next gap's start)."""
        keep = self.at_or_before(before)
        if keep is None:
            return
        slots = self._times()  # (of the rows before the cut)
        cut = bisect.bisect_left(slots, keep // INTERVAL_S - self._base)
        self._imp, self._imp_base = self._cut(self._imp, self._imp_base, self._imp_step, cut)
        if self._exp is not None:
            self._exp, self._exp_base = self._cut(self._exp, self._exp_base, self._exp_step, cut)
        marks = self._marks
        if isinstance(marks, array):
            del marks[: bisect.bisect_left(marks, (slots[cut] + self._base) * _MARK)]
        if self._slots is None:
            self._base += cut
        else:
            del self._slots[:cut]
            self._dense_again()

    @staticmethod
    def _cut(column: array[int], base: int | None, step: int, cut: int) -> tuple[array[int], int | None]:
        """``column`` without its first ``cut`` rows, as narrow as it can be again, and its base
        after them: the first register kept (its step 0 now: the one before is gone; the
        registers kept read the same)."""
        if base is not None:
            none, k, n = _NONE[column.typecode], cut, len(column)
            while k < n and column[k] == none:
                k += 1
            if k < n:
                base += step * _sum(column, k + 1)
                column[k] = 0
            else:
                base += step * _sum(column, cut)
        del column[:cut]
        return (column if column.typecode == "B" else _mapped(column, 1, True)), base

    def rows(self) -> list[Anchor]:
        out: list[Anchor] = []
        imp, exp = self._imp_base or 0, self._exp_base or 0
        for i, (slot, imp_step) in enumerate(zip(self._times(), self._imp, strict=True)):
            imp += imp_step * self._imp_step
            exp_step = self._exp_step_at(i)
            if exp_step is not None:
                exp += exp_step * self._exp_step
            source = _SOURCES[self._source(i)]
            out.append(
                Anchor((slot + self._base) * INTERVAL_S, imp, None if exp_step is None else exp, source)
            )
        return out


__all__ = ["Anchor", "MeterAnchors", "Source"]
