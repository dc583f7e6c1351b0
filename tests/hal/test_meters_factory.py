"""``MeterClients``: one master per (transport, protocol), the right client per protocol, and
broadcasts only where they were asked for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pytest

from hal.errors import TransportTimeout
from hal.interfaces import Priority, StreamDecoder
from hal.meters import Dlt645Client, Dlt698Client, MeterClients
from hal.meters.dlt645 import Dlt645Master
from hal.meters.dlt698 import Dlt698Master
from protocols import dlt645, dlt698

F = TypeVar("F")


class Wire:
    """A transport that records broadcasts and fails those of ``broken`` transports."""

    def __init__(self, name: str, kind: str = "rs485", *, broken: bool = False) -> None:
        self.name = name
        self.kind = kind
        self.broken = broken
        self.broadcasts: list[bytes] = []
        self.last_exchange = (0, 0)

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority = Priority.REALTIME,
        timeout: float = 1.0,  # noqa: ASYNC109
        silence: float | None = None,
    ) -> F:
        raise TransportTimeout(f"{self.name}: nobody here")

    async def broadcast(self, frame: bytes, *, priority: Priority = Priority.CONTROL) -> None:
        if self.broken:
            raise TransportTimeout(f"{self.name}: line busy")
        self.broadcasts.append(frame)

    def available(self, device: str) -> bool:
        return True

    def wire_seconds(self, nbytes: int) -> float:
        return 0.0


def test_one_master_per_transport_and_protocol() -> None:
    clients = MeterClients()
    bus1, bus2 = Wire("rs485-1"), Wire("rs485-2")
    a = clients.client(bus1, "dlt645", "000000000001")  # type: ignore[arg-type]
    b = clients.client(bus1, "dlt645", "000000000002")  # type: ignore[arg-type]
    c = clients.client(bus1, "dlt698", "000000000003", three_phase=True)  # type: ignore[arg-type]
    d = clients.client(bus2, "dlt645", "000000000004")  # type: ignore[arg-type]
    assert isinstance(a, Dlt645Client) and isinstance(b, Dlt645Client) and isinstance(d, Dlt645Client)
    assert isinstance(c, Dlt698Client) and c.three_phase
    assert a.master is b.master and a.master is not d.master
    assert a.address == "000000000001" and c.transport is bus1


def test_a_new_transport_of_the_same_name_gets_a_new_master() -> None:
    clients = MeterClients()
    first = clients.master(Wire("hplc", "hplc"), "dlt645")  # type: ignore[arg-type]
    again = clients.master(Wire("hplc", "hplc"), "dlt645")  # type: ignore[arg-type]
    assert first is not again


def test_timeout_follows_the_transport_kind() -> None:
    clients = MeterClients(timeouts={"rs485": 0.7, "hplc": 33.0})
    bus = clients.master(Wire("rs485-1"), "dlt645")  # type: ignore[arg-type]
    carrier = clients.master(Wire("hplc", "hplc"), "dlt698")  # type: ignore[arg-type]
    assert isinstance(bus, Dlt645Master) and isinstance(carrier, Dlt698Master)
    assert bus._timeout == 0.7 and carrier._timeout == 33.0


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown meter protocol 'modbus'"):
        MeterClients().client(Wire("rs485-1"), "modbus", "000000000001")  # type: ignore[arg-type]


async def test_time_is_broadcast_only_on_the_pairs_asked_and_failures_are_returned() -> None:
    clients = MeterClients()
    bus1, bus2, broken = Wire("rs485-1"), Wire("rs485-2"), Wire("rs485-3", broken=True)
    wires: list[Any] = [bus1, bus2, broken]
    for wire in wires:
        clients.master(wire, "dlt645")
        clients.master(wire, "dlt698")
    when = datetime(2026, 1, 10, 2, 30)
    asked = {("rs485-1", "dlt645"), ("rs485-1", "dlt698"), ("rs485-3", "dlt645")}
    failed = await clients.broadcast_time(when, asked)
    assert [name for name, _ in failed] == ["rs485-3"]
    assert bus2.broadcasts == []
    frame645, frame698 = (f.lstrip(b"\xfe") for f in bus1.broadcasts)  # in (transport, protocol) order
    assert dlt645.decode(frame645).address == "999999999999"
    assert dlt698.decode(frame698).sa_type == dlt698.AddressType.BROADCAST
