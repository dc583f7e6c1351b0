"""Meter transports: how a protocol master's frame reaches one meter and its reply comes back.

Layer: hal. Two transports behind one small Protocol (``MeterTransport``):

* ``Rs485Transport`` -- an ``Rs485Port``: one transaction at a time on the shared bus,
  by priority, with the port's per-device timeout and health; keeps a ``WireTally`` of the
  bytes put on the wire so a cycle can be compared with its wire-time lower bound;
* ``CarrierTransport`` -- the HPLC carrier module (``hal.interfaces.CarrierModule``): the
  frame goes to the node address through ``CarrierModule.transact``; up to ``concurrency``
  transactions are in flight at once (the module's own parallelism), waiters are admitted
  by ``Priority`` (CONTROL > EVENT > REALTIME > CURVE), FIFO within a priority; the reply
  bytes are fed to the caller's decoder and matched like on a bus. Device health is kept
  the same edge-triggered way as on a port (unavailable after ``fail_threshold``
  consecutive timeouts, logged once each way).

Must not: know any protocol (frames are decoded by the caller's ``StreamDecoder`` and
recognised by its ``match``), retry on its own, know apps or archives, or sleep outside the
given clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from hal.errors import HalError, TransportTimeout
from hal.health import DeviceHealth, DeviceHealthBook
from hal.interfaces import CarrierModule, HalClock, Priority, SerialSettings, StreamDecoder
from hal.rs485 import Rs485Port
from hal.slots import PrioritySlots, Reservation, Start
from protocols.errors import ProtocolError

_log = logging.getLogger(__name__)

F = TypeVar("F")

# DL/T 645 lets a meter wait 20 ms before answering: the least any exchange can take
# beyond its bytes on the wire (PROTOCOLS.md §1.1).
MIN_RESPONSE_DELAY_S = 0.020

# The carrier driver enforces the module-side monitor timeout itself; this margin only
# bounds a driver that never returns (a hung UART), so the caller's slot is not lost.
CARRIER_SLACK_S = 5.0

TransportKind = Literal["rs485", "hplc"]


class PortLink(Protocol):
    """What a transport reads of a port's link: its name and line settings."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> SerialSettings: ...


class TransactionPort(Protocol):
    """What ``Rs485Transport`` needs of a port: an ``Rs485Port``, or the proxy of one an
    isolated app is given (it forwards each transaction to the runtime's port)."""

    @property
    def name(self) -> str: ...

    @property
    def link(self) -> PortLink: ...

    @property
    def last_exchange(self) -> tuple[int, int]: ...

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority = Priority.REALTIME,
        timeout: float = 1.0,  # noqa: ASYNC109 (per-device reply timeout, applied by the port)
        silence: float | None = None,
    ) -> F: ...

    async def send(
        self, request: bytes, *, device: str = "broadcast", priority: Priority = Priority.REALTIME
    ) -> None: ...

    def health(self, device: str) -> DeviceHealth: ...


@dataclass(slots=True)
class WireTally:
    """Bytes and exchanges on one port, for the wire-time bound of a cycle."""

    exchanges: int = 0
    request_bytes: int = 0
    reply_bytes: int = 0

    def bound_seconds(self, port: TransactionPort) -> float:
        settings = port.link.settings
        wire = settings.wire_seconds(self.request_bytes + self.reply_bytes)
        return wire + self.exchanges * MIN_RESPONSE_DELAY_S

    def add(self, request_bytes: int, reply_bytes: int) -> None:
        self.exchanges += 1
        self.request_bytes += request_bytes
        self.reply_bytes += reply_bytes

    def reset(self) -> None:
        self.exchanges = self.request_bytes = self.reply_bytes = 0


