"""Sending the ledger up: every record, in order, until the master station has archived it.

Layer: apps (billing). Reads the ledger after the last record it queued (kept in the app's store
as ``uplinked_seq``) and sends them on stream ``billing`` as ``{"type": "ledger", "records":
[...], "head": {...}}`` messages of at most ``max_bytes`` each, through the durable outbox.
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
import json
from collections.abc import Callable
from typing import Any, Protocol

from protocols.ledger import Record

from .engine import LedgerBackend

STREAM = "billing"
KEY = "uplinked_seq"
MAX_BYTES = 200_000


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
                state: dict[str, Any] = {"seq": chunk[-1].seq, "hash": chunk[-1].hash}
                if self._sign is not None:
                    state["signature"] = self._sign(chunk[-1].seq, chunk[-1].hash)
                body = {
                    "type": "ledger",
                    "terminal": self._terminal,
                    "records": [r.to_json() for r in chunk],
                    "head": state,
                }
                await self._uplink.send(STREAM, body)
                after = chunk[-1].seq
                await self._kv.set(KEY, after)
                self.sent += len(chunk)


def _chunks(records: list[Record]) -> list[list[Record]]:
    chunks: list[list[Record]] = [[]]
    size = 0
    for record in records:
        n = len(json.dumps(record.body, separators=(",", ":"))) + 300
        if chunks[-1] and size + n > MAX_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += n
    return chunks


__all__ = ["MAX_BYTES", "STREAM", "LedgerUplink"]
