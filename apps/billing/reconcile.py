"""Daily reconciliation (对账): marketing's charges, finance's ledger debits and the bank's top-ups.

Layer: apps (billing). Pure: works on ledger records (and, at the master station, on the bank's
own list of transactions), so the terminal and the three parties run the same check.

For one local day D:

* marketing: Σ ``charge.charge_fen`` of D (+ corrections of D) per customer-day closed;
* finance (the ledger's debits): Σ ``debit`` entries dated D (+ the same corrections) for the
  same customers -- a customer whose day D is still open is listed as open, not as a difference;
* bank: every transaction the bank issued on D must be a ``topup``/``refund`` record of the same
  amount, and every such record of D must be a transaction the bank issued (when the bank's list
  is given); ``topup_refused`` records are the terminal's answer to a transaction and match it
  as zero.

``difference_yuan`` is the sum of the absolute differences; ``ok`` means it is zero. Each
difference names the records (seq) behind it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from protocols.billing import yuan
from protocols.ledger import Record


@dataclass(slots=True)
class Difference:
    kind: str  # charge_vs_debit | bank_missing | ledger_extra | amount
    subject: str  # customer id or transaction id
    fen: int  # signed: expected - found
    seqs: list[int] = field(default_factory=list)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "difference_yuan": yuan(self.fen),
            "seqs": self.seqs,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Reconciliation:
    date: str
    charges_fen: int = 0
    debits_fen: int = 0
    corrections_fen: int = 0
    credits_fen: int = 0
    refunds_fen: int = 0
    bank_fen: int | None = None
    customers_closed: int = 0
    customers_open: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    @property
    def difference_fen(self) -> int:
        return sum(abs(d.fen) for d in self.differences)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "ok": self.ok,
            "difference_yuan": yuan(self.difference_fen),
            "charges_yuan": yuan(self.charges_fen + self.corrections_fen),
            "debits_yuan": yuan(self.debits_fen + self.corrections_fen),
            "corrections_yuan": yuan(self.corrections_fen),
            "credits_yuan": yuan(self.credits_fen),
            "refunds_yuan": yuan(self.refunds_fen),
            "bank_yuan": None if self.bank_fen is None else yuan(self.bank_fen),
            "customers_closed": self.customers_closed,
            "customers_open": self.customers_open,
            "differences": [d.to_json() for d in self.differences],
        }


@dataclass(frozen=True, slots=True)
class BankTxn:
    txn_id: str
    customer: str
    fen: int  # + top-up, - refund


def reconcile(
    records: Iterable[Record], day: str, tz: ZoneInfo, *, bank: Mapping[str, BankTxn] | None = None
) -> Reconciliation:
    result = Reconciliation(day)
    charged: dict[str, list[int]] = {}  # customer -> [fen, seq, seq...]
    debited: dict[str, list[int]] = {}  # customer -> [fen, seq, seq...] (each debit record once)
    ledger_txns: dict[str, tuple[int, int, str]] = {}  # txn -> (fen, seq, customer)
    for r in records:
        body = r.body
        kind = r.kind
        if kind == "debit":
            seq = r.seq
            for customer, date, fen, _ in body["entries"]:
                if date == day:
                    found = debited.get(customer)
                    if found is None:
                        debited[customer] = [int(fen), seq]
                    else:
                        found[0] += int(fen)
                        if found[-1] != seq:
                            found.append(seq)
        elif kind == "charge" and body.get("date") == day:
            fen = int(body["charge_fen"])
            found = charged.setdefault(body["customer"], [0])
            found[0] += fen
            found.append(r.seq)
            result.charges_fen += fen
        elif kind == "correction" and body.get("date") == day:
            result.corrections_fen += int(body["fen"])
        elif r.kind in ("topup", "refund", "topup_refused"):
            if datetime.fromtimestamp(r.ts / 1000, tz).date().isoformat() != day:
                continue
            fen = int(body.get("fen", 0))
            ledger_txns[str(body["txn_id"])] = (fen, r.seq, str(body["customer"]))
            if fen >= 0:
                result.credits_fen += fen
            else:
                result.refunds_fen -= fen
    for customer in sorted(set(charged) | set(debited)):
        if customer not in charged:
            result.customers_open.append(customer)
            continue
        result.customers_closed += 1
        charge, *charge_seqs = charged[customer]
        debit, *debit_seqs = debited.get(customer, [0])
        result.debits_fen += debit
        if charge != debit:
            result.differences.append(
                Difference(
                    "charge_vs_debit",
                    customer,
                    charge - debit,
                    sorted({*charge_seqs, *debit_seqs}),
                    f"charged {yuan(charge)}, debited {yuan(debit)}",
                )
            )
    if bank is not None:
        _bank(result, bank, ledger_txns)
    return result


def _bank(
    result: Reconciliation, bank: Mapping[str, BankTxn], ledger: dict[str, tuple[int, int, str]]
) -> None:
    result.bank_fen = sum(t.fen for t in bank.values())
    for txn_id in sorted(set(bank) | set(ledger)):
        issued = bank.get(txn_id)
        found = ledger.get(txn_id)
        if issued is None and found is not None and found[0] != 0:
            result.differences.append(
                Difference(
                    "ledger_extra",
                    txn_id,
                    -found[0],
                    [found[1]],
                    f"credited {yuan(found[0])}, no bank transaction",
                )
            )
        elif issued is not None and found is None:
            result.differences.append(
                Difference(
                    "bank_missing",
                    txn_id,
                    issued.fen,
                    [],
                    f"bank issued {yuan(issued.fen)}, not in the ledger",
                )
            )
        elif issued is not None and found is not None and found[0] != issued.fen:
            result.differences.append(
                Difference(
                    "amount", txn_id, issued.fen - found[0], [found[1]], "amount differs from the bank's"
                )
            )


__all__ = ["BankTxn", "Difference", "Reconciliation", "reconcile"]
