"""The hash-chained ledger codec: hashing, RFC 6962 Merkle roots, signed roots and the audit that
finds edited, removed, reordered and replayed records."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import ledger
from protocols.ledger import GENESIS, Record, audit, make_record, merkle_root, root_body

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def chain(n: int, *, root_every: int = 0, key: Ed25519PrivateKey = KEY) -> list[Record]:
    records: list[Record] = []
    prev, since = GENESIS, 0  # since: index of the first record no root covers yet
    for seq in range(1, n + 1):
        if root_every and seq - 1 - since == root_every:
            body = root_body(f"day{seq}", records[since:], key)
            record = make_record(seq, 1000 * seq, ledger.ROOT_KIND, None, body, prev)
            since = seq - 1  # the next root covers this root record too
        else:
            record = make_record(seq, 1000 * seq, "charge", f"charge:C{seq}", {"fen": seq * 7}, prev)
        records.append(record)
        prev = record.hash
    return records


def rechain(records: list[Record]) -> list[Record]:
    out, prev = [], GENESIS
    for r in records:
        out.append(make_record(r.seq, r.ts, r.kind, r.uid, r.body, prev))
        prev = out[-1].hash
    return out


def reference_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written from the text."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


def test_record_hash_covers_every_field_and_round_trips() -> None:
    r = make_record(1, 5, "topup", "topup:T1", {"fen": 100}, GENESIS)
    assert Record.from_json(r.to_json()) == r and r.computed_hash() == r.hash
    for change in (
        {"seq": 2},
        {"ts": 6},
        {"kind": "refund"},
        {"uid": None},
        {"body": {"fen": 101}},
        {"prev": "1" * 64},
    ):
        assert dataclasses.replace(r, **change).computed_hash() != r.hash  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_merkle_root_matches_rfc6962(n: int) -> None:
    hashes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(n)]
    assert merkle_root(hashes) == reference_mth([bytes.fromhex(h) for h in hashes]).hex()
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()


def test_a_clean_chain_with_roots_audits_ok() -> None:
    records = chain(40, root_every=9)
    result = audit(records, public_key=KEY.public_key(), head=(40, records[-1].hash))
    assert result.ok, result.problems
    assert (result.length, result.head, result.roots) == (40, records[-1].hash, 4)


def test_edit_without_rehash() -> None:
    records = chain(20, root_every=9)
    records[4] = dataclasses.replace(records[4], body={"fen": 1})
    assert audit(records, public_key=KEY.public_key()).kinds() >= {"edited"}


def test_edit_with_rehash_breaks_the_link() -> None:
    records = chain(20)
    r = records[4]
    records[4] = make_record(r.seq, r.ts, r.kind, r.uid, {"fen": 1}, r.prev)
    result = audit(records)
    assert [p.kind for p in result.problems] == ["broken_link"] and result.problems[0].seq == 6


def test_edit_and_full_rechain_is_caught_by_the_signed_root() -> None:
    records = chain(20, root_every=9)
    records[4] = dataclasses.replace(records[4], body={"fen": 1})
    result = audit(rechain(records), public_key=KEY.public_key())
    assert result.kinds() == {"bad_root"} and result.problems[0].seq == 10


def test_forged_root_with_another_key() -> None:
    records = chain(20, root_every=9)
    forged = root_body("day10", records[:9], Ed25519PrivateKey.generate())
    records[9] = dataclasses.replace(records[9], body=forged)
    assert "bad_root" in audit(rechain(records), public_key=KEY.public_key()).kinds()
    # without a given key the first root's key is pinned: a later root by another key still fails
    good = chain(30, root_every=9)
    good[19] = dataclasses.replace(
        good[19], body=root_body("day20", good[9:19], Ed25519PrivateKey.generate())
    )
    assert "bad_root" in audit(rechain(good)).kinds()


def test_removed_in_the_middle_and_at_the_tail() -> None:
    records = chain(20)
    del records[7]
    result = audit(records)
    assert ("removed", 8) in {(p.kind, p.seq) for p in result.problems}
    tail = chain(20)
    result = audit(tail[:18], head=(20, tail[-1].hash))
    assert {(p.kind, p.seq) for p in result.problems} == {("removed", 19), ("removed", 20)}


def test_removed_and_renumbered_is_caught_by_the_root() -> None:
    records = chain(20, root_every=9)
    shifted = [dataclasses.replace(r, seq=r.seq - 1) if r.seq > 3 else r for r in records if r.seq != 3]
    assert "bad_root" in audit(rechain(shifted), public_key=KEY.public_key()).kinds()


def test_reordered_storage_and_swapped_seqs() -> None:
    records = chain(20)
    records[5], records[6] = records[6], records[5]
    assert "reordered" in audit(records).kinds()
    swapped = chain(20)
    a, b = swapped[5], swapped[6]
    swapped[5] = dataclasses.replace(b, seq=a.seq)
    swapped[6] = dataclasses.replace(a, seq=b.seq)
    assert "edited" in audit(swapped).kinds()


def test_replayed_record_and_replayed_uid() -> None:
    records = chain(20)
    assert "replayed" in audit([*records[:10], records[4], *records[10:]]).kinds()
    # the same top-up appended again as a new, correctly chained record
    again = make_record(21, 21000, "charge", records[4].uid, records[4].body, records[-1].hash)
    result = audit([*records, again])
    assert [(p.kind, p.seq) for p in result.problems] == [("replayed", 21)]


def test_audit_from_a_pruned_base() -> None:
    records = chain(30, root_every=9)
    kept = records[12:]
    result = audit(kept, public_key=KEY.public_key(), base_seq=12, base_hash=records[11].hash)
    assert result.ok, result.problems
    assert not audit(kept, base_seq=12, base_hash="f" * 64).ok


def test_signed_heads_vouch_for_the_tail_the_roots_do_not_cover_yet() -> None:
    records = chain(25, root_every=9)  # roots at 10 and 20: 21..25 only under signed heads
    heads = [
        ledger.SignedHead(s, records[s - 1].hash, ledger.sign_head(s, records[s - 1].hash, KEY))
        for s in (22, 25)
    ]
    assert audit(records, public_key=KEY.public_key(), signed_heads=heads).ok
    # an edit in the tail, re-chained to the end: only the signed head can tell
    edited = list(records)
    edited[22] = dataclasses.replace(records[22], body={"fen": 0})
    assert {"edited"} == audit(rechain(edited), public_key=KEY.public_key(), signed_heads=heads).kinds()
    # a record appended after the newest signed head: the terminal never vouched for it
    extra = make_record(26, 26000, "charge", "charge:X", {"fen": 1}, records[-1].hash)
    result = audit([*records, extra], public_key=KEY.public_key(), signed_heads=heads)
    assert [(p.kind, p.seq) for p in result.problems] == [("unsigned", 26)]
    # the tail cut off behind a signed head, and a head signed by another key
    assert ("removed", 25) in {
        (p.kind, p.seq) for p in audit(records[:23], public_key=KEY.public_key(), signed_heads=heads).problems
    }
    forged = [
        ledger.SignedHead(
            25, records[24].hash, ledger.sign_head(25, records[24].hash, Ed25519PrivateKey.generate())
        )
    ]
    assert "bad_head" in audit(records, public_key=KEY.public_key(), signed_heads=forged).kinds()
