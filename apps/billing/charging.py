"""Charging: from the meters' registers to debits of open days, charges of closed days, corrections.

Layer: apps (billing). Decides, never remembers: reads the ``Book`` and returns the ledger
entries to append; the book learns them only when the ledger hands them back (``Book.apply``).

Each reading cycle, for every customer whose meter brought new anchors:

* **open days** (from the day after the last closed one to today) are priced from the anchors
  (``tariff.price``, tier count carried from day to day); the difference between a day's charge
  so far -- its exact amount rounded to fen -- and what was already debited for it is debited
  now (``debit`` record, one per cycle for every customer). So the debits of a day always add
  up to its charge to the fen, and the balance follows consumption within one cycle;
* a day **closes** once an anchor at or after its end exists and that end is the meter's own
  daily freeze (or ``close_grace_s`` passed without it): a ``charge`` record per customer-day;
* late anchors that change a **closed** day (a freeze correcting a curve record, a point read
  back late) re-price that day and every closed day after it: a ``correction`` record carries
  the difference. Days closed longer than ``Book.keep_days`` ago are final.

The price of a day does not depend on how it was cut into cycles: ``DayBill`` continues from
what the previous cycle priced when only later intervals are new, and starts over otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocols.billing import round_fen, yuan
from runtime.store import LedgerEntry

from .book import Book, Customer
from .energy import MeterAnchors
from .tariff import INTERVAL_S, DayBill, TierState, price, price_one

Row = list[Any]  # [meter, ts, imp, exp | None, source]


@dataclass(frozen=True, slots=True)
class ChargingSettings:
    close_grace_s: int = 3 * 3600  # how long after midnight to wait for the meter's freeze


@dataclass(slots=True)
class Cycle:
    """What one charging pass decided: entries in the order they must be appended."""

    corrections: list[LedgerEntry]
    debit: LedgerEntry | None
    charges: list[LedgerEntry]
    priced: int = 0  # customer-days priced (for the bench)

    @property
    def entries(self) -> list[LedgerEntry]:
        return [*self.corrections, *([self.debit] if self.debit else []), *self.charges]


def bill_body(customer: Customer, bill: DayBill, tier_start: TierState) -> dict[str, Any]:
    return {
        "customer": customer.id,
        "meter": customer.meter,
        "tariff": customer.tariff,
        "date": bill.date,
        "charge_fen": bill.charge_fen,
        "charge_yuan": yuan(bill.charge_fen),
        "kwh": bill.kwh,
        "export_units": bill.export_units,
        "unbilled_units": bill.unbilled_units,
        "tier_units": list(bill.tier_units),
        "tou_exact": bill.tou_exact,
        "adder_exact": bill.adder_exact,
        "export_exact": bill.export_exact,
        "intervals": bill.intervals,
        "estimated": bill.estimated,
        "contracts": list(bill.contracts),
        "tier_start": tier_start.to_json(),
        "tier": bill.tier.to_json(),
    }


_UNSEEN: Any = object()  # what a fresh ``_Open`` has seen of the account: nothing yet


@dataclass(slots=True)
class _Open:
    """An open day of a customer as the general path last priced it: the tier count it started
    from and its bill so far; for the customer's newest (``Charger._open``; older ones are in
    ``Charger._older``, rarely any),
    what of the account the steady path last checked it against: while the account's tier count
    and last closed day are those very objects, the checks hold."""

    day: str
    end: int  # UTC epoch of the day's end
    tier_start: TierState
    bill: DayBill
    tier_seen: TierState | None = _UNSEEN
    closed_seen: str | None = _UNSEEN


class Charger:
    def __init__(self, book: Book, settings: ChargingSettings | None = None) -> None:
        self.book = book
        self.settings = settings or ChargingSettings()
        self._open: dict[str, _Open] = {}  # customer -> its newest open day priced
        self._older: dict[tuple[str, str], _Open] = {}  # (customer, day) -> an open day before that
        self.late_rows = 0  # anchors older than any day still open to corrections

    # ------------------------------------------------------------------ anchors

    def accept(self, rows: Iterable[Row], meters: set[str]) -> list[Row]:
        """The rows worth recording: meters we bill, on the 15-min grid, new, or a freeze where only a
        curve record was (within one batch too, a freeze beats a curve record of the same instant)."""
        batch: dict[tuple[str, int], Row] = {}
        for meter, ts, imp, exp, source in rows:
            if meter not in meters or ts % INTERVAL_S:
                continue
            known = batch.get((meter, ts))
            if known is None or (source == "freeze" and known[4] != "freeze"):
                batch[(meter, ts)] = [meter, ts, imp, exp, source]
        out: list[Row] = []
        anchors_of = self.book.anchors
        for (meter, ts), row in batch.items():
            anchors = anchors_of.get(meter)
            if anchors is not None and not anchors.is_newest(ts):  # (the usual case: the next point)
                known_anchor = anchors.get(ts)
                # a freeze is news even when it equals the curve record: it is what closes the day
                if known_anchor is not None and (known_anchor.source == "freeze" or row[4] != "freeze"):
                    continue
                if anchors.first is not None and ts < anchors.first and len(anchors) > 1:
                    self.late_rows += 1
                    continue
            out.append(row)
        return out

    # ------------------------------------------------------------------ pricing

    def price_day(
        self, customer: Customer, day: str, tier_start: TierState, anchors: MeterAnchors
    ) -> DayBill:
        """One whole local day of ``customer`` from ``anchors``, tier count from ``tier_start``."""
        start, end = self.book.day_bounds(day)
        bill = DayBill(customer.id, day, tier_start.copy())
        book = self.book
        return price(
            bill, anchors.intervals(start, end), book.timeline, customer.tariff, book.tz, pricing=book.pricing
        )

    def _open_bill(
        self, customer: Customer, day: str, tier_start: TierState, anchors: MeterAnchors
    ) -> DayBill:
        newest = self._open.get(customer.id)
        cached = newest if newest is not None and newest.day == day else self._older.get((customer.id, day))
        dirty = anchors.dirty_from
        if cached is not None and cached.tier_start == tier_start:
            acc = self.book.accounts.get(customer.id)
            if acc is not None and tier_start is acc.tier:  # one object for equal counts (never changed)
                cached.tier_start = tier_start
            bill = cached.bill
            if dirty is None or dirty >= bill.last_start + INTERVAL_S:
                start, end = self.book.day_bounds(day)
                since = max(start, bill.last_start + INTERVAL_S)
                book = self.book
                intervals = anchors.intervals(since, end)
                return price(bill, intervals, book.timeline, customer.tariff, book.tz, pricing=book.pricing)
        bill = self.price_day(customer, day, tier_start, anchors)
        acc = self.book.accounts.get(customer.id)
        # an account's tier count is replaced, never changed: kept as it is (a bill's goes on counting)
        kept = tier_start if acc is not None and tier_start is acc.tier else tier_start.copy()
        opened = _Open(day, self.book.day_bounds(day)[1], kept, bill)
        if newest is None or newest.day <= day:
            if newest is not None and newest.day < day:
                self._older[(customer.id, newest.day)] = newest
            self._open[customer.id] = opened
        else:
            self._older[(customer.id, day)] = opened
        return bill

    def _closed(self, customer: Customer, day: str) -> None:
        """``day``'s charge is decided: its bill is done with."""
        newest = self._open.get(customer.id)
        if newest is not None and newest.day == day:
            del self._open[customer.id]
        older = self._older
        if older and older.pop((customer.id, day), None) is not None and not older:
            # (a dict never gives back its table: after the night's closes, ~0.1 MB of empty slots)
            self._older = {}

    def _closable(self, day: str, anchors: MeterAnchors, now: float) -> bool:
        _, end = self.book.day_bounds(day)
        if (anchors.last or 0) < end:
            return False
        at_end = anchors.get(end)
        return (at_end is not None and at_end.source == "freeze") or now >= end + self.settings.close_grace_s

    def charge(self, customers: Sequence[Customer], now: float, *, everyone: bool = False) -> Cycle:
        """Entries for ``customers``: those whose anchors changed, or all of them with ``everyone``."""
        book = self.book
        ts = int(now * 1000)
        today = book.local_date(now)
        cycle = Cycle([], None, [])
        debits: list[list[Any]] = []
        anchors_of = book.anchors
        steady = 0
        for customer in customers:
            anchors = anchors_of.get(customer.meter)
            if anchors is None:
                continue
            if not everyone:
                if anchors.dirty_from is None:
                    continue
                if self._next_interval(customer, anchors, today, debits):
                    steady += 1
                    continue
            if len(anchors) < 2:
                continue
            acc = book.account(customer.id)
            balance = acc.balance
            tier, balance = self._corrections(customer, anchors, balance, ts, cycle)
            day = (
                book.next_day(acc.closed_through)
                if acc.closed_through
                else book.local_date(anchors.first or 0)
            )
            tier_start = tier if tier is not None else acc.tier  # not mutated here: bills copy it
            last = anchors.last or 0
            in_order = True  # days close one after the other
            while day <= today and book.day_bounds(day)[0] < last:
                bill = self._open_bill(customer, day, tier_start, anchors)
                cycle.priced += 1
                delta = bill.charge_fen - acc.debit_of(day)
                if delta:
                    balance -= delta
                    debits.append([customer.id, day, delta, balance])
                in_order = in_order and self._closable(day, anchors, now)
                if in_order:
                    body = bill_body(customer, bill, tier_start) | {"balance": balance}
                    cycle.charges.append(LedgerEntry("charge", body, ts, f"charge:{customer.id}:{day}"))
                    self._closed(customer, day)
                tier_start = bill.tier
                day = book.next_day(day)
            anchors.dirty_from = None
        cycle.priced += steady
        if debits:
            cycle.debit = LedgerEntry("debit", {"cycle": int(now), "entries": debits}, ts)
        return cycle

    def _next_interval(
        self, customer: Customer, anchors: MeterAnchors, today: str, debits: list[list[Any]]
    ) -> bool:
        """The steady state, priced on its own: one new anchor, one interval after the previous,
        inside the customer's only open day, which the cycle before priced up to that interval (so
        no correction, no day to close: the anchor is before the day's end). False: not this case,
        nothing done -- the general path decides."""
        newest = self._open.get(customer.id)
        if newest is None:
            return False
        step = anchors.newest_step()
        if step is None:
            return False
        a, b = step
        bill = newest.bill
        if bill.last_start != a.ts - INTERVAL_S or b.ts >= newest.end or newest.day > today:
            return False
        book = self.book
        acc = book.accounts.get(customer.id)
        if acc is None:
            return False
        if acc.tier is not newest.tier_seen or acc.closed_through is not newest.closed_seen:
            if newest.tier_start != acc.tier:
                return False
            closed = acc.closed_through
            if closed is None:
                if book.local_date(anchors.first or 0) != newest.day:
                    return False
            elif book.next_day(closed) != newest.day:
                return False
            newest.tier_seen, newest.closed_seen = acc.tier, closed  # (both change only by replacement)
            newest.tier_start = acc.tier  # (equal: one object for both, neither is changed)
        imp = b.imp - a.imp
        if imp < 0:
            anchors.anomalies += 1
            imp = 0
        exp = b.exp - a.exp  # type: ignore[operator]  # newest_step: both carry one
        price_one(bill, a.ts, imp, exp if exp > 0 else 0, book.timeline, customer.tariff, book.pricing)
        delta = round_fen(bill.tou_exact + bill.adder_exact + bill.export_exact) - acc.debit_of(newest.day)
        if delta:
            debits.append([customer.id, newest.day, delta, acc.balance - delta])
        anchors.dirty_from = None
        return True

    def _corrections(
        self, customer: Customer, anchors: MeterAnchors, balance: int, ts: int, cycle: Cycle
    ) -> tuple[TierState | None, int]:
        """Re-price closed days the new anchors touch; returns the tier count after the last one."""
        dirty = anchors.dirty_from
        acc = self.book.account(customer.id)
        if dirty is None or acc.packed is None or acc.closed_through is None:  # (None: none closed)
            return None, balance
        if dirty >= self.book.day_bounds(acc.closed_through)[1]:
            return None, balance  # only open days changed
        tier: TierState | None = None
        for closed in sorted(acc.closed(self.book.names), key=lambda c: c.day):
            day = closed.day
            if tier is None and self.book.day_bounds(day)[1] <= dirty:
                continue
            start = tier if tier is not None else closed.tier_start.copy()
            bill = self.price_day(customer, day, start, anchors)
            tier = bill.tier.copy()
            delta = bill.charge_fen - closed.charge_fen
            if delta or bill.tier != closed.tier_end:
                balance -= delta
                body = bill_body(customer, bill, start) | {
                    "fen": delta,
                    "balance": balance,
                    "reason": "late meter readings re-priced the day",
                }
                cycle.corrections.append(LedgerEntry("correction", body, ts))
        return tier, balance


__all__ = ["Charger", "ChargingSettings", "Cycle", "bill_body"]
