"""The tariff engine: prices a customer's 15-min intervals by the contract in force, exactly.

Layer: apps (billing). Pure arithmetic over ``protocols.billing`` contracts: no I/O, no clock,
no store. Integers only (units of ``protocols.billing._money``); nothing is rounded until a
customer-day's exact amount becomes fen (``DayBill.charge_fen``, half away from zero).
What bills share (cursors, tier names, contract tuples) is memoised in the caller's ``Pricing``
(the book's), never in the module.

Per interval, with the contract in force at the interval's start (contracts and TOU periods
change only on 15-min boundaries, so an interval is never split):

1. export handling: ``none`` bills the imported kWh; ``feed_in`` also credits the exported kWh
   at the export price; ``net`` bills max(import - export, 0) and credits max(export - import, 0);
2. 先分时后阶梯 (TOU first, then tiers): every billed kWh pays the price of its TOU period;
   the billed kWh of the tier basis (billing year from ``year_start_month``, or calendar month)
   above ``bounds[i]`` pays ``adders[i]`` on top. The accumulators carry over day, month and
   contract boundaries and reset only when their own year or month changes.

A day is priced from its first interval or continued from an earlier ``DayBill`` (the intervals
of one reading cycle are added to what the cycle before priced): the result is the same.
"""

from __future__ import annotations

import bisect
import functools
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from protocols.billing import PERIODS, Contract, Period, Tariff, Tiers, round_fen

INTERVAL_S = 900


class Interval(NamedTuple):
    """Energy of one 15-min interval starting at ``start`` (UTC epoch s), in energy units.
    (A named tuple: made for every interval priced, it must be cheap to build.)"""

    start: int
    imp: int
    exp: int = 0
    estimated: bool = False


@dataclass(slots=True)
class TierState:
    """Billed kWh of the current billing year and month (energy units) and which ones they are."""

    year: str = ""  # "YYYY-MM": the first month of the billing year
    year_units: int = 0
    month: str = ""  # "YYYY-MM"
    month_units: int = 0

    def copy(self) -> TierState:
        return TierState(self.year, self.year_units, self.month, self.month_units)

    def to_json(self) -> list[Any]:
        return [self.year, self.year_units, self.month, self.month_units]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> TierState:
        """(The year and month names are interned: every record of a month repeats the same two.)"""
        return cls(sys.intern(str(data[0])), int(data[1]), sys.intern(str(data[2])), int(data[3]))


class Timeline:
    """The contracts in force for the station over time: each from its start until the next
    version of its series (or its own ``effective_until``)."""

    def __init__(self, contracts: Iterable[Contract] = ()) -> None:
        self._contracts: list[Contract] = []
        self._starts: list[float] = []
        self._ends: list[float | None] = []
        self._edges: list[float] = []  # every start and end: between two edges the same contracts hold
        self._terms: dict[tuple[int, str | None, str | None], tuple[Contract, Tariff] | None] = {}
        self._named: set[str] = set()  # customers some contract covers by name
        self.version = 0  # changes with every contract added (cursors priced under an older one are stale)
        for contract in contracts:
            self.add(contract)

    @property
    def contracts(self) -> tuple[Contract, ...]:
        return tuple(self._contracts)

    def add(self, contract: Contract) -> None:
        self._contracts.append(contract)
        self._contracts.sort(key=lambda c: (c.start_epoch(), c.contract_id, c.version))
        self._starts = [c.start_epoch() for c in self._contracts]
        ends: list[float | None] = []
        for i, c in enumerate(self._contracts):
            end = c.end_epoch()
            for later in self._contracts[i + 1 :]:
                if later.contract_id == c.contract_id:
                    start = later.start_epoch()
                    end = start if end is None else min(end, start)
                    break
            ends.append(end)
        self._ends = ends
        self._edges = sorted({*self._starts, *(e for e in ends if e is not None)})
        self._named = {c for k in self._contracts for entry in k.coverage for c in entry.customers}
        self._terms = {}
        self.version += 1

    def next_edge(self, ts: float) -> float:
        """The first contract start or end after ``ts`` (infinity if none): until then the same
        contracts are in force."""
        i = bisect.bisect_right(self._edges, ts)
        return self._edges[i] if i < len(self._edges) else float("inf")

    def in_force(self, ts: float) -> list[Contract]:
        """Every contract in force at ``ts`` (several series may run side by side)."""
        last = bisect.bisect_right(self._starts, ts)
        return [
            c
            for c, end in zip(self._contracts[:last], self._ends[:last], strict=True)
            if end is None or ts < end
        ]

    def terms(self, ts: float, customer: str, model_tariff: str | None) -> tuple[Contract, Tariff] | None:
        """The contract and tariff that bill ``customer`` at ``ts``, if any covers it (cached per
        stretch of time between contract edges; one entry for all the customers no contract names,
        whose terms depend on their model tariff only)."""
        who = customer if customer in self._named else None
        key = (bisect.bisect_right(self._edges, ts), who, model_tariff)
        if key in self._terms:
            return self._terms[key]
        found: tuple[Contract, Tariff] | None = None
        for contract in reversed(self.in_force(ts)):
            tariff = contract.tariff_for(customer, model_tariff)
            if tariff is not None:
                found = (contract, tariff)
                break
        self._terms[key] = found
        return found


