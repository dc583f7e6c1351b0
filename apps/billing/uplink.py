"""Sending the ledger up: every record, in order, until the master station has archived it.

Layer: apps (billing). Reads the ledger after the last record it queued (kept in the app's store
as ``uplinked_seq``) and sends them on stream ``billing`` as ``{"type": "ledger", "records":
[...], "head": {...}}`` messages of at most ``MAX_BYTES`` of records each, through the durable
outbox; a record too big for one message (a daily ``checkpoint`` of 2,000 accounts is ~1.5 MB)
goes as ``ledger_piece`` messages (``protocols.ledger.record_pieces``), the last with the head.
Each message's head (``{seq, hash, signature}``) is signed by the terminal's key, so every record
is vouched for as soon as it leaves. A crash between queuing and remembering sends some records
twice; the master station keys them by seq and hash. The station acknowledges what it archived
with command ``billing.archived``; only then may the store prune them. A station that finds a
gap in what it received asks for the records again from a seq (command ``billing.resend``,
``rewind``): the uplink's outbox being durable is not enough when a message is lost after the
broker took it. Must not decide anything about billing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from protocols.cloud import MAX_MESSAGE_BYTES, json_size, page_budget
from protocols.ledger import Record, record_pieces

from .engine import LedgerBackend

STREAM = "billing"
KEY = "uplinked_seq"
MAX_BYTES = 200_000  # of records per message; the head and envelope stay within MAX_MESSAGE_BYTES


class AppStoreKv(Protocol):
    async def get(self, key: str, default: Any = None) -> Any: ...

    async def set(self, key: str, value: Any) -> None: ...


class UplinkSender(Protocol):
    async def send(self, stream: str, body: dict[str, Any]) -> str: ...


class LedgerUplink:
    def __init__(
        self,
        ledger: LedgerBackend,
        kv: AppStoreKv,
        uplink: UplinkSender,
        terminal: str,
        *,
        sign: Callable[[int, str], str] | None = None,
    ) -> None:
        self._sign = sign  # the terminal's signature over each message's head (protocols.ledger.sign_head)
        self._ledger = ledger
        self._kv = kv
        self._uplink = uplink
        self._terminal = terminal
        self._wake = asyncio.Event()
        self.sent = 0

    async def rewind(self, seq: int) -> int:
        """Send again every record after ``seq`` (not before what is still kept here)."""
        state = await self._ledger.state()
        after = max(min(seq, int(await self._kv.get(KEY, 0))), state.base_seq)
        await self._kv.set(KEY, after)
        self.poke()
        return after

    def poke(self) -> None:
        """Something was appended: send it (called after every append)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        after = int(await self._kv.get(KEY, 0))
        while True:
            records = await self._ledger.records(after=after, limit=500)
            if not records:
                return
            for chunk in _chunks(records):
                last = chunk[-1]
                state: dict[str, Any] = {"seq": last.seq, "hash": last.hash}
                if self._sign is not None:
                    state["signature"] = self._sign(last.seq, last.hash)
                for body in self._messages(chunk, state):
                    await self._uplink.send(STREAM, body)
                after = last.seq
                await self._kv.set(KEY, after)
                self.sent += len(chunk)

    def _messages(self, chunk: list[Record], head: dict[str, Any]) -> list[dict[str, Any]]:
        """One ``ledger`` message, or a record too big for one as ``ledger_piece`` messages."""
        records = [r.to_json() for r in chunk]
        body = {"type": "ledger", "terminal": self._terminal, "records": records, "head": head}
        if len(chunk) > 1 or json_size(body) <= MAX_MESSAGE_BYTES:
            return [body]
        (record,) = chunk
        base = {"type": "ledger_piece", "terminal": self._terminal, "seq": record.seq, "hash": record.hash}
        texts = record_pieces(record, page_budget({**base, "head": head, "part": 0, "parts": 0}))
        return [
            {
                **base,
                "part": i,
                "parts": len(texts),
                "text": text,
                **({"head": head} if i == len(texts) - 1 else {}),
            }
            for i, text in enumerate(texts)
        ]


def _chunks(records: list[Record]) -> list[list[Record]]:
    """Consecutive records in groups whose ``ledger`` message fits ``MAX_BYTES`` (a record over it
    alone is a group of its own, sent in pieces)."""
    chunks: list[list[Record]] = [[]]
    size = 0
    for record in records:
        n = json_size(record.to_json()) + 1
        if chunks[-1] and size + n > MAX_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += n
    return chunks


__all__ = ["MAX_BYTES", "STREAM", "LedgerUplink"]
