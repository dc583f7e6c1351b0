"""Typed interfaces every hal backend implements.

Layer: hal. Only Protocols and small value types live here; backends are in
``hal.linux`` and ``hal.sim``, the RS-485 transaction scheduler in ``hal.rs485``.
All waiting is bounded by the caller's clock scopes (``async with clock.timeout()``);
nothing here sleeps on its own.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, Self, TypeVar, runtime_checkable

Parity = Literal["N", "E", "O"]


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Line settings of a serial port. DL/T 645 meters default to 2400 8E1."""

    baud: int = 2400
    parity: Parity = "E"
    bytesize: int = 8
    stopbits: int = 1

    @property
    def bits_per_byte(self) -> int:
        """Start + data + parity + stop bits: 11 at 8E1."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    def wire_seconds(self, nbytes: float) -> float:
        """Time ``nbytes`` (character times, e.g. 3.5) take on the wire at this rate."""
        return nbytes * self.bits_per_byte / self.baud


class HalClock(Protocol):
    """The part of ``hal.clock.Clock`` hal drivers use (hal does not import runtime)."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> asyncio.Timeout: ...


@runtime_checkable
class SerialLink(Protocol):
    """An async byte stream over a serial line (RS-485, UART to a module).

    ``read`` waits for at least one byte and returns what is available (at most
    ``max_bytes``); ``write`` returns once the bytes are handed to the driver.
    Raises ``TransportClosed`` / ``TransportBroken``; never blocks the event loop.
    """

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> SerialSettings: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, max_bytes: int = 4096) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    def discard_input(self) -> int:
        """Drop bytes received but not yet read (stale replies, line noise); how many (as far
        as the link can tell: 0 when it cannot)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Priority(enum.IntEnum):
    """Transaction priority on a shared bus: lower value runs first."""

    CONTROL = 0  # relay / breaker commands
    EVENT = 1  # event reads after a report
    REALTIME = 2  # realtime snapshot
    CURVE = 3  # 15-min curve, freezes, catch-up (补抄)


F_co = TypeVar("F_co", covariant=True)


class StreamDecoder(Protocol[F_co]):
    """The part of a protocol framer a transport needs: bytes in, frames or errors out.

    Implemented by the protocols/ framers (e.g. ``protocols.dlt645.Framer``).
    """

    def feed(self, data: bytes) -> Sequence[F_co | Exception]: ...


@dataclass(frozen=True, slots=True)
class PhaseValues:
    a: float | None
    b: float | None
    c: float | None


@dataclass(frozen=True, slots=True)
class MetrologySnapshot:
    """Transformer LV-side measurements (CT/PT ratios already applied)."""

    ts: float
    voltage: PhaseValues
    current: PhaseValues
    active_power_kw: PhaseValues
    reactive_power_kvar: PhaseValues
    power_factor: PhaseValues
    frequency_hz: float | None
    energy_import_kwh: float | None
    energy_export_kwh: float | None


@runtime_checkable
class Metrology(Protocol):
    """The terminal's own AC sampling (metrology unit) at the transformer LV side."""

    async def snapshot(self) -> MetrologySnapshot: ...


@dataclass(frozen=True, slots=True)
class CarrierEvent:
    """An unsolicited report from the carrier module (meter event, power-off/on list)."""

    kind: str  # "meter_event" | "power_off" | "power_on" | "module_reset" | ...
    addresses: tuple[str, ...]
    ts: float
    payload: bytes = b""
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NetworkNode:
    """A node of the carrier network as the module reports it (Q/GDW 1376.2 AFN10 F21): every
    STA that joined, archived or not."""

    address: str
    tei: int
    proxy_tei: int  # the node it reaches the CCO through
    level: int  # relay level (0 = the CCO)
    role: int  # 1 STA, 2 proxy (PCO), 4 CCO in the module's coding


@dataclass(frozen=True, slots=True)
class NodePhase:
    """A node's phase as the module found it by zero-crossing (Q/GDW 1376.2 AFN10 F31)."""

    address: str
    phases: str  # "A" | "B" | "C" | "ABC" ..., "" when not identified yet
    three_phase: bool
    line_abnormal: bool  # missing phase, reverse sequence, line/neutral swapped
    sequence: str  # a three-phase meter's phase sequence ("ABC", "ACB", ...)


