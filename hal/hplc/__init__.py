"""HPLC carrier module (CCO) driver over Q/GDW 1376.2: ``Cco`` implements ``CarrierModule``.

Layer: hal. Knows the 1376.2 flows, not the apps that read meters through it.
"""

from hal.hplc._events import EventStream
from hal.hplc.cco import (
    DEFAULT_MONITOR_TIMEOUT_S,
    LOCAL_ANSWER_S,
    Cco,
    CcoCounters,
    ModuleInfo,
    ReadMethod,
    SyncResult,
    protocol_of,
)
from hal.hplc.errors import ModuleDenied, ModuleError, ModuleReset, NodeTimeout

__all__ = [
    "DEFAULT_MONITOR_TIMEOUT_S",
    "LOCAL_ANSWER_S",
    "Cco",
    "CcoCounters",
    "EventStream",
    "ModuleDenied",
    "ModuleError",
    "ModuleInfo",
    "ModuleReset",
    "NodeTimeout",
    "ReadMethod",
    "SyncResult",
    "protocol_of",
]
