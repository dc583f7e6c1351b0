"""What the master station makes of the ledger: the ``ttu cloud billing --json`` summary, the three
parties' views, and the verification of the chain, the roots, the reconciliation and every charge.

Layer: apps (billing), cloud side. Pure: works on the bodies of stream ``billing`` as the cloud
stored them (``{"type": "ledger", "records": [...], "head": {...}}``, and ``ledger_piece``
messages of a record too big for one, joined here) and on the bank's own list
of transactions; never imports the simulator or the stub. Money in the output is decimal text.

* ``summary`` -- ``{"terminal", "customers": [one row per customer-day: customer_id, meter_id,
  date, kwh{sharp, peak, flat, valley}, charge_yuan, balance_yuan, relay], "ledger": {length,
  head, verified}, "reconciliation": [{date, ok, difference_yuan, ...}]}``;
* ``marketing`` (contracts applied, charges per customer-day, relay actions), ``bank`` (top-ups
  and refunds against the bank's list, balances), ``finance`` (daily totals of debits, credits,
  corrections; equal to marketing's totals);
* ``verify`` -- the chain audited (edited, removed, reordered, replayed records; roots signed by
  the terminal's key; the head the terminal last reported), every day reconciled, and every charge
  priced again from the readings and contracts the ledger itself holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from protocols.billing import ENERGY, SignatureError, parse_contract, parse_public_key, parse_yuan, yuan
from protocols.cloud import ResultReader
from protocols.errors import ProtocolError
from protocols.ledger import Audit, LedgerError, PieceJoiner, Record, SignedHead, audit

from .book import Book, Customer
from .charging import Charger, ChargingSettings
from .reconcile import BankTxn, reconcile
from .tariff import TierState

DEFAULT_TZ = "Asia/Shanghai"
STREAM = "billing"
ALL = 1 << 62  # every stored message (the ledger is read whole)


def _records(bodies: Iterable[Any]) -> tuple[list[Record], list[Record], tuple[int, str] | None]:
    """Records by seq (the first copy of each), the copies that differ from it, the last head."""
    records, conflicts, heads = _records_and_heads(bodies)
    last = max(heads, key=lambda h: h.seq, default=None)
    return records, conflicts, None if last is None else (last.seq, last.hash)


def _records_and_heads(bodies: Iterable[Any]) -> tuple[list[Record], list[Record], list[SignedHead]]:
    by_seq: dict[int, Record] = {}
    conflicts: list[Record] = []
    heads: list[SignedHead] = []
    pieces = PieceJoiner()
    for body in bodies:
        if not isinstance(body, dict) or body.get("type") not in ("ledger", "ledger_piece"):
            continue
        raws: list[Any] = body.get("records", []) if body["type"] == "ledger" else []
        if body["type"] == "ledger_piece":
            try:
                joined = pieces.add(body)
            except LedgerError:
                joined = None
            raws = [] if joined is None else [joined.to_json()]
        for raw in raws:
            try:
                record = Record.from_json(raw)
            except LedgerError:
                continue
            known = by_seq.get(record.seq)
            if known is None:
                by_seq[record.seq] = record
            elif known.hash != record.hash:
                conflicts.append(record)
        h = body.get("head")
        if isinstance(h, dict):
            seq, digest, signature = h.get("seq"), h.get("hash"), h.get("signature", "")
            if isinstance(seq, int) and isinstance(digest, str) and isinstance(signature, str):
                heads.append(SignedHead(seq, digest, signature))
    return [by_seq[s] for s in sorted(by_seq)], conflicts, heads


def terminal_key(records: Iterable[Record], given: Any = None) -> Any:
    """The key the roots and heads must verify with: the one given (pinned), else the one the
    terminal put in its first ``terminal`` record (trust on first use)."""
    if given is not None:
        return given
    for r in records:
        if r.kind == "terminal":
            try:
                return parse_public_key(str(r.body.get("public_key", "")))
            except SignatureError:
                return None
    return None


def _audit(records: list[Record], heads: list[SignedHead], public_key: Any) -> Audit:
    key = terminal_key(records, public_key)
    last = max(heads, key=lambda h: h.seq, default=None)
    signed = [h for h in heads if h.signature]
    return audit(
        records, public_key=key, head=None if last is None else (last.seq, last.hash), signed_heads=signed
    )


def timezone_of(records: Iterable[Record]) -> ZoneInfo:
    for r in records:
        if r.kind == "contract":
            return ZoneInfo(str(r.body["document"]["body"].get("timezone", DEFAULT_TZ)))
    return ZoneInfo(DEFAULT_TZ)


def bank_transactions(issued: Iterable[Mapping[str, Any]]) -> dict[str, BankTxn]:
    """The bank's list from the top-up documents it issued (and the terminal did not refuse)."""
    out: dict[str, BankTxn] = {}
    for doc in issued:
        body = doc.get("body", {}) if isinstance(doc, Mapping) else {}
        try:
            amount = parse_yuan(body["amount_yuan"], "amount_yuan")
            fen = -amount if body.get("type") == "refund" else amount
            out[str(body["txn_id"])] = BankTxn(str(body["txn_id"]), str(body["customer_id"]), fen)
        except (KeyError, TypeError, ValueError, ProtocolError):
            continue
    return out


