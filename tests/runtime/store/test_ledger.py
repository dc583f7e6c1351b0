"""The store's ledger: chained appends, idempotent uids, group commit, archive watermark, pruning,
tampering on disk found by the audit, and acknowledged records surviving a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from hal.clock import LoopClock
from protocols.ledger import GENESIS
from runtime.errors import StoreError
from runtime.store import LedgerEntry, Store, StoreLimits

T0 = 1_767_225_600.0
DAY = 86400.0
REPO = Path(__file__).resolve().parents[3]


async def open_store(path: Path, clock: LoopClock | None = None, **kw: object) -> Store:
    return await Store.open(path, clock=clock or LoopClock(start=T0), **kw)  # type: ignore[arg-type]


def entry(i: int, *, uid: str | None = None, ts: int = int(T0 * 1000)) -> LedgerEntry:
    return LedgerEntry("charge", {"i": i, "fen": 7 * i}, ts, uid)


async def test_appends_chain_and_audit_clean(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        first = await store.ledger.append([entry(1), entry(2)])
        assert [a.record.seq for a in first] == [1, 2] and all(a.created for a in first)
        assert first[0].record.prev == GENESIS and first[1].record.prev == first[0].record.hash
        more = await store.ledger.append([entry(3)])
        assert more[0].record.prev == first[1].record.hash
        state = await store.ledger.state()
        assert (state.head_seq, state.head_hash, state.records) == (3, more[0].record.hash, 3)
        assert [r.seq for r in await store.ledger.records(after=1)] == [2, 3]
        result = await store.ledger.audit()
        assert result.ok and result.length == 3


async def test_uid_makes_an_append_idempotent(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        (a,) = await store.ledger.append([entry(1, uid="topup:T-1")])
        again = await store.ledger.append([entry(99, uid="topup:T-1"), entry(2)])
        assert again[0].created is False and again[0].record == a.record
        assert again[1].created and again[1].record.seq == 2
        both = await store.ledger.append([entry(5, uid="x"), entry(6, uid="x")])  # twice in one call
        assert [b.created for b in both] == [True, False]


async def test_concurrent_appends_are_group_committed_in_order(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        results = await asyncio.gather(*(store.ledger.append([entry(i)]) for i in range(200)))
        seqs = [r[0].record.seq for r in results]
        assert sorted(seqs) == list(range(1, 201))
        assert store.ledger.commits < 50  # many appends per fsync
        assert (await store.ledger.audit()).ok
        bodies = {r.seq: r.body["i"] for r in await store.ledger.records()}
        assert sorted(bodies.values()) == list(range(200))


async def test_cancelled_appender_does_not_lose_the_batch(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        leader = asyncio.ensure_future(store.ledger.append([entry(1)]))
        follower = asyncio.ensure_future(store.ledger.append([entry(2)]))
        await asyncio.sleep(0)
        leader.cancel()
        assert (await follower)[0].record.seq in (1, 2)
        await asyncio.gather(leader, return_exceptions=True)
        state = await store.ledger.state()
        assert state.head_seq >= 1 and (await store.ledger.audit()).ok


async def test_body_that_is_not_json_is_refused_before_writing(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        with pytest.raises(StoreError, match="not JSON-able"):
            await store.ledger.append([LedgerEntry("x", {"bad": {1, 2}}, 0)])
        assert (await store.ledger.state()).head_seq == 0


async def test_archive_watermark_is_checked_against_our_hashes(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        rows = await store.ledger.append([entry(i) for i in range(5)])
        assert await store.ledger.mark_archived(3, rows[2].record.hash) == 3
        assert await store.ledger.mark_archived(2, rows[1].record.hash) == 3  # never goes back
        with pytest.raises(StoreError, match="hash"):
            await store.ledger.mark_archived(4, "f" * 64)
        with pytest.raises(StoreError, match="never wrote"):
            await store.ledger.mark_archived(9, "f" * 64)
        assert (await store.ledger.state()).archived_seq == 3


async def test_only_archived_old_records_are_pruned_and_the_chain_stays_whole(tmp_path: Path) -> None:
    clock = LoopClock(start=T0 + 100 * DAY)
    limits = StoreLimits(max_bytes=1, retention_days=30)  # size limit can never be met
    async with await open_store(tmp_path / "s.db", clock, limits=limits) as store:
        old = int(T0 * 1000)
        rows = await store.ledger.append([entry(i, ts=old) for i in range(6)])
        rows += await store.ledger.append([entry(9, ts=int(clock.now() * 1000))])
        result = await store.prune()
        assert result.ledger == 0  # nothing archived yet: nothing goes, whatever the size
        await store.ledger.mark_archived(4, rows[3].record.hash)
        result = await store.prune()
        assert result.ledger == 4 and result.full
        state = await store.ledger.state()
        assert (state.base_seq, state.base_hash, state.records) == (4, rows[3].record.hash, 3)
        assert (await store.ledger.audit()).ok
        await store.ledger.mark_archived(7, rows[6].record.hash)
        assert (await store.prune()).ledger == 2  # seq 7 is recent: kept
        (nxt,) = await store.ledger.append([entry(10)])
        assert nxt.record.seq == 8 and (await store.ledger.audit()).ok


async def test_head_after_everything_is_pruned(tmp_path: Path) -> None:
    clock = LoopClock(start=T0 + 100 * DAY)
    async with await open_store(tmp_path / "s.db", clock, limits=StoreLimits(retention_days=1)) as store:
        rows = await store.ledger.append([entry(i) for i in range(3)])
        await store.ledger.mark_archived(3, rows[2].record.hash)
        await store.prune()
        (nxt,) = await store.ledger.append([entry(4)])
        assert (nxt.record.seq, nxt.record.prev) == (4, rows[2].record.hash)


async def test_tampering_on_disk_is_found(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await open_store(path) as store:
        await store.ledger.append([entry(i, uid=f"u{i}") for i in range(10)])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ledger SET body = ? WHERE seq = 4", (json.dumps({"i": 3, "fen": 0}),))
        conn.execute("DELETE FROM ledger WHERE seq = 7")
    async with await open_store(path) as store:
        result = await store.ledger.audit()
        assert {(p.kind, p.seq) for p in result.problems} >= {("edited", 4), ("removed", 7)}


CHILD = """
import asyncio, sys
from hal.clock import LoopClock
from runtime.store import LedgerEntry, Store