#: where ``DayBill.units`` holds the tiers' kWh: after one place per TOU period
_TIERS_AT = len(PERIODS)


def _zero_units() -> array[int]:
    return array("i", bytes(4 * _TIERS_AT))


def _add_units(bill: DayBill, place: int, billed: int) -> array[int]:
    """``bill.units[place] += billed``; the array int64 from the first value past int32 (a day's
    214,748 kWh: never a household's). Returns the bill's array."""
    units = bill.units
    try:
        units[place] += billed
    except OverflowError:
        units = bill.units = array("q", units)  # (int64: past it the caller's sum raises as before)
        units[place] += billed
    return units


#: a period's place in ``DayBill.units``
_PERIOD_INDEX: dict[Period, int] = {p: i for i, p in enumerate(PERIODS)}
#: entries of each of a ``Pricing``'s memos: bills of the same season and contracts share one tuple
_MEMO_MAX = 256


def _slot_index(slot_periods: tuple[Period, ...]) -> tuple[int, ...]:
    """A season's ``slot_periods`` as places in ``DayBill.units``."""
    return tuple(_PERIOD_INDEX[p] for p in slot_periods)


def _with_contract(keys: tuple[str, ...], key: str) -> tuple[str, ...]:
    """A bill's contract keys after one more."""
    return (*keys, key)


@dataclass(slots=True)
class DayBill:
    """One customer-day as priced so far. Amounts are exact (1e-8 元), energies in energy units."""

    customer: str
    date: str  # local "YYYY-MM-DD"
    tier: TierState  # accumulators after the last priced interval
    # billed import per PERIODS entry, then billed kWh per tier (0 = below the first bound), in
    # one int32 array (~0.1 kB a bill less than two lists of int objects), int64 from the first
    # value past int32 (``_add_units``): ``period_units``, ``tier_units`` read them (a day's kWh
    # are far below 2**63 units: 9.2e14 kWh)
    units: array[int] = field(default_factory=_zero_units)
    export_units: int = 0  # exported kWh credited (feed_in / net surplus)
    unbilled_units: int = 0  # imported kWh no contract covered
    tou_exact: int = 0
    adder_exact: int = 0
    export_exact: int = 0  # credits: zero or negative
    intervals: int = 0
    estimated: int = 0
    contracts: tuple[str, ...] = ()  # shared with the other bills of the same contracts
    last_start: int = -1
    last_contract: Contract | None = field(default=None, repr=False, compare=False)  # speeds up price()
    cursor: _Cursor | None = field(default=None, repr=False, compare=False)  # speeds up price()

    @property
    def kwh(self) -> dict[Period, int]:
        """Billed import per TOU period (a new dict: the bill holds an array, ~0.1 kB less a bill)."""
        return dict(zip(PERIODS, self.units[:_TIERS_AT], strict=True))

    @property
    def period_units(self) -> list[int]:
        """Billed import per PERIODS entry (a new list)."""
        return self.units[:_TIERS_AT].tolist()

    @property
    def tier_units(self) -> list[int]:
        """Billed kWh per tier, 0 = below the first bound (a new list; empty: no tier priced yet)."""
        return self.units[_TIERS_AT:].tolist()

    @property
    def exact(self) -> int:
        return self.tou_exact + self.adder_exact + self.export_exact

    @property
    def charge_fen(self) -> int:
        return round_fen(self.exact)

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "date": self.date,
            "tier": self.tier.to_json(),
            "kwh": self.kwh,
            "export_units": self.export_units,
            "unbilled_units": self.unbilled_units,
            "tier_units": list(self.tier_units),
            "tou_exact": self.tou_exact,
            "adder_exact": self.adder_exact,
            "export_exact": self.export_exact,
            "intervals": self.intervals,
            "estimated": self.estimated,
            "contracts": list(self.contracts),
            "last_start": self.last_start,
        }


