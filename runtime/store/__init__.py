"""The terminal's durable store (sqlite, WAL, off the event loop).

Layer: runtime. Time series, events, per-app key-value, the uplink outbox and the append-only
hash-chained ledger (``store.ledger``), bounded by
board.toml limits. It must not know grid or protocol specifics, nor MQTT.
"""

from ._ledger import Appended, Ledger, LedgerEntry, LedgerState
from ._records import OutboxEntry, OutboxRow, PruneResult, StoredEvent, StoreLimits
from ._schema import SCHEMA_VERSION
from ._store import PAGE_CACHE_KIB, Store

__all__ = [
    "PAGE_CACHE_KIB",
    "SCHEMA_VERSION",
    "Appended",
    "Ledger",
    "LedgerEntry",
    "LedgerState",
    "OutboxEntry",
    "OutboxRow",
    "PruneResult",
    "Store",
    "StoreLimits",
    "StoredEvent",
]
