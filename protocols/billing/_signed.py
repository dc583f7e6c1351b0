"""Signed party documents: a contract from the utility, a top-up from the bank, 保电 from marketing.

Layer: protocols (pure codec + Ed25519 via ``cryptography``; no I/O). A signed document::

    {"kind": "contract" | "topup" | "keep_power",
     "body": {...},
     "signature": {"alg": "ed25519", "key_id": "<16 hex>", "value": "<base64 of 64 bytes>"}}

The signature covers ``canonical_json({"kind": kind, "body": body})``: binding the kind means a
bank's signature over a top-up can never pass as a contract. ``key_id`` is the first 16 hex
digits of SHA-256 over the raw public key (as for app packages) and only picks the key; what
counts is that one of the *trusted* keys verifies the signature.

Top-up body (bank -> terminal; idempotent by ``txn_id``; ``terminal`` binds it to one box)::

    {"txn_id": "ICBC-20260701-000123", "terminal": "TTU-SIM-0001", "customer_id": "C0001",
     "type": "topup" | "refund", "amount_yuan": "100.00", "bank": "ICBC",
     "issued_at": "2026-07-01T10:00:00+08:00"}

保电 body (utility -> terminal): ``{"terminal", "customer_id", "on": true|false, "reason", "issued_at"}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols.billing._contract import Contract, ContractError, parse_contract
from protocols.billing._money import FEN, AmountError, parse_units
from protocols.cloud import canonical_json
from protocols.errors import ProtocolError

Kind = Literal["contract", "topup", "keep_power"]
KINDS: tuple[Kind, ...] = ("contract", "topup", "keep_power")
ALG = "ed25519"
_TXN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,95}")


class SignatureError(ProtocolError):
    """A document that is not signed, is signed by no trusted key, or whose signature fails."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, protocol="billing")


class DocumentError(ProtocolError):
    """A signed document whose envelope or body is malformed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, protocol="billing")


def key_id(public: Ed25519PublicKey | bytes) -> str:
    raw = public if isinstance(public, bytes) else public.public_bytes_raw()
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A trusted key as board.toml writes it: base64 of the raw 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise SignatureError(f"public key {text!r}: not base64") from err
    if len(raw) != 32:
        raise SignatureError(f"public key {text!r}: {len(raw)} bytes, an Ed25519 key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes_raw()).decode("ascii")


def _signed_bytes(kind: str, body: dict[str, Any]) -> bytes:
    return canonical_json({"kind": kind, "body": body})


def sign(kind: Kind, body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed document of ``body``."""
    value = key.sign(_signed_bytes(kind, body))
    return {
        "kind": kind,
        "body": body,
        "signature": {
            "alg": ALG,
            "key_id": key_id(key.public_key()),
            "value": base64.b64encode(value).decode("ascii"),
        },
    }


@dataclass(frozen=True, slots=True)
class Verified:
    kind: Kind
    body: dict[str, Any]
    key_id: str


