"""The terminal's durable MQTT uplink (outbox -> broker) and downlink command handling.

Layer: runtime. Uses the store's outbox and the ``protocols.cloud`` scheme; knows no grid app.
"""

from protocols.cloud import DEFAULT_MAX_COMMAND_BYTES

from ._backoff import Backoff
from ._commands import FRESHNESS_S, CommandDispatcher, Handler, Validator
from ._delivery import Delivery
from ._offline import OutboxOnlyUplink
from ._uplink import BrokerAddress, Uplink, parse_broker_url, send_at_once

__all__ = [
    "DEFAULT_MAX_COMMAND_BYTES",
    "FRESHNESS_S",
    "Backoff",
    "BrokerAddress",
    "CommandDispatcher",
    "Delivery",
    "Handler",
    "OutboxOnlyUplink",
    "Uplink",
    "Validator",
    "parse_broker_url",
    "send_at_once",
]
