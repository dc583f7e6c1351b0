"""hal for an isolated app: proxies whose calls are bridge requests run by the runtime on the real hal.

Layer: runtime, in the app host process (``runtime.container.isolation.host``). ``RemoteHal`` is
the ``ctx.hal`` of an isolated app. It checks the manifest locally so a refusal raises
where it would in-process (the attempt is still sent: the bridge is the one that
enforces and reports), and checks the board's nodes from the ``hal`` description in the
welcome so a missing port raises ``CapabilityMissing`` at ``ctx.hal.rs485(name)`` too.
What it hands out:

* ``RemoteRs485Port`` -- duck-types ``hal.rs485.Rs485Port`` (``transact``, ``send``,
  ``health``, ``statistics``, ``last_exchange``, ``link.settings``), so
  ``Rs485Transport``, the DL/T 645/698.45 masters and ``ModbusMaster`` run on it
  unchanged. A transaction crosses as bytes plus the protocol name of the caller's
  decoder (``hal.framings``); the runtime's port queues it by priority and applies
  the timeout; the reply bytes come back and are decoded and matched here with the
  caller's own decoder and predicate. ``health`` answers from a mirror refreshed by
  every transaction (and after every failure), because the in-process one is synchronous.
  It is a ``hal.meters.transport.TransactionPort``: an isolated app builds its
  ``MeterTransport`` as in-process, ``Dlt645Master(Rs485Transport(ctx.hal.rs485(name)))``;
* ``RemoteCarrier`` (``CarrierModule``: frames are bytes already; ``events()`` streams
  the runtime's carrier events), ``RemoteMetrology``, ``RemoteSlot``.

Errors arrive typed: ``TransportTimeout``, ``DeviceError``, ``ProtocolError``,
``CapabilityMissing``, ``CapabilityError``. A caller cancelled while waiting cancels the
runtime side too. The watchdog is runtime-only. Must not import the bridge or apps.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from hal.errors import CapabilityMissing, HalError, TransportError
from hal.framings import FRAMINGS, protocol_of
from hal.hplc import EventStream
from hal.interfaces import MetrologySnapshot, NetworkNode, NodePhase, Priority, SerialSettings, StreamDecoder
from hal.rs485 import DeviceHealth
from protocols.errors import ProtocolError
from runtime.container.context import ScopedHal, Violations
from runtime.container.isolation.channel import Channel
from runtime.container.isolation.wire import (
    bytes_from_json,
    bytes_to_json,
    carrier_event_from_json,
    health_from_json,
    snapshot_from_json,
)
from runtime.container.manifest import Manifest
from runtime.errors import BusError, CapabilityError

F = TypeVar("F")
CANCEL_OP = "hal.cancel"
EVENT_BACKLOG = 1000  # carrier events kept per stream before the oldest are dropped


@dataclass(frozen=True, slots=True)
class RemoteLink:
    """What callers read of ``Rs485Port.link``: its name and line settings."""

    name: str
    settings: SerialSettings


class RemoteRs485Port:
    """One RS-485 port of the runtime, as ``Rs485Port`` looks to its callers."""

    def __init__(self, chan: Channel, name: str, link: RemoteLink) -> None:
        self._chan = chan
        self._name = name
        self.link = link
        self.last_exchange: tuple[int, int] = (0, 0)
        self._health: dict[str, DeviceHealth] = {}
        self._statistics: dict[str, object] = {"port": name, "link": link.name}

    @property
    def name(self) -> str:
        return self._name

    async def _request(self, op: str, body: dict[str, Any]) -> Any:
        return await self._chan.request(op, {**body, "port": self._name}, cancel_op=CANCEL_OP)

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority = Priority.REALTIME,
        timeout: float = 1.0,  # noqa: ASYNC109 (the per-device reply timeout, applied by the runtime's port)
        silence: float | None = None,
    ) -> F:
        """Like ``Rs485Port.transact``; ``decoder`` must be one of ``hal.framings.FRAMINGS``."""
        protocol = protocol_of(decoder)
        if protocol is None:
            raise HalError(
                f"{self._name}: a {type(decoder).__name__} cannot be proxied to the runtime; "
                f"isolated apps may use the framers of {', '.join(FRAMINGS)}"
            )
        body = {
            "protocol": protocol,
            "request": bytes_to_json(request),
            "device": device,
            "priority": priority.name,
            "timeout": timeout,
        }
        if silence is not None:
            body["silence"] = silence
        try:
            result = await self._request("hal.rs485.transact", body)
        except TransportError:
            await self._refresh_health(device)  # the runtime counted the failure; mirror it
            raise
        sent, received = result["exchange"]
        self.last_exchange = (int(sent), int(received))
        self._health[device] = health_from_json(result["health"])
        problems: list[str] = []
        for item in decoder.feed(bytes_from_json(result["reply"], what="reply")):
            if isinstance(item, Exception):
                problems.append(str(item))
            elif match(item):
                return item
        detail = "; ".join(problems) or "no frame the caller accepts"
        raise ProtocolError(f"{self._name}: the reply of {device} does not answer the request ({detail})")

    async def _refresh_health(self, device: str) -> None:
        with contextlib.suppress(HalError, BusError):
            self._health[device] = health_from_json(
                await self._request("hal.rs485.health", {"device": device})
            )

    async def send(
        self, request: bytes, *, device: str = "broadcast", priority: Priority = Priority.REALTIME
    ) -> None:
        await self._request(
            "hal.rs485.send", {"frame": bytes_to_json(request), "device": device, "priority": priority.name}
        )

    def health(self, device: str) -> DeviceHealth:
        """As of this app's last transaction with ``device`` (``fetch_health`` asks the runtime)."""
        return self._health.get(device) or DeviceHealth(device=device)

    async def fetch_health(self, device: str) -> DeviceHealth:
        self._health[device] = health_from_json(await self._request("hal.rs485.health", {"device": device}))
        return self._health[device]

    def statistics(self) -> dict[str, object]:
        """The port's counters as of the last ``fetch_statistics`` (all apps' traffic, not only ours)."""
        return dict(self._statistics)

    async def fetch_statistics(self) -> dict[str, object]:
        stats = await self._request("hal.rs485.statistics", {})
        if isinstance(stats, dict):
            self._statistics = stats
        return dict(self._statistics)

    def __repr__(self) -> str:
        return f"<RemoteRs485Port {self._name}>"


