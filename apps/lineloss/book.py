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

Hot and cold days: a day's points are ~9 kB per meter (10 curve items x 97 float64), 9 days of
2,400 meters ~190 MB. So the service gives a past day's points away (``chill``: the day packed,
for the app's store) and the book keeps of it only what the day's energy needs -- each meter's
freezes and its curve registers at both midnights (``ColdDay``, 64 bytes a meter) -- plus the rows
that come for it later, in order; ``thaw`` takes the packed day back and replays them, so a thawed
day is exactly the day the book would have kept. ``readings`` of a cold day fills the freezes
and the curve's midnights only (what ``day_energies`` reads); the rest is NaN.
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
from typing import Any, TypeVar
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


#: a curve item is held as int32 ten-thousandths while every value of it is exactly one
_SCALE = 10_000.0
_LIMIT = 2**31 - 1
_UNREAD = -(2**31)  # a packed item's "not read"
#: ... and as int16 steps of 10**-e (e = 0..4, its own) from a base (int64, the row's last four
#: int16) while every value is exactly such a decimal within 32767 steps of the base: volts at
#: 0.1 V, amps at 0.001 A, a power factor, a register's day at 0.01 kWh (327 kWh)
_EXPONENTS = (0, 1, 2, 3, 4)
_POWERS = tuple(10.0**e for e in _EXPONENTS)
_LIMIT16 = 2**15 - 1
_UNREAD16 = -(2**15)
_EXACT = 2**53  # integers a float64 holds exactly
_WORDS = 4  # int16 words of a short row's base


def _base_of(row: np.ndarray) -> int:
    """The base of a short row (its last four int16: one int64)."""
    return int(row[POINTS:].view(np.int64)[0])


def _set_base(row: np.ndarray, base: int) -> None:
    row[POINTS:].view(np.int64)[0] = base


def _decoded(a: np.ndarray, exponent: int = 4) -> FArray:
    """A held curve item as float64 (NaN where not read): the array itself when float64."""
    if a.dtype == np.int32:
        out: FArray = a / _SCALE  # each the correctly rounded q / 10,000: the value that was given
        out[a == _UNREAD] = np.nan
        return out
    if a.dtype == np.int16:  # a short row: (q + base) / 10**e, correctly rounded: the value given
        data = a[:POINTS]
        out = (data.astype(np.int64) + _base_of(a)) / _POWERS[exponent]
        out[data == _UNREAD16] = np.nan
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


_TUPLES: dict[tuple[object, ...], tuple[object, ...]] = {}
_T = TypeVar("_T", bound=tuple[object, ...])


def _shared(names: _T) -> _T:
    """One tuple of item names (or exponents) for every meter-day that has those, in that order
    (a few in practice; bounded all the same)."""
    if len(_TUPLES) >= 4096:
        return _TUPLES.get(names, names)  # type: ignore[return-value]
    return _TUPLES.setdefault(names, names)  # type: ignore[return-value]


def _held(values: FArray) -> np.ndarray:
    """``values`` (97 float64 points) as held: packed when every point read is exactly a
    ten-thousandth that fits int32 (not -0.0), else a float64 copy."""
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