class MeterTransport(Protocol):
    """What a protocol master needs from the medium between it and the meters."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> TransportKind: ...

    @property
    def last_exchange(self) -> tuple[int, int]:
        """(request, reply) bytes of the last answered transaction."""
        ...

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority,
        timeout: float,  # noqa: ASYNC109 (per-device reply timeout, applied with the clock)
    ) -> F: ...

    async def broadcast(self, frame: bytes, *, priority: Priority = Priority.CONTROL) -> None: ...

    def available(self, device: str) -> bool: ...

    def wire_seconds(self, nbytes: int) -> float:
        """Line time of ``nbytes`` on this medium as the caller's timeout must allow for it."""
        ...


class Rs485Transport:
    """``MeterTransport`` over one ``Rs485Port`` (which does the arbitration and health), or
    anything else that is a ``TransactionPort``."""

    kind: TransportKind = "rs485"

    def __init__(self, port: TransactionPort) -> None:
        self.port = port
        self.tally = WireTally()

    @property
    def name(self) -> str:
        return self.port.name

    @property
    def last_exchange(self) -> tuple[int, int]:
        return self.port.last_exchange

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority,
        timeout: float,  # noqa: ASYNC109 (per-device reply timeout, applied by the port)
    ) -> F:
        reply = await self.port.transact(
            request, decoder=decoder, match=match, device=device, priority=priority, timeout=timeout
        )
        self.tally.add(*self.port.last_exchange)
        return reply

    async def broadcast(self, frame: bytes, *, priority: Priority = Priority.CONTROL) -> None:
        await self.port.send(frame, device="broadcast", priority=priority)

    def reserve(self, priority: Priority, count: int, start: Start) -> Reservation | None:
        """The port's ``reserve`` (places on the bus, tasks started when granted); None when the
        port cannot (the proxy of an isolated app's port: its bus is in the runtime)."""
        if isinstance(self.port, Rs485Port):
            return self.port.reserve(priority, count, start)
        return None

    async def turn(self, priority: Priority) -> None:
        """Wait for the bus for this task's next transaction (``PrioritySlots.turn``); at once
        when the port cannot (an isolated app's proxy: the transaction queues in the runtime)."""
        if isinstance(self.port, Rs485Port):
            await self.port.turn(priority)

    def available(self, device: str) -> bool:
        return self.port.health(device).available

    def wire_seconds(self, nbytes: int) -> float:
        return self.port.link.settings.wire_seconds(nbytes)

    def health(self, device: str) -> DeviceHealth:
        return self.port.health(device)

    def bound_seconds(self) -> float:
        return self.tally.bound_seconds(self.port)

    def __repr__(self) -> str:
        return f"<Rs485Transport {self.name}>"


