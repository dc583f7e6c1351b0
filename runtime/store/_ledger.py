"""The store's append-only ledger: hash-chained records (``protocols.ledger``), group-committed.

Layer: runtime (store). Knows no billing: a record is a kind, an optional unique ``uid`` and a
JSON body; the store gives it the next ``seq``, the hash of the record before and its own hash,
all inside the same transaction as the insert, so the chain on disk is always whole.

Durability and speed: appends made while a commit is in progress wait and go together into the
next transaction (group commit, one fsync for all of them under ``synchronous=FULL``), so many
small appends from many callers run at the disk's commit rate times the batch size.

Idempotency: an entry whose ``uid`` is already in the ledger is not appended again; the caller
gets the stored record with ``created=False`` (a replayed top-up changes nothing).

Pruning: a record leaves the store only after the cloud acknowledged it as archived
(``mark_archived``, checked against the record's hash) *and* it is older than the retention;
the last pruned record's seq and hash become the chain's base. Never by the size limit.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from protocols.cloud import canonical_json
from protocols.ledger import GENESIS, Audit, Record, audit, hash_of_body_json
from runtime.errors import StoreError

if TYPE_CHECKING:
    from ._store import Store

_COLUMNS = "seq, ts, kind, uid, body, prev, hash"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What a caller appends; ``ts`` in UTC epoch milliseconds."""

    kind: str
    body: dict[str, Any]
    ts: int
    uid: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    record: Record
    created: bool  # False: an entry with this uid was already in the ledger


@dataclass(frozen=True, slots=True)
class LedgerState:
    head_seq: int
    head_hash: str
    base_seq: int  # records up to here were archived and pruned
    base_hash: str
    archived_seq: int  # the cloud has these
    archived_hash: str
    records: int  # rows kept here


def _record(row: tuple[Any, ...]) -> Record:
    seq, ts, kind, uid, body, prev, digest = row
    return Record(int(seq), int(ts), str(kind), uid, json.loads(body), str(prev), str(digest))


