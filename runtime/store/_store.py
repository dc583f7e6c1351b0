"""The terminal's sqlite store: time series, events, per-app key-value, the uplink outbox.

Layer: runtime. Every query runs OFF the event loop on one dedicated worker thread that
owns the connection (a single-worker ``ThreadPoolExecutor``); the loop only awaits
futures. This module knows no grid or protocol specifics and never talks to MQTT.

Durability: the database is in WAL mode with ``synchronous=FULL``. With FULL, the WAL is
fsynced at every commit, so when an awaited write returns, the row survives a process
kill *and* a power cut. ``NORMAL`` would survive a process kill but may lose the last
commits on power loss, and a TTU loses power exactly when something worth reporting
(an outage) happens. Writes are batched (``write_readings`` is one transaction) so the
cost is one fsync per batch, not per row. ``fsync=False`` (board ``[store] fsync = false``)
chooses NORMAL: for a disk that is not the terminal's flash -- the simulator on virtual time,
where a power cut of the machine running it is not a scenario and ~1 ms per commit is wall time.

Bounds: ``prune()`` deletes readings older than ``curve_retention_days``, events older than
``retention_days`` and delivered outbox rows; if the database still uses more than
``max_bytes``, it deletes the oldest readings and events first. Undelivered outbox rows are
NEVER deleted: if they alone keep the store over its limit, the store raises the
``store full`` alarm (``full`` property + the ``on_alarm`` callback, edge-triggered) and keeps
accepting outbox rows while the disk allows. Only when sqlite itself reports the disk full
does a write fail, with ``StoreFull`` — data is never dropped silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from hal.clock import Clock
from runtime.errors import MessageTooLarge, StoreError, StoreFull
from runtime.model import Event, Quality, Reading

from ._ledger import Ledger
from ._records import OutboxEntry, OutboxRow, PruneResult, StoredEvent, StoreLimits
from ._schema import migrate

_log = logging.getLogger(__name__)

T = TypeVar("T")
JSON = Any

_DAY = 86400.0
OUTBOX_ENVELOPE_BYTES = 48  # a message's "key"/"seq"/"ts" and punctuation around its body
_PRUNE_MIN_CHUNK = 50

AlarmCallback = Callable[[bool, int], None]


def _json(value: JSON, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise StoreError(f"{what}: value is not JSON-able ({err})") from err


#: sqlite's page cache for the store's one connection (KiB; sqlite's default is 2000). The cache
#: fills up to this bound and stays: on a box with ~80 MB for the whole terminal it is RAM the
#: apps need more. Pages it drops are read back from the OS page cache (not this process's RSS).
PAGE_CACHE_KIB = 1024

#: key-value values up to this many characters of JSON are kept in memory (read/write-through)
KV_CACHED_CHARS = 4096
#: a cached value this short is one shared string (per-meter keys hold the same few texts)
KV_INTERNED_CHARS = 8


class Store:
    """Async facade over one sqlite file. Open with ``await Store.open(path, clock=..., limits=...)``.

    Use as ``async with await Store.open(...) as store:`` or call ``await store.close()``.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        limits: StoreLimits,
        executor: ThreadPoolExecutor,
        on_alarm: AlarmCallback | None,
        fsync: bool = True,
    ) -> None:
        self._fsync = fsync
        self.path = path
        self.limits = limits
        self._clock = clock
        self._executor = executor
        self._conn: sqlite3.Connection | None = None
        self._on_alarm = on_alarm
        self._full = False
        self._closed = False
        # key-value rows as JSON text, read through and written through: an app's get of a key it
        # set needs no trip to the worker thread (this store is the kv table's only writer); by
        # namespace, then key (a (ns, key) tuple per key was ~0.3 MB of 4,800 per-meter keys)
        self._kv: dict[str, dict[str, str | None]] = {}
        self.ledger = Ledger(self)

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock,
        limits: StoreLimits | None = None,
        on_alarm: AlarmCallback | None = None,
        fsync: bool = True,
    ) -> Store:
        """Open (creating if needed) and migrate the database at ``path``.

        ``on_alarm(full, used_bytes)`` is called on the event loop when the store-full
        alarm is raised (``full=True``) or cleared (``False``). ``fsync``: see the module docstring.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttu-store")
        store = cls(
            Path(path),
            clock=clock,
            limits=limits or StoreLimits(),
            executor=executor,
            on_alarm=on_alarm,
            fsync=fsync,
        )
        try:
            await store._run(store._connect)
        except BaseException:
            executor.shutdown(wait=True)
            raise
        return store

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            # auto_vacuum must be chosen before the first table exists; it lets prune() give
            # freed pages back to the file system instead of only reusing them.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError(f"cannot switch to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        """Checkpoint, close the connection and join the worker thread."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        finally:
            self._executor.shutdown(wait=True)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._submit(fn, *args)
        except sqlite3.Error as err:
            raise self._wrap(err) from err

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args)`` on the worker thread; its raw future (sqlite errors unwrapped)."""
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _wrap(self, err: BaseException) -> BaseException:
        """A worker's sqlite error as the store's own exception (others unchanged)."""
        if isinstance(err, sqlite3.OperationalError) and "full" in str(err).lower():
            wrapped: StoreError = StoreFull(f"{self.path}: {err}")
        elif isinstance(err, sqlite3.Error):
            wrapped = StoreError(f"{self.path}: {err}")
        else:
            return err
        wrapped.__cause__ = err
        return wrapped

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: store is not open")
        return self._conn

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside one write transaction (worker thread only)."""
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    @property
    def full(self) -> bool:
        """True while the store-full alarm is raised (undelivered outbox rows exceed ``max_bytes``)."""
        return self._full

    # ------------------------------------------------------------------ readings

    async def write_readings(self, readings: Iterable[Reading]) -> int:
        """Upsert readings on (device, quantity, ts) in ONE transaction; return how many."""
        rows = [
            (r.device, r.quantity, float(r.ts), float(r.value), r.unit, Quality(r.quality).value, r.obis)
            for r in readings
        ]
        if not rows:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO readings (device, quantity, ts, value, unit, quality, obis)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (device, quantity, ts) DO UPDATE SET"
                " value = excluded.value, unit = excluded.unit, quality = excluded.quality,"
                " obis = excluded.obis",
                rows,
            )
            return len(rows)

        return await self._run(self._write, work)

    async def query_readings(
        self,
        *,
        device: str | None = None,
        quantity: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[Reading]:
        """Readings matching every given filter, oldest first; ``since`` inclusive, ``until`` exclusive."""
        where, args = _filters(("device", device), ("quantity", quantity))
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        sql = "SELECT device, quantity, value, unit, ts, quality, obis FROM readings"
        sql += _where(where) + " ORDER BY ts, device, quantity"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))

        def work() -> list[Reading]:
            return [
                Reading(d, q, v, u, ts, Quality(ql), ob)
                for d, q, v, u, ts, ql, ob in self._db().execute(sql, args)
            ]

        return await self._run(work)

    # ------------------------------------------------------------------ events

    async def write_event(self, event: Event) -> int:
        """Store an event; return its row id."""
        data = _json(event.data, f"event {event.kind}.data")

        def work(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                'INSERT INTO events (kind, source, start, "end", data) VALUES (?, ?, ?, ?, ?)',
                (event.kind, event.source, event.start, event.end, data),
            )
            return int(cur.lastrowid or 0)

        return await self._run(self._write, work)

    async def end_event(self, event_id: int, end: float) -> None:
        """Close a still-open event (set its ``end``)."""

        def work(conn: sqlite3.Connection) -> None:
            cur = conn.execute('UPDATE events SET "end" = ? WHERE id = ?', (end, event_id))
            if cur.rowcount != 1:
                raise StoreError(f"{self.path}: no event with id {event_id}")

        await self._run(self._write, work)

    async def query_events(
        self,
        *,
        kind: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Events matching every filter by ``start`` time, oldest first (``until`` exclusive)."""
        where, args = _filters(("kind", kind), ("source", source))
        if since is not None:
            where.append("start >= ?")
            args.append(since)
        if until is not None:
            where.append("start < ?")
            args.append(until)
        sql = (
            'SELECT id, kind, source, start, "end", data FROM events' + _where(where) + " ORDER BY start, id"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))

        def work() -> list[StoredEvent]:
            return [
                StoredEvent(i, k, s, st, en, json.loads(d))
                for i, k, s, st, en, d in self._db().execute(sql, args)
            ]

        return await self._run(work)

    # ------------------------------------------------------------------ key-value

    async def kv_get(self, ns: str, key: str, default: JSON = None) -> JSON:
        cached = self._kv.get(ns)
        if cached is not None and key in cached:
            text = cached[key]
            return default if text is None else json.loads(text)

        def work() -> str | None:
            row = self._db().execute("SELECT value FROM kv WHERE ns = ? AND key = ?", (ns, key)).fetchone()
            return None if row is None else str(row[0])

        text = await self._run(work)
        self._remember(ns, key, text)
        return default if text is None else json.loads(text)

    def _remember(self, ns: str, key: str, text: str | None) -> None:
        if text is None or len(text) <= KV_CACHED_CHARS:
            if text is not None and len(text) <= KV_INTERNED_CHARS:
                text = sys.intern(text)  # "0", "false", "true": thousands of per-meter keys hold them
            self._kv.setdefault(ns, {})[key] = text
        else:
            self._forget(ns, key)  # large values are read from the database each time

    def _forget(self, ns: str, key: str) -> None:
        cached = self._kv.get(ns)
        if cached is not None:
            cached.pop(key, None)

    async def kv_set(self, ns: str, key: str, value: JSON) -> None:
        text = _json(value, f"kv {ns}/{key}")

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv (ns, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value",
                (ns, key, text),
            )

        self._forget(ns, key)  # not known until written
        await self._run(self._write, work)
        self._remember(ns, key, text)

    async def kv_delete(self, ns: str, key: str) -> bool:
        """Delete one key; True if it existed."""

        def work(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM kv WHERE ns = ? AND key = ?", (ns, key)).rowcount > 0

        self._forget(ns, key)
        existed: bool = await self._run(self._write, work)
        self._remember(ns, key, None)
        return existed

    async def kv_items(self, ns: str) -> dict[str, JSON]:
        def work() -> dict[str, JSON]:
            rows = self._db().execute("SELECT key, value FROM kv WHERE ns = ? ORDER BY key", (ns,))
            return {k: json.loads(v) for k, v in rows}

        return await self._run(work)

    # ------------------------------------------------------------------ outbox

    async def outbox_append(
        self, stream: str, body: dict[str, Any], *, terminal: str, max_bytes: int | None = None
    ) -> OutboxEntry:
        """Durably append one upward message; its seq is the stream's last seq + 1 (persisted).

        ``terminal`` is the terminal id that prefixes the idempotency key. A body whose JSON is
        over ``max_bytes`` raises ``MessageTooLarge`` and is not stored.
        """
        (entry,) = await self.outbox_append_many(stream, [body], terminal=terminal, max_bytes=max_bytes)
        return entry

    async def outbox_append_many(
        self, stream: str, bodies: Sequence[dict[str, Any]], *, terminal: str, max_bytes: int | None = None
    ) -> list[OutboxEntry]:
        """``outbox_append`` of several messages in order, in ONE transaction (one commit, one
        fsync): all are stored or none is (a body over ``max_bytes`` refuses them all)."""
        texts = [_json(body, f"outbox {stream} body") for body in bodies]
        if max_bytes is not None:
            for text in texts:
                size = len(text.encode())
                if size > max_bytes:
                    raise MessageTooLarge(stream, size, max_bytes)
        ts = self._clock.now()

        def work(conn: sqlite3.Connection) -> list[OutboxEntry]:
            row = conn.execute("SELECT last_seq FROM outbox_seq WHERE stream = ?", (stream,)).fetchone()
            last = 0 if row is None else int(row[0])
            entries = []
            for body, text in zip(bodies, texts, strict=True):
                last += 1
                key = f"{terminal}:{stream}:{last}"
                cur = conn.execute(
                    "INSERT INTO outbox (stream, seq, key, ts, body) VALUES (?, ?, ?, ?, ?)",
                    (stream, last, key, ts, text),
                )
                entries.append(OutboxEntry(int(cur.lastrowid or 0), stream, last, key, ts, body))
            conn.execute(
                "INSERT INTO outbox_seq (stream, last_seq) VALUES (?, ?)"
                " ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq",
                (stream, last),
            )
            return entries

        if not bodies:
            return []
        return await self._run(self._write, work)

    async def outbox_pending(self, stream: str | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Undelivered rows in append order (per stream if ``stream`` is given)."""
        where, args = _filters(("stream", stream))
        where.append("delivered IS NULL")
        sql = "SELECT id, stream, seq, key, ts, body FROM outbox" + _where(where) + " ORDER BY id LIMIT ?"
        args.append(int(limit))

        def work() -> list[OutboxEntry]:
            return [
                OutboxEntry(i, s, q, k, t, json.loads(b))
                for i, s, q, k, t, b in self._db().execute(sql, args)
            ]

        return await self._run(work)

    async def outbox_window(self, stream: str, *, after: int, limit: int, max_bytes: int) -> list[OutboxRow]:
        """Undelivered rows of ``stream`` with seq > ``after``, in seq order, bodies as stored JSON
        text: at most ``limit`` rows whose bodies and envelopes total at most ``max_bytes`` (but
        always the first one)."""
        sql = (
            "SELECT seq, key, ts, body FROM outbox WHERE stream = ? AND seq > ? AND delivered IS NULL"
            " ORDER BY seq LIMIT ?"
        )

        def work() -> list[OutboxRow]:
            out: list[OutboxRow] = []
            total = 0
            for seq, key, ts, body in self._db().execute(sql, (stream, after, int(limit))):
                size = len(body.encode()) + len(key) + OUTBOX_ENVELOPE_BYTES
                if out and total + size > max_bytes:
                    break
                out.append(OutboxRow(int(seq), key, float(ts), body))
                total += size
            return out

        return await self._run(work)

    async def outbox_acknowledge(self, stream: str, upto: int) -> int:
        """Mark the rows of ``stream`` up to seq ``upto`` delivered (the cloud acknowledged them)."""
        now = self._clock.now()

        def work(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE outbox SET delivered = ? WHERE stream = ? AND seq <= ? AND delivered IS NULL",
                (now, stream, upto),
            )
            return int(cur.rowcount)

        return await self._run(self._write, work)

    async def outbox_streams(self) -> dict[str, tuple[int, int]]:
        """Per stream ``(acked, last)``: every row up to ``acked`` is delivered, ``last`` is the
        newest seq appended (acks are contiguous, so delivered rows are always a prefix)."""

        def work() -> dict[str, tuple[int, int]]:
            rows = self._db().execute(
                "SELECT s.stream, s.last_seq, (SELECT MIN(o.seq) FROM outbox o"
                " WHERE o.stream = s.stream AND o.delivered IS NULL) FROM outbox_seq s"
            )
            return {
                stream: (last if first is None else int(first) - 1, int(last)) for stream, last, first in rows
            }

        return await self._run(work)

    async def outbox_mark_delivered(self, ids: Sequence[int]) -> int:
        """Mark rows delivered (after the broker acknowledged them); return how many changed."""
        if not ids:
            return 0
        now = self._clock.now()

        def work(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "UPDATE outbox SET delivered = ? WHERE id = ? AND delivered IS NULL", [(now, i) for i in ids]
            )
            return int(cur.rowcount)

        return await self._run(self._write, work)

    async def outbox_backlog(self) -> dict[str, int]:
        """Undelivered row count per stream (streams with none are absent)."""

        def work() -> dict[str, int]:
            rows = self._db().execute(
                "SELECT stream, COUNT(*) FROM outbox WHERE delivered IS NULL GROUP BY stream ORDER BY stream"
            )
            return {s: int(n) for s, n in rows}

        return await self._run(work)

    # ------------------------------------------------------------------ bounds

    async def used_bytes(self) -> int:
        """Bytes the database really uses: pages in use plus the WAL file."""
        return await self._run(self._used_bytes)

    def _used_bytes(self) -> int:
        conn = self._db()
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        wal = self.path.with_name(self.path.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        return (pages - free) * page_size + wal_bytes

    async def prune(self) -> PruneResult:
        """Apply retention, then the size limit (oldest readings/events first); never undelivered rows."""
        now = self._clock.now()
        result = await self._run(self._prune, now)
        if result.full != self._full:
            self._full = result.full
            if result.full:
                _log.error(
                    "store full: %s uses %d bytes > %d and only undelivered outbox rows remain",
                    self.path,
                    result.used_bytes,
                    self.limits.max_bytes,
                )
            else:
                _log.warning("store no longer full: %s uses %d bytes", self.path, result.used_bytes)
            if self._on_alarm is not None:
                self._on_alarm(result.full, result.used_bytes)
        return result

    def _prune(self, now: float) -> PruneResult:
        conn = self._db()
        limits = self.limits
        curve_cutoff = now - limits.curve_retention_days * _DAY
        event_cutoff = now - limits.retention_days * _DAY

        def by_age(c: sqlite3.Connection) -> tuple[int, int, int, int]:
            r = c.execute("DELETE FROM readings WHERE ts < ?", (curve_cutoff,)).rowcount
            e = c.execute("DELETE FROM events WHERE start < ?", (event_cutoff,)).rowcount
            o = c.execute("DELETE FROM outbox WHERE delivered IS NOT NULL").rowcount
            # ledger records go only once the cloud archived them (never by the size limit below)
            ledger = self.ledger.prune_sync(c, int(event_cutoff * 1000))
            return r, e, o, ledger

        readings, events, outbox, ledger = self._write(by_age)
        self._compact(conn)
        used = self._used_bytes()
        while used > limits.max_bytes:
            oldest_r = conn.execute("SELECT MIN(id), MIN(ts) FROM readings").fetchone()
            oldest_e = conn.execute("SELECT MIN(start) FROM events").fetchone()[0]
            if oldest_r[0] is None and oldest_e is None:
                break
            # delete about the excess fraction of the table at a time (rows are roughly equal in size)
            excess = (used - limits.max_bytes) / used
            if oldest_e is None or (oldest_r[0] is not None and oldest_r[1] <= oldest_e):
                readings += self._write(partial(_delete_oldest, table="readings", order="id", excess=excess))
            else:
                events += self._write(partial(_delete_oldest, table="events", order="start", excess=excess))
            self._compact(conn)
            used = self._used_bytes()
        return PruneResult(readings, events, outbox, used, used > limits.max_bytes, ledger)

    @staticmethod
    def _compact(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA incremental_vacuum")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def integrity_check(self) -> str:
        """``"ok"`` or sqlite's list of problems, one per line."""

        def work() -> str:
            rows = self._db().execute("PRAGMA integrity_check").fetchall()
            return "\n".join(str(r[0]) for r in rows)

        return await self._run(work)

    async def pragma(self, name: str) -> Any:
        """Read one PRAGMA value (diagnostics and tests: ``journal_mode``, ``synchronous``)."""
        if not name.replace("_", "").isalnum():
            raise StoreError(f"not a pragma name: {name!r}")

        def work() -> Any:
            row = self._db().execute(f"PRAGMA {name}").fetchone()
            return None if row is None else row[0]

        return await self._run(work)


def _delete_oldest(conn: sqlite3.Connection, *, table: str, order: str, excess: float) -> int:
    # readings go by rowid (insertion order, close to time order) so whole pages free up from the front
    count = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    chunk = max(_PRUNE_MIN_CHUNK, int(count * excess * 1.1) + 1)
    cur = conn.execute(
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY {order} LIMIT ?)", (chunk,)
    )
    return int(cur.rowcount)


def _filters(*pairs: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in pairs:
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    return where, args


def _where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""
