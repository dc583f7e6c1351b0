"""Schema of the terminal's sqlite store: an ordered list of migrations, applied once each.

Layer: runtime (store internals). Pure data plus one function that runs on the store's
worker thread; it must never be called from the event loop.

``MIGRATIONS[i]`` brings the database from version ``i`` to ``i + 1``; each is applied in
its own transaction together with the bump of ``schema_version``, so a crash mid-way
leaves the previous version intact. Append new migrations; never edit a released one.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # readings: a rowid table so that rowid order ~ insertion order ~ time order, which
        # lets size pruning free whole pages from the front; the unique index is the upsert key.
        """CREATE TABLE readings (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL, quantity TEXT NOT NULL, ts REAL NOT NULL,
            value REAL NOT NULL, unit TEXT NOT NULL, quality TEXT NOT NULL, obis TEXT
        )""",
        "CREATE UNIQUE INDEX readings_key ON readings (device, quantity, ts)",
        "CREATE INDEX readings_ts ON readings (ts)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL, source TEXT NOT NULL, start REAL NOT NULL, "end" REAL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX events_start ON events (start)",
        """CREATE TABLE kv (
            ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (ns, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            stream TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, ts REAL NOT NULL,
            body TEXT NOT NULL, delivered REAL,
            UNIQUE (stream, seq)
        )""",
        "CREATE INDEX outbox_undelivered ON outbox (stream, id) WHERE delivered IS NULL",
        # the last seq per stream outlives the rows themselves (delivered rows are pruned)
        "CREATE TABLE outbox_seq (stream TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID",
    ),
    (
        # the append-only, hash-chained ledger (runtime/store/_ledger.py); uid makes appends idempotent
        """CREATE TABLE ledger (
            seq INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL, kind TEXT NOT NULL, uid TEXT UNIQUE,
            body TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL
        )""",
        "CREATE INDEX ledger_kind ON ledger (kind, seq)",
        # base_seq/base_hash (after pruning), archived_seq/archived_hash (what the cloud holds)
        "CREATE TABLE ledger_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    ),
    (
        # the uplink reads undelivered rows by seq (a window after what it sent; acks up to a seq)
        "CREATE INDEX outbox_undelivered_seq ON outbox (stream, seq) WHERE delivered IS NULL",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration the database lacks; return how many were applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``): transactions are explicit.
    """
    applied = 0
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"database schema version {version} is newer than this software ({SCHEMA_VERSION})"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read inside the write lock: another opener may have migrated meanwhile
            if current_version(conn) >= target:
                conn.execute("COMMIT")
                continue
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied += 1
    return applied
