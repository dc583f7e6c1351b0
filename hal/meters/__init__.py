"""Meter clients: protocol masters on top of a transport (an RS-485 port or the HPLC carrier).

Layer: hal. ``transport`` carries frames (``Rs485Transport``, ``CarrierTransport``; ``route.RouteTransport``
when the carrier module leads the reading);
``dlt645`` / ``dlt698`` turn "read this from meter y" into frames and decoded results
(abnormal replies become ``DeviceError``); ``client`` is the one ``MeterClient`` interface an
app reads any meter through, with normalized quantity names; ``factory.MeterClients`` maps a
meter's protocol to its master (one per transport) and client. Must not know schedules,
archives or what apps do with the values.
"""

from hal.meters.client import (
    REALTIME_ITEMS,
    CreditLimits,
    Dlt645Client,
    Dlt698Client,
    MeterClient,
    PowerDownRecord,
    Record,
    RelayCommand,
    RelayStatus,
)
from hal.meters.dlt645 import Dlt645Master
from hal.meters.dlt698 import Dlt698Master
from hal.meters.factory import PROTOCOLS, MeterClients
from hal.meters.route import RouteTransport
from hal.meters.transport import CarrierTransport, MeterTransport, Rs485Transport, WireTally

__all__ = [
    "PROTOCOLS",
    "REALTIME_ITEMS",
    "CarrierTransport",
    "CreditLimits",
    "Dlt645Client",
    "Dlt645Master",
    "Dlt698Client",
    "Dlt698Master",
    "MeterClient",
    "MeterClients",
    "MeterTransport",
    "PowerDownRecord",
    "Record",
    "RelayCommand",
    "RelayStatus",
    "RouteTransport",
    "Rs485Transport",
    "WireTally",
]
