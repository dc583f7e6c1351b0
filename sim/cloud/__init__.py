"""The cloud master-station stub: an MQTT peer that stores what terminals send and commands them.

Layer: sim. Speaks only the ``protocols.cloud`` topic scheme and payloads over a
broker; keeps its own sqlite database; never imports terminal internals. The names below load
when first used, so that ``ttu cloud --help`` does not load the MQTT client.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.cloud.db import CloudDb, CloudDbError, EventRow, ReadingRow, RejectedRow, StreamRow, TerminalRow
    from sim.cloud.stub import BrokerAddress, CloudStub, CloudStubError

_WHERE = {
    "BrokerAddress": "sim.cloud.stub",
    "CloudStub": "sim.cloud.stub",
    "CloudStubError": "sim.cloud.stub",
    "CloudDb": "sim.cloud.db",
    "CloudDbError": "sim.cloud.db",
    "EventRow": "sim.cloud.db",
    "ReadingRow": "sim.cloud.db",
    "RejectedRow": "sim.cloud.db",
    "StreamRow": "sim.cloud.db",
    "TerminalRow": "sim.cloud.db",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BrokerAddress",
    "CloudDb",
    "CloudDbError",
    "CloudStub",
    "CloudStubError",
    "EventRow",
    "ReadingRow",
    "RejectedRow",
    "StreamRow",
    "TerminalRow",
]
