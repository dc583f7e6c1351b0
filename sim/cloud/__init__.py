"""The cloud master-station stub: an MQTT peer that stores what terminals send and commands them.

Layer: sim. Speaks only the ``protocols.cloud`` topic scheme and payloads over a
broker; keeps its own sqlite database; never imports terminal internals.
"""

from sim.cloud.db import CloudDb, CloudDbError, EventRow, ReadingRow, RejectedRow, StreamRow, TerminalRow
from sim.cloud.stub import BrokerAddress, CloudStub, CloudStubError

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
