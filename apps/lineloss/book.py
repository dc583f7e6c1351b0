"""The points line loss keeps: each meter's curve points and daily freezes, per local day.

Layer: apps (lineloss). Pure (no bus, no store): the service feeds it the rows acquisition
publishes (``Reading.to_json`` dicts) and asks for a day's ``DayReadings`` in a layout's order.
Days are local (the station's time zone): point k of day D is at local midnight + k x 15 min,
k = 0..96, so the point at midnight ends one day and starts the next. A daily freeze at a
midnight likewise ends one day and starts the next.

Which rows count:

* curve (``meter/<id>/curve``): energy registers, phase voltages, currents, active power and
  power factor at 15-min points (also caught-up ones, 补抄);
* freeze (``meter/<id>/freeze``): ``daily.energy.active.import.total`` / ``...export.total``;
* the metrology unit (device ``transformer``, realtime rows): its energy registers at 15-min
  points, the 总表's independent reference.

Rows off the 15-min grid, of unknown quantities or malformed are skipped and counted. Must not
compute anything but the power a point's register counts (``MeterDay.power``).

Hot and cold days: a day's points were ~9 kB per meter as float64 (10 curve items x 97), 9 days
of 2,400 meters ~190 MB; a hot day's ``MeterDay`` holds them as narrow integers (~1.1 kB a
single-phase meter-day, less while the day is young). The service gives a past day's points
away (``chill``: the day packed, for the app's store) and the book keeps of it in RAM only the
rows that come for it later, in order (``ColdDay``, ``Late``); what the day's energy needs --
each meter's freezes and its curve registers at both midnights (``Ends``) -- goes to the store
with the points and is held again (``warm``) only while a computation reads the day, until
``cool``. ``thaw`` takes the packed day back and replays the late rows, so a thawed day is
exactly the day the book would have kept; ``warm`` likewise lays them over the stored ends.
``readings`` of a cold (warm) day fills the freezes and the curve's midnights only
(what ``day_energies`` reads); the rest is NaN.
"""

from __future__ import annotations

import base64
import math
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .energy import INTERVAL_S, INTERVALS_PER_DAY, DayReadings, FArray

POINTS = INTERVALS_PER_DAY + 1
CURVE_QUANTITIES = {
    "energy.active.import.total": "forward",
    "energy.active.export.total": "reverse",
    "voltage.a": "va",
    "voltage.b": "vb",
    "voltage.c": "vc",
    "current.a": "ia",
    "current.b": "ib",
    "current.c": "ic",
    "power.active.total": "p",
    "power.active.a": "pa",  # a polyphase meter's phases (a single-phase meter sends only the total)
    "power.active.b": "pb",
    "power.active.c": "pc",
    "power_factor.total": "pf",
}
FREEZE_QUANTITIES = {
    "daily.energy.active.import.total": "forward",
    "daily.energy.active.export.total": "reverse",
}
METROLOGY = "transformer"


#: a curve item's points are held as steps of 10**-e (e = 0..4, its own) from a base (int64)
#: in int8 or int16 while every value given is exactly such a decimal within 127 / 32767 steps
#: of the base (volts at 0.1 V, a power factor, an export register at 0, amps at 0.001 A up to
#: 32.767 A), or in int8 as steps from the point read before while each is within 127 of it (a
#: register's day at 0.01 kWh: 15 minutes under ~5 kW); else as int32 ten-thousandths while
#: every value is exactly one; else as float64
_SCALE = 10_000.0
_LIMIT = 2**31 - 1
_UNREAD = -(2**31)  # an int32 item's "not read"
_EXPONENTS = (0, 1, 2, 3, 4)
_POWERS = tuple(10.0**e for e in _EXPONENTS)
_EXACT = 2**53  # integers a float64 holds exactly

#: the kinds of a meter-day's rows: curve points as int8 / int16 steps from a base, int8 steps
#: from the point before, int32 ten-thousandths, float64; a freeze item's (start, end) registers
#: (float64). Kinds up to ``_DELTAS8`` are step rows: a head, then their points.
_STEPS8, _STEPS16, _DELTAS8, _TEN_THOUSANDTHS, _FLOATS, _FREEZE = range(6)
_DTYPES = (
    np.dtype("<i1"),
    np.dtype("<i2"),
    np.dtype("<i1"),
    np.dtype("<i4"),
    np.dtype("<f8"),
    np.dtype("<f8"),
)
_STEP_LIMITS = (2**7 - 1, 2**15 - 1, 2**7 - 1)
_NOT_READ: tuple[float, ...] = (-(2**7), -(2**15), -(2**7), _UNREAD, math.nan, math.nan)
#: bytes of a step row's head (before its points): its exponent (1), its base (7, signed): of
#: ``_DELTAS8`` the last point read (the first point read holds 0, each later one the steps
#: from the one read before it)
_BASE = 8
_GROW = 8  # a meter-day's curve rows hold its points up to the next multiple of 8 past the last given


def _decoded(a: np.ndarray) -> FArray:
    """Int32 ten-thousandths as float64 (NaN where not read): the array itself when float64."""
    if a.dtype == np.int32:
        out: FArray = a / _SCALE  # each the correctly rounded q / 10,000: the value that was given
        out[a == _UNREAD] = np.nan
        return out
    return a


def _exponent(value: float, at_least: int = 0) -> tuple[int, int] | None:
    """(e, q): the smallest decimal exponent e >= ``at_least`` at which ``value`` is exactly
    q / 10**e with |q| < 2**53 (not -0.0), None when there is none."""
    for e in _EXPONENTS[at_least:]:
        scaled = value * _POWERS[e]
        if not -_EXACT < scaled < _EXACT:  # (NaN and inf too)
            return None
        q = round(scaled)
        if q / _POWERS[e] == value and (q or math.copysign(1.0, value) > 0):
            return e, q
    return None