async def main(path):
    store = await Store.open(path, clock=LoopClock(start=1767225600.0))
    i = 0
    while True:
        i += 1
        batch = [store.ledger.append([LedgerEntry("t", {"i": i, "k": k}, i)]) for k in range(5)]
        done = await asyncio.gather(*batch)
        print("ack", max(d[0].record.seq for d in done), flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE, env=env, cwd=REPO
    )
    acked = 0
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while acked < 300:
                line = await proc.stdout.readline()
                assert line, "child died before acknowledging enough records"
                acked = max(acked, int(line.split()[1]))
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    async with await open_store(path) as store:
        assert await store.integrity_check() == "ok"
        result = await store.ledger.audit()
        assert result.ok, result.problems
        assert result.length >= acked


def test_appends_on_a_loop_whose_executor_jobs_complete_at_once(tmp_path: Path) -> None:
    """``sim.vloop`` runs executor jobs to completion inside ``run_in_executor``: awaiting the
    result does not yield, so the group commit must settle its callers without a loop turn."""
    from sim.vloop import run_virtual

    async def main() -> list[int]:
        async with await open_store(tmp_path / "s.db") as store:
            done = await asyncio.gather(*(store.ledger.append([entry(i)]) for i in range(20)))
            one = await store.ledger.append([entry(99)])
            return [d[0].record.seq for d in done] + [one[0].record.seq]

    seqs = run_virtual(main)
    assert sorted(seqs) == list(range(1, 22))