@runtime_checkable
class CarrierModule(Protocol):
    """The HPLC carrier module (CCO), driven over Q/GDW 1376.2 by ``hal.hplc``.

    ``transact`` forwards a meter frame (DL/T 645 or 698.45 bytes) to a node and
    returns the node's reply frame.
    """

    async def reset(self) -> None: ...

    async def sync_archive(
        self, addresses: Sequence[str], *, protocols: Mapping[str, str] | None = None
    ) -> None:
        """Make the module's node table equal ``addresses``; ``protocols`` maps an address to
        "dlt645" / "dlt698" (the rest are registered as DL/T 645-2007)."""
        ...

    async def transact(self, address: str, frame: bytes, *, timeout: float) -> bytes: ...  # noqa: ASYNC109 (the module-side monitor timeout, sent in the frame)

    async def broadcast(self, frame: bytes) -> None: ...

    def events(self) -> AsyncIterator[CarrierEvent]: ...

    async def network(self) -> tuple[NetworkNode, ...]:
        """Every node of the carrier network (AFN10 F21), the CCO itself left out."""
        ...

    async def phases(self) -> tuple[NodePhase, ...]:
        """Every node's phase (AFN10 F31), the CCO itself left out."""
        ...


@dataclass(frozen=True, slots=True)
class RouteAsk:
    """The module, leading the reading, asks what to read at one node (Q/GDW 1376.2 AFN14 F1)."""

    address: str
    index: int  # the node's index in the module's table
    phase: int = 0  # 0 unknown, 1..3


@dataclass(frozen=True, slots=True)
class RouteAnswer:
    """What to tell the module: ``frame`` to read at the node (flag 2, "can read"), or, without
    a frame, that the node is done for this round -- read succeeded (flag 1) or failed (flag 0)."""

    frame: bytes = b""
    ok: bool = True


class RouteReader(Protocol):
    """The terminal's side of module-led reading (路由主动抄表, PROTOCOLS.md §3.4): answers the
    module's asks, takes the meters' replies the module brings back (AFN06 F2) and hears when a
    round ended (AFN06 F3). Called from the driver's reader: ``data`` and ``finished`` must not
    block; ``ask`` must answer within the module's local wait (seconds)."""

    async def ask(self, ask: RouteAsk) -> RouteAnswer: ...

    def data(self, address: str, frame: bytes, *, duration_s: float) -> None: ...

    def finished(self) -> None: ...


@runtime_checkable
class RouteModule(Protocol):
    """A carrier module that can lead the reading: ``lead(reader)`` makes ``reader`` answer its
    asks (None: the driver answers "nothing to read"); ``route`` restarts (a new round over
    every node), pauses or resumes its routing (AFN12 F1/F2/F3)."""

    def lead(self, reader: RouteReader | None) -> None: ...

    async def route(self, action: Literal["restart", "pause", "resume"]) -> None: ...


@runtime_checkable
class Slot(Protocol):
    """An expansion-module slot (DI/DO, analog, extra RS-485 via Modbus RTU)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    async def read_inputs(self) -> dict[str, float | bool]: ...

    async def write_output(self, point: str, value: float | bool) -> None: ...


@dataclass(frozen=True, slots=True)
class SupplyState:
    """The terminal's own supply: ``powered`` (mains present) since ``since`` (clock time of the
    change, or of start-up); ``voltage_v`` where the input measures it (an ADC)."""

    powered: bool
    since: float
    voltage_v: float | None = None


class SupplyChanges(Protocol):
    """A subscription to supply changes: ``async for state in changes`` until closed."""

    def __aiter__(self) -> AsyncIterator[SupplyState]: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class PowerMonitor(Protocol):
    """The terminal's own supply input: mains in front of the supercapacitor that keeps the board
    (and its modem) alive for ``holdup_s`` seconds after a loss, time for a last gasp."""

    @property
    def holdup_s(self) -> float: ...

    def state(self) -> SupplyState: ...

    def changes(self) -> SupplyChanges: ...


@runtime_checkable
class Watchdog(Protocol):
    """The hardware watchdog: ``kick`` at least every ``timeout`` seconds or the board resets."""

    @property
    def timeout(self) -> float: ...

    async def kick(self) -> None: ...


__all__ = [
    "CarrierEvent",
    "CarrierModule",
    "HalClock",
    "Metrology",
    "MetrologySnapshot",
    "NetworkNode",
    "NodePhase",
    "Parity",
    "PhaseValues",
    "PowerMonitor",
    "Priority",
    "RouteAnswer",
    "RouteAsk",
    "RouteModule",
    "RouteReader",
    "SerialLink",
    "SerialSettings",
    "Slot",
    "StreamDecoder",
    "SupplyChanges",
    "SupplyState",
    "Watchdog",
]