#: row layouts (and (item, kind) pairs) a ``Layouts`` keeps: a few dozen in practice
LAYOUTS_MAX = 4096

Rows = tuple[tuple[str, int], ...]  # a meter-day's rows: (item, kind), in the order first given


class Layouts:
    """One tuple of a meter-day's rows (items and kinds) for every meter-day of a book that has
    those, in that order, made of one (item, kind) pair each (``shared``): a few dozen in
    practice, at most ``LAYOUTS_MAX`` of each kept (past that a new one is used unshared).

    The book owns it (``Book.layouts``) and passes it to the ``MeterDay`` methods that change
    rows (a meter-day holds no reference to it: 8 B each), so two books in one process share
    nothing and the table goes with its book."""

    __slots__ = ("_entries", "_tuples")

    def __init__(self) -> None:
        self._tuples: dict[Rows, Rows] = {}
        self._entries: dict[tuple[str, int], tuple[str, int]] = {}

    def shared(self, rows: Iterable[tuple[str, int]]) -> Rows:
        """``rows`` as the one tuple (of the one pairs) every meter-day with them holds."""
        entries = self._entries
        if len(entries) < LAYOUTS_MAX:
            layout = tuple(entries.setdefault(entry, entry) for entry in rows)
        else:
            layout = tuple(entries.get(entry, entry) for entry in rows)
        if len(self._tuples) >= LAYOUTS_MAX:
            return self._tuples.get(layout, layout)
        return self._tuples.setdefault(layout, layout)


def _held(values: FArray) -> np.ndarray:
    """``values`` as held: int32 ten-thousandths when every point read is exactly one that fits
    int32 (not -0.0), else a float64 copy."""
    read = ~np.isnan(values)
    with np.errstate(over="ignore", invalid="ignore"):  # out of range: not exact, below
        q = np.rint(values[read] * _SCALE)
    exact = bool(np.isfinite(values[read]).all()) and bool((np.abs(q) <= _LIMIT).all())
    exact = exact and bool((q / _SCALE == values[read]).all())
    exact = exact and not bool(np.signbit(values[read][q == 0]).any())
    if not exact:
        return np.array(values, dtype=np.float64)
    packed = np.full(len(values), _UNREAD, dtype=np.int32)
    packed[read] = q
    return packed