class CarrierTransport:
    """``MeterTransport`` over the HPLC carrier module (CCO)."""

    kind: TransportKind = "hplc"

    def __init__(
        self,
        module: CarrierModule,
        *,
        clock: HalClock,
        name: str = "hplc",
        concurrency: int = 4,
        fail_threshold: int = 3,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        self.module = module
        self._clock = clock
        self._name = name
        self._slots = PrioritySlots(concurrency)
        # every failed exchange counts toward unavailability (timeout, driver error, unusable reply)
        self._health = DeviceHealthBook(
            clock=clock, name=name, fail_threshold=fail_threshold, log=_log, noun="node"
        )
        self.concurrency = concurrency
        self.transactions = 0
        self.broadcasts = 0
        self.max_in_flight = 0
        self.last_exchange: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:
        return self._name

    def available(self, device: str) -> bool:
        return self._health.available(device)

    def wire_seconds(self, nbytes: int) -> float:
        """0: the carrier timeout (seconds, sent to the module) already covers a frame's air time."""
        return 0.0

    def health(self, device: str) -> DeviceHealth:
        return self._health.snapshot(device)

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority,
        timeout: float,  # noqa: ASYNC109 (the module-side monitor timeout, plus a guard)
    ) -> F:
        """Forward ``request`` to node ``device`` and return its matching reply frame.

        Raises ``TransportTimeout`` (no reply, or the driver took longer than ``timeout`` plus
        a margin), ``ProtocolError`` (the reply bytes hold no matching frame), or the driver's
        own ``TransportError``.
        """
        self._health.track(device)
        await self._slots.acquire(priority)
        try:
            self.max_in_flight = max(self.max_in_flight, self._slots.in_use)
            self.transactions += 1
            try:
                async with self._clock.timeout(timeout + CARRIER_SLACK_S):
                    raw = await self.module.transact(device, request, timeout=timeout)
            except TimeoutError as err:
                self._health.failure(device, "timeouts")
                raise TransportTimeout(
                    f"{self._name}: node {device} did not answer within {timeout:g} s"
                ) from err
            except TransportTimeout:
                self._health.failure(device, "timeouts")
                raise
            except HalError:
                self._health.failure(device, "errors")
                raise
        finally:
            self._slots.release()
        answer = accepted_reply(raw, decoder, match, health=self._health, device=device, port=self._name)
        self.last_exchange = (len(request), len(raw))
        return answer

    def reserve(self, priority: Priority, count: int, start: Start) -> Reservation | None:
        """Queue ``count`` transactions' places now; each one's task is started when its place
        is handed a slot (``PrioritySlots.reserve``)."""
        return self._slots.reserve(priority, count, start)

    async def turn(self, priority: Priority) -> None:
        """Wait for a slot for this task's next transaction (``PrioritySlots.turn``)."""
        await self._slots.turn(priority)

    async def broadcast(self, frame: bytes, *, priority: Priority = Priority.CONTROL) -> None:
        """Broadcast through the module (it floods the carrier network; nobody answers)."""
        await self._slots.acquire(priority)
        try:
            self.broadcasts += 1
            await self.module.broadcast(frame)
        finally:
            self._slots.release()

    def statistics(self) -> dict[str, object]:
        return {
            "transport": self._name,
            "transactions": self.transactions,
            "broadcasts": self.broadcasts,
            "concurrency": self.concurrency,
            "max_in_flight": self.max_in_flight,
            "waiting": self._slots.waiting,
            "devices": {
                h.device: {
                    "available": h.available,
                    "ok": h.ok,
                    "timeouts": h.timeouts,
                    "bad_frames": h.bad_frames,
                }
                for h in self._health.snapshots()
            },
        }

    def __repr__(self) -> str:
        return f"<CarrierTransport {self._name} x{self.concurrency}>"


def reply_in(
    raw: bytes, decoder: StreamDecoder[F], match: Callable[[F], bool], *, what: str
) -> F | ProtocolError:
    """The first frame of ``raw`` that ``match`` accepts, else a ``ProtocolError`` (returned, not
    raised) naming ``what`` and every frame or decode error that was not the answer."""
    problems: list[str] = []
    for item in decoder.feed(raw):
        if isinstance(item, Exception):
            problems.append(str(item))
        elif match(item):
            return item
        else:
            problems.append(f"not the reply: {item!r:.80}")
    detail = "; ".join(problems) or f"{len(raw)} bytes, no complete frame"
    return ProtocolError(f"{what} holds no answer ({detail})")


def accepted_reply(
    raw: bytes,
    decoder: StreamDecoder[F],
    match: Callable[[F], bool],
    *,
    health: DeviceHealthBook,
    device: str,
    port: str,
) -> F:
    """``reply_in``, with the node's health told either way: the answer, or its ``ProtocolError`` raised."""
    answer = reply_in(raw, decoder, match, what=f"{port}: reply of node {device}")
    if isinstance(answer, ProtocolError):
        health.failure(device, "bad_frames")
        raise answer
    health.success(device)
    return answer


__all__ = [
    "CARRIER_SLACK_S",
    "MIN_RESPONSE_DELAY_S",
    "CarrierTransport",
    "MeterTransport",
    "PortLink",
    "Rs485Transport",
    "TransactionPort",
    "TransportKind",
    "WireTally",
    "accepted_reply",
    "reply_in",
]
