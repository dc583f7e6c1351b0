"""Who is billed and how each customer's meter is reached.

Layer: apps (billing). ``Directory`` pairs the billing ``Customer`` (id, meter, tariff, flags)
with the meter's address, protocol and port, and hands out one ``MeterClient`` per meter for the
relay commands (control priority on the same RS-485 port as acquisition; on HPLC through the
carrier module). The customers come from the station model (``ctx.station.model``): every meter
of kind ``customer`` with a ``customer`` id is billed (flags ``postpaid``: no fee control,
``keep_power``: 保电); branch units, box terminals and the transformer's assessment meter are not.
Must not read or write meters itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hal.clock import Clock
from hal.errors import CapabilityMissing
from hal.meters import CarrierTransport, MeterClient, MeterClients, MeterTransport, Rs485Transport
from protocols.station import Meter, StationModel

from .book import Customer

HPLC = "hplc"
NOT_CUSTOMERS = ("branch-unit", "box-terminal", "assessment")  # tariffs of monitoring meters


def reach(meter: Meter) -> tuple[str, str, str, bool]:
    """How a meter is reached: address, protocol, transport (RS-485 port or ``hplc``), three-phase."""
    return (meter.address, meter.protocol, meter.transport, meter.three_phase)


def from_model(model: StationModel) -> tuple[list[Customer], list[Meter]]:
    """Customers and their meters of the station model (the model's own objects: ``reach`` is what
    the directory reads of them); meters without a customer are not billed."""
    customers: list[Customer] = []
    places: list[Meter] = []
    for meter in model.meters:
        if meter.kind != "customer" or not meter.customer or meter.tariff in NOT_CUSTOMERS:
            continue
        customers.append(
            Customer(
                meter.customer,
                meter.id,
                meter.tariff,
                prepaid="postpaid" not in meter.flags,
                keep_power="keep_power" in meter.flags,
            )
        )
        places.append(meter)
    return customers, places


class Directory:
    """Meter clients for relay commands, one per billed meter, made on first use."""

    def __init__(self, hal: Any, clock: Clock, *, timeouts: dict[str, float] | None = None) -> None:
        self._hal = hal
        self._clock = clock
        self._factory = MeterClients(timeouts=timeouts)  # type: ignore[arg-type]
        self._transports: dict[str, MeterTransport | None] = {}
        self._places: dict[str, Meter] = {}  # the station model's meter objects
        self._clients: dict[str, MeterClient] = {}
        self.unreachable: set[str] = set()

    def use(self, places: Iterable[Meter]) -> None:
        new = {p.id: p for p in places}
        self._clients = {
            m: c
            for m, c in self._clients.items()
            if m in new and m in self._places and reach(self._places[m]) == reach(new[m])
        }
        self._places = new

    def _transport(self, port: str) -> MeterTransport | None:
        if port not in self._transports:
            transport: MeterTransport | None
            try:
                if port == HPLC:
                    transport = CarrierTransport(self._hal.hplc(), clock=self._clock, concurrency=2)
                else:
                    transport = Rs485Transport(self._hal.rs485(port))
            except (CapabilityMissing, KeyError, LookupError):
                transport = None
            self._transports[port] = transport
        return self._transports[port]

    def client(self, meter: str) -> MeterClient | None:
        known = self._clients.get(meter)
        if known is not None:
            return known
        place = self._places.get(meter)
        if place is None:
            return None
        transport = self._transport(place.transport)
        if transport is None:
            self.unreachable.add(meter)
            return None
        client = self._factory.client(transport, place.protocol, place.address, three_phase=place.three_phase)
        self._clients[meter] = client
        return client


__all__ = ["NOT_CUSTOMERS", "Directory", "from_model", "reach"]
