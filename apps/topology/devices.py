"""How the topology app reaches a device: one transport per port, one client per device.

Layer: apps (topology). Wraps ``hal.meters`` for the station model's meters (their port or the
carrier module) and for carrier nodes the model lacks (by address). Must not decide what to
read or when (``carrier`` and ``night`` do), and must not read the station model itself: the
caller hands it the model it works from.
"""

from __future__ import annotations

from hal.errors import CapabilityMissing
from hal.meters import CarrierTransport, MeterClient, MeterClients, MeterTransport, Rs485Transport
from protocols.station import StationModel
from runtime.api import AppContext
from runtime.errors import CapabilityError

#: per transaction: an RS-485 meter answers within a second, a carrier node within tens
TIMEOUTS: dict[str, float] = {"rs485": 1.0, "hplc": 20.0}
CARRIER_CONCURRENCY = 2


class Devices:
    """Clients of the model's devices and of unlisted carrier nodes (cached transports)."""

    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._clients = MeterClients(timeouts={"rs485": TIMEOUTS["rs485"], "hplc": TIMEOUTS["hplc"]})
        self._transports: dict[str, MeterTransport | None] = {}

    def transport(self, port: str) -> MeterTransport | None:
        """``port`` is an RS-485 port name or ``"hplc"``; None when the board lacks it."""
        if port in self._transports:
            return self._transports[port]
        transport: MeterTransport | None
        try:
            transport = (
                CarrierTransport(self._ctx.hal.hplc(), clock=self._ctx.clock, concurrency=CARRIER_CONCURRENCY)
                if port == "hplc"
                else Rs485Transport(self._ctx.hal.rs485(port))
            )
        except (CapabilityMissing, CapabilityError, KeyError) as err:
            self._ctx.log.info("topology: no %s: %s", port, err)
            transport = None
        self._transports[port] = transport
        return transport

    def client(self, model: StationModel, device: str) -> MeterClient | None:
        """A client of the model's meter ``device`` (None: not in the model, or no way to it)."""
        meter = model.meter(device)
        if meter is None:
            return None
        port = "hplc" if meter.channel == "hplc" else meter.port
        transport = self.transport(port) if port else None
        if transport is None:
            return None
        return self._clients.client(
            transport, meter.protocol, meter.address, three_phase=meter.phase == "ABC"
        )

    def node(self, address: str, protocol: str) -> MeterClient | None:
        """A client of a carrier node the model does not list (reached through the module)."""
        transport = self.transport("hplc")
        return None if transport is None else self._clients.client(transport, protocol, address)


__all__ = ["TIMEOUTS", "Devices"]