def _state(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM ledger_state"))


def _put_state(conn: sqlite3.Connection, **values: object) -> None:
    conn.executemany(
        "INSERT INTO ledger_state (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [(k, str(v)) for k, v in values.items()],
    )


class Ledger:
    """The ledger of one store (``store.ledger``). Async methods run on the store's worker."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[tuple[list[tuple[LedgerEntry, bytes]], asyncio.Future[list[Appended]]]] = []
        self._idle: asyncio.Event | None = None
        self._head: tuple[int, str] | None = None  # worker thread only
        self._lock = threading.Lock()
        self.commits = 0

    # ------------------------------------------------------------------ append (group commit)

    async def append(self, entries: Sequence[LedgerEntry]) -> list[Appended]:
        """Append ``entries`` in order; returns one ``Appended`` per entry once it is durable."""
        encoded: list[tuple[LedgerEntry, bytes]] = []
        for entry in entries:  # serialized once here: checked, hashed and stored from these bytes
            try:
                encoded.append((entry, canonical_json(entry.body)))
            except (TypeError, ValueError) as err:
                raise StoreError(f"ledger {entry.kind}: body is not JSON-able ({err})") from err
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Appended]] = loop.create_future()
        self._pending.append((encoded, future))
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        while not future.done():
            if not self._idle.is_set():
                await self._idle.wait()
                continue
            self._idle.clear()
            batch, self._pending = self._pending, []
            work = self._store._submit(self._store._write, partial(self._write_batch, batch))
            try:
                await asyncio.shield(work)
            except BaseException:
                if not work.done():  # we were cancelled: the batch still settles when it is done
                    work.add_done_callback(partial(self._settle, batch))
                    work.add_done_callback(lambda _: self._release())
                    raise
            # settle here, not in a done callback: on a loop whose executor jobs complete at once
            # (sim.vloop) the await above does not yield, and this caller must see its result now
            self._settle(batch, work)
            self._release()
        return future.result()

    def _release(self) -> None:
        if self._idle is not None:
            self._idle.set()

    def _settle(
        self,
        batch: list[tuple[list[tuple[LedgerEntry, bytes]], asyncio.Future[list[Appended]]]],
        work: asyncio.Future[list[list[Appended]]],
    ) -> None:
        error = None if work.cancelled() else work.exception()
        if error is not None or work.cancelled():
            self.forget_head()  # the transaction rolled back: re-read the head from disk next time
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if work.cancelled():
                future.set_exception(StoreError("ledger append abandoned: the store closed"))
            elif error is not None:
                future.set_exception(self._store._wrap(error))
            else:
                future.set_result(work.result()[i])

    def _write_batch(
        self, batch: list[tuple[list[tuple[LedgerEntry, bytes]], Any]], conn: sqlite3.Connection
    ) -> list[list[Appended]]:
        seq, prev = self._head if self._head is not None else self._read_head(conn)
        out: list[list[Appended]] = []
        for entries, _ in batch:
            done: list[Appended] = []
            for entry, body_json in entries:
                if entry.uid is not None:
                    row = conn.execute(
                        f"SELECT {_COLUMNS} FROM ledger WHERE uid = ?", (entry.uid,)
                    ).fetchone()
                    if row is not None:
                        done.append(Appended(_record(row), False))
                        continue
                seq += 1
                digest = hash_of_body_json(seq, entry.ts, entry.kind, entry.uid, body_json, prev)
                record = Record(seq, entry.ts, entry.kind, entry.uid, entry.body, prev, digest)
                conn.execute(
                    f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, entry.ts, entry.kind, entry.uid, body_json.decode(), prev, digest),
                )
                prev = record.hash
                done.append(Appended(record, True))
            out.append(done)
        self.commits += 1
        self._head = (seq, prev)  # _write commits after this returns; a failed commit resets the cache
        return out

    @staticmethod
    def _read_head(conn: sqlite3.Connection) -> tuple[int, str]:
        row = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
        state = _state(conn)
        return int(state.get("base_seq", 0)), state.get("base_hash", GENESIS)

    def forget_head(self) -> None:
        """Drop the cached head (after a failed transaction or an external change)."""
        self._head = None

    # ------------------------------------------------------------------ reading

    async def records(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        kind: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[Record]:
        """Records with seq > ``after`` (of ``kind``, or of any of ``kinds``), oldest first."""
        sql = f"SELECT {_COLUMNS} FROM ledger WHERE seq > ?"
        args: list[Any] = [after]
        wanted = [kind] if kind is not None else list(kinds or [])
        if wanted:
            sql += f" AND kind IN ({','.join('?' * len(wanted))})"
            args.extend(wanted)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))

        def work() -> list[Record]:
            return [_record(row) for row in self._store._db().execute(sql, args)]

        return await self._store._run(work)

    async def hashes(self, *, after: int = 0) -> list[tuple[int, str]]:
        """(seq, hash) of every record after ``after``: what a Merkle root needs, without bodies."""

        def work() -> list[tuple[int, str]]:
            rows = self._store._db().execute(
                "SELECT seq, hash FROM ledger WHERE seq > ? ORDER BY seq", (after,)
            )
            return [(int(s), str(h)) for s, h in rows]

        return await self._store._run(work)

    async def last(self, kind: str) -> Record | None:
        def work() -> Record | None:
            row = (
                self._store._db()
                .execute(f"SELECT {_COLUMNS} FROM ledger WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,))
                .fetchone()
            )
            return None if row is None else _record(row)

        return await self._store._run(work)

    async def first_since(self, ts_ms: int, *, kind: str | None = None) -> int | None:
        """The first seq appended at or after ``ts_ms`` (of ``kind``), or None."""
        sql = "SELECT MIN(seq) FROM ledger WHERE ts >= ?" + (" AND kind = ?" if kind else "")
        args: tuple[Any, ...] = (ts_ms, kind) if kind else (ts_ms,)

        def work() -> int | None:
            row = self._store._db().execute(sql, args).fetchone()
            return None if row is None or row[0] is None else int(row[0])

        return await self._store._run(work)

    async def state(self) -> LedgerState:
        def work() -> LedgerState:
            conn = self._store._db()
            head_seq, head_hash = self._read_head(conn)
            s = _state(conn)
            count = int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
            return LedgerState(
                head_seq,
                head_hash,
                int(s.get("base_seq", 0)),
                s.get("base_hash", GENESIS),
                int(s.get("archived_seq", 0)),
                s.get("archived_hash", GENESIS),
                count,
            )

        return await self._store._run(work)

    async def audit(self, **kwargs: Any) -> Audit:
        """``protocols.ledger.audit`` over every record kept here, from the pruned base."""
        state = await self.state()
        records = await self.records()
        return audit(records, base_seq=state.base_seq, base_hash=state.base_hash, **kwargs)

    # ------------------------------------------------------------------ archive + prune

    async def mark_archived(self, seq: int, digest: str) -> int:
        """The cloud has every record up to ``seq`` (whose hash it names). Returns the watermark."""

        def work(conn: sqlite3.Connection) -> int:
            state = _state(conn)
            archived = int(state.get("archived_seq", 0))
            row = conn.execute("SELECT hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                if seq <= int(state.get("base_seq", 0)):
                    return archived
                raise StoreError(f"ledger: the cloud acknowledged seq {seq}, which this terminal never wrote")
            if str(row[0]) != digest:
                raise StoreError(
                    f"ledger: the cloud's record {seq} has hash {digest[:12]}..., ours {str(row[0])[:12]}..."
                )
            if seq > archived:
                _put_state(conn, archived_seq=seq, archived_hash=digest)
                return seq
            return archived

        return await self._store._run(self._store._write, work)

    def prune_sync(self, conn: sqlite3.Connection, cutoff_ms: int) -> int:
        """Delete archived records older than ``cutoff_ms`` (worker thread, inside a transaction)."""
        state = _state(conn)
        archived = int(state.get("archived_seq", 0))
        row = conn.execute(
            "SELECT seq, hash FROM ledger WHERE seq <= ? AND ts < ? ORDER BY seq DESC LIMIT 1",
            (archived, cutoff_ms),
        ).fetchone()
        if row is None:
            return 0
        last, digest = int(row[0]), str(row[1])
        deleted = conn.execute("DELETE FROM ledger WHERE seq <= ?", (last,)).rowcount
        _put_state(conn, base_seq=last, base_hash=digest)
        return int(deleted)


__all__ = ["Appended", "Ledger", "LedgerEntry", "LedgerState"]