def _held16(values: FArray) -> tuple[int, np.ndarray] | None:
    """(e, ``values`` as a short row: int16 steps of 10**-e from the base midway) at the smallest
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
            base = int((whole.min() + whole.max()) // 2) if whole.size else 0
            q = whole - base
            if not bool((np.abs(q) <= _LIMIT16).all()):
                return None  # nor the spread
            packed = np.full(POINTS + _WORDS, _UNREAD16, dtype=np.int16)
            packed[:POINTS][read] = q
            _set_base(packed, base)
            return e, packed
    return None


class MeterDay:
    """One meter's points of one local day (NaN where not read).

    A curve item is held as int16 at its own decimal exponent while every value given to it is
    exactly such a decimal within +-32767 (volts at 0.1 V, amps up to 32.767 A, a power factor,
    an export register at 0: a quarter of the bytes of float64); else as int32 ten-thousandths
    while every value is exactly one (a meter's decimal registers); else as float64, from the
    first value that is not. Either way it reads back as the float64 values given, bit for bit
    (-0.0 included; a NaN of any sign is "not read", NaN). The int16 items are the rows of one
    array, the int32 ones of another (one array header each, no dict: ~0.9 kB less a meter than
    an array an item); the float64 ones (rare) an array each."""

    __slots__ = ("_ends", "_exps", "_frozen", "_items", "_narrow", "_packed", "_rows", "_short", "_wide")

    def __init__(self) -> None:
        self._items: tuple[str, ...] = ()  # every curve item, in the order first given
        self._narrow: tuple[str, ...] = ()  # the int16 items: the rows of ``_short``
        self._exps: tuple[int, ...] = ()  # their decimal exponents
        self._short: np.ndarray | None = None  # (len(_narrow), POINTS + 4) int16: steps, base
        self._packed: tuple[str, ...] = ()  # the int32 items: the rows of ``_rows``
        self._rows: np.ndarray | None = None  # (len(_packed), POINTS) int32
        self._wide: dict[str, FArray] | None = None  # the float64 items
        self._frozen: tuple[str, ...] = ()  # the freeze items (forward / reverse), in the order given
        self._ends: FArray | None = None  # (len(_frozen), 2): their registers at both midnights

    @property
    def values(self) -> dict[str, FArray]:
        """Curve item -> its 97 points (float64; a copy for a packed item: write with ``put``)."""
        out: dict[str, FArray] = {}
        for item in self._items:
            values = self.curve_of(item)
            assert values is not None
            out[item] = values
        return out

    def curve_of(self, item: str) -> FArray | None:
        """The 97 points of curve item ``item`` (float64), None when it has none."""
        if item in self._narrow:
            assert self._short is not None
            j = self._narrow.index(item)
            return _decoded(self._short[j], self._exps[j])
        if item in self._packed:
            assert self._rows is not None
            return _decoded(self._rows[self._packed.index(item)])
        return None if self._wide is None else self._wide.get(item)

    def _named(self, item: str) -> None:
        if item not in self._items:
            self._items = _shared((*self._items, item))

    def _row(self, item: str) -> np.ndarray:
        """The int32 row of ``item``, added (not read) when it has none."""
        if item in self._packed:
            assert self._rows is not None
            row: np.ndarray = self._rows[self._packed.index(item)]
            return row
        fresh = np.full((1, POINTS), _UNREAD, dtype=np.int32)
        self._rows = fresh if self._rows is None else np.concatenate([self._rows, fresh])
        self._packed = _shared((*self._packed, item))
        self._named(item)
        last: np.ndarray = self._rows[-1]
        return last

    def _short_row(self, item: str, exponent: int) -> np.ndarray:
        """The int16 row of ``item`` (not in it yet), added (not read) at ``exponent``."""
        fresh = np.full((1, POINTS + _WORDS), _UNREAD16, dtype=np.int16)
        _set_base(fresh[0], 0)
        self._short = fresh if self._short is None else np.concatenate([self._short, fresh])
        self._narrow = _shared((*self._narrow, item))
        self._exps = _shared((*self._exps, exponent))
        self._named(item)
        last: np.ndarray = self._short[-1]
        return last

    def _drop(self, item: str) -> None:
        """``item``'s packed row (int16 or int32), if any, removed."""
        if item in self._narrow:
            assert self._short is not None
            j = self._narrow.index(item)
            self._short = np.delete(self._short, j, axis=0) if len(self._narrow) > 1 else None
            self._narrow = _shared(self._narrow[:j] + self._narrow[j + 1 :])
            self._exps = _shared(self._exps[:j] + self._exps[j + 1 :])
        if item in self._packed:
            assert self._rows is not None
            j = self._packed.index(item)
            self._rows = np.delete(self._rows, j, axis=0) if len(self._packed) > 1 else None
            self._packed = _shared(self._packed[:j] + self._packed[j + 1 :])

    def _widen(self, item: str, values: FArray) -> None:
        """``item`` held as float64 ``values`` from now on (its packed row, if any, dropped)."""
        self._drop(item)
        self._named(item)
        if self._wide is None:
            self._wide = {}
        self._wide[item] = values

    def _put_short(self, item: str, k: int, value: float) -> bool:
        """Point ``k`` of short item ``item``, rescaled to a finer exponent when it must; False
        (nothing written) when ``value`` is not within 32767 steps of the base at any."""
        assert self._short is not None
        j = self._narrow.index(item)
        row, e = self._short[j], self._exps[j]
        data = row[:POINTS]
        if value != value:  # NaN: not read
            data[k] = _UNREAD16
            return True
        fit = _exponent(value, e)
        if fit is None:
            return False
        finer, whole = fit
        read = data != _UNREAD16
        if not read.any():  # the first value read: the base
            _set_base(row, whole)
            data[k] = 0
        else:
            base = _base_of(row) * 10 ** (finer - e)
            q = whole - base
            if not -_LIMIT16 <= q <= _LIMIT16:
                return False
            if finer > e:  # every point read again at the finer exponent, if they all fit
                scaled = data[read].astype(np.int64) * 10 ** (finer - e)
                if not bool((np.abs(scaled) <= _LIMIT16).all()) or not -_EXACT < base < _EXACT:
                    return False
                data[read] = scaled
                _set_base(row, base)
            data[k] = q
        if finer != e:
            self._exps = _shared((*self._exps[:j], finer, *self._exps[j + 1 :]))
        return True

    def put(self, item: str, k: int, value: float) -> None:
        """Point ``k`` of curve item ``item``."""
        wide = self._wide.get(item) if self._wide is not None else None
        if wide is None:
            if item in self._narrow:
                if self._put_short(item, k, value):
                    return
                values = self.curve_of(item)  # to int32 (or float64) from now on
                assert values is not None
                self._drop(item)
                values[k] = value
                self.set_curve(item, values)
                return
            if item not in self._packed:
                if value != value:  # NaN: a short row, not read
                    self._short_row(item, 0)
                    return
                fit = _exponent(value)
                if fit is not None:
                    row = self._short_row(item, fit[0])
                    _set_base(row, fit[1])
                    row[k] = 0
                    return
            a = self._row(item)
            if value != value:  # NaN: not read
                a[k] = _UNREAD
                return
            q = round(value * _SCALE) if abs(value) <= _LIMIT / _SCALE else _LIMIT + 1  # inf too
            if -_LIMIT <= q <= _LIMIT and q / _SCALE == value and (q or math.copysign(1.0, value) > 0):
                a[k] = q
                return
            wide = _decoded(a)
            self._widen(item, wide)
        wide[k] = value

    def set_curve(self, item: str, values: FArray) -> None:
        """All 97 points of curve item ``item`` (held as narrow as they allow)."""
        short = _held16(values)
        if short is not None:
            if self._wide is not None:
                self._wide.pop(item, None)
            self._drop(item)
            self._short_row(item, short[0])[:] = short[1]
            return
        held = _held(values)
        if held.dtype != np.int32:
            self._widen(item, held)
            return
        if self._wide is not None:
            self._wide.pop(item, None)
        if item in self._narrow:
            self._drop(item)
        self._row(item)[:] = held

    @property
    def freeze(self) -> dict[str, FArray]:
        """Freeze item -> its (start, end) registers, NaN where not read (views: write with
        ``frozen`` / ``set_freeze``). One (items, 2) array: a dict of an array an item was ~0.3 kB
        a meter more."""
        ends = self._ends
        return {} if ends is None else {item: ends[j] for j, item in enumerate(self._frozen)}

    def frozen(self, item: str) -> FArray:
        """The (start, end) registers of freeze item ``item`` (a view to write in), added (not
        read) when it has none."""
        if item in self._frozen:
            assert self._ends is not None
            held: FArray = self._ends[self._frozen.index(item)]
            return held
        fresh = np.full((1, 2), np.nan)
        self._ends = fresh if self._ends is None else np.concatenate([self._ends, fresh])
        self._frozen = _shared((*self._frozen, item))
        last: FArray = self._ends[-1]
        return last

    def set_freeze(self, item: str, values: FArray) -> None:
        self.frozen(item)[:] = values

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


@dataclass
class ColdDay:
    """What the book keeps of a day given away: per meter its freezes (start, end) and its curve
    registers at both midnights, forward and reverse (``ends``: one row of 8 a meter, NaN where not
    read), and the rows that came for the day since (replayed by ``thaw``). ``rows`` (meter -> its
    row) is one dict for every cold day with the same meters in the same order (~90 B a meter a
    day: 2,400 meters x 8 days ~1.7 MB); a new meter makes a day its own copy."""

    rows: dict[str, int]
    ends: np.ndarray  # (len(rows), 8), columns in _ENDS order: int32 ten-thousandths while exact
    late: Late = field(default_factory=Late)  # the rows that came since, in order
    own: bool = True  # False: ``rows`` is shared with other days (copied before it changes)

    def put(self, device: str, part: str, item: str, k: int, value: float) -> None:
        self.late.append(device, part, item, k, value)
        if item not in ("forward", "reverse") or (part == "curve" and k not in (0, INTERVALS_PER_DAY)):
            return
        row = self.rows.get(device)
        if row is None:
            if not self.own:  # the dict is other days' too
                self.rows, self.own = dict(self.rows), True
            row = self.rows[device] = len(self.rows)
            fresh = np.full((1, 8), _UNREAD if self.ends.dtype == np.int32 else np.nan, dtype=self.ends.dtype)
            self.ends = np.vstack([self.ends, fresh])
        column = 2 * _ENDS.index(f"{part}.{item}") + (0 if k == 0 else 1)
        if self.ends.dtype == np.int32:
            q = round(value * _SCALE) if abs(value) <= _LIMIT / _SCALE else _LIMIT + 1  # inf too
            if -_LIMIT <= q <= _LIMIT and q / _SCALE == value and (q or math.copysign(1.0, value) > 0):
                self.ends[row, column] = q
                return
            self.ends = _decoded(self.ends)  # float64 from now on
        self.ends[row, column] = value

    def end_values(self, row: int) -> FArray:
        """Row ``row`` of ``ends`` as float64 (NaN where not read)."""
        return _decoded(self.ends[row])


@dataclass
class Book:
    """Points per local date and meter; ``version`` of a date grows with every change to it.

    ``days`` holds the hot days (every point), ``cold`` the days given away (see the module
    docstring); ``stored``: days with a packed copy in the store, ``changed``: the meters of such
    a day hot again changed since (only their parts are packed again: a flash box is not
    rewritten a whole day for a few late rows; a day never stored is packed whole)."""

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
            md.put(item, k, value)
        else:
            md.frozen(item)[k] = value
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
        stored copy stands whole. A part holds the same meters every time (meters only join a
        day, at its end)."""
        points = self.days.pop(d)
        rows = {meter: j for j, meter in enumerate(points)}
        ends = np.full((len(rows), 8), np.nan)
        for meter, j in rows.items():
            md = points[meter]
            for c, (part, item) in enumerate(e.split(".") for e in _ENDS):
                a = md.freeze.get(item) if part == "freeze" else md.curve_of(item)
                if a is not None:
                    ends[j, 2 * c], ends[j, 2 * c + 1] = a[0], a[-1]
        shared = next((c for c in self.cold.values() if c.rows == rows), None)  # one dict (ColdDay)
        if shared is not None:
            shared.own = False
        held = _held(ends.ravel()).reshape(ends.shape)  # int32 ten-thousandths: half the bytes
        self.cold[d] = ColdDay(rows if shared is None else shared.rows, held, own=shared is None)
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
        A part missing (the stored copy is lost): the day comes back with its ends only."""
        cold = self.cold.pop(d)
        points = _unpack_parts(parts)
        if points is None:
            points = _from_ends(cold)
            self.stored.discard(d)  # packed whole again when given away
        self.days[d] = points
        self.changed.pop(d, None)
        for device, part, item, k, value in cold.late:
            self._put(d, device, part, item, k, value)

    def restore(self, d: date, parts: Sequence[Mapping[str, Any] | None]) -> None:
        """After a restart: day ``d`` as it was given to the store, with the rows reloaded from
        the readings table (energies only) laid over it where they are new. Without this the
        next ``chill`` would overwrite the stored copy, every item of every point, with the
        energies alone. A part missing: the reloaded rows stand alone (packed whole again)."""
        points = _unpack_parts(parts)
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
                    into.put(item, int(k), float(values[k]))
                    changed.add(meter)
            for item, values in md.freeze.items():
                old = into.frozen(item)
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
            for i, meter in enumerate(meters):
                j = cold.rows.get(meter)
                if j is None:
                    continue
                e = cold.end_values(j)
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


def unpack(packed: Mapping[str, Any]) -> dict[str, MeterDay]:
    """``pack``'s day back: every meter with the items it had, the same values."""
    meters = [str(m) for m in packed["meters"]]
    points = {meter: MeterDay() for meter in meters}
    for part, width in (("curve", POINTS), ("freeze", 2)):
        for item, block in packed[part].items():
            raw = bytearray(zlib.decompress(base64.b64decode(block["data"])))
            values = np.frombuffer(raw, dtype="<f8").reshape(-1, width)  # writable: a bytearray
            for r, j in enumerate(block["rows"]):
                md = points[meters[j]]
                if part == "curve":
                    md.set_curve(item, values[r])
                else:
                    md.set_freeze(item, values[r])
    return points


def _unpack_parts(parts: Sequence[Mapping[str, Any] | None] | None) -> dict[str, MeterDay] | None:
    """A day's packed parts back as one day; None when any part (or the whole) is missing."""
    if not parts or any(part is None for part in parts):
        return None
    points: dict[str, MeterDay] = {}
    for packed in parts:
        assert packed is not None
        points.update(unpack(packed))
    return points


def _from_ends(cold: ColdDay) -> dict[str, MeterDay]:
    points = {}
    for meter, j in cold.rows.items():
        md = points[meter] = MeterDay()
        ends = cold.end_values(j)
        for c, (part, item) in enumerate(e.split(".") for e in _ENDS):
            first, last = ends[2 * c], ends[2 * c + 1]
            if np.isnan(first) and np.isnan(last):
                continue
            if part == "curve":
                md.put(item, 0, first)
                md.put(item, INTERVALS_PER_DAY, last)
            else:
                md.set_freeze(item, np.array([first, last]))
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
    "METROLOGY",
    "Book",
    "ColdDay",
    "MeterDay",
    "pack",
    "unpack",
]
