"""Store: migrations, WAL, readings, events, kv, outbox order/seq/keys, pruning, integrity."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hal.clock import LoopClock
from runtime.errors import MessageTooLarge, StoreError
from runtime.model import Event, Quality, Reading
from runtime.store import PAGE_CACHE_KIB, SCHEMA_VERSION, Store, StoreLimits

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86400.0


async def open_store(path: Path, **kw: object) -> Store:
    return await Store.open(path, clock=LoopClock(start=T0), **kw)  # type: ignore[arg-type]


async def test_open_creates_schema_and_wal(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        assert str(await store.pragma("journal_mode")).lower() == "wal"
        assert await store.pragma("synchronous") == 2  # FULL
        assert await store.integrity_check() == "ok"
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


async def test_fsync_false_keeps_wal_but_does_not_sync_every_commit(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db", fsync=False) as store:
        assert str(await store.pragma("journal_mode")).lower() == "wal"
        assert await store.pragma("synchronous") == 1  # NORMAL: survives a killed process


async def test_the_page_cache_is_bounded_below_sqlites_default(tmp_path: Path) -> None:
    """The connection's page cache is the store's bound (KiB), not sqlite's 2000 KiB default."""
    async with await open_store(tmp_path / "s.db") as store:
        assert await store.pragma("cache_size") == -PAGE_CACHE_KIB
        assert PAGE_CACHE_KIB < 2000


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await open_store(path) as store:
        await store.kv_set("app", "k", {"a": 1})
    for _ in range(2):
        async with await open_store(path) as store:
            assert await store.kv_get("app", "k") == {"a": 1}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await open_store(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(StoreError, match="newer than this software"):
        await open_store(path)


async def test_readings_upsert_and_query(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        batch = [Reading(f"m{i % 3}", "voltage.a", 220.0 + i, "V", T0 + 900 * i) for i in range(30)]
        assert await store.write_readings(batch) == 30
        # same key again: replaces the value, does not add a row
        await store.write_readings(
            [Reading("m0", "voltage.a", 1.0, "V", T0, Quality.ESTIMATED, obis="1.0.32.7.0.255")]
        )
        m0 = await store.query_readings(device="m0")
        assert len(m0) == 10
        assert m0[0] == Reading("m0", "voltage.a", 1.0, "V", T0, Quality.ESTIMATED, "1.0.32.7.0.255")
        window = await store.query_readings(since=T0 + 900, until=T0 + 900 * 4)
        assert [r.ts for r in window] == [T0 + 900, T0 + 1800, T0 + 2700]
        assert len(await store.query_readings(quantity="voltage.a", limit=5)) == 5
        assert await store.query_readings(quantity="current.a") == []


async def test_events_and_kv(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        eid = await store.write_event(Event("meter.power_down", "m1", T0, data={"phase": "a"}))
        await store.write_event(Event("meter.cover_open", "m2", T0 + 10))
        await store.end_event(eid, T0 + 60)
        events = await store.query_events(kind="meter.power_down")
        assert len(events) == 1
        assert (events[0].id, events[0].end, events[0].data) == (eid, T0 + 60, {"phase": "a"})
        assert [e.source for e in await store.query_events(since=T0 + 1)] == ["m2"]
        with pytest.raises(StoreError, match="no event"):
            await store.end_event(12345, T0)

        await store.kv_set("topology", "graph", {"nodes": [1, 2]})
        await store.kv_set("topology", "version", 3)
        await store.kv_set("other", "version", 9)
        assert await store.kv_items("topology") == {"graph": {"nodes": [1, 2]}, "version": 3}
        assert await store.kv_delete("topology", "graph") is True
        assert await store.kv_delete("topology", "graph") is False
        assert await store.kv_get("topology", "graph", "missing") == "missing"
        with pytest.raises(StoreError, match="not JSON-able"):
            await store.kv_set("x", "y", object())


async def test_outbox_order_seq_and_keys_persist(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await open_store(path) as store:
        a1 = await store.outbox_append("readings", {"n": 1}, terminal="T1")
        e1 = await store.outbox_append("events", {"n": 2}, terminal="T1")
        a2 = await store.outbox_append("readings", {"n": 3}, terminal="T1")
        assert (a1.seq, a2.seq, e1.seq) == (1, 2, 1)
        assert a2.key == "T1:readings:2"
        assert await store.outbox_backlog() == {"events": 1, "readings": 2}
        pending = await store.outbox_pending("readings")
        assert [(p.seq, p.body) for p in pending] == [(1, {"n": 1}), (2, {"n": 3})]
        assert [p.id for p in await store.outbox_pending()] == [a1.id, e1.id, a2.id]
        assert await store.outbox_mark_delivered([a1.id, a2.id]) == 2
        await store.prune()  # deletes delivered rows...
    async with await open_store(path) as store:
        a3 = await store.outbox_append("readings", {"n": 4}, terminal="T1")
        assert a3.seq == 3  # ...but the sequence survives both the prune and the reopen
        assert await store.outbox_backlog() == {"events": 1, "readings": 1}


async def test_outbox_append_many_appends_in_order_all_or_nothing(tmp_path: Path) -> None:
    async with await open_store(tmp_path / "s.db") as store:
        await store.outbox_append("outage", {"n": 0}, terminal="T1")
        entries = await store.outbox_append_many("outage", [{"n": 1}, {"n": 2}, {"n": 3}], terminal="T1")
        assert [(e.seq, e.key, e.body) for e in entries] == [
            (2, "T1:outage:2", {"n": 1}),
            (3, "T1:outage:3", {"n": 2}),
            (4, "T1:outage:4", {"n": 3}),
        ]
        assert [p.body["n"] for p in await store.outbox_pending("outage")] == [0, 1, 2, 3]
        # one body too big refuses them all: nothing is stored, the sequence does not move
        with pytest.raises(MessageTooLarge):
            await store.outbox_append_many(
                "outage", [{"n": 4}, {"x": "y" * 200}], terminal="T1", max_bytes=100
            )
        assert await store.outbox_append_many("outage", [], terminal="T1") == []
        assert (await store.outbox_append("outage", {"n": 5}, terminal="T1")).seq == 5
        assert await store.outbox_streams() == {"outage": (0, 5)}


async def test_prune_by_age(tmp_path: Path) -> None:
    limits = StoreLimits(max_bytes=1 << 30, retention_days=10, curve_retention_days=30)
    async with await open_store(tmp_path / "s.db", limits=limits) as store:
        now = T0
        await store.write_readings([Reading("m", "e", 1.0, "kWh", now - d * DAY) for d in (0, 29, 31, 100)])
        for d in (0, 9, 11):
            await store.write_event(Event("k", "s", now - d * DAY))
        old = await store.outbox_append("events", {"n": 1}, terminal="T")
        await store.outbox_append("events", {"n": 2}, terminal="T")
        await store.outbox_mark_delivered([old.id])
        result = await store.prune()
        assert (result.readings, result.events, result.outbox) == (2, 1, 1)
        assert len(await store.query_readings()) == 2
        assert len(await store.query_events()) == 2
        assert await store.outbox_backlog() == {"events": 1}
        assert result.full is False


async def test_prune_by_size_keeps_undelivered_and_raises_alarm(tmp_path: Path) -> None:
    alarms: list[tuple[bool, int]] = []
    limits = StoreLimits(max_bytes=200_000, retention_days=1000, curve_retention_days=1000)
    store = await open_store(tmp_path / "s.db", limits=limits, on_alarm=lambda f, n: alarms.append((f, n)))
    async with store:
        blob = "x" * 200
        await store.write_readings(
            Reading(f"m{i}", "voltage.a", float(i), "V", T0 + i, obis=blob) for i in range(3000)
        )
        undelivered = [await store.outbox_append("readings", {"i": i}, terminal="T") for i in range(20)]
        before = await store.used_bytes()
        assert before > limits.max_bytes
        result = await store.prune()
        assert result.full is False and result.used_bytes <= limits.max_bytes
        remaining = await store.query_readings()
        assert 0 < len(remaining) < 3000
        assert remaining[0].ts > T0  # the oldest went first
        assert await store.outbox_backlog() == {"readings": 20}
        assert alarms == []

        # now undelivered outbox rows alone exceed the limit: none may go, the alarm rises
        big = {"pad": "y" * 4000}
        for _ in range(80):
            await store.outbox_append("events", big, terminal="T")
        result = await store.prune()
        assert result.full is True and store.full
        assert await store.query_readings() == []
        assert await store.outbox_backlog() == {"events": 80, "readings": 20}
        assert [p.id for p in await store.outbox_pending("readings")] == [u.id for u in undelivered]
        assert len(alarms) == 1 and alarms[0][0] is True
        # still accepting while the disk allows
        await store.outbox_append("events", big, terminal="T")
        await store.prune()
        assert len(alarms) == 1  # edge-triggered

        ids = [p.id for p in await store.outbox_pending("events", limit=1000)]
        await store.outbox_mark_delivered(ids)
        result = await store.prune()
        assert result.full is False and alarms[-1][0] is False
        assert await store.integrity_check() == "ok"


async def test_closed_store_refuses(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "s.db")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.kv_get("a", "b")