def verify(document: object, trusted: list[Ed25519PublicKey], *, kind: Kind) -> Verified:
    """Check the envelope, that it is a ``kind`` document and that a trusted key signed it."""
    if not isinstance(document, dict):
        raise DocumentError(f"{kind}: a signed document is a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - {"kind", "body", "signature"})
    if unknown:
        raise DocumentError(f"{kind}: unknown fields {unknown}")
    if document.get("kind") != kind:
        raise DocumentError(f"{kind}: document kind is {document.get('kind')!r}, expected {kind!r}")
    body = document.get("body")
    if not isinstance(body, dict):
        raise DocumentError(f"{kind}.body: expected an object")
    sig = document.get("signature")
    if sig is None:
        raise SignatureError(f"{kind}: not signed")
    if not isinstance(sig, dict) or sig.get("alg") != ALG or not isinstance(sig.get("value"), str):
        raise SignatureError(f"{kind}.signature: expected {{alg: {ALG!r}, key_id, value}}")
    try:
        value = base64.b64decode(sig["value"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise SignatureError(f"{kind}.signature.value: not base64") from err
    if not trusted:
        raise SignatureError(f"{kind}: no trusted key is configured for {kind} documents")
    message = _signed_bytes(kind, body)
    for key in trusted:
        try:
            key.verify(value, message)
        except InvalidSignature:
            continue
        return Verified(kind, body, key_id(key))
    named = sig.get("key_id")
    raise SignatureError(f"{kind}: signature does not verify with any trusted key (signed by key {named!r})")


def verify_contract(document: object, trusted: list[Ed25519PublicKey]) -> tuple[Contract, Verified]:
    """A signed contract, its signature and schema checked; the body must be the canonical form."""
    verified = verify(document, trusted, kind="contract")
    contract = parse_contract(verified.body)
    if contract.to_json() != verified.body:
        raise ContractError(["contract: body is not in canonical form (publish it with the publish tool)"])
    return contract, verified


@dataclass(frozen=True, slots=True)
class TopUp:
    txn_id: str
    terminal: str
    customer_id: str
    type: Literal["topup", "refund"]
    amount: int  # fen, > 0
    bank: str
    issued_at: str

    @property
    def signed_amount(self) -> int:
        """What it does to the balance: + for a top-up, - for a refund."""
        return self.amount if self.type == "topup" else -self.amount


def _string(body: dict[str, Any], key: str, what: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise DocumentError(f"{what}.{key}: expected a non-empty string, got {value!r}")
    return value


def parse_topup(body: dict[str, Any]) -> TopUp:
    what = "topup"
    unknown = sorted(
        set(body) - {"txn_id", "terminal", "customer_id", "type", "amount_yuan", "bank", "issued_at"}
    )
    if unknown:
        raise DocumentError(f"{what}: unknown fields {unknown}")
    txn = _string(body, "txn_id", what)
    if not _TXN.fullmatch(txn):
        raise DocumentError(f"{what}.txn_id: {txn!r} is not a transaction id (letters, digits, . _ : -)")
    kind = body.get("type", "topup")
    if kind not in ("topup", "refund"):
        raise DocumentError(f'{what}.type: {kind!r} is not "topup" or "refund"')
    try:
        amount = parse_units(body.get("amount_yuan"), FEN, f"{what}.amount_yuan")
    except AmountError as err:
        raise DocumentError(err.reason) from err
    if amount <= 0:
        raise DocumentError(f"{what}.amount_yuan: must be above 0.00")
    return TopUp(
        txn_id=txn,
        terminal=_string(body, "terminal", what),
        customer_id=_string(body, "customer_id", what),
        type=kind,
        amount=amount,
        bank=_string(body, "bank", what),
        issued_at=_string(body, "issued_at", what),
    )


@dataclass(frozen=True, slots=True)
class KeepPower:
    terminal: str
    customer_id: str
    on: bool
    reason: str
    issued_at: str


def parse_keep_power(body: dict[str, Any]) -> KeepPower:
    what = "keep_power"
    unknown = sorted(set(body) - {"terminal", "customer_id", "on", "reason", "issued_at"})
    if unknown:
        raise DocumentError(f"{what}: unknown fields {unknown}")
    on = body.get("on")
    if not isinstance(on, bool):
        raise DocumentError(f"{what}.on: expected true or false, got {on!r}")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise DocumentError(f"{what}.reason: expected a string")
    return KeepPower(
        terminal=_string(body, "terminal", what),
        customer_id=_string(body, "customer_id", what),
        on=on,
        reason=reason,
        issued_at=_string(body, "issued_at", what),
    )


__all__ = [
    "KINDS",
    "DocumentError",
    "KeepPower",
    "Kind",
    "SignatureError",
    "TopUp",
    "Verified",
    "key_id",
    "parse_keep_power",
    "parse_public_key",
    "parse_topup",
    "public_key_text",
    "sign",
    "verify",
    "verify_contract",
]