@runtime_checkable
class CommandLog(Protocol):
    """A master station that keeps its own record of the commands it sent and their replies."""

    def command_log(
        self, *, name: str | None = None, terminal: str | None = None
    ) -> list[dict[str, Any]]: ...


def stored_bodies(reader: ResultReader, terminal: str | None = None) -> dict[str, list[Any]]:
    """Every stored message body of stream ``billing`` by terminal, oldest first."""
    out: dict[str, list[Any]] = {}
    for stored in reversed(reader.results(STREAM, terminal=terminal, limit=ALL)):
        out.setdefault(stored.terminal, []).append(stored.body)
    return out


def bank_list(reader: ResultReader, terminal: str) -> dict[str, BankTxn] | None:
    """What the bank issued to ``terminal`` and the terminal did not refuse, from the master
    station's command log; None when the station keeps no such log (then only the ledger counts)."""
    if not isinstance(reader, CommandLog):
        return None
    issued: list[Mapping[str, Any]] = []
    for command in reader.command_log(name="billing.topup", terminal=terminal):
        args, reply = command["args"], command["reply"]
        documents = args.get("documents") or [args.get("document")]
        results = (reply or {}).get("result") or {}
        statuses = [r.get("status") for r in results.get("results", [])] or [results.get("status")]
        for i, doc in enumerate(documents):
            status = statuses[i] if i < len(statuses) else None
            if isinstance(doc, Mapping) and status != "refused":
                issued.append(doc)
    return bank_transactions(issued)


def _kwh(units: int) -> float:
    return round(units / ENERGY, 4)


