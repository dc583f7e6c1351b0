"""A tamper-evident ledger: hash-chained records, Merkle roots signed by the terminal, and the audit.

Layer: protocols (pure codec; SHA-256 and Ed25519, no I/O). Used by the terminal's store to
chain what it appends and by the master station to verify what it archived. Not a consensus
blockchain: one writer (the terminal), many readers who can check every byte.

Record (canonical JSON of everything but ``hash`` is what ``hash`` covers)::

    {"seq": 42, "ts": 1782864000000, "kind": "charge", "uid": "charge:C0001:2026-07-01",
     "body": {...}, "prev": "<hash of record 41>", "hash": "<sha256 hex>"}

``seq`` counts from 1; record 1's ``prev`` is ``GENESIS`` (64 zeros). ``ts`` is UTC epoch
milliseconds. ``uid`` (optional) names what the record is about once and for all: the ledger
refuses a second record with the same uid, so a replayed top-up or a double charge shows.

Root record (``kind = "root"``): every so often (daily) the terminal appends a record whose body
is signed with its Ed25519 key and covers every record since the previous root::

    {"label": "2026-07-01", "first_seq": 1, "last_seq": 41, "count": 41,
     "merkle_root": "<hex>", "key_id": "<16 hex>", "public_key": "<base64>",
     "signature": "<base64 over canonical_json({kind: 'ledger_root', body: <these fields but signature>})>"}

The Merkle tree is RFC 6962's (leaf = SHA-256(00 || hash), node = SHA-256(01 || left || right),
split at the largest power of two below n), so a record's inclusion can be proven later.

Signed head: with every batch of records it sends, the terminal signs "record ``seq`` has hash
``h``" (``sign_head``), so every record is vouched for by the terminal's key as soon as it
leaves, not only once the day's root is signed.

Pieces: a record too big for one upward message (a daily ``checkpoint`` restates every account:
~1.5 MB for 2,000 customers) travels as ``record_pieces``: slices of its canonical JSON, each a
message ``{"type": "ledger_piece", "seq", "hash", "part", "parts", "text"}``; ``PieceJoiner``
gives the record back once every piece is there (its hash checks the join).

``audit`` finds edited records (hash does not match the content), removed ones (a seq missing,
or the tail behind the reported head gone), reordered ones (out of seq order), replayed ones (a
uid or a whole record twice), broken links, and roots or signed heads that do not match --
which is what shows a record edited *and* re-chained, since only the terminal can sign -- and
records no signed head covers (``unsigned``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocols.cloud import canonical_json
from protocols.errors import ProtocolError

if TYPE_CHECKING:  # cryptography is imported where a signature is made or checked: every
    # terminal's store imports this module, only a terminal that keeps a signed ledger signs
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
ROOT_KIND = "root"
_ROOT_DOMAIN = "ledger_root"
_HEAD_DOMAIN = "ledger_head"


class LedgerError(ProtocolError):
    """A record or root that cannot be parsed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, protocol="ledger")


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts: int  # UTC epoch milliseconds
    kind: str
    uid: str | None
    body: dict[str, Any]
    prev: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "uid": self.uid,
            "body": self.body,
            "prev": self.prev,
            "hash": self.hash,
        }

    @classmethod
    def from_json(cls, data: object) -> Record:
        if not isinstance(data, dict):
            raise LedgerError("record: expected an object")
        try:
            seq, ts, kind, uid = data["seq"], data["ts"], data["kind"], data.get("uid")
            body, prev, digest = data["body"], data["prev"], data["hash"]
        except KeyError as err:
            raise LedgerError(f"record: missing {err.args[0]!r}") from None
        if (
            isinstance(seq, bool)
            or not isinstance(seq, int)
            or isinstance(ts, bool)
            or not isinstance(ts, int)
        ):
            raise LedgerError("record: seq and ts must be integers")
        if (
            not isinstance(kind, str)
            or not isinstance(body, dict)
            or not (uid is None or isinstance(uid, str))
        ):
            raise LedgerError(f"record {seq}: kind/uid/body of the wrong type")
        if not (isinstance(prev, str) and isinstance(digest, str)):
            raise LedgerError(f"record {seq}: prev and hash must be hex strings")
        return cls(seq, ts, kind, uid, body, prev, digest)

    def computed_hash(self) -> str:
        return record_hash(self.seq, self.ts, self.kind, self.uid, self.body, self.prev)


