"""Value types the store hands out: its limits, outbox entries, pruning results.

Layer: runtime (store). Plain frozen dataclasses; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """Bounds from board.toml.

    ``max_bytes``: target size of the database (used pages plus WAL);
    ``retention_days``: events and delivered outbox rows older than this are pruned;
    ``curve_retention_days``: readings (curves, freezes) older than this are pruned.
    """

    max_bytes: int = 256 * 1024 * 1024
    retention_days: float = 90.0
    curve_retention_days: float = 400.0

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.retention_days <= 0 or self.curve_retention_days <= 0:
            raise ValueError(f"store limits must be positive: {self}")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One durable upward message. ``key`` = ``f"{terminal}:{stream}:{seq}"`` (the idempotency key)."""

    id: int
    stream: str
    seq: int
    key: str
    ts: float
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An undelivered outbox row as the uplink sends it: ``body`` is its JSON text, as stored."""

    seq: int
    key: str
    ts: float
    body: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored, with its row id (to close it later with ``end_event``)."""

    id: int
    kind: str
    source: str
    start: float
    end: float | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one ``prune()`` did. ``full`` is True when undelivered outbox rows (and ledger records
    the cloud has not archived) alone exceed the limit."""

    readings: int
    events: int
    outbox: int
    used_bytes: int
    full: bool
    ledger: int = 0