def summary(
    terminal: str,
    bodies: Iterable[Any],
    *,
    bank: Mapping[str, BankTxn] | None = None,
    date: str | None = None,
    public_key: Any = None,
    detail: bool = False,
    open_days: bool = True,
) -> dict[str, Any]:
    """The issue's shape exactly: one row per customer-day, closed days as charged (and corrected)
    by the terminal, then each customer's days still open (``open_days``): the charge debited so
    far, the kWh so far priced from the ledger's own readings, the balance and relay as they are
    now. ``detail`` adds per row ``closed``, ``estimated_intervals`` and ``contracts``, the
    ledger's ``problems`` count, and each day's reconciliation totals."""
    records, conflicts, heads = _records_and_heads(bodies)
    tz = timezone_of(records)
    relay: dict[str, str] = {}
    balance: dict[str, int] = {}
    debited: dict[tuple[str, str], int] = {}
    rows: list[dict[str, Any]] = []
    closed: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        body = r.body
        if r.kind == "relay" and body.get("result") == "ok":
            relay[body["customer"]] = _relay_after(relay.get(body["customer"], "closed"), body)
        elif r.kind == "debit":
            for customer, day, fen, after in body["entries"]:
                debited[(customer, day)] = debited.get((customer, day), 0) + int(fen)
                balance[customer] = int(after)
        elif r.kind in ("topup", "refund"):
            balance[body["customer"]] = int(body["balance"])
        elif r.kind == "correction":
            balance[body["customer"]] = int(body["balance"])
            row = closed.get((body["customer"], body["date"]))
            if row is not None:
                row["charge_yuan"] = yuan(int(body["charge_fen"]))
                row["balance_yuan"] = yuan(int(body["balance"]))
                row["kwh"] = {p: _kwh(int(v)) for p, v in body["kwh"].items()}
        elif r.kind == "charge":
            key = (body["customer"], body["date"])
            closed[key] = row = {
                "customer_id": body["customer"],
                "meter_id": body["meter"],
                "date": body["date"],
                "kwh": {p: _kwh(int(v)) for p, v in body["kwh"].items()},
                "charge_yuan": yuan(int(body["charge_fen"])),
                "balance_yuan": yuan(int(body["balance"])),
                "relay": relay.get(body["customer"], "closed"),
            }
            if detail:
                row |= {"closed": True, "estimated_intervals": int(body.get("estimated", 0)),
                        "contracts": list(body.get("contracts", []))}  # fmt: skip
            if date is None or body["date"] == date:
                rows.append(row)
    reconciled = sorted({row["date"] for row in rows} if date is None else {date})
    if open_days:
        still_open = {k: fen for k, fen in debited.items() if k not in closed and date in (None, k[1])}
        for row in _open_rows(records, tz, still_open, detail=detail):
            row["balance_yuan"] = yuan(balance.get(row["customer_id"], 0))
            row["relay"] = relay.get(row["customer_id"], "closed")
            rows.append(row)
    rows.sort(key=lambda row: (row["date"], row["customer_id"]))
    result = _audit(records, heads, public_key)
    by_day = [reconcile(records, day, tz, bank=_bank_of_day(bank, records, day, tz)) for day in reconciled]
    ledger: dict[str, Any] = {
        "length": result.length,
        "head": result.head,
        "verified": result.ok and not conflicts,
    }
    if detail:
        ledger["problems"] = len(result.problems) + len(conflicts)
    return {
        "terminal": terminal,
        "customers": rows,
        "ledger": ledger,
        "reconciliation": [
            {
                "date": x.date,
                "ok": x.ok,
                "difference_yuan": yuan(x.difference_fen),
                **(_extra(x.to_json()) if detail else {}),
            }
            for x in by_day
        ],
    }


def _open_rows(
    records: list[Record], tz: ZoneInfo, debited: Mapping[tuple[str, str], int], *, detail: bool
) -> list[dict[str, Any]]:
    """Rows of the customer-days still open: what was debited for them so far, and their kWh by
    TOU period priced again from the ledger's readings, contracts and customer records (the tier
    count continues from the customer's last closed day)."""
    if not debited:
        return []
    book = Book(tz)
    charger = Charger(book, ChargingSettings(close_grace_s=0))
    meters: dict[str, str] = {}
    tier_end: dict[str, TierState] = {}
    for r in records:
        if r.kind in ("contract", "customers"):
            book.apply(r)
        elif r.kind in ("charge", "correction"):
            meters.setdefault(r.body["customer"], r.body["meter"])
            tier_end[r.body["customer"]] = TierState.from_json(r.body["tier"])
    wanted = {c: book.directory.get(c) for c, _ in debited}
    billed = {x.meter for x in wanted.values() if x is not None} | set(meters.values())
    for r in records:
        if r.kind == "readings":
            rows = [row for row in r.body["rows"] if row[0] in billed]
            if rows:
                book.apply(Record(r.seq, r.ts, r.kind, r.uid, {"rows": rows}, r.prev, r.hash))
    out: list[dict[str, Any]] = []
    for customer_id, day in sorted(debited, key=lambda k: (k[0], k[1])):
        known = wanted.get(customer_id)
        meter = known.meter if known is not None else meters.get(customer_id)
        row: dict[str, Any] = {
            "customer_id": customer_id,
            "meter_id": meter or "",
            "date": day,
            "kwh": dict.fromkeys(("sharp", "peak", "flat", "valley"), 0.0),
            "charge_yuan": yuan(debited[(customer_id, day)]),
        }
        anchors = None if meter is None else book.anchors.get(meter)
        bill = None
        if anchors is not None:
            customer = known or Customer(customer_id, meter or "", None)
            bill = charger.price_day(customer, day, tier_end.get(customer_id, TierState()), anchors)
            tier_end[customer_id] = bill.tier
            row["kwh"] = {p: _kwh(v) for p, v in bill.kwh.items()}
        if detail:
            row |= {"closed": False, "estimated_intervals": 0 if bill is None else bill.estimated,
                    "contracts": [] if bill is None else list(bill.contracts)}  # fmt: skip
        out.append(row)
    return out


