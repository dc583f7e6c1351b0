"""Who is billed and how each customer's meter is reached.

Layer: apps (billing). ``Directory`` pairs the billing ``Customer`` (id, meter, tariff, flags)
with the meter's address, protocol and port, and hands out one ``MeterClient`` per meter for the
relay commands (control priority on the same RS-485 port as acquisition; on HPLC through the
carrier module). The customers come from the station model; until the runtime serves that model
to apps, they are read from the meter archive file acquisition reads (``[[meters]]`` with
``customer`` and ``tariff``). Must not read or write meters itself.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base.clock import Clock
from hal.errors import CapabilityMissing
from hal.meters import CarrierTransport, MeterClient, MeterClients, MeterTransport, Rs485Transport

from .book import Customer

HPLC = "hplc"
NOT_CUSTOMERS = ("branch-unit", "box-terminal", "assessment")


@dataclass(frozen=True, slots=True)
class MeterPlace:
    meter: str
    address: str
    protocol: str
    port: str
    three_phase: bool = False


def from_archive(path: Path) -> tuple[list[Customer], list[MeterPlace]]:
    """Customers and meter places of an archive file; meters without a customer are not billed."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    customers: list[Customer] = []
    places: list[MeterPlace] = []
    for i, raw in enumerate(data.get("meters", [])):
        if not isinstance(raw, dict) or not raw.get("customer"):
            continue
        try:
            meter, address, port = str(raw["id"]), str(raw["address"]), str(raw["port"])
        except KeyError as err:
            raise ValueError(f"{path}: meters[{i}]: missing {err.args[0]!r}") from None
        flags = raw.get("flags", [])
        tariff = raw.get("tariff")
        if tariff in NOT_CUSTOMERS:
            continue  # monitoring units and the transformer's assessment meter, not customers
        customers.append(
            Customer(
                str(raw["customer"]),
                meter,
                None if tariff is None else str(tariff),
                prepaid="postpaid" not in flags,
                keep_power="keep_power" in flags,
            )
        )
        places.append(
            MeterPlace(meter, address, str(raw.get("protocol", "dlt645")), port, raw.get("phase") == "ABC")
        )
    return customers, places


class Directory:
    """Meter clients for relay commands, one per billed meter, made on first use."""

    def __init__(self, hal: Any, clock: Clock, *, timeouts: dict[str, float] | None = None) -> None:
        self._hal = hal
        self._clock = clock
        self._factory = MeterClients(timeouts=timeouts)  # type: ignore[arg-type]
        self._transports: dict[str, MeterTransport | None] = {}
        self._places: dict[str, MeterPlace] = {}
        self._clients: dict[str, MeterClient] = {}
        self.unreachable: set[str] = set()

    def use(self, places: Iterable[MeterPlace]) -> None:
        self._places = {p.meter: p for p in places}
        self._clients = {}

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
        transport = self._transport(place.port)
        if transport is None:
            self.unreachable.add(meter)
            return None
        client = self._factory.client(transport, place.protocol, place.address, three_phase=place.three_phase)
        self._clients[meter] = client
        return client


__all__ = ["Directory", "MeterPlace", "from_archive"]