class RemoteCarrier:
    """The runtime's HPLC carrier module (``CarrierModule``)."""

    def __init__(self, chan: Channel) -> None:
        self._chan = chan
        self._next_sid = 0
        self.streams: dict[int, EventStream] = {}

    async def reset(self) -> None:
        await self._chan.request("hal.hplc.reset", {}, cancel_op=CANCEL_OP)

    async def sync_archive(
        self, addresses: Sequence[str], *, protocols: Mapping[str, str] | None = None
    ) -> None:
        body = {"addresses": list(addresses), "protocols": dict(protocols or {})}
        await self._chan.request("hal.hplc.sync_archive", body, cancel_op=CANCEL_OP)

    async def transact(self, address: str, frame: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109 (module-side monitor timeout)
        body = {"address": address, "frame": bytes_to_json(frame), "timeout": timeout}
        reply = await self._chan.request("hal.hplc.transact", body, cancel_op=CANCEL_OP)
        return bytes_from_json(reply, what="carrier reply")

    async def broadcast(self, frame: bytes) -> None:
        await self._chan.request("hal.hplc.broadcast", {"frame": bytes_to_json(frame)}, cancel_op=CANCEL_OP)

    async def network(self) -> tuple[NetworkNode, ...]:
        reply = await self._chan.request("hal.hplc.network", {}, cancel_op=CANCEL_OP)
        return tuple(NetworkNode(**node) for node in _records(reply, NetworkNode))

    async def phases(self) -> tuple[NodePhase, ...]:
        reply = await self._chan.request("hal.hplc.phases", {}, cancel_op=CANCEL_OP)
        return tuple(NodePhase(**node) for node in _records(reply, NodePhase))

    def events(self) -> EventStream:
        """Carrier events the runtime forwards: ``async with carrier.events() as s: async for e in s``."""
        self._next_sid += 1
        sid = self._next_sid
        stream = EventStream(EVENT_BACKLOG, on_close=lambda _: self._unsubscribe(sid))
        self.streams[sid] = stream
        self._chan.request_nowait("hal.hplc.events", {"sid": sid})
        return stream

    def _unsubscribe(self, sid: int) -> None:
        if self.streams.pop(sid, None) is not None:
            with contextlib.suppress(BusError):
                self._chan.request_nowait("hal.hplc.unevents", {"sid": sid})

    def deliver(self, frame: dict[str, Any]) -> None:
        stream = self.streams.get(frame.get("sid", -1))
        if stream is not None and not stream.closed:
            stream.put(carrier_event_from_json(frame["event"]))

    def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.close()


def _records(reply: Any, kind: type[NetworkNode] | type[NodePhase]) -> list[dict[str, Any]]:
    """The runtime's reply as a list of ``kind``'s fields; BusError naming what is wrong."""
    fields = {f.name for f in dataclasses.fields(kind)}
    if not isinstance(reply, list) or not all(isinstance(r, dict) and set(r) == fields for r in reply):
        raise BusError(f"hal.hplc: a reply of {kind.__name__} records is malformed")
    return reply


class RemoteMetrology:
    def __init__(self, chan: Channel) -> None:
        self._chan = chan

    async def snapshot(self) -> MetrologySnapshot:
        return snapshot_from_json(await self._chan.request("hal.metrology.snapshot", {}, cancel_op=CANCEL_OP))


class RemoteSlot:
    def __init__(self, chan: Channel, name: str, kind: str) -> None:
        self._chan = chan
        self._name = name
        self._kind = kind

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self._kind

    async def read_inputs(self) -> dict[str, float | bool]:
        values = await self._chan.request("hal.slot.read_inputs", {"name": self._name}, cancel_op=CANCEL_OP)
        return dict(values)

    async def write_output(self, point: str, value: float | bool) -> None:
        body = {"name": self._name, "point": point, "value": value}
        await self._chan.request("hal.slot.write_output", body, cancel_op=CANCEL_OP)


class RemoteHal(ScopedHal):
    """``ctx.hal`` of an isolated app: declared and present -> a proxy; undeclared -> the counted refusal."""

    def __init__(
        self, manifest: Manifest, violations: Violations, chan: Channel, nodes: dict[str, Any]
    ) -> None:
        super().__init__(None, manifest, violations)
        self._chan = chan
        self._nodes = nodes
        self._ports: dict[str, RemoteRs485Port] = {}
        self._slots: dict[str, RemoteSlot] = {}
        self._carrier: RemoteCarrier | None = None
        self._metrology: RemoteMetrology | None = None

    def _check(self, cap: str, name: str | None = None) -> None:
        if cap not in self._m.hal:
            with contextlib.suppress(BusError):
                self._chan.request_nowait("hal.open", {"cap": cap, "name": name})  # the bridge reports it
            self._need(cap)  # raises the counted refusal

    def rs485(self, name: str) -> RemoteRs485Port:
        self._check("rs485", name)
        port = self._ports.get(name)
        if port is None:
            node = self._nodes.get("rs485", {}).get(name)
            if node is None:
                raise CapabilityMissing(f"no enabled RS-485 port {name!r} on this board")
            settings = SerialSettings(node["baud"], node["parity"], node["bytesize"], node["stopbits"])
            port = self._ports[name] = RemoteRs485Port(self._chan, name, RemoteLink(node["link"], settings))
        return port

    def hplc(self) -> RemoteCarrier:
        self._check("hplc")
        if not self._nodes.get("hplc"):
            raise CapabilityMissing("HPLC carrier module: not enabled on this board (or no simulator)")
        if self._carrier is None:
            self._carrier = RemoteCarrier(self._chan)
        return self._carrier

    def metrology(self) -> RemoteMetrology:
        self._check("metrology")
        if not self._nodes.get("metrology"):
            raise CapabilityMissing("metrology unit: not enabled on this board (or no simulator behind it)")
        if self._metrology is None:
            self._metrology = RemoteMetrology(self._chan)
        return self._metrology

    def slot(self, name: str) -> RemoteSlot:
        self._check("slots", name)
        slot = self._slots.get(name)
        if slot is None:
            node = self._nodes.get("slots", {}).get(name)
            if node is None:
                raise CapabilityMissing(f"no slot {name!r} with a driver on this board")
            slot = self._slots[name] = RemoteSlot(self._chan, name, str(node["kind"]))
        return slot

    def watchdog(self) -> NoReturn:
        self._check("watchdog")
        raise CapabilityError(
            self._m.name, "the watchdog is kicked by the runtime only; isolated apps cannot use it"
        )

    def deliver_event(self, frame: dict[str, Any]) -> None:
        if self._carrier is not None:
            self._carrier.deliver(frame)

    def close(self) -> None:
        if self._carrier is not None:
            self._carrier.close()


__all__ = [
    "RemoteCarrier",
    "RemoteHal",
    "RemoteLink",
    "RemoteMetrology",
    "RemoteRs485Port",
    "RemoteSlot",
]