def _extra(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in ("date", "ok", "difference_yuan")}


def _relay_after(state: str, body: Mapping[str, Any]) -> str:
    command = body.get("command")
    if command == "trip":
        return "open"
    if command == "close_allowed":
        return "close_allowed" if body.get("open") else "closed"
    if command == "direct_close":
        return "closed"
    if command == "observed":
        return "open" if body.get("open") else "closed"
    return state


def _bank_of_day(
    bank: Mapping[str, BankTxn] | None, records: list[Record], day: str, tz: ZoneInfo
) -> dict[str, BankTxn] | None:
    """The bank's transactions that belong to ``day``: by the day the ledger credited them, and
    the ones the ledger never credited by... the day they would have been (all of them, on the
    last day reconciled, so a lost top-up is reported once)."""
    if bank is None:
        return None
    credited = {
        str(r.body["txn_id"]): datetime.fromtimestamp(r.ts / 1000, tz).date().isoformat()
        for r in records
        if r.kind in ("topup", "refund", "topup_refused")
    }
    last = max((d for d in credited.values()), default=day)
    return {
        t: txn for t, txn in bank.items() if credited.get(t) == day or (t not in credited and day == last)
    }


# ------------------------------------------------------------------ the three parties


def marketing(terminal: str, bodies: Iterable[Any]) -> dict[str, Any]:
    records, _, _ = _records(bodies)
    return {
        "terminal": terminal,
        "contracts": [
            {"key": r.body["key"], "seq": r.seq, "customers": r.body.get("customers")}
            for r in records
            if r.kind == "contract"
        ],
        "charges": summary(
            terminal, [{"type": "ledger", "records": [x.to_json() for x in records]}], open_days=False
        )["customers"],
        "relay_actions": [
            {"seq": r.seq, **{k: r.body.get(k) for k in ("customer", "meter", "command", "result", "reason")}}
            for r in records
            if r.kind == "relay"
        ],
    }


def bank_view(terminal: str, bodies: Iterable[Any], bank: Mapping[str, BankTxn] | None) -> dict[str, Any]:
    """Top-ups and refunds, the bank's list against the ledger (``bank`` None: the master station
    keeps no list of its own, the ledger's are shown), and the balances."""
    known = bank is not None
    bank = bank or {}
    records, _, _ = _records(bodies)
    ledger: dict[str, Record] = {
        str(r.body["txn_id"]): r for r in records if r.kind in ("topup", "refund", "topup_refused")
    }
    balances: dict[str, int] = {}
    for r in records:
        if r.kind in ("topup", "refund"):
            balances[r.body["customer"]] = int(r.body["balance"])
        elif r.kind == "debit":
            for customer, _, _, balance in r.body["entries"]:
                balances[customer] = int(balance)
        elif r.kind == "correction":
            balances[r.body["customer"]] = int(r.body["balance"])
    txns = []
    for txn_id in sorted(set(bank) | set(ledger)):
        issued, record = bank.get(txn_id), ledger.get(txn_id)
        txns.append(
            {
                "txn_id": txn_id,
                "customer": (issued.customer if issued else record.body["customer"] if record else None),
                "bank_yuan": None if issued is None else yuan(issued.fen),
                "ledger_yuan": None if record is None else yuan(int(record.body.get("fen", 0))),
                "status": "missing in ledger"
                if record is None
                else record.kind
                if issued or not known
                else "not issued by the bank",
                "seq": None if record is None else record.seq,
            }
        )
    return {
        "terminal": terminal,
        "bank_list": known,
        "transactions": txns,
        "balances": [{"customer_id": c, "balance_yuan": yuan(b)} for c, b in sorted(balances.items())],
    }