def _steps(values: FArray, kind: int) -> tuple[int, int, np.ndarray] | None:
    """(e, base, ``values`` as steps of 10**-e from the base midway, of ``kind``; of
    ``_DELTAS8`` from the point read before, the base the last point read) at the smallest
    exponent that holds every point read exactly (not -0.0), None when none does."""
    read = ~np.isnan(values)
    given = values[read]
    if not bool(np.isfinite(given).all()):
        return None
    for e, power in zip(_EXPONENTS, _POWERS, strict=True):
        whole = np.rint(given * power)
        if not bool((np.abs(whole) < _EXACT).all()):
            return None  # a finer exponent only makes it larger
        if bool((whole / power == given).all()) and not bool(np.signbit(given[whole == 0]).any()):
            if kind == _DELTAS8:
                base = int(whole[-1]) if whole.size else 0
                q = np.diff(whole, prepend=whole[:1])
            else:
                base = int((whole.min() + whole.max()) // 2) if whole.size else 0
                q = whole - base
            if not bool((np.abs(q) <= _STEP_LIMITS[kind]).all()):
                return None  # nor the spread
            out = np.full(len(values), _NOT_READ[kind], dtype=_DTYPES[kind])
            out[read] = q
            return e, base, out
    return None


def _head_bytes(e: int, base: int) -> bytes:
    """A step row's head: its exponent (a byte), its base (|base| < 2**53: 7 bytes, signed)."""
    return bytes((e,)) + base.to_bytes(_BASE - 1, "little", signed=True)


class MeterDay:
    """One meter's points of one local day (NaN where not read).

    Every row -- a curve item's points, a freeze item's (start, end) registers -- lives in one
    ``bytearray`` a meter-day, described by a tuple of (item, kind) shared by every meter-day of a
    book with the same rows (``Layouts.shared``: the methods that change rows take the book's). A
    curve item is held as int8 or int16 steps of 10**-e from a base of its own while every value
    given to it is exactly such a decimal within 127 / 32767 steps of it (volts, a power factor
    and an export register at 0 fit int8; amps, active power int16), or as int8 steps from the
    point read before while each is within 127 of it (a register's day at 0.01 kWh: ~97 B a
    meter-day less than int16 from a base; a point caught up or taken back rewrites the steps of
    the one read after it); else as int32 ten-thousandths while every value is exactly one; else
    as float64, each from the first value that does not fit the narrower.
    Either way it reads back as the float64 values given, bit for bit (-0.0 included; a NaN of
    any sign is "not read", NaN). Curve rows hold the points up to the next multiple of 8 past
    the last one given (the rest are not read): a day fills them as it goes.
    (Before: one int16 array, one int32 array, a dict of float64 arrays and one array of freezes
    a meter-day, ~0.5 kB more a meter.) Must not hold a view of ``_buf`` across a change of rows:
    a change builds a new buffer (a view handed out is for writing at once)."""

    __slots__ = ("_buf", "_rows", "_width")

    def __init__(self) -> None:
        self._rows: Rows = ()  # (item, kind), in the order first given
        self._buf = bytearray()
        self._width = 0  # the points a curve row holds (0.._width - 1); the later ones are not read

    def _size(self, kind: int) -> int:
        if kind == _FREEZE:
            return 2 * _DTYPES[kind].itemsize
        return self._width * _DTYPES[kind].itemsize + (_BASE if kind <= _DELTAS8 else 0)

    def _find(self, item: str, *, freeze: bool = False) -> tuple[int, int, int, int] | None:
        """(row, kind, exponent, offset in ``_buf``) of curve (or freeze) item ``item``."""
        offset = 0
        for j, (name, kind) in enumerate(self._rows):
            if name == item and (kind == _FREEZE) == freeze:
                return j, kind, self._head(offset)[0] if kind <= _DELTAS8 else 0, offset
            offset += self._size(kind)
        return None

    def _view(self, kind: int, offset: int) -> np.ndarray:
        """The points (or freeze registers) of the row at ``offset``: a view to write in."""
        count = 2 if kind == _FREEZE else self._width
        return np.frombuffer(self._buf, _DTYPES[kind], count, offset + (_BASE if kind <= _DELTAS8 else 0))

    def _head(self, offset: int) -> tuple[int, int]:
        """(exponent, base) of the step row at ``offset``."""
        head = self._buf[offset : offset + _BASE]
        return head[0], int.from_bytes(head[1:], "little", signed=True)

    def _set_head(self, offset: int, e: int, base: int) -> None:
        self._buf[offset : offset + _BASE] = _head_bytes(e, base)

    def _decode(self, kind: int, e: int, offset: int) -> FArray:
        out = np.full(POINTS, np.nan)
        data = self._view(kind, offset)
        if kind == _DELTAS8:
            read = data != _NOT_READ[kind]
            out[: self._width][read] = self._delta_wholes(data, read, offset) / _POWERS[e]
        elif kind <= _STEPS16:  # (q + base) / 10**e, correctly rounded: the value given
            values = (data.astype(np.int64) + self._head(offset)[1]) / _POWERS[e]
            values[data == _NOT_READ[kind]] = np.nan
            out[: self._width] = values
        else:
            out[: self._width] = _decoded(data)
        return out

    def _parts(self) -> list[tuple[tuple[str, int, int], int, np.ndarray]]:
        """Every row as (its entry, its base, a copy of its points or registers)."""
        out = []
        offset = 0
        for item, kind in self._rows:
            e, base = self._head(offset) if kind <= _DELTAS8 else (0, 0)
            out.append(((item, kind, e), base, self._view(kind, offset).copy()))
            offset += self._size(kind)
        return out

    def _build(
        self, parts: list[tuple[tuple[str, int, int], int, np.ndarray]], width: int, layouts: Layouts
    ) -> None:
        """A new buffer of ``parts`` (curve rows widened to ``width`` points, not read)."""
        chunks = []
        for (_, kind, e), base, data in parts:
            if kind != _FREEZE and len(data) < width:
                data = np.concatenate(
                    [data, np.full(width - len(data), _NOT_READ[kind], dtype=_DTYPES[kind])]
                )
            if kind <= _DELTAS8:
                chunks.append(_head_bytes(e, base))
            chunks.append(data.astype(_DTYPES[kind], copy=False).tobytes())
        self._rows = layouts.shared((item, kind) for (item, kind, _), _, _ in parts)
        self._width = width
        self._buf = bytearray(b"".join(chunks))

    @property
    def values(self) -> dict[str, FArray]:
        """Curve item -> its 97 points (float64, a copy: write with ``put``)."""
        out: dict[str, FArray] = {}
        offset = 0
        for item, kind in self._rows:
            if kind != _FREEZE:
                out[item] = self._decode(kind, self._head(offset)[0] if kind <= _DELTAS8 else 0, offset)
            offset += self._size(kind)
        return out

    def curve_of(self, item: str) -> FArray | None:
        """The 97 points of curve item ``item`` (float64), None when it has none."""
        found = self._find(item)
        return None if found is None else self._decode(*found[1:])

    def _delta_wholes(self, data: np.ndarray, read: np.ndarray, offset: int) -> np.ndarray:
        """The points read of the ``_DELTAS8`` row at ``offset`` as whole steps (int64): the last
        is the base, each one before it the next one less its steps."""
        summed = np.cumsum(data[read], dtype=np.int64)
        if not summed.size:
            return summed
        wholes: np.ndarray = summed + (self._head(offset)[1] - int(summed[-1]))
        return wholes

    def _put_delta(self, e: int, offset: int, k: int, value: float) -> bool:
        """Point ``k`` of the ``_DELTAS8`` row at ``offset`` (the steps of the point read after it
        too), at a finer exponent when it must; False (nothing written) when a point read would
        be more than 127 steps from the one read before it."""
        data = self._view(_DELTAS8, offset)
        unread = _NOT_READ[_DELTAS8]
        if value == value and data[k] == unread and bool((data[k + 1 :] == unread).all()):
            fit = _exponent(value, e)  # after the last point read, as fine as those: its steps only
            if fit is not None and fit[0] == e:
                step = fit[1] - self._head(offset)[1] if bool((data[:k] != unread).any()) else 0
                if -_STEP_LIMITS[_DELTAS8] <= step <= _STEP_LIMITS[_DELTAS8]:
                    data[k] = step
                    self._set_head(offset, e, fit[1])
                    return True
        read = data != unread
        wholes = np.zeros(self._width, dtype=np.int64)
        wholes[read] = self._delta_wholes(data, read, offset)
        finer = e
        if value != value:  # NaN: not read
            read[k] = False
        else:
            fit = _exponent(value, e)
            if fit is None:
                return False
            finer, whole = fit
            if finer > e:  # every point read again at the finer exponent, if they all fit
                if not bool((np.abs(wholes) < _EXACT // 10 ** (finer - e)).all()):
                    return False
                wholes *= 10 ** (finer - e)
            wholes[k] = whole
            read[k] = True
        given = wholes[read]
        steps = np.diff(given, prepend=given[:1])
        if not bool((np.abs(steps) <= _STEP_LIMITS[_DELTAS8]).all()):
            return False
        data[:] = _NOT_READ[_DELTAS8]
        data[read] = steps
        self._set_head(offset, finer, int(given[-1]) if given.size else 0)
        return True

    def _put_steps(self, kind: int, e: int, offset: int, k: int, value: float) -> bool:
        """Point ``k`` of the step row at ``offset``, rescaled to a finer exponent when it must; False
        (nothing written) when ``value`` is not within the kind's steps of the base at any."""
        limit, unread = _STEP_LIMITS[kind], _NOT_READ[kind]
        data = self._view(kind, offset)
        if value != value:  # NaN: not read
            data[k] = unread
            return True
        fit = _exponent(value, e)
        if fit is None:
            return False
        finer, whole = fit
        read = data != unread
        if not read.any():  # the first value read: the base
            self._set_head(offset, finer, whole)
            data[k] = 0
        else:
            base = self._head(offset)[1] * 10 ** (finer - e)
            q = whole - base
            if not -limit <= q <= limit:
                return False
            if finer > e:  # every point read again at the finer exponent, if they all fit
                scaled = data[read].astype(np.int64) * 10 ** (finer - e)
                if not bool((np.abs(scaled) <= limit).all()) or not -_EXACT < base < _EXACT:
                    return False
                data[read] = scaled
                self._set_head(offset, finer, base)
            data[k] = q
        return True

    def put(self, item: str, k: int, value: float, layouts: Layouts) -> None:
        """Point ``k`` of curve item ``item`` (``layouts``: the book's)."""
        found = self._find(item)
        if found is not None and k >= self._width:  # the rows hold more points from now on
            self._build(self._parts(), min(POINTS, (k // _GROW + 1) * _GROW), layouts)
            found = self._find(item)
        if found is None:
            values = np.full(POINTS, np.nan)
            values[k] = value
            self.set_curve(item, values, layouts)
            return
        _, kind, e, offset = found
        if kind == _FLOATS:
            self._view(kind, offset)[k] = value
            return
        if kind == _TEN_THOUSANDTHS:
            if value != value:  # NaN: not read
                self._view(kind, offset)[k] = _UNREAD
                return
            q = round(value * _SCALE) if abs(value) <= _LIMIT / _SCALE else _LIMIT + 1  # inf too
            if -_LIMIT <= q <= _LIMIT and q / _SCALE == value and (q or math.copysign(1.0, value) > 0):
                self._view(kind, offset)[k] = q
                return
        elif kind == _DELTAS8:
            if self._put_delta(e, offset, k, value):
                return
        elif self._put_steps(kind, e, offset, k, value):
            return
        values = self._decode(kind, e, offset)  # to a wider kind
        values[k] = value
        self.set_curve(item, values, layouts)

    def set_curve(self, item: str, values: FArray, layouts: Layouts) -> None:
        """All 97 points of curve item ``item`` (held as narrow as they allow)."""
        read = np.flatnonzero(~np.isnan(values))
        need = int(read[-1]) + 1 if read.size else 0
        width = self._width if need <= self._width else min(POINTS, -(-need // _GROW) * _GROW)
        for kind in (_STEPS8, _DELTAS8, _STEPS16):
            fit = _steps(values[:width], kind)
            if fit is not None:
                e, base, data = fit
                break
        else:
            data = _held(values[:width])
            kind = _TEN_THOUSANDTHS if data.dtype == np.int32 else _FLOATS
            e = base = 0
        parts = self._parts()
        fresh = ((item, kind, e), base, data)
        j = next(
            (j for j, (entry, _, _) in enumerate(parts) if entry[0] == item and entry[1] != _FREEZE), None
        )
        if j is None:
            parts.append(fresh)
        else:
            parts[j] = fresh
        self._build(parts, width, layouts)

    @property
    def freeze(self) -> dict[str, FArray]:
        """Freeze item -> its (start, end) registers, NaN where not read (views: write with
        ``frozen`` / ``set_freeze``)."""
        out: dict[str, FArray] = {}
        offset = 0
        for item, kind in self._rows:
            if kind == _FREEZE:
                out[item] = self._view(kind, offset)
            offset += self._size(kind)
        return out

    def frozen(self, item: str, layouts: Layouts) -> FArray:
        """The (start, end) registers of freeze item ``item`` (a view to write in at once), added
        (not read) when it has none."""
        found = self._find(item, freeze=True)
        if found is None:
            self._build([*self._parts(), ((item, _FREEZE, 0), 0, np.full(2, np.nan))], self._width, layouts)
            found = self._find(item, freeze=True)
            assert found is not None
        view: FArray = self._view(_FREEZE, found[3])
        return view

    def set_freeze(self, item: str, values: FArray, layouts: Layouts) -> None:
        self.frozen(item, layouts)[:] = values

    def power(self, values: Mapping[str, FArray] | None = None) -> FArray:
        """The power the meter's register counts, from its front end, kW, signed like its active
        power: the quantity a stopped or slow register shows against. ``values``: ``self.values``
        if known.

        * A single-phase meter: V x I x |PF| (its active power by definition, from the
          quantities the register does not touch); the active power itself where voltage or
          current is missing.
        * A polyphase meter (a branch unit, a box terminal, a three-phase customer): its total
          active power where read. Its register counts the phases' algebraic sum, and the phases'
          V x I x |PF_total| add up to that only when every phase carries the same power factor
          in the same direction: with PV exporting on one phase against load on the others the
          phases' magnitudes add while their flows cancel in the total: V x I x |PF_total| came out
          up to 40 % above a branch unit's register over a day (false slow registers).
          Where the total is missing: its phases' signed active powers summed (the same sum, read
          per phase), and only where those are missing too the phases' V x I x |PF_total| (which
          overstates it again on such days).
        """
        v = self.values if values is None else values
        total = np.zeros(POINTS)
        seen = np.zeros(POINTS, dtype=bool)
        pf = np.abs(v["pf"]) if "pf" in v else None
        for ph in "abc":
            volts, amps = v.get("v" + ph), v.get("i" + ph)
            if volts is None or amps is None or pf is None:
                continue
            part = volts * np.abs(amps) * pf / 1000.0
            ok = np.isfinite(part)
            total[ok] += part[ok]
            seen |= ok
        polyphase = "ib" in v or "ic" in v
        p = (
            _signed_total(v.get("p"), [v[k] for k in ("pa", "pb", "pc") if k in v])
            if polyphase
            else v.get("p")
        )
        out = np.where(seen, total, np.nan)
        if p is not None:
            read = np.isfinite(p)
            out = np.where(seen, np.copysign(out, np.where(read, p, 1.0)), p)
            if polyphase:  # its total active power where read
                out = np.where(read, p, out)
        return out


def _signed_total(total: FArray | None, phases: list[FArray]) -> FArray | None:
    """A polyphase meter's total active power: as read, else the sum of its phases' signed active
    powers at the points where each of them is read."""
    if not phases:
        return total
    stack = np.array(phases)
    summed = np.where(np.isfinite(stack).all(axis=0), stack.sum(axis=0), np.nan)
    return summed if total is None else np.where(np.isfinite(total), total, summed)


#: meters per packed part of a day (~1 MB of JSON at most: under every message and frame limit)
PART_METERS = 128
_ENDS = ("freeze.forward", "freeze.reverse", "curve.forward", "curve.reverse")  # 2 columns each


#: a late row's (part, item), by its code (``Late``)
_LATE_ITEMS = (
    *(("curve", item) for item in dict.fromkeys(CURVE_QUANTITIES.values())),
    *(("freeze", item) for item in dict.fromkeys(FREEZE_QUANTITIES.values())),
)
_LATE_CODES = {key: c for c, key in enumerate(_LATE_ITEMS)}
_K_SPAN = 128  # a late row's code: (part, item)'s index x 128 + its point


class Late:
    """The rows that came for a cold day since it was given away, in order, as columns: the
    device (the book's one string per meter), (part, item, point) as one uint16 and the value
    (float64): 18 bytes a row (a tuple of five a row was ~110 B; ~1.8 rows a meter come after
    midnight for the day before it: its last curve point and closing freezes)."""

    __slots__ = ("_codes", "_devices", "_values")

    def __init__(self) -> None:
        self._devices: list[str] = []
        self._codes = array("H")
        self._values = array("d")

    def append(self, device: str, part: str, item: str, k: int, value: float) -> None:
        assert 0 <= k < _K_SPAN
        self._codes.append(_LATE_CODES[part, item] * _K_SPAN + k)
        self._devices.append(device)
        self._values.append(value)

    def __len__(self) -> int:
        return len(self._devices)

    def __iter__(self) -> Iterator[tuple[str, str, str, int, float]]:
        """(device, part, item, k, value) of each row, in the order they came."""
        for device, code, value in zip(self._devices, self._codes, self._values, strict=True):
            part, item = _LATE_ITEMS[code // _K_SPAN]
            yield device, part, item, code % _K_SPAN, value


class Ends:
    """A past day's energies, what ``day_energies`` reads of it: per meter its freezes (start,
    end) and its curve registers at both midnights, forward and reverse (``ends``: one row of 8
    a meter, columns in ``_ENDS`` order, float64, NaN where not read; ``rows``: meter -> its row,
    in the order the day had its meters). Held only while a computation reads the day (see
    ``ColdDay``); ``pack_ends`` / ``unpack_ends`` are its copy in the store."""

    __slots__ = ("ends", "rows")

    def __init__(self, rows: dict[str, int], ends: FArray) -> None:
        self.rows = rows
        self.ends = ends

    def put(self, device: str, part: str, item: str, k: int, value: float) -> None:
        """A row that came for the day: kept when it is one of the ends (a new meter gets a row)."""
        if item not in ("forward", "reverse") or (part == "curve" and k not in (0, INTERVALS_PER_DAY)):
            return
        row = self.rows.get(device)
        if row is None:
            row = self.rows[device] = len(self.rows)
            self.ends = np.vstack([self.ends, np.full((1, 8), np.nan)])
        self.ends[row, 2 * _ENDS.index(f"{part}.{item}") + (0 if k == 0 else 1)] = value

    def end_values(self, row: int) -> FArray:
        """Row ``row`` of ``ends`` (NaN where not read)."""
        values: FArray = self.ends[row]
        return values


def pack_ends(ends: Ends) -> dict[str, Any]:
    """A day's ``Ends`` as JSON: its meters in row order and the rows (float64, little-endian,
    zlib, base64): the exact values, NaN and all."""
    raw = np.ascontiguousarray(ends.ends, dtype="<f8").tobytes()
    return {"meters": list(ends.rows), "ends": base64.b64encode(zlib.compress(raw, 1)).decode("ascii")}


def unpack_ends(packed: Mapping[str, Any]) -> Ends:
    """``pack_ends``'s copy back (a writable array of its own)."""
    meters = [sys.intern(str(m)) for m in packed["meters"]]
    raw = bytearray(zlib.decompress(base64.b64decode(packed["ends"])))
    values = np.frombuffer(raw, dtype="<f8").reshape(len(meters), 8)
    return Ends({meter: j for j, meter in enumerate(meters)}, values)


class ColdDay:
    """What the book keeps in RAM of a day given away: the rows that came for it since, in order
    (``late``, replayed by ``thaw``). Its ``Ends`` are in the store (the service saves
    ``Book.ends_of`` with the day's points) and are held (``ends``) only from ``chill`` or
    ``Book.warm`` to ``Book.cool``: while a computation reads the day. Before, every cold day
    kept its ends in RAM (~32 B a meter-day as int32, and ~90 B a meter for a dict of rows: 8
    cold days of 2,400 meters ~0.8 MB)."""

    __slots__ = ("ends", "late")

    def __init__(self, ends: Ends | None = None) -> None:
        self.late = Late()
        self.ends = ends

    def put(self, device: str, part: str, item: str, k: int, value: float) -> None:
        self.late.append(device, part, item, k, value)
        if self.ends is not None:
            self.ends.put(device, part, item, k, value)


@dataclass
class Book:
    """Points per local date and meter; ``version`` of a date grows with every change to it.

    ``days`` holds the hot days (every point), ``cold`` the days given away (see the module
    docstring); ``stored``: days with a packed copy in the store, ``changed``: the meters of such
    a day hot again changed since (only their parts are packed again: a flash box is not
    rewritten a whole day for a few late rows; a day never stored is packed whole). ``layouts``:
    the row layouts its meter-days share (its own: two books in one process share none)."""

    tz: ZoneInfo
    keep_days: int = 8
    days: dict[date, dict[str, MeterDay]] = field(default_factory=dict)
    cold: dict[date, ColdDay] = field(default_factory=dict)
    version: dict[date, int] = field(default_factory=dict)
    stored: set[date] = field(default_factory=set)
    changed: dict[date, set[str]] = field(default_factory=dict)
    dropped: list[date] = field(default_factory=list)  # days pruned (the service forgets them)
    skipped: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {"curve": 0, "freeze": 0, "metrology": 0})
    layouts: Layouts = field(default_factory=Layouts, repr=False, compare=False)

    def midnight(self, d: date) -> float:
        return datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()

    def locate(self, ts: float) -> tuple[date, int] | None:
        """(local date, point index) of a 15-min point, None off the grid."""
        local = datetime.fromtimestamp(ts, self.tz)
        d = local.date()
        k = (ts - self.midnight(d)) / INTERVAL_S
        if abs(k - round(k)) > 1e-6 or not 0 <= round(k) < INTERVALS_PER_DAY:
            return None
        return d, round(k)

    def dates(self) -> list[date]:
        """Every day held, hot or cold, oldest first."""
        return sorted([*self.days, *self.cold])

    def has(self, d: date) -> bool:
        return d in self.days or d in self.cold

    def _put(self, d: date, device: str, part: str, item: str, k: int, value: float) -> None:
        cold = self.cold.get(d)
        if cold is not None:
            cold.put(device, part, item, k, value)
            return
        md = self.days.setdefault(d, {}).get(device)
        if md is None:
            md = self.days[d][device] = MeterDay()
        if part == "curve":
            md.put(item, k, value, self.layouts)
        else:
            md.frozen(item, self.layouts)[k] = value
        if d in self.stored:  # (a day never stored is packed whole: its meters need no list)
            changed = self.changed.get(d)
            if changed is None:
                changed = self.changed[d] = set()
            changed.add(device)

    def _touch(self, d: date) -> None:
        self.version[d] = self.version.get(d, 0) + 1

    def add(self, kind: str, device: str, rows: Iterable[Any]) -> set[date]:
        """Take a batch of reading rows of ``kind`` (curve | freeze | realtime); the dates changed."""
        device = sys.intern(device)  # one string a meter, whichever message named it
        changed: set[date] = set()
        for row in rows:
            parsed = _parse(row)
            if parsed is None:
                self.skipped += 1
                continue
            quantity, value, ts = parsed
            if kind == "freeze":
                item = FREEZE_QUANTITIES.get(quantity)
            elif kind == "curve" or (kind == "realtime" and device == METROLOGY):
                item = CURVE_QUANTITIES.get(quantity)
            else:
                item = None
            place = self.locate(ts) if item is not None else None
            if item is None or place is None or (kind == "freeze" and place[1] != 0):
                self.skipped += 1
                continue
            d, k = place
            before = d - timedelta(days=1)
            if kind == "freeze":
                self._put(d, device, "freeze", item, 0, value)
                self._put(before, device, "freeze", item, 1, value)
                changed |= {d, before}
            else:
                self._put(d, device, "curve", item, k, value)
                changed.add(d)
                if k == 0:  # midnight: also the last point of the day before
                    self._put(before, device, "curve", item, INTERVALS_PER_DAY, value)
                    changed.add(before)
            self.counters["metrology" if device == METROLOGY and kind != "freeze" else kind] += 1
        for d in changed:
            self._touch(d)
        self._prune()
        return changed

    def _prune(self) -> None:
        held = self.dates()
        for d in held[: max(0, len(held) - self.keep_days)]:
            self.days.pop(d, None)
            self.cold.pop(d, None)
            self.version.pop(d, None)
            self.stored.discard(d)
            self.changed.pop(d, None)
            self.dropped.append(d)

    def chill(self, d: date) -> list[dict[str, Any] | None] | None:
        """Give hot day ``d`` away: keep its ``ColdDay``; its packed points for the store, in
        parts of ``PART_METERS`` meters (a part None: unchanged since stored), or None when the
        stored copy stands whole (its ends too: they come from the points). A part holds the
        same meters every time (meters only join a day, at its end). The day's ``Ends`` are
        held until ``cool``: save ``ends_of(d)`` with changed parts."""
        points = self.days.pop(d)
        rows = {meter: j for j, meter in enumerate(points)}
        ends = np.full((len(rows), 8), np.nan)
        for meter, j in rows.items():
            md = points[meter]
            for c, (part, item) in enumerate(e.split(".") for e in _ENDS):
                a = md.freeze.get(item) if part == "freeze" else md.curve_of(item)
                if a is not None:
                    ends[j, 2 * c], ends[j, 2 * c + 1] = a[0], a[-1]
        self.cold[d] = ColdDay(Ends(rows, ends))  # held until ``cool``: saved with the points
        changed = self.changed.pop(d, set())
        whole = d not in self.stored
        if not whole and not changed:
            return None
        self.stored.add(d)
        meters = list(points)
        parts: list[dict[str, Any] | None] = []
        for i in range(0, max(len(meters), 1), PART_METERS):
            chunk = meters[i : i + PART_METERS]
            fresh = whole or not changed.isdisjoint(chunk)
            parts.append(pack({m: points[m] for m in chunk}) if fresh else None)
        return parts

    def thaw(self, d: date, parts: Sequence[Mapping[str, Any] | None] | None) -> None:
        """Take cold day ``d`` back from its packed parts and replay the rows that came since.
        A part missing (the stored copy is lost): the day comes back with its ends only (they
        must be held: ``warm`` first)."""
        self.thaw_unpacked(d, unpack_parts(parts, self.layouts))

    def thaw_unpacked(self, d: date, points: dict[str, MeterDay] | None) -> None:
        """``thaw`` from the parts ``unpack_parts`` gave (None: a part missing); the unpacking,
        ~1 s at 2,400 meters here, can so run off the event loop."""
        cold = self.cold[d]
        if points is None:
            assert cold.ends is not None, "warm a cold day before it comes back from its ends"
            points = _from_ends(cold.ends, self.layouts)
            self.stored.discard(d)  # packed whole again when given away
        del self.cold[d]
        self.days[d] = points
        self.changed.pop(d, None)
        for device, part, item, k, value in cold.late:
            self._put(d, device, part, item, k, value)

    def ends_of(self, d: date) -> dict[str, Any]:
        """Cold day ``d``'s ends as held (from ``chill`` or ``warm``), packed for the store."""
        ends = self.cold[d].ends
        assert ends is not None, f"{d}: its ends are not held"
        return pack_ends(ends)

    def is_warm(self, d: date) -> bool:
        """Whether cold day ``d``'s ends are held (it can be read)."""
        cold = self.cold.get(d)
        return cold is not None and cold.ends is not None

    def warm(self, d: date, packed: Mapping[str, Any] | None) -> None:
        """Hold cold day ``d``'s ends again, from their stored copy (``ends_of`` when it was
        given away), with the rows that came since laid over them in order: the ends the day
        has. ``packed`` None (the copy is lost): from those rows alone."""
        cold = self.cold[d]
        if cold.ends is not None:
            return
        ends = unpack_ends(packed) if packed is not None else Ends({}, np.full((0, 8), np.nan))
        for device, part, item, k, value in cold.late:
            ends.put(device, part, item, k, value)
        cold.ends = ends

    def cool(self) -> None:
        """Let go of every cold day's ends (they are in the store)."""
        for cold in self.cold.values():
            cold.ends = None

    def restore(self, d: date, parts: Sequence[Mapping[str, Any] | None]) -> None:
        """After a restart: day ``d`` as it was given to the store, with the rows reloaded from
        the readings table (energies only) laid over it where they are new. Without this the
        next ``chill`` would overwrite the stored copy, every item of every point, with the
        energies alone. A part missing: the reloaded rows stand alone (packed whole again)."""
        self.restore_unpacked(d, unpack_parts(parts, self.layouts))

    def restore_unpacked(self, d: date, points: dict[str, MeterDay] | None) -> None:
        """``restore`` from the parts ``unpack_parts`` gave (None: a part missing)."""
        if points is None or d in self.cold:
            return
        changed: set[str] = set()
        for meter, md in self.days.get(d, {}).items():
            into = points.get(meter)
            if into is None:
                points[meter] = md
                changed.add(meter)
                continue
            for item, values in md.values.items():
                old = into.curve_of(item)
                new = ~np.isnan(values) & (True if old is None else np.isnan(old) | (values != old))
                for k in np.flatnonzero(new):
                    into.put(item, int(k), float(values[k]), self.layouts)
                    changed.add(meter)
            for item, values in md.freeze.items():
                old = into.frozen(item, self.layouts)
                new = ~np.isnan(values) & (np.isnan(old) | (values != old))
                if new.any():
                    old[new] = values[new]
                    changed.add(meter)
        self.days[d] = points
        self.stored.add(d)
        self.changed[d] = changed
        self._touch(d)

    def readings(self, d: date, meters: Sequence[str]) -> DayReadings:
        """Day ``d`` for ``meters`` in that order (the metrology unit's rows from ``transformer``);
        of a cold day only the freezes and the curve's two midnights."""
        out = DayReadings.empty(self.midnight(d), len(meters))
        cold = self.cold.get(d)
        if cold is not None:
            ends = cold.ends
            assert ends is not None, "warm a cold day before it is read"
            for i, meter in enumerate(meters):
                j = ends.rows.get(meter)
                if j is None:
                    continue
                e = ends.end_values(j)
                out.freeze_forward[i], out.freeze_reverse[i] = e[0:2], e[2:4]
                out.curve_forward[i, [0, INTERVALS_PER_DAY]] = e[4:6]
                out.curve_reverse[i, [0, INTERVALS_PER_DAY]] = e[6:8]
            return out
        points: Mapping[str, MeterDay] = self.days.get(d, {})
        for i, meter in enumerate(meters):
            md = points.get(meter)
            if md is None:
                continue
            values = md.values
            for item, target in (("forward", out.curve_forward), ("reverse", out.curve_reverse)):
                if item in values:
                    target[i] = values[item]
                if item in md.freeze:
                    (out.freeze_forward if item == "forward" else out.freeze_reverse)[i] = md.freeze[item]
            out.curve_power[i] = md.power(values)
            for p, ph in enumerate("abc"):
                if "v" + ph in values:
                    out.curve_voltage[i, :, p] = values["v" + ph]
        metrology = points.get(METROLOGY)
        if metrology is not None:
            values = metrology.values
            out.metrology_forward[:] = values.get("forward", out.metrology_forward)
            out.metrology_reverse[:] = values.get("reverse", out.metrology_reverse)
        return out


def pack(points: Mapping[str, MeterDay]) -> dict[str, Any]:
    """A day's points as JSON: per part and item, the meters that have it and their arrays
    (float64, little-endian, zlib, base64): the exact values, NaN and all."""
    meters = list(points)
    out: dict[str, Any] = {"meters": meters}
    for part in ("curve", "freeze"):
        by_item: dict[str, list[int]] = {}
        held = [points[m].values if part == "curve" else points[m].freeze for m in meters]
        for j, of_meter in enumerate(held):
            for item in of_meter:
                by_item.setdefault(item, []).append(j)
        items = {}
        for item, rows in by_item.items():
            arrays = [held[j][item] for j in rows]
            raw = np.stack(arrays).astype("<f8", copy=False).tobytes()
            items[item] = {"rows": rows, "data": base64.b64encode(zlib.compress(raw, 1)).decode("ascii")}
        out[part] = items
    return out


def unpack(packed: Mapping[str, Any], layouts: Layouts) -> dict[str, MeterDay]:
    """``pack``'s day back: every meter with the items it had, the same values (their rows shared
    through ``layouts``, the book's)."""
    meters = [str(m) for m in packed["meters"]]
    points = {meter: MeterDay() for meter in meters}
    for part, width in (("curve", POINTS), ("freeze", 2)):
        for item, block in packed[part].items():
            raw = bytearray(zlib.decompress(base64.b64decode(block["data"])))
            values = np.frombuffer(raw, dtype="<f8").reshape(-1, width)  # writable: a bytearray
            for r, j in enumerate(block["rows"]):
                md = points[meters[j]]
                if part == "curve":
                    md.set_curve(item, values[r], layouts)
                else:
                    md.set_freeze(item, values[r], layouts)
    return points


def unpack_parts(
    parts: Sequence[Mapping[str, Any] | None] | None, layouts: Layouts
) -> dict[str, MeterDay] | None:
    """A day's packed parts back as one day; None when any part (or the whole) is missing.
    Touches nothing but its arguments and new objects: it may run on a worker thread (``layouts``,
    the book's, only through ``Layouts.shared``: dict steps the GIL keeps whole, safe beside the
    loop's own use, as the module tables before it were)."""
    if not parts or any(part is None for part in parts):
        return None
    points: dict[str, MeterDay] = {}
    for packed in parts:
        assert packed is not None
        points.update(unpack(packed, layouts))
    return points


def _from_ends(cold: Ends, layouts: Layouts) -> dict[str, MeterDay]:
    points = {}
    for meter, j in cold.rows.items():
        md = points[meter] = MeterDay()
        ends = cold.end_values(j)
        for c, (part, item) in enumerate(e.split(".") for e in _ENDS):
            first, last = ends[2 * c], ends[2 * c + 1]
            if np.isnan(first) and np.isnan(last):
                continue
            if part == "curve":
                md.put(item, 0, first, layouts)
                md.put(item, INTERVALS_PER_DAY, last, layouts)
            else:
                md.set_freeze(item, np.array([first, last]), layouts)
    return points


def _parse(row: Any) -> tuple[str, float, float] | None:
    if not isinstance(row, Mapping):
        return None
    quantity, value, ts = row.get("quantity"), row.get("value"), row.get("ts")
    if not isinstance(quantity, str) or row.get("quality") == "invalid":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return None
    return quantity, float(value), float(ts)


__all__ = [
    "CURVE_QUANTITIES",
    "FREEZE_QUANTITIES",
    "LAYOUTS_MAX",
    "METROLOGY",
    "Book",
    "ColdDay",
    "Ends",
    "Layouts",
    "MeterDay",
    "pack",
    "pack_ends",
    "unpack",
    "unpack_ends",
    "unpack_parts",
]
