"""Meter clients by protocol: the one place that maps a meter's protocol name to its master and client.

Layer: hal. ``MeterClients`` keeps one protocol master per (transport, protocol) -- a master
holds per-transport state (DL/T 698.45 PIIDs and fragment reassembly, wire tallies) -- and
hands out a ``MeterClient`` for a meter address on it. The reply timeout depends on the
transport's kind: a meter on an RS-485 bus answers within a second, one behind the HPLC
carrier module after relays that take seconds. ``broadcast_time`` sends the time sync on
every (transport, protocol) pair asked for.

Must not know archives, schedules, stores or apps: callers say which transport a meter is on.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from hal.errors import HalError
from hal.interfaces import Priority
from hal.meters.client import Dlt645Client, Dlt698Client, MeterClient
from hal.meters.dlt645 import Dlt645Master
from hal.meters.dlt698 import Dlt698Master
from hal.meters.transport import MeterTransport, TransportKind

MeterProtocol = Literal["dlt645", "dlt698"]
PROTOCOLS: tuple[MeterProtocol, ...] = ("dlt645", "dlt698")

Master = Dlt645Master | Dlt698Master


class MeterClients:
    """Protocol masters shared per transport, and the clients of single meters on them.

    ``timeouts`` maps a transport kind to the per-read reply timeout its masters use.
    """

    def __init__(self, *, timeouts: dict[TransportKind, float] | None = None) -> None:
        self._timeouts: dict[TransportKind, float] = {"rs485": 1.0, "hplc": 20.0, **(timeouts or {})}
        self._masters: dict[tuple[str, MeterProtocol], tuple[MeterTransport, Master]] = {}

    def master(self, transport: MeterTransport, protocol: str) -> Master:
        """The master of ``protocol`` on ``transport`` (made on first use, replaced with the transport)."""
        name = _protocol(protocol)
        known = self._masters.get((transport.name, name))
        if known is not None and known[0] is transport:
            return known[1]
        timeout = self._timeouts[transport.kind]
        master: Master = (
            Dlt698Master(transport, timeout=timeout)
            if name == "dlt698"
            else Dlt645Master(transport, timeout=timeout)
        )
        self._masters[(transport.name, name)] = (transport, master)
        return master

    def client(
        self, transport: MeterTransport, protocol: str, address: str, *, three_phase: bool = False
    ) -> MeterClient:
        """The client of the meter at ``address`` speaking ``protocol`` on ``transport``."""
        master = self.master(transport, protocol)
        if isinstance(master, Dlt698Master):
            return Dlt698Client(master, address, three_phase=three_phase)
        return Dlt645Client(master, address, three_phase=three_phase)

    async def broadcast_time(
        self, when: datetime, pairs: Iterable[tuple[str, str]], *, priority: Priority = Priority.CONTROL
    ) -> list[tuple[str, HalError]]:
        """Broadcast ``when`` (meter local time) with each known master of the (transport name,
        protocol) ``pairs``; return the failures as (transport name, error), none raised."""
        failed: list[tuple[str, HalError]] = []
        wanted = set(pairs)
        for (transport, protocol), (_, master) in sorted(self._masters.items()):
            if (transport, protocol) not in wanted:
                continue
            try:
                await master.broadcast_time(when, priority=priority)
            except HalError as err:
                failed.append((transport, err))
        return failed


def _protocol(name: str) -> MeterProtocol:
    for known in PROTOCOLS:
        if name == known:
            return known
    raise ValueError(f"unknown meter protocol {name!r}; one of {', '.join(PROTOCOLS)}")


__all__ = ["PROTOCOLS", "Master", "MeterClients", "MeterProtocol"]