def finance(
    terminal: str, bodies: Iterable[Any], bank: Mapping[str, BankTxn] | None = None
) -> dict[str, Any]:
    records, _, _ = _records(bodies)
    tz = timezone_of(records)
    days = sorted({r.body["date"] for r in records if r.kind == "charge"})
    return {
        "terminal": terminal,
        "days": [reconcile(records, d, tz, bank=_bank_of_day(bank, records, d, tz)).to_json() for d in days],
    }


# ------------------------------------------------------------------ verification


def verify(terminal: str, bodies: Iterable[Any], *, bank: Mapping[str, BankTxn] | None = None,
           public_key: Any = None) -> dict[str, Any]:  # fmt: skip
    records, conflicts, heads = _records_and_heads(bodies)
    result = _audit(records, heads, public_key)
    problems = [p.to_json() for p in result.problems]
    problems += [
        {"kind": "conflict", "seq": r.seq, "detail": "two different records with this seq"} for r in conflicts
    ]
    tz = timezone_of(records)
    days = sorted({r.body["date"] for r in records if r.kind == "charge"})
    recs = [reconcile(records, d, tz, bank=_bank_of_day(bank, records, d, tz)).to_json() for d in days]
    mismatched = reprice(records, tz)
    ok = not problems and all(x["ok"] for x in recs) and not mismatched
    return {
        "terminal": terminal,
        "ok": ok,
        "ledger": {"length": result.length, "head": result.head, "roots": result.roots, "problems": problems},
        "reconciliation": recs,
        "charges": {"checked": sum(1 for r in records if r.kind == "charge"), "mismatched": mismatched},
    }


def reprice(records: list[Record], tz: ZoneInfo) -> list[dict[str, Any]]:
    """Every customer-day priced again from the readings and contracts the ledger holds, against
    its final charge (the charge record, or the last correction of that day)."""
    book = Book(tz)
    charger = Charger(book, ChargingSettings(close_grace_s=0))
    final: dict[tuple[str, str], Record] = {}
    for r in records:
        if r.kind == "contract":
            book.timeline.add(parse_contract(r.body["document"]["body"]))
        elif r.kind == "readings":
            book.apply(r)
        elif r.kind in ("charge", "correction"):
            final[(r.body["customer"], r.body["date"])] = r
    mismatched = []
    for (customer_id, day), r in sorted(final.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        body = r.body
        customer = Customer(customer_id, body["meter"], body.get("tariff"))
        anchors = book.anchors.get(customer.meter)
        if anchors is None:
            mismatched.append(
                {"seq": r.seq, "customer": customer_id, "date": day, "detail": "no readings in the ledger"}
            )
            continue
        bill = charger.price_day(customer, day, TierState.from_json(body["tier_start"]), anchors)
        if bill.charge_fen != int(body["charge_fen"]):
            mismatched.append(
                {"seq": r.seq, "customer": customer_id, "date": day,
                 "charged_yuan": yuan(int(body["charge_fen"])), "priced_yuan": yuan(bill.charge_fen)}
            )  # fmt: skip
    return mismatched


__all__ = [
    "ALL",
    "STREAM",
    "CommandLog",
    "bank_list",
    "bank_transactions",
    "bank_view",
    "finance",
    "marketing",
    "reprice",
    "stored_bodies",
    "summary",
    "timezone_of",
    "verify",
]