@dataclass(frozen=True, slots=True)
class _Cursor:
    """What ``price`` looked up for a stretch of intervals that share it: the same contracts in
    force (no timeline edge), the same local day of fixed UTC offset (so minute of day is plain
    arithmetic from ``day_start``), hence the same terms, season and tier accumulator names."""

    until: float  # valid for interval starts before this
    version: int  # of the timeline it was made under
    model_tariff: str | None  # the customer's tariff id in the station model it was made for
    day_start: int  # UTC epoch of the local midnight
    month: int
    terms: tuple[Contract, Tariff] | None
    year_key: str
    month_key: str
    # what price_one reads of the terms for every interval, looked up once here
    slot_places: tuple[int, ...] = ()  # a slot's period as its place in ``DayBill.units``
    slot_prices: tuple[int, ...] = ()
    export_mode: str = "none"
    export_price: int = 0
    tiers: Tiers | None = None
    annual: bool = False


def _keys(year: int, month: int, start: int) -> tuple[str, str]:
    """The (billing year, month) accumulator names of a local year and month, the billing year
    starting in month ``start``."""
    first = year if month >= start else year - 1
    return f"{first:04d}-{start:02d}", f"{year:04d}-{month:02d}"


def tier_split(before: int, units: int, bounds: Sequence[int]) -> list[int]:
    """How ``units`` billed after ``before`` already billed fall into the tiers of ``bounds``."""
    parts = []
    low = before
    high = before + units
    floor = 0
    for bound in (*bounds, None):
        top = high if bound is None else min(high, bound)
        parts.append(max(0, top - max(low, floor)))
        if bound is not None:
            floor = bound
    return parts


