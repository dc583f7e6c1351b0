"""The billing book: every customer's account as the ledger says it is.

Layer: apps (billing). Pure state, no I/O. The ledger is the only source of truth: the book is
the fold of its records (``apply``), the same code whether a record was just appended or is
replayed after a restart. Deciding what to append is ``charging`` / ``feecontrol``'s job; the
book only remembers.

Record kinds and what they do to the book (amounts are integer fen, energies 0.0001 kWh)::

    terminal      {terminal, key_id, public_key}                 the key that signs the roots
    customers     {set: [[id, meter, tariff, prepaid, keep_power]], removed: [id]}   who is billed how
    contract      {document, key, start}                         a contract joins the timeline
    readings      {rows: [[meter, ts, imp, exp|null, source]]}   anchors of the meters' registers
    debit         {cycle, entries: [[customer, date, fen, balance]]}   provisional charges of open days
    charge        {customer, meter, date, charge_fen, kwh{}, tier_start, tier, ...}   a day closed
    correction    {customer, date, fen, balance, reason, charge_fen}   a closed day charged again
    topup/refund  {document, customer, txn_id, fen, balance}     credit (+) or refund (-)
    topup_refused {document, customer, txn_id, reason}           refused for good (idempotent)
    keep_power    {document, customer, on}                       保电 ordered / lifted
    relay         {customer, meter, command, result, status, reason, balance}   a relay action
    reconciliation {date, ok, ...}                               the day's books balanced (or not)
    root          the signed Merkle root (protocols.ledger)
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

from protocols.billing import parse_contract
from protocols.ledger import Record

from .energy import Anchor, MeterAnchors
from .tariff import Pricing, TierState, Timeline

RelayState = str  # "closed" | "open" | "close_allowed" | "unknown"

#: local days of station totals kept beyond the days still open to corrections (``keep_days``)
TOTALS_MARGIN_DAYS = 4
#: entries a date memo holds before it starts over (a week of quarter-hours; the book runs for years)
MEMO_ENTRIES = 7 * 96


@dataclass(frozen=True, slots=True)
class Customer:
    """A billed customer as the station model describes it."""

    id: str
    meter: str  # meter device id
    tariff: str | None = None  # station-model tariff id
    prepaid: bool = True
    keep_power: bool = False  # 保电 flag of the station model


def customer_row(c: Customer) -> list[Any]:
    """A customer as a ``customers`` record lists it."""
    return [c.id, c.meter, c.tariff, c.prepaid, c.keep_power]


#: the tier count of an account with no day closed yet (one object for all: never changed)
NO_TIER = TierState()


@dataclass(frozen=True, slots=True)
class ClosedDay:
    """A kept closed day as ``Account.closed`` makes it (the account keeps it packed in ints)."""

    day: str  # local date
    charge_fen: int  # the day's charge including corrections
    tier_start: TierState
    tier_end: TierState


#: ints a kept closed day takes in ``Account.packed``: day, charge, tier start (4), tier end (4)
CLOSED_WIDTH = 10
#: first code of a name that is neither "" nor a canonical "YYYY-MM-DD" / "YYYY-MM" (an "odd" name)
_ODD = 1 << 32
#: odd names one book takes: a ledger this terminal wrote has none; a corrupt or hostile one naming
#: more is refused (``OddNamesFull``) rather than growing the book's table without end
ODD_NAMES_MAX = 256


class OddNamesFull(ValueError):
    """A record (or checkpoint) names one odd day or month name more than a book takes."""


def _plain_code(name: str) -> int | None:
    """``DayNames.code`` of "" or a canonical date or month name; None for an odd name."""
    if not name:
        return 0
    if len(name) == 10:
        try:
            if date.fromisoformat(name).isoformat() == name:
                return date.fromisoformat(name).toordinal()
        except ValueError:
            pass
    elif len(name) == 7 and name[4] == "-" and name[:4].isdigit() and name[5:].isdigit():
        year, month = int(name[:4]), int(name[5:])
        if 1 <= month <= 12 and f"{year:04d}-{month:02d}" == name:
            return -(year * 12 + month)
    return None


def _plain_name(code: int) -> str:
    """The name ``_plain_code`` gave ``code`` (interned: every account's kept days share it)."""
    if code == 0:
        return ""
    if code > 0:
        return sys.intern(date.fromordinal(code).isoformat())
    year, month = divmod(-code - 1, 12)
    return sys.intern(f"{year:04d}-{month + 1:02d}")


class DayNames:
    """One book's date and month names as ints, exactly (``code``; ``name`` gives the name back),
    for the closed days its accounts keep packed (``pack_closed``): "" 0, "YYYY-MM-DD" its date's
    ordinal (1..3,652,059), "YYYY-MM" -(year x 12 + month), any other name ``_ODD`` + its place
    among the odd names this book met.

    Holds those odd names (at most ``ODD_NAMES_MAX``) and a memo each way (``MEMO_ENTRIES``, least
    recently used first out). The book owns it (``Book.names``) and hands it to its accounts'
    methods (an account holds no reference: 8 B a customer), so two books in one process share
    nothing and the table goes with its book."""

    __slots__ = ("_odd_codes", "_odd_names", "_plain_code", "_plain_name")

    def __init__(self) -> None:
        self._odd_names: list[str] = []  # in the order first seen
        self._odd_codes: dict[str, int] = {}
        self._plain_code = lru_cache(maxsize=MEMO_ENTRIES)(_plain_code)
        self._plain_name = lru_cache(maxsize=MEMO_ENTRIES)(_plain_name)

    def code(self, name: str) -> int:
        """``name`` as one int; OddNamesFull for an odd name past the ``ODD_NAMES_MAX`` held."""
        code = self._plain_code(name)
        if code is None:
            code = self._odd_codes.get(name)
            if code is None:
                if len(self._odd_names) >= ODD_NAMES_MAX:
                    raise OddNamesFull(
                        f"day or month name {name!r} is neither YYYY-MM-DD nor YYYY-MM, and the book "
                        f"already holds {ODD_NAMES_MAX} such names"
                    )
                code = self._odd_codes[name] = _ODD + len(self._odd_names)
                self._odd_names.append(name)
        return code

    def name(self, code: int) -> str:
        """The name ``code`` made ``code`` of."""
        return self._odd_names[code - _ODD] if code >= _ODD else self._plain_name(code)


def _pack_tier(t: TierState, names: DayNames) -> tuple[int, int, int, int]:
    return names.code(t.year), t.year_units, names.code(t.month), t.month_units


def _unpack_tier(p: array[int], at: int, names: DayNames) -> TierState:
    return TierState(names.name(p[at]), p[at + 1], names.name(p[at + 2]), p[at + 3])


def pack_closed(days: Iterable[ClosedDay], names: DayNames) -> array[int] | None:
    """Closed days as ``Account.packed`` keeps them (None: none); int64 amounts (fen, units); their
    names coded by the book's ``names``."""
    ints = [
        x
        for c in days
        for x in (
            names.code(c.day),
            c.charge_fen,
            *_pack_tier(c.tier_start, names),
            *_pack_tier(c.tier_end, names),
        )
    ]
    return array("q", ints) if ints else None


@dataclass(slots=True)
class Account:
    customer: str
    balance: int = 0  # fen; negative = overdraft
    relay: RelayState = "closed"
    alarm: int = 0  # alarm level commanded on the meter: 0 none, 1 alarm 1, 2 alarm 2, 3 overdraft
    keep_power: bool = False  # 保电 ordered by the utility (signed)
    meter_keep_power: bool = False  # 保电 as last told to the meter (3AH / 3BH answered ok or refused)
    tripped: bool = False  # we tripped it (a close is ours to send)
    trip_blocked: bool = False  # a trip due was held back by 保电 (recorded once until things change)
    first_day: str | None = None  # first day with a billable anchor
    # at the start of the first open day: replaced, never changed (bills count on copies), so the
    # accounts with no day closed yet share one zero count
    tier: TierState = field(default_factory=lambda: NO_TIER)
    closed_through: str | None = None  # last closed local date
    # open day, provisional fen debited, open day, fen... (a flat tuple, replaced on change: usually
    # one day, 56 B; a dict was 184 B a customer): ``debit_of`` / ``add_debit`` / ``debits``
    debited: tuple[str | int, ...] = ()
    # recent closed days, in the order they closed, CLOSED_WIDTH ints each (``pack_closed``; None:
    # none): objects per day were ~0.2 kB, these are 80 B. ``closed`` makes them on demand. The
    # methods reading or writing them take the book's ``DayNames`` (the account holds none)
    packed: array[int] | None = None
    credits: int = 0  # top-ups - refunds, ever (fen)
    charges: int = 0  # debits + corrections, ever (fen)

    def debit_of(self, day: str) -> int:
        """Provisional fen debited for open ``day`` so far (0: none)."""
        debited = self.debited
        for i in range(0, len(debited), 2):
            if debited[i] == day:
                return cast(int, debited[i + 1])
        return 0

    def add_debit(self, day: str, fen: int) -> None:
        debited = self.debited
        for i in range(0, len(debited), 2):
            if debited[i] == day:
                self.debited = (*debited[: i + 1], cast(int, debited[i + 1]) + fen, *debited[i + 2 :])
                return
        self.debited = (*debited, sys.intern(day), fen)  # (accounts share the day's name)

    def drop_debit(self, day: str) -> None:
        """``day`` closed: its provisional debits are its charge now."""
        debited = self.debited
        for i in range(0, len(debited), 2):
            if debited[i] == day:
                self.debited = debited[:i] + debited[i + 2 :]
                return

    def closed(self, names: DayNames) -> tuple[ClosedDay, ...]:
        """The kept closed days in the order they closed (made from ``packed`` on each call)."""
        p = self.packed
        if p is None:
            return ()
        return tuple(
            ClosedDay(
                names.name(p[i]), p[i + 1], _unpack_tier(p, i + 2, names), _unpack_tier(p, i + 6, names)
            )
            for i in range(0, len(p), CLOSED_WIDTH)
        )

    def _closed_at(self, day: str, names: DayNames) -> int:
        """Where closed ``day`` starts in ``packed`` (-1: not kept)."""
        p = self.packed
        if p is not None:
            code = names.code(day)
            for i in range(0, len(p), CLOSED_WIDTH):
                if p[i] == code:
                    return i
        return -1

    def closed_day(self, day: str, names: DayNames) -> ClosedDay | None:
        """Closed ``day`` if it is still kept."""
        if self._closed_at(day, names) < 0:
            return None
        return next((c for c in self.closed(names) if c.day == day), None)

    def keep_closed(self, done: ClosedDay, names: DayNames) -> None:
        """Keep a day just closed (charged again: in its place, as a dict's key keeps its place)."""
        days = self.closed(names)
        if self._closed_at(done.day, names) < 0:
            self.packed = pack_closed((*days, done), names)
        else:
            self.packed = pack_closed((done if c.day == done.day else c for c in days), names)

    def correct_closed(self, day: str, fen: int, tier_end: TierState, names: DayNames) -> None:
        """A correction of kept closed ``day``: its charge moves by ``fen``, its end count is ``tier_end``."""
        at = self._closed_at(day, names)
        p = self.packed
        if at >= 0 and p is not None:
            p[at + 1] += fen
            p[at + 6 : at + 10] = array("q", _pack_tier(tier_end, names))

    def oldest_closed(self, names: DayNames) -> str | None:
        """The oldest closed day kept (still open to corrections)."""
        p = self.packed
        if p is None:
            return None
        return min(names.name(p[i]) for i in range(0, len(p), CLOSED_WIDTH))

    def debits(self) -> dict[str, int]:
        """Open day -> provisional fen debited, in the order the days were first debited."""
        debited = self.debited
        return {cast(str, debited[i]): cast(int, debited[i + 1]) for i in range(0, len(debited), 2)}


@dataclass(slots=True)
class DayTotals:
    """What the ledger says about one local day, station-wide (fen)."""

    debits: int = 0
    corrections: int = 0
    charges: int = 0
    credits: int = 0
    refunds: int = 0
    # (int64 arrays: a list held an int object per customer-day's charge)
    debit_seqs: array[int] = field(default_factory=lambda: array("q"))
    charge_seqs: array[int] = field(default_factory=lambda: array("q"))


class Book:
    """Accounts, anchors and contracts, folded from the ledger. Holds its own tables and memos too:
    ``names`` (the day and month names its accounts' closed days are packed with) and ``pricing``
    (what pricing its bills shares), so two books in one process share nothing."""

    def __init__(self, tz: ZoneInfo, *, keep_days: int = 3) -> None:
        self.tz = tz
        self.keep_days = keep_days
        self.accounts: dict[str, Account] = {}
        self.anchors: dict[str, MeterAnchors] = {}
        self.timeline = Timeline()
        self.contracts: dict[str, Record] = {}  # key -> its ledger record
        self.days: dict[str, DayTotals] = {}
        self.reconciled: dict[str, bool] = {}
        self.terminal_key: str | None = None
        self.directory: dict[str, Customer] = {}  # who is billed, as the ledger last recorded it
        self.last_seq = 0
        self.head = ""
        self.counts: dict[str, int] = {}
        self._bounds: dict[str, tuple[int, int]] = {}
        self._dates: dict[int, str] = {}
        self._next: dict[str, str] = {}
        self.names = DayNames()
        self.pricing = Pricing(tz)

    # ------------------------------------------------------------------ time

    def local_date(self, ts: float) -> str:
        """The local date of ``ts`` (cached per 15 minutes: every UTC offset in use is a multiple)."""
        key = int(ts // 900)
        known = self._dates.get(key)
        if known is None:
            known = _memo(self._dates, key, datetime.fromtimestamp(key * 900, self.tz).date().isoformat())
        return known

    def day_bounds(self, day: str) -> tuple[int, int]:
        """UTC epoch of the local day's start and end (cached)."""
        known = self._bounds.get(day)
        if known is None:
            d = date.fromisoformat(day)
            start = datetime.combine(d, datetime.min.time(), self.tz)
            end = datetime.combine(d + timedelta(days=1), datetime.min.time(), self.tz)
            known = _memo(self._bounds, day, (int(start.timestamp()), int(end.timestamp())))
        return known

    def next_day(self, day: str) -> str:
        known = self._next.get(day)
        if known is None:
            known = _memo(self._next, day, (date.fromisoformat(day) + timedelta(days=1)).isoformat())
        return known

    # ------------------------------------------------------------------ accounts

    def account(self, customer: str) -> Account:
        acc = self.accounts.get(customer)
        if acc is None:
            acc = self.accounts[customer] = Account(customer)
        return acc

    def meter_anchors(self, meter: str) -> MeterAnchors:
        anchors = self.anchors.get(meter)
        if anchors is None:
            anchors = self.anchors[meter] = MeterAnchors()
        return anchors

    def totals(self, day: str) -> DayTotals:
        totals = self.days.get(day)
        if totals is None:
            totals = self.days[day] = DayTotals()
            if len(self.days) > self.keep_days + TOTALS_MARGIN_DAYS:
                del self.days[min(self.days)]  # the oldest: closed long ago, nothing changes it
        return totals

    # ------------------------------------------------------------------ the fold

    def apply(self, record: Record) -> None:
        """Fold one ledger record (in seq order) into the book."""
        handler = getattr(self, f"_on_{record.kind}", None)
        if handler is not None:
            try:
                handler(record, record.body)
            except OddNamesFull as err:
                raise OddNamesFull(f"ledger record {record.seq} ({record.kind}): {err}") from err
        self.last_seq = record.seq
        self.head = record.hash
        self.counts[record.kind] = self.counts.get(record.kind, 0) + 1

    def _on_terminal(self, record: Record, body: dict[str, Any]) -> None:
        self.terminal_key = str(body["public_key"])

    def _on_customers(self, record: Record, body: dict[str, Any]) -> None:
        for customer_id, meter, tariff, prepaid, keep_power in body.get("set", []):
            self.directory[customer_id] = Customer(
                customer_id, meter, tariff, bool(prepaid), bool(keep_power)
            )
        for customer_id in body.get("removed", []):
            self.directory.pop(customer_id, None)

    def _on_contract(self, record: Record, body: dict[str, Any]) -> None:
        contract = parse_contract(body["document"]["body"])
        if contract.key not in self.contracts:
            self.timeline.add(contract)
        self.contracts[contract.key] = record

    def _on_readings(self, record: Record, body: dict[str, Any]) -> None:
        anchors = self.anchors
        for meter, ts, imp, exp, source in body["rows"]:  # ints from our own ledger (JSON)
            found = anchors.get(meter)
            if found is None:  # (not ``or``: an empty MeterAnchors is false, and len() costs a call)
                found = anchors[meter] = MeterAnchors()
            found.add(Anchor(ts, imp, exp, source))

    def _on_debit(self, record: Record, body: dict[str, Any]) -> None:
        accounts = self.accounts
        per_day: dict[str, int] = {}  # the station's totals move once per day, not per entry
        for customer, day, fen, _balance in body["entries"]:
            acc = accounts.get(customer)
            if acc is None:
                acc = self.account(customer)
            acc.balance -= fen
            acc.charges += fen
            acc.add_debit(day, fen)
            first = acc.first_day
            if first is None or day < first:
                acc.first_day = sys.intern(day)
            per_day[day] = per_day.get(day, 0) + fen
        for day, fen in per_day.items():
            totals = self.totals(day)
            totals.debits += fen
            if not totals.debit_seqs or totals.debit_seqs[-1] != record.seq:
                totals.debit_seqs.append(record.seq)

    def _on_charge(self, record: Record, body: dict[str, Any]) -> None:
        acc = self.account(body["customer"])
        day = sys.intern(body["date"])  # (every account that closed the day shares its name)
        tier_end = TierState.from_json(body["tier"])
        acc.keep_closed(
            ClosedDay(day, int(body["charge_fen"]), TierState.from_json(body["tier_start"]), tier_end),
            self.names,
        )
        acc.closed_through = max(acc.closed_through or day, day)
        acc.tier = tier_end  # (its own object: an account's tier count is replaced, never changed)
        acc.drop_debit(day)
        if acc.first_day is None:
            acc.first_day = day
        totals = self.totals(day)
        totals.charges += int(body["charge_fen"])
        totals.charge_seqs.append(record.seq)
        self._forget_old(acc)
        oldest = acc.oldest_closed(self.names)
        if oldest is not None:  # anchors before the oldest day still open to corrections are done with
            anchors = self.anchors.get(str(body["meter"]))
            if anchors is not None:
                anchors.prune(self.day_bounds(oldest)[0])

    def _on_correction(self, record: Record, body: dict[str, Any]) -> None:
        acc = self.account(body["customer"])
        fen = int(body["fen"])
        acc.balance -= fen
        acc.charges += fen
        day = body["date"]
        acc.correct_closed(day, fen, TierState.from_json(body["tier"]), self.names)
        if day == acc.closed_through:  # the tier count the first open day starts from
            acc.tier = TierState.from_json(body["tier"])
        totals = self.totals(day)
        totals.corrections += fen
        totals.charge_seqs.append(record.seq)

    def _on_topup(self, record: Record, body: dict[str, Any]) -> None:
        acc = self.account(body["customer"])
        fen = int(body["fen"])
        acc.balance += fen
        acc.credits += fen
        acc.trip_blocked = False
        totals = self.totals(self.local_date(record.ts / 1000))
        if fen >= 0:
            totals.credits += fen
        else:
            totals.refunds -= fen

    _on_refund = _on_topup

    def _on_keep_power(self, record: Record, body: dict[str, Any]) -> None:
        acc = self.account(body["customer"])
        acc.keep_power = bool(body["on"])
        acc.trip_blocked = False

    def _on_relay(self, record: Record, body: dict[str, Any]) -> None:
        result, command = body.get("result"), body["command"]
        if result == "blocked":
            self.account(body["customer"]).trip_blocked = True
        if command in ("keep_power", "keep_power_release") and result in ("ok", "refused"):
            self.account(body["customer"]).meter_keep_power = command == "keep_power"
        if result != "ok":
            return
        acc = self.account(body["customer"])
        if command == "trip":
            acc.relay, acc.tripped = "open", True
        elif command == "close_allowed":
            acc.relay, acc.tripped = ("closed" if not body.get("open", True) else "close_allowed"), False
        elif command == "direct_close":
            acc.relay, acc.tripped = "closed", False
        elif command == "alarm":
            acc.alarm = int(body.get("level", 1))
        elif command == "alarm_release":
            acc.alarm = 0
        elif command == "observed":  # the meter reported its relay state (e.g. the button was pressed)
            acc.relay = "open" if body.get("open") else "closed"

    def _on_reconciliation(self, record: Record, body: dict[str, Any]) -> None:
        self.reconciled[body["date"]] = bool(body["ok"])

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, contracts: list[dict[str, Any]], anchors_from: int) -> dict[str, Any]:
        """The body of a ``checkpoint`` record: what a restart needs besides the anchors, which
        are replayed from the ``readings`` records from seq ``anchors_from`` on."""
        accounts = {
            c: {
                "balance": a.balance,
                "relay": a.relay,
                "alarm": a.alarm,
                "keep_power": a.keep_power,
                "meter_keep_power": a.meter_keep_power,
                "tripped": a.tripped,
                "trip_blocked": a.trip_blocked,
                "first_day": a.first_day,
                "tier": a.tier.to_json(),
                "closed_through": a.closed_through,
                "debited": a.debits(),
                "closed": {
                    v.day: [v.charge_fen, v.tier_start.to_json(), v.tier_end.to_json()]
                    for v in a.closed(self.names)
                },
                "credits": a.credits,
                "charges": a.charges,
            }
            for c, a in sorted(self.accounts.items())
        }
        return {
            "accounts": accounts,
            "contracts": contracts,
            "anchors_from": anchors_from,
            "terminal_key": self.terminal_key,
            "directory": [customer_row(c) for _, c in sorted(self.directory.items())],
            "reconciled": dict(sorted(self.reconciled.items())[-10:]),
        }

    def _on_checkpoint(self, record: Record, body: dict[str, Any]) -> None:
        """Nothing to fold live (the checkpoint restates the book); ``restore`` uses it at start."""

    def restore(self, body: dict[str, Any]) -> None:
        """Load a checkpoint's accounts and contracts (anchors come from replaying readings)."""
        self.accounts = {}
        for c, a in body["accounts"].items():
            try:
                packed = pack_closed(
                    (
                        ClosedDay(d, int(v[0]), TierState.from_json(v[1]), TierState.from_json(v[2]))
                        for d, v in a["closed"].items()
                    ),
                    self.names,
                )
            except OddNamesFull as err:
                raise OddNamesFull(f"checkpoint, account {c!r}: {err}") from err
            self.accounts[c] = Account(
                customer=c,
                balance=int(a["balance"]),
                relay=str(a["relay"]),
                alarm=int(a["alarm"]),
                keep_power=bool(a["keep_power"]),
                meter_keep_power=bool(a.get("meter_keep_power", a["keep_power"])),
                tripped=bool(a["tripped"]),
                trip_blocked=bool(a.get("trip_blocked", False)),
                first_day=a["first_day"],
                tier=TierState.from_json(a["tier"]),
                closed_through=a["closed_through"],
                debited=tuple(x for d, v in a["debited"].items() for x in (d, int(v))),
                packed=packed,
                credits=int(a["credits"]),
                charges=int(a["charges"]),
            )
        for entry in body["contracts"]:
            contract = parse_contract(entry["document"]["body"])
            if contract.key not in self.contracts:
                self.timeline.add(contract)
            self.contracts[contract.key] = Record(0, 0, "contract", None, entry, "", "")
        self.terminal_key = body.get("terminal_key")
        self.directory = {}
        self._on_customers(Record(0, 0, "customers", None, {}, "", ""), {"set": body.get("directory", [])})
        self.reconciled.update({k: bool(v) for k, v in body.get("reconciled", {}).items()})

    def _forget_old(self, acc: Account) -> None:
        p = acc.packed
        if p is not None and len(p) > self.keep_days * CLOSED_WIDTH:
            closed = acc.closed(self.names)
            gone = set(sorted(c.day for c in closed)[: len(closed) - self.keep_days])
            acc.packed = pack_closed((c for c in closed if c.day not in gone), self.names)


def _memo(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    """Remember ``value`` under ``key``; a full memo starts over (what it forgets is computed again)."""
    if len(cache) >= MEMO_ENTRIES:
        cache.clear()
    cache[key] = value
    return value


__all__ = [
    "ODD_NAMES_MAX",
    "Account",
    "Book",
    "ClosedDay",
    "Customer",
    "DayNames",
    "DayTotals",
    "OddNamesFull",
    "RelayState",
    "customer_row",
    "pack_closed",
]