def record_hash(seq: int, ts: int, kind: str, uid: str | None, body: dict[str, Any], prev: str) -> str:
    return hash_of_body_json(seq, ts, kind, uid, canonical_json(body), prev)


def hash_of_body_json(seq: int, ts: int, kind: str, uid: str | None, body_json: bytes, prev: str) -> str:
    """``record_hash`` from the body already in canonical JSON (the store serializes it once):
    the canonical JSON of the record is its keys in sorted order, written out here."""
    head = canonical_json({"kind": kind, "prev": prev, "seq": seq, "ts": ts, "uid": uid})
    return hashlib.sha256(b'{"body":' + body_json + b"," + head[1:]).hexdigest()


def make_record(seq: int, ts: int, kind: str, uid: str | None, body: dict[str, Any], prev: str) -> Record:
    return Record(seq, ts, kind, uid, body, prev, record_hash(seq, ts, kind, uid, body, prev))


# ------------------------------------------------------------------------------------- pieces


def record_pieces(record: Record, max_bytes: int) -> list[str]:
    """The record's canonical JSON cut into slices whose JSON string form is at most ``max_bytes``
    (a character is at most 4 bytes of UTF-8, or 2 once escaped, so slices of ``max_bytes // 4``
    characters always fit)."""
    text = canonical_json(record.to_json()).decode()
    step = max(1, (max_bytes - 2) // 4)
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


class PieceJoiner:
    """Joins ``ledger_piece`` messages (any order, repeats allowed) back into records."""

    def __init__(self) -> None:
        self._pieces: dict[tuple[int, str], dict[int, str]] = {}

    def add(self, body: dict[str, Any]) -> Record | None:
        """The record once ``body`` completes it (its hash verified), else None; a piece that is
        malformed, or a join whose hash does not match, is dropped (``LedgerError``)."""
        seq, digest, part, parts, text = (body.get(k) for k in ("seq", "hash", "part", "parts", "text"))
        if not (isinstance(seq, int) and isinstance(part, int) and isinstance(parts, int)) or not (
            isinstance(digest, str) and isinstance(text, str) and 0 <= part < parts
        ):
            raise LedgerError(f"ledger_piece: seq/hash/part/parts/text missing or wrong ({seq!r})")
        held = self._pieces.setdefault((seq, digest), {})
        held[part] = text
        if len(held) < parts or any(i not in held for i in range(parts)):
            return None
        del self._pieces[(seq, digest)]
        try:
            record = Record.from_json(json.loads("".join(held[i] for i in range(parts))))
        except ValueError as err:
            raise LedgerError(f"ledger_piece {seq}: the pieces do not join: {err}") from None
        if record.seq != seq or record.hash != digest or record.computed_hash() != digest:
            raise LedgerError(f"ledger_piece {seq}: the joined record does not match its hash")
        return record


# ------------------------------------------------------------------------------------- Merkle


def _leaf(digest: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(digest)).digest()


def _tree(nodes: Sequence[bytes]) -> bytes:
    n = len(nodes)
    if n == 1:
        return nodes[0]
    k = 1 << (n - 1).bit_length() - 1  # largest power of two below n
    return hashlib.sha256(b"\x01" + _tree(nodes[:k]) + _tree(nodes[k:])).digest()


def merkle_root(hashes: Sequence[str]) -> str:
    """RFC 6962 Merkle tree hash of record hashes (hex); the empty tree is SHA-256 of nothing."""
    if not hashes:
        return hashlib.sha256(b"").hexdigest()
    return _tree([_leaf(h) for h in hashes]).hex()


# ------------------------------------------------------------------------------------- roots


def _root_message(body: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return canonical_json({"kind": _ROOT_DOMAIN, "body": unsigned})


def root_body(
    label: str, records: Sequence[Record] | Sequence[tuple[int, str]], key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The signed body of a root record covering ``records`` (contiguous, oldest first), given as
    records or as (seq, hash) pairs."""
    if not records:
        raise LedgerError("a root covers at least one record")
    pairs = [(r.seq, r.hash) if isinstance(r, Record) else (int(r[0]), str(r[1])) for r in records]
    public = key.public_key().public_bytes_raw()
    body: dict[str, Any] = {
        "label": label,
        "first_seq": pairs[0][0],
        "last_seq": pairs[-1][0],
        "count": len(pairs),
        "merkle_root": merkle_root([h for _, h in pairs]),
        "key_id": hashlib.sha256(public).hexdigest()[:16],
        "public_key": base64.b64encode(public).decode("ascii"),
    }
    body["signature"] = base64.b64encode(key.sign(_root_message(body))).decode("ascii")
    return body


def root_signature_ok(body: dict[str, Any], key: Ed25519PublicKey) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        signature = base64.b64decode(str(body.get("signature", "")), validate=True)
        key.verify(signature, _root_message(body))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def sign_head(seq: int, digest: str, key: Ed25519PrivateKey) -> str:
    """The terminal's signature over "the ledger's record ``seq`` has hash ``digest``" (base64)."""
    message = canonical_json({"kind": _HEAD_DOMAIN, "seq": seq, "hash": digest})
    return base64.b64encode(key.sign(message)).decode("ascii")


def head_signature_ok(seq: int, digest: str, signature: str, key: Ed25519PublicKey) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            canonical_json({"kind": _HEAD_DOMAIN, "seq": seq, "hash": digest}),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A head the terminal reported with a message: every record up to ``seq`` is committed to."""

    seq: int
    hash: str
    signature: str


# ------------------------------------------------------------------------------------- audit


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # edited | removed | reordered | replayed | broken_link | bad_root | unsigned_tail
    seq: int | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "detail": self.detail}


@dataclass(slots=True)
class Audit:
    length: int = 0
    head: str = GENESIS
    roots: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "length": self.length,
            "head": self.head,
            "roots": self.roots,
            "problems": [p.to_json() for p in self.problems],
        }


def audit(
    records: Iterable[Record],
    *,
    public_key: Ed25519PublicKey | None = None,
    base_seq: int = 0,
    base_hash: str = GENESIS,
    head: tuple[int, str] | None = None,
    signed_heads: Iterable[SignedHead] = (),
) -> Audit:
    """Check ``records`` in the order they are stored.

    ``base_seq``/``base_hash``: where the chain starts (after records pruned once archived).
    ``public_key``: the terminal's key that must have signed every root (None: the key named in
    the first root is pinned, later roots must use the same). ``head``: the (seq, hash) the
    terminal last reported; records missing behind it count as removed. ``signed_heads``: heads
    the terminal signed (one per uplink message); each must match the record at its seq, so a
    record edited and re-chained after the last root is found too, and a record after the
    newest signed head is one the terminal never vouched for (``unsigned``).
    """
    result = Audit(length=base_seq, head=base_hash)
    problems = result.problems
    stored = list(records)
    by_seq: dict[int, Record] = {}
    uids: dict[str, int] = {}
    highest = base_seq
    for record in stored:
        if record.computed_hash() != record.hash:
            problems.append(Problem("edited", record.seq, "content does not match its hash"))
        known = by_seq.get(record.seq)
        if known is not None:
            same = known.hash == record.hash
            problems.append(
                Problem(
                    "replayed" if same else "edited",
                    record.seq,
                    "seq stored twice" + ("" if same else " with different content"),
                )
            )
            continue
        if record.seq <= highest:
            problems.append(Problem("reordered", record.seq, f"stored after seq {highest}"))
        highest = max(highest, record.seq)
        by_seq[record.seq] = record
        if record.uid is not None:
            first = uids.get(record.uid)
            if first is not None:
                problems.append(
                    Problem("replayed", record.seq, f"uid {record.uid!r} already recorded at seq {first}")
                )
            else:
                uids[record.uid] = record.seq
    expected = range(base_seq + 1, highest + 1)
    missing = [s for s in expected if s not in by_seq]
    for seq in missing:
        problems.append(Problem("removed", seq, "record missing from the chain"))
    if head is not None:
        head_seq, head_hash = head
        for seq in range(highest + 1, head_seq + 1):
            problems.append(Problem("removed", seq, f"behind the reported head {head_seq}"))
        at_head = by_seq.get(head_seq)
        if at_head is not None and at_head.hash != head_hash:
            problems.append(Problem("edited", head_seq, "differs from the head the terminal reported"))
    previous = base_hash
    for seq in expected:
        linked = by_seq.get(seq)
        if linked is None:
            previous = ""
            continue
        if previous and linked.prev != previous:
            problems.append(Problem("broken_link", seq, "prev does not match the hash of the record before"))
        previous = linked.hash
    key = _audit_roots(by_seq, base_seq, highest, public_key, result)
    _audit_heads(by_seq, base_seq, highest, key, list(signed_heads), result)
    result.length = highest
    result.head = by_seq[highest].hash if highest in by_seq else (base_hash if highest == base_seq else "")
    return result


def _audit_heads(
    by_seq: dict[int, Record],
    base_seq: int,
    highest: int,
    key: Ed25519PublicKey | None,
    heads: list[SignedHead],
    result: Audit,
) -> None:
    if not heads:
        return
    if key is None:
        result.problems.append(Problem("bad_head", None, "signed heads, but no terminal key to check them"))
        return
    vouched = base_seq
    for h in sorted(heads, key=lambda x: x.seq):
        if not head_signature_ok(h.seq, h.hash, h.signature, key):
            result.problems.append(
                Problem("bad_head", h.seq, "head signature does not verify with the terminal key")
            )
            continue
        vouched = max(vouched, h.seq)
        if h.seq <= base_seq:
            continue
        record = by_seq.get(h.seq)
        if record is None:
            if h.seq > highest:
                result.problems.append(
                    Problem("removed", h.seq, f"the terminal signed a head at {h.seq}, not stored")
                )
        elif record.hash != h.hash:
            result.problems.append(Problem("edited", h.seq, "differs from the head the terminal signed"))
    for seq in range(vouched + 1, highest + 1):
        if seq in by_seq:
            result.problems.append(Problem("unsigned", seq, "after the newest head the terminal signed"))


def _audit_roots(
    by_seq: dict[int, Record], base_seq: int, highest: int, public_key: Ed25519PublicKey | None, result: Audit
) -> Ed25519PublicKey | None:
    key = public_key
    covered = base_seq
    for seq in range(base_seq + 1, highest + 1):
        record = by_seq.get(seq)
        if record is None or record.kind != ROOT_KIND:
            continue
        body = record.body
        first, last = body.get("first_seq"), body.get("last_seq")
        if not isinstance(first, int) or not isinstance(last, int) or not first <= last < seq:
            result.problems.append(Problem("bad_root", seq, "root does not name a seq range before it"))
            continue
        if key is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            try:
                key = Ed25519PublicKey.from_public_bytes(base64.b64decode(str(body.get("public_key", ""))))
            except ValueError:
                result.problems.append(Problem("bad_root", seq, "root carries no valid public key"))
                continue
        if not root_signature_ok(body, key):
            result.problems.append(
                Problem("bad_root", seq, "signature does not verify with the terminal key")
            )
        result.roots += 1
        if first <= base_seq:
            covered = max(covered, last)
            continue  # its records were archived and pruned here: only the signature can be checked
        if first != covered + 1 and first > base_seq + 1:
            result.problems.append(
                Problem("bad_root", seq, f"covers {first}..{last}, previous root ended at {covered}")
            )
        covered = max(covered, last)
        hashes = [by_seq[s].hash for s in range(first, last + 1) if s in by_seq]
        if (
            len(hashes) != last - first + 1
            or body.get("count") != len(hashes)
            or merkle_root(hashes) != body.get("merkle_root")
        ):
            result.problems.append(
                Problem("bad_root", seq, f"Merkle root over {first}..{last} does not match")
            )
    return key


__all__ = [
    "GENESIS",
    "ROOT_KIND",
    "Audit",
    "LedgerError",
    "PieceJoiner",
    "Problem",
    "Record",
    "SignedHead",
    "audit",
    "hash_of_body_json",
    "head_signature_ok",
    "make_record",
    "merkle_root",
    "record_hash",
    "record_pieces",
    "root_body",
    "root_signature_ok",
    "sign_head",
]
