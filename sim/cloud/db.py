"""The cloud stub's own sqlite database: what the master station received, de-duplicated.

Layer: sim (cloud stub). ``CloudDb`` is plain synchronous sqlite (WAL) used from one
thread: the stub runs it on a dedicated worker thread through ``DbWorker`` so that no
query runs on the event loop; the CLI opens it read-only and queries it directly.

Tables: terminals (with counters), streams (per terminal+stream sequence tracking),
messages (UNIQUE (terminal, key): the idempotency key de-duplicates at-least-once
delivery), readings, events, replies, commands, status snapshots and rejected
payloads (topic, error, raw excerpt). Every other stream -- an app's result stream such as
``topology`` or ``billing``, and the runtime's ``station`` -- gets a table of its own,
``results_<stream>`` (made when its first message arrives, at most ``MAX_RESULT_STREAMS``),
read back as ``protocols.cloud.StoredResult`` (``results``, ``latest``, ``result_streams``).
A malformed body is stored as rejected with its error and counted; it never raises out of
``ingest_batch``.

Must not speak MQTT or know about asyncio beyond ``DbWorker``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from protocols.cloud import Reply, StoredResult, UpBatch, check_stream
from protocols.errors import ProtocolError
from sim.cloud.payloads import BodyError, parse_event, parse_reading, reading_list

T = TypeVar("T")

SCHEMA_ID = "ttu-cloud-stub/1"
EXCERPT_BYTES = 200
MAX_RESULT_STREAMS = 64
OWN_TABLES = frozenset({"readings", "events", "reply", "status", "alarms", "apps", "jobs"})
"""Streams stored in the tables above (alarms, apps, jobs: the message row is the record)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals (
    id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'unknown',
    state_ts REAL,
    messages INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    readings INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    replies INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    gaps INTEGER NOT NULL DEFAULT 0,
    missing INTEGER NOT NULL DEFAULT 0,
    out_of_order INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS streams (
    terminal TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    messages INTEGER NOT NULL DEFAULT 0,
    gaps INTEGER NOT NULL DEFAULT 0,
    missing INTEGER NOT NULL DEFAULT 0,
    out_of_order INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (terminal, stream)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    terminal TEXT NOT NULL,
    stream TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    received REAL NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (terminal, key)
);
CREATE INDEX IF NOT EXISTS messages_by_seq ON messages (terminal, stream, seq);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    terminal TEXT NOT NULL,
    device TEXT NOT NULL,
    quantity TEXT NOT NULL,
    ts REAL NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    quality TEXT NOT NULL,
    obis TEXT,
    message_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_by_series ON readings (terminal, device, quantity, ts);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    terminal TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL,
    data TEXT NOT NULL,
    message_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_terminal ON events (terminal, start);
CREATE TABLE IF NOT EXISTS replies (
    id INTEGER PRIMARY KEY,
    terminal TEXT NOT NULL,
    command_id TEXT NOT NULL,
    ok INTEGER NOT NULL,
    code TEXT,
    message TEXT,
    result TEXT,
    received REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    terminal TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    sent REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS status (
    id INTEGER PRIMARY KEY,
    terminal TEXT NOT NULL,
    ts REAL NOT NULL,
    received REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    terminal TEXT,
    topic TEXT NOT NULL,
    error TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    received REAL NOT NULL
);
"""

_COUNTED_TABLES = ("terminals", "messages", "readings", "events", "replies", "commands", "status", "rejected")
_TERMINAL_COUNTERS = (
    "messages",
    "duplicates",
    "readings",
    "events",
    "replies",
    "rejected",
    "gaps",
    "missing",
    "out_of_order",
)


class CloudDbError(Exception):
    """The database file cannot be opened or is not a cloud stub database."""


@dataclass(frozen=True, slots=True)
class TerminalRow:
    id: str
    first_seen: float
    last_seen: float
    state: str
    messages: int
    duplicates: int
    readings: int
    events: int
    replies: int
    rejected: int
    gaps: int
    missing: int
    out_of_order: int


@dataclass(frozen=True, slots=True)
class ReadingRow:
    terminal: str
    device: str
    quantity: str
    ts: float
    value: float
    unit: str
    quality: str
    obis: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    terminal: str
    kind: str
    source: str
    start: float
    end: float | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RejectedRow:
    terminal: str | None
    topic: str
    error: str
    excerpt: str
    received: float


@dataclass(frozen=True, slots=True)
class StreamRow:
    terminal: str
    stream: str
    last_seq: int
    messages: int
    gaps: int
    missing: int
    out_of_order: int


@dataclass(slots=True)
class Ingested:
    """What one batch did: new messages, duplicates, sequence anomalies, rejections, replies."""

    stored: int = 0
    duplicates: int = 0
    gaps: int = 0
    out_of_order: int = 0
    rejected: int = 0
    replies: list[Reply] = field(default_factory=list)
    acked: int = 0  # the stream's highest contiguous seq stored, after this batch
    seen: int = 0  # the stream's highest seq stored


def excerpt(payload: bytes) -> str:
    """The first bytes of a payload, printable, for the rejected table."""
    text = payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > EXCERPT_BYTES else "")


class CloudDb:
    """One sqlite connection; every method is a short transaction. Use from one thread only."""

    def __init__(self, path: Path | str, *, readonly: bool = False, fsync: bool = True) -> None:
        self.path = str(path)
        try:
            if readonly:
                if not Path(self.path).is_file():
                    raise CloudDbError(f"{self.path}: no such database (run `ttu cloud serve` first)")
                self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            else:
                if self.path != ":memory:":
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path)
                self._conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a batch is acknowledged to the terminal (which then forgets it) only once
                # its commit is on disk, power cut included. NORMAL (fsync=False) still survives
                # a killed process: the simulator on virtual time, where ~1 ms per commit is wall time
                self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
                self._conn.executescript(_SCHEMA)
                _add_column(self._conn, "streams", "acked", "INTEGER NOT NULL DEFAULT 0")
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_ID,))
                self._conn.commit()
            self._conn.execute("PRAGMA busy_timeout=5000")
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.Error as err:
            raise CloudDbError(f"{self.path}: not a cloud stub database ({err})") from err
        if row is None or row[0] != SCHEMA_ID:
            self._conn.close()
            raise CloudDbError(f"{self.path}: schema {row[0] if row else None!r}, expected {SCHEMA_ID!r}")

    def close(self) -> None:
        self._conn.close()

    # -- writing ------------------------------------------------------------------------------

    def _touch(self, terminal: str, now: float) -> None:
        self._conn.execute(
            "INSERT INTO terminals (id, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
            (terminal, now, now),
        )

    def _bump(self, terminal: str, **counters: int) -> None:
        changed = {k: v for k, v in counters.items() if v}
        if not changed:
            return
        assert set(changed) <= set(_TERMINAL_COUNTERS)
        sets = ", ".join(f"{k} = {k} + ?" for k in changed)
        self._conn.execute(f"UPDATE terminals SET {sets} WHERE id = ?", (*changed.values(), terminal))

    def _reject(self, terminal: str | None, topic: str, error: str, raw: str, now: float) -> None:
        self._conn.execute(
            "INSERT INTO rejected (terminal, topic, error, excerpt, received) VALUES (?, ?, ?, ?, ?)",
            (terminal, topic, error, raw, now),
        )

    def reject(self, *, terminal: str | None, topic: str, error: str, payload: bytes, now: float) -> None:
        """Store a payload that could not be used at all (bad topic, not a batch, wrong terminal)."""
        with self._conn:
            if terminal is not None:
                self._touch(terminal, now)
                self._bump(terminal, rejected=1)
            self._reject(terminal, topic, error, excerpt(payload), now)

    def set_state(self, *, terminal: str, state: str, now: float) -> None:
        with self._conn:
            self._touch(terminal, now)
            self._conn.execute(
                "UPDATE terminals SET state = ?, state_ts = ? WHERE id = ?", (state, now, terminal)
            )

    def record_command(
        self, *, command_id: str, terminal: str, name: str, args: dict[str, Any], now: float
    ) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO commands (id, terminal, name, args, sent) VALUES (?, ?, ?, ?, ?)",
                (command_id, terminal, name, json.dumps(args, sort_keys=True), now),
            )

    def _sequence(self, terminal: str, stream: str, seq: int) -> tuple[int, int, int]:
        """Track ``seq`` in (terminal, stream); return (gaps, missing, out_of_order) it adds."""
        row = self._conn.execute(
            "SELECT last_seq FROM streams WHERE terminal = ? AND stream = ?", (terminal, stream)
        ).fetchone()
        gaps = missing = late = 0
        if row is None:  # first message seen on this stream: it is the baseline
            self._conn.execute(
                "INSERT INTO streams (terminal, stream, last_seq, messages) VALUES (?, ?, ?, 1)",
                (terminal, stream, seq),
            )
            return 0, 0, 0
        last = int(row[0])
        if seq > last + 1:
            gaps, missing = 1, seq - last - 1
        elif seq <= last:
            late = 1
        self._conn.execute(
            "UPDATE streams SET last_seq = max(last_seq, ?), messages = messages + 1, gaps = gaps + ?, "
            "missing = missing + ?, out_of_order = out_of_order + ? WHERE terminal = ? AND stream = ?",
            (seq, gaps, missing, late, terminal, stream),
        )
        return gaps, missing, late

    def ingest_batch(self, *, topic: str, batch: UpBatch, now: float) -> Ingested:
        """Store every new message of ``batch`` in one transaction; count duplicates and anomalies.

        The caller has checked that the batch's terminal and stream match its topic.
        """
        out = Ingested()
        terminal, stream = batch.terminal, batch.stream
        counters = dict.fromkeys(_TERMINAL_COUNTERS, 0)
        with self._conn:
            self._touch(terminal, now)
            for msg in batch.messages:
                body_text = json.dumps(msg.body, sort_keys=True, separators=(",", ":"))
                cur = self._conn.execute(
                    "INSERT OR IGNORE INTO messages (terminal, stream, key, seq, ts, received, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (terminal, stream, msg.key, msg.seq, msg.ts, now, body_text),
                )
                if cur.rowcount == 0:
                    out.duplicates += 1
                    continue
                message_id = cur.lastrowid
                assert message_id is not None
                out.stored += 1
                gaps, missing, late = self._sequence(terminal, stream, msg.seq)
                out.gaps += gaps
                out.out_of_order += late
                counters["gaps"] += gaps
                counters["missing"] += missing
                counters["out_of_order"] += late
                where = f"{topic} key={msg.key}"
                for error, raw in self._store_body(terminal, stream, msg.body, msg.ts, message_id, now, out):
                    self._reject(terminal, topic, f"{where}: {error}", raw[:EXCERPT_BYTES], now)
                    out.rejected += 1
            counters["messages"] = out.stored
            counters["duplicates"] = out.duplicates
            counters["rejected"] = out.rejected
            self._bump(terminal, **counters)
            out.acked, out.seen = self._advance(terminal, stream, batch.acked)
        return out

    def _advance(self, terminal: str, stream: str, floor: int) -> tuple[int, int]:
        """Move the stream's contiguous mark over every seq now stored; (acked, seen).

        ``floor`` is what the terminal says it already had acknowledged: a cloud that never saw
        the stream (or lost its database) starts counting there."""
        row = self._conn.execute(
            "SELECT acked, last_seq FROM streams WHERE terminal = ? AND stream = ?", (terminal, stream)
        ).fetchone()
        if row is None:
            return floor, floor
        acked, seen = max(int(row[0]), floor), int(row[1])
        stored = "SELECT 1 FROM messages WHERE terminal = ? AND stream = ? AND seq = ?"
        while acked < seen and self._conn.execute(stored, (terminal, stream, acked + 1)).fetchone():
            acked += 1
        self._conn.execute(
            "UPDATE streams SET acked = ? WHERE terminal = ? AND stream = ?", (acked, terminal, stream)
        )
        return acked, max(acked, seen)

    def holes(self) -> dict[tuple[str, str], int]:
        """Seq numbers missing now between each stream's contiguous mark and its newest message
        (0 everywhere once every gap was filled); streams without holes are left out."""
        out: dict[tuple[str, str], int] = {}
        for terminal, stream, acked, last in self._conn.execute(
            "SELECT terminal, stream, acked, last_seq FROM streams"
        ).fetchall():
            have = self._conn.execute(
                "SELECT COUNT(*) FROM messages WHERE terminal = ? AND stream = ? AND seq > ?",
                (terminal, stream, acked),
            ).fetchone()[0]
            missing = int(last) - int(acked) - int(have)
            if missing > 0:
                out[(terminal, stream)] = missing
        return out

    def _store_body(
        self,
        terminal: str,
        stream: str,
        body: dict[str, Any],
        ts: float,
        message_id: int,
        now: float,
        out: Ingested,
    ) -> list[tuple[str, str]]:
        """Store what a body means for its stream; return (error, raw excerpt) of what is unusable."""
        errors: list[tuple[str, str]] = []
        try:
            if stream == "readings":
                rows = []
                for i, item in enumerate(reading_list(body)):
                    try:
                        r = parse_reading(item, f"body.readings[{i}]")
                    except BodyError as err:
                        errors.append((str(err), json.dumps(item)))
                        continue
                    rows.append(
                        (terminal, r.device, r.quantity, r.ts, r.value, r.unit, r.quality, r.obis, message_id)
                    )
                self._conn.executemany(
                    "INSERT INTO readings (terminal, device, quantity, ts, value, unit, quality, obis, "
                    "message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                stored = len(rows)
                self._bump(terminal, readings=stored)
            elif stream == "events":
                e = parse_event(body)
                self._conn.execute(
                    'INSERT INTO events (terminal, kind, source, start, "end", data, message_id) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        terminal,
                        e.kind,
                        e.source,
                        e.start,
                        e.end,
                        json.dumps(e.data, sort_keys=True),
                        message_id,
                    ),
                )
                self._bump(terminal, events=1)
            elif stream == "reply":
                try:
                    reply = Reply.from_json(body)
                except (ProtocolError, TypeError, ValueError) as err:
                    raise BodyError("body", str(err)) from err
                self._conn.execute(
                    "INSERT INTO replies (terminal, command_id, ok, code, message, result, received) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        terminal,
                        reply.id,
                        int(reply.ok),
                        reply.code,
                        reply.message,
                        None if reply.result is None else json.dumps(reply.result, sort_keys=True),
                        now,
                    ),
                )
                self._bump(terminal, replies=1)
                out.replies.append(reply)
            elif stream == "status":
                self._conn.execute(
                    "INSERT INTO status (terminal, ts, received, body) VALUES (?, ?, ?, ?)",
                    (terminal, ts, now, json.dumps(body, sort_keys=True)),
                )
            elif stream not in OWN_TABLES:
                self._store_result(terminal, stream, body, ts, message_id, now)
            # alarms, apps, jobs: the message row (with its body) is the record
        except BodyError as err:
            errors.append((str(err), json.dumps(body)))
        return errors

    def _result_table(self, stream: str, *, create: bool) -> str | None:
        """The table of a result stream (``results_<stream>``), made on first use when ``create``."""
        try:
            check_stream(stream)
        except ProtocolError as err:
            if create:
                raise BodyError("stream", err.reason) from err
            raise CloudDbError(err.reason) from err
        table = f"results_{stream}"
        if self._has_table(table):
            return table
        if not create:
            return None
        if len(self.result_streams()) >= MAX_RESULT_STREAMS:
            raise BodyError("stream", f"more than {MAX_RESULT_STREAMS} result streams: {stream!r} not stored")
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, terminal TEXT NOT NULL, "
            "key TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, received REAL NOT NULL, "
            "body TEXT NOT NULL, message_id INTEGER NOT NULL)"
        )
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_by_terminal ON {table} (terminal, id)")
        return table

    def _has_table(self, table: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return row.fetchone() is not None

    def _store_result(
        self, terminal: str, stream: str, body: dict[str, Any], ts: float, message_id: int, now: float
    ) -> None:
        table = self._result_table(stream, create=True)
        row = self._conn.execute("SELECT key, seq FROM messages WHERE id = ?", (message_id,)).fetchone()
        self._conn.execute(
            f"INSERT INTO {table} (terminal, key, seq, ts, received, body, message_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (terminal, row[0], row[1], ts, now, json.dumps(body, sort_keys=True), message_id),
        )

    # -- reading ------------------------------------------------------------------------------

    def result_streams(self) -> list[str]:
        """The result streams that have a table (an app's, or the runtime's ``station``)."""
        rows = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'results\\_%' ESCAPE '\\' "
            "ORDER BY name"
        ).fetchall()
        return [name.removeprefix("results_") for (name,) in rows]

    def result_counts(self) -> dict[str, dict[str, int]]:
        """Per result stream: rows per terminal."""
        out: dict[str, dict[str, int]] = {}
        for stream in self.result_streams():
            rows = self._conn.execute(
                f"SELECT terminal, count(*) FROM results_{stream} GROUP BY terminal ORDER BY terminal"
            ).fetchall()
            out[stream] = {t: int(n) for t, n in rows}
        return out

    def results(
        self, stream: str, *, terminal: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[StoredResult]:
        """Messages of result stream ``stream``, newest first (nothing for a stream never seen)."""
        table = self._result_table(stream, create=False)
        if table is None:
            return []
        where, params = _filters(terminal=terminal)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        rows = self._conn.execute(
            f"SELECT terminal, key, seq, ts, received, body FROM {table}{_where(where)} "
            "ORDER BY id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [
            StoredResult(t, stream, k, seq, ts, rec, json.loads(body)) for t, k, seq, ts, rec, body in rows
        ]

    def latest(self, stream: str, *, terminal: str | None = None) -> StoredResult | None:
        """The newest message of ``stream`` (of ``terminal``), or None."""
        found = self.results(stream, terminal=terminal, limit=1)
        return found[0] if found else None

    def terminals(self) -> list[TerminalRow]:
        cols = ", ".join(("id", "first_seen", "last_seen", "state", *_TERMINAL_COUNTERS))
        rows = self._conn.execute(f"SELECT {cols} FROM terminals ORDER BY id").fetchall()
        return [TerminalRow(*row) for row in rows]

    def readings(
        self,
        *,
        terminal: str | None = None,
        device: str | None = None,
        quantity: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ReadingRow]:
        """Newest first."""
        where, params = _filters(terminal=terminal, device=device, quantity=quantity)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        sql = "SELECT terminal, device, quantity, ts, value, unit, quality, obis FROM readings"
        rows = self._conn.execute(
            f"{sql}{_where(where)} ORDER BY ts DESC, id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [ReadingRow(*row) for row in rows]

    def events(
        self,
        *,
        terminal: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[EventRow]:
        """Newest first."""
        where, params = _filters(terminal=terminal, kind=kind)
        if since is not None:
            where.append("start >= ?")
            params.append(since)
        sql = 'SELECT terminal, kind, source, start, "end", data FROM events'
        rows = self._conn.execute(
            f"{sql}{_where(where)} ORDER BY start DESC, id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [EventRow(t, k, s, start, end, json.loads(data)) for t, k, s, start, end, data in rows]

    def rejected(self, *, terminal: str | None = None, limit: int = 100) -> list[RejectedRow]:
        """Newest first."""
        where, params = _filters(terminal=terminal)
        sql = "SELECT terminal, topic, error, excerpt, received FROM rejected"
        rows = self._conn.execute(
            f"{sql}{_where(where)} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [RejectedRow(*row) for row in rows]

    def streams(self) -> list[StreamRow]:
        rows = self._conn.execute(
            "SELECT terminal, stream, last_seq, messages, gaps, missing, out_of_order FROM streams "
            "ORDER BY terminal, stream"
        ).fetchall()
        return [StreamRow(*row) for row in rows]

    def command_log(self, *, name: str | None = None, terminal: str | None = None) -> list[dict[str, Any]]:
        """Commands sent (oldest first) with their reply if one came: the master station's own record."""
        where, params = _filters(name=name, terminal=terminal)
        sql = (
            "SELECT c.id, c.terminal, c.name, c.args, c.sent, r.ok, r.code, r.message, r.result"
            " FROM commands c LEFT JOIN replies r ON r.command_id = c.id"
            + _where([f"c.{w}" for w in where])
            + " ORDER BY c.sent, c.id"
        )
        out = []
        for cid, term, cname, args, sent, ok, code, message, result in self._conn.execute(sql, params):
            out.append(
                {
                    "id": cid,
                    "terminal": term,
                    "name": cname,
                    "args": json.loads(args),
                    "sent": sent,
                    "reply": None
                    if ok is None
                    else {
                        "ok": bool(ok),
                        "code": code,
                        "message": message,
                        "result": json.loads(result or "null"),
                    },
                }
            )
        return out

    def __enter__(self) -> CloudDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def known_keys(self, terminal: str, keys: list[str]) -> set[str]:
        """Those of ``keys`` (message idempotency keys) the cloud has stored for ``terminal``."""
        found: set[str] = set()
        for i in range(0, len(keys), 500):  # bounded parameter lists
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self._conn.execute(
                f"SELECT key FROM messages WHERE terminal = ? AND key IN ({marks})", (terminal, *part)
            )
            found.update(k for (k,) in rows)
        return found

    def counts(self) -> dict[str, int]:
        """Rows per table, plus the total of duplicates received."""
        out = {t: int(self._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in _COUNTED_TABLES}
        out["duplicates"] = int(
            self._conn.execute("SELECT coalesce(sum(duplicates), 0) FROM terminals").fetchone()[0]
        )
        return out

    def statistics(self) -> dict[str, dict[str, int]]:
        """Per terminal: messages, duplicates, readings, events, replies, rejected, gaps, missing,
        out_of_order (``gaps`` counts jumps in seq, ``missing`` the seq numbers skipped)."""
        return {row.id: {k: getattr(row, k) for k in _TERMINAL_COUNTERS} for row in self.terminals()}


def _add_column(conn: sqlite3.Connection, table: str, column: str, spec: str) -> None:
    """Add ``column`` to a table of an older stub database (idempotent)."""
    if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {spec}")


def _filters(**equal: str | None) -> tuple[list[str], list[Any]]:
    where = [f"{name} = ?" for name, value in equal.items() if value is not None]
    params: list[Any] = [value for value in equal.values() if value is not None]
    return where, params


def _where(clauses: list[str]) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


class DbWorker:
    """Owns one ``CloudDb`` on a dedicated thread: every call runs there, in submission order."""

    def __init__(self, path: Path | str, *, fsync: bool = True) -> None:
        self._path = path
        self._fsync = fsync
        self._executor: ThreadPoolExecutor | None = None
        self._db: CloudDb | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloud-db")
        loop = asyncio.get_running_loop()
        try:
            self._db = await loop.run_in_executor(
                self._executor, functools.partial(CloudDb, self._path, fsync=self._fsync)
            )
        except BaseException:
            self._executor.shutdown(wait=True)
            self._executor = None
            raise

    async def run(self, fn: Callable[[CloudDb], T]) -> T:
        """Run ``fn(db)`` on the database thread and return its result."""
        executor, db = self._executor, self._db
        if executor is None or db is None:
            raise CloudDbError("database is closed")
        return await asyncio.get_running_loop().run_in_executor(executor, fn, db)

    async def close(self) -> None:
        executor, db = self._executor, self._db
        self._executor = self._db = None
        if executor is None:
            return
        try:
            if db is not None:
                await asyncio.get_running_loop().run_in_executor(executor, db.close)
        finally:
            executor.shutdown(wait=True)  # the thread is idle by now: this join is immediate


__all__ = [
    "CloudDb",
    "CloudDbError",
    "DbWorker",
    "EventRow",
    "Ingested",
    "ReadingRow",
    "RejectedRow",
    "StreamRow",
    "TerminalRow",
    "excerpt",
]