class LocalClock:
    """Local (wall) time of interval starts as (year, month, minute of day): integer arithmetic
    within a day whose UTC offset is fixed, zoneinfo only to find each day (and across DST)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._start = 0
        self._end = -1
        self._ym = (1970, 1)

    def regular_day(self, ts: int) -> tuple[int, int] | None:
        """(midnight, next midnight) of the local day ``info`` just looked up for ``ts``, when its
        UTC offset is fixed all day; None across a DST change."""
        return (self._start, self._end) if self._start <= ts < self._end else None

    def info(self, ts: int) -> tuple[int, int, int]:
        if self._start <= ts < self._end:
            return self._ym[0], self._ym[1], (ts - self._start) // 60
        local = datetime.fromtimestamp(ts, self.tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        following = datetime.combine(midnight.date() + timedelta(days=1), midnight.time(), self.tz)
        start, end = int(midnight.timestamp()), int(following.timestamp())
        if end - start == 86400:  # no DST change today: wall time = midnight + elapsed
            self._start, self._end, self._ym = start, end, (local.year, local.month)
        return local.year, local.month, local.hour * 60 + local.minute


def _cursor(
    start: int, customer: str, model_tariff: str | None, timeline: Timeline, pricing: Pricing
) -> _Cursor:
    clock = pricing.clock
    terms = timeline.terms(start, customer, model_tariff)
    year, month, minute = clock.info(start)
    tiers = terms[1].tiers if terms is not None else None
    year_start = tiers.year_start_month if tiers is not None and tiers.basis == "annual" else 1
    year_key, month_key = pricing.keys(year, month, year_start)
    day = clock.regular_day(start)
    until = min(timeline.next_edge(start), day[1] if day is not None else start + 1)
    day_start, version = start - minute * 60, timeline.version
    if terms is None:
        return _Cursor(until, version, model_tariff, day_start, month, terms, year_key, month_key)
    tariff = terms[1]
    season = tariff.season_of_month[month - 1]
    return _Cursor(
        until, version, model_tariff, day_start, month, terms, year_key, month_key,
        pricing.slot_index(season.slot_periods), season.slot_prices, tariff.export.mode, tariff.export.price,
        tiers, tiers is not None and tiers.basis == "annual",
    )  # fmt: skip


class Pricing:
    """What pricing shares between the bills of one book (``price`` / ``price_one`` take it): the
    local clock of interval starts (``LocalClock``) and the memos that make bills of the same
    stretch, season and contracts share one object -- cursors (``cursor``), tier accumulator names
    (``keys``), a season's slot places (``slot_index``), contract key tuples (``with_contract``):
    ``_MEMO_MAX`` entries each. The book owns it (``Book.pricing``, one a billing app), so two apps in
    one process share nothing and the memos go with their book."""

    __slots__ = ("_cursors", "clock", "keys", "slot_index", "with_contract")

    def __init__(self, tz: ZoneInfo) -> None:
        self.clock = LocalClock(tz)
        self.keys = functools.lru_cache(maxsize=_MEMO_MAX)(_keys)
        self.slot_index = functools.lru_cache(maxsize=_MEMO_MAX)(_slot_index)
        self.with_contract = functools.lru_cache(maxsize=_MEMO_MAX)(_with_contract)
        #: cursors in use, one object for all the bills they are the same for (``cursor``)
        self._cursors: dict[tuple[object, ...], _Cursor] = {}

    def cursor(self, start: int, customer: str, model_tariff: str | None, timeline: Timeline) -> _Cursor:
        """``_cursor``, the very object an earlier bill got when it is the same (the same terms
        objects, stretch, day and tier keys): every customer's open bill held its own, ~0.2 kB each
        (2,400 customers on a few tariffs ~0.5 MB of equal cursors)."""
        cursor = _cursor(start, customer, model_tariff, timeline, self)
        terms = cursor.terms
        key = (
            cursor.until, cursor.version, model_tariff, cursor.day_start, cursor.month, cursor.year_key,
            cursor.month_key, None if terms is None else (id(terms[0]), id(terms[1])),
        )  # fmt: skip
        cursors = self._cursors
        known = cursors.get(key)
        if known is not None:
            same = terms is None if known.terms is None else (
                terms is not None and known.terms[0] is terms[0] and known.terms[1] is terms[1]
            )  # fmt: skip
            if same:
                return known
        if len(cursors) >= _MEMO_MAX:
            cursors.clear()
        cursors[key] = cursor
        return cursor


def price(
    bill: DayBill,
    intervals: Iterable[Interval],
    timeline: Timeline,
    model_tariff: str | None,
    tz: ZoneInfo,
    *,
    pricing: Pricing | None = None,
) -> DayBill:
    """Add ``intervals`` (after ``bill.last_start``, in order) to ``bill``; returns ``bill``.
    ``pricing``: the book's ``Pricing`` of ``tz`` to reuse across calls (its clock caches the
    current day, its memos share objects between bills); None: one for this call."""
    pricing = pricing or Pricing(tz)
    for start, imp, exp, estimated in intervals:
        price_one(bill, start, imp, exp, timeline, model_tariff, pricing, estimated)
    return bill


def price_one(
    bill: DayBill,
    start: int,
    imp: int,
    exp: int,
    timeline: Timeline,
    model_tariff: str | None,
    pricing: Pricing,
    estimated: bool = False,
) -> None:
    """Add one interval (``start`` after ``bill.last_start``) to ``bill``: ``price`` for one, without
    building an ``Interval`` (the steady state of a reading cycle prices one per customer)."""
    if start <= bill.last_start:
        raise ValueError(f"{bill.customer} {bill.date}: interval {start} is not after {bill.last_start}")
    bill.last_start = start
    bill.intervals += 1
    if estimated:
        bill.estimated += 1
    cursor = bill.cursor
    if (
        cursor is None
        or start >= cursor.until
        or cursor.version != timeline.version
        or cursor.model_tariff != model_tariff
    ):
        cursor = bill.cursor = pricing.cursor(start, bill.customer, model_tariff, timeline)
    tier = bill.tier
    if cursor.year_key != tier.year:
        tier.year, tier.year_units = cursor.year_key, 0
    if cursor.month_key != tier.month:
        tier.month, tier.month_units = cursor.month_key, 0
    terms = cursor.terms
    if terms is None:
        bill.unbilled_units += imp
        return
    contract = terms[0]
    if contract is not bill.last_contract:
        bill.last_contract = contract
        if not bill.contracts or bill.contracts[-1] != contract.key:
            bill.contracts = pricing.with_contract(bill.contracts, contract.key)
    slot = (start - cursor.day_start) // INTERVAL_S
    mode = cursor.export_mode
    if mode == "net":
        billed = imp - exp if imp > exp else 0
        credited = exp - imp if exp > imp else 0
    else:
        billed = imp
        credited = exp if mode == "feed_in" else 0
    units = _add_units(bill, cursor.slot_places[slot], billed)
    bill.tou_exact += billed * cursor.slot_prices[slot]
    if credited:
        bill.export_units += credited
        bill.export_exact -= credited * cursor.export_price
    tiers = cursor.tiers
    if tiers is not None:
        before = tier.year_units if cursor.annual else tier.month_units
        bounds = tiers.bounds
        if len(units) <= _TIERS_AT + len(bounds):
            units.extend([0] * (_TIERS_AT + len(bounds) + 1 - len(units)))
        at = bisect.bisect_left(bounds, before + billed)  # the tier the interval ends in
        if billed == 0 or at == bisect.bisect_left(bounds, before):  # no bound crossed: one tier
            _add_units(bill, _TIERS_AT + at, billed)
            if at:
                bill.adder_exact += billed * tiers.adders[at - 1]
        else:
            for i, part in enumerate(tier_split(before, billed, bounds)):
                units = _add_units(bill, _TIERS_AT + i, part)
                if i and part:
                    bill.adder_exact += part * tiers.adders[i - 1]
    elif billed:
        if len(units) == _TIERS_AT:
            units.append(0)
        _add_units(bill, _TIERS_AT, billed)
    tier.year_units += billed
    tier.month_units += billed


__all__ = [
    "INTERVAL_S",
    "DayBill",
    "Interval",
    "LocalClock",
    "Pricing",
    "TierState",
    "Timeline",
    "price",
    "price_one",
    "tier_split",
]
