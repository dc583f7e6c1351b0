"""Accepting a signed contract: signature, schema, time zone, versions, start, and no overlap.

Layer: apps (billing). Pure checks against the ``Book`` (contracts in force, days still open)
and the customers of the station model; the service appends the ``contract`` record if they
pass, and a refused contract changes nothing (the running one stays).

Rules, each refusal naming the rule and the contract:

* signed by a utility key board.toml trusts (``protocols.billing.verify_contract``), schema-valid,
  in canonical form, in the terminal's time zone;
* the same version again is accepted as already installed (idempotent) only if identical;
* a version must be newer than every version of its series, and start after the latest one's start;
* **no overlap**: no customer may be covered by two series at the same instant (explicit lists,
  and "*" coverage resolved through the station model's tariff ids; two "*" of one tariff id
  overlap whoever the customers are);
* a start in the past is allowed only inside days still open for every customer the contract
  covers, and only where no contract billed those customers yet (an initial contract published
  after midnight bills the day from midnight); anything else must start now or later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.billing import Contract, verify_contract
from protocols.cloud import canonical_json
from protocols.errors import ProtocolError

from .book import Book, Customer


class ContractRefused(ValueError):
    """The contract breaks a rule; the running contracts stay."""


@dataclass(frozen=True, slots=True)
class Accepted:
    contract: Contract
    document: dict[str, Any]
    key_id: str
    digest: str
    new: bool  # False: this exact contract was already installed
    covered: tuple[str, ...]  # customer ids it bills


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document.get("body", {}))).hexdigest()


def _window(c: Contract) -> tuple[float, float]:
    end = c.end_epoch()
    return c.start_epoch(), float("inf") if end is None else end


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def covered(contract: Contract, customers: Sequence[Customer]) -> list[str]:
    return [c.id for c in customers if contract.tariff_for(c.id, c.tariff) is not None]


def check(
    document: object,
    trusted: list[Ed25519PublicKey],
    book: Book,
    customers: Sequence[Customer],
    *,
    timezone: str,
    now: float,
) -> Accepted:
    try:
        contract, verified = verify_contract(document, trusted)
    except ProtocolError as err:
        raise ContractRefused(err.reason) from err
    assert isinstance(document, dict)
    key = contract.key
    if contract.timezone != timezone:
        raise ContractRefused(f"{key}: time zone {contract.timezone!r} is not the terminal's {timezone!r}")
    mine = covered(contract, customers)
    known = book.contracts.get(key)
    if known is not None:
        if known.body.get("digest") == digest(document):
            return Accepted(contract, document, verified.key_id, digest(document), False, tuple(mine))
        raise ContractRefused(f"{key}: version {contract.version} is installed with other content")
    window = _window(contract)
    for other in book.timeline.contracts:
        if other.contract_id == contract.contract_id:
            if other.version >= contract.version:
                raise ContractRefused(f"{key}: not newer than the installed version {other.version}")
            if other.start_epoch() >= window[0]:
                raise ContractRefused(f"{key}: starts before version {other.version} of its series started")
            continue
        if not _overlaps(window, _window(other)):
            continue
        shared = sorted(set(mine) & set(covered(other, customers)))
        wild = {c.tariff for c in contract.coverage if c.everyone} & {
            c.tariff for c in other.coverage if c.everyone
        }
        if shared or wild:
            who = f"customer {shared[0]}" if shared else f"every customer of tariff {sorted(wild)[0]!r}"
            raise ContractRefused(f"{key}: overlaps {other.key} for {who}")
    if window[0] < now:
        _check_past_start(contract, mine, book, customers, now)
    return Accepted(contract, document, verified.key_id, digest(document), True, tuple(mine))


def _check_past_start(
    contract: Contract, mine: list[str], book: Book, customers: Sequence[Customer], now: float
) -> None:
    start = contract.start_epoch()
    by_id = {c.id: c for c in customers}
    for customer in mine:
        acc = book.accounts.get(customer)
        if (
            acc is not None
            and acc.closed_through is not None
            and book.day_bounds(acc.closed_through)[1] > start
        ):
            raise ContractRefused(
                f"{contract.key}: starts {contract.effective_from:%Y-%m-%d %H:%M}, inside a day already "
                f"closed for customer {customer} (through {acc.closed_through}); the earliest start is "
                f"{book.next_day(acc.closed_through)} 00:00"
            )
        c = by_id[customer]
        for other in book.timeline.contracts:
            if _overlaps((start, now), _window(other)) and other.tariff_for(c.id, c.tariff) is not None:
                raise ContractRefused(
                    f"{contract.key}: starts in the past, where {other.key} already bills customer "
                    f"{customer}; a new version takes effect from now on"
                )


__all__ = ["Accepted", "ContractRefused", "check", "covered", "digest"]
