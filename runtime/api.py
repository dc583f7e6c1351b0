"""What an app may use of the terminal: the ``AppContext`` protocol and its facets.

Layer: runtime. An app is ``async def run(ctx: AppContext, config: dict[str, Any]) -> None``
and touches the terminal only through ``ctx``. Two implementations satisfy this protocol, and
mypy checks both: the in-process context (``runtime.container.context.LocalContext``) and the
isolated app's proxy (``runtime.container.isolation.host.IsolatedContext``), whose every call
crosses to the runtime. Each facet is declared here once; what an app is allowed to do with it
comes from its manifest (topics, hal capabilities, uplink streams, station access), and a
refused use raises ``CapabilityError`` at the call, counted.

Facets:

* ``bus``        publish / subscribe / request / serve on the topics the manifest declares;
* ``scheduler``  jobs named ``<app>.<name>``, removed when the app stops;
* ``store``      the app's own key-value namespace, readings and events;
* ``uplink``     durable messages on the streams the manifest declares, cloud commands;
* ``hal``        the declared capabilities: ``rs485(name)``, ``hplc()``, ``metrology()``, ``slot(name)``;
* ``station``    the station model (read; ``propose`` corrections when declared);
* ``clock``, ``log``, ``config`` (the resolved app config), ``terminal`` (id, time zone, nodes).

This module declares; it implements nothing and imports no implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from runtime.bus import Overflow
from runtime.scheduler import CatchUp

if TYPE_CHECKING:  # declarations only: importing this module costs nothing of the layers below
    from hal.clock import Clock
    from hal.interfaces import CarrierModule, Metrology, PowerMonitor, Slot, Watchdog
    from hal.meters.transport import TransactionPort
    from hal.streams import Stream
    from protocols.station import Correction, ProposalResult, StationChange, StationModel
    from runtime.bus import Handler, Service, Subscription
    from runtime.container.manifest import Manifest
    from runtime.model import Event, Reading
    from runtime.scheduler import Job, JobFunc, Schedule
    from runtime.store import Ledger

CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""A cloud command: its arguments in, the reply's result out (``CommandError`` for a refusal)."""


@dataclass(frozen=True, slots=True)
class TerminalInfo:
    """What an app may know about the terminal it runs on (from board.toml)."""

    id: str
    tz: ZoneInfo
    root: Path  # the board file's folder: relative paths in app config resolve against it
    rs485_ports: tuple[str, ...] = ()
    hplc: bool = False
    metrology: bool = False
    slots: tuple[str, ...] = ()

    @classmethod
    def default(cls) -> TerminalInfo:
        return cls(id="TTU-TEST", tz=ZoneInfo("UTC"), root=Path.cwd())


class BusFacet(Protocol):
    """The bus as an app may use it (``runtime.bus.Bus`` semantics, checked against the manifest)."""

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None: ...

    def subscribe(
        self, pattern: str, *, maxsize: int = 1000, overflow: Overflow = Overflow.DROP_OLDEST
    ) -> Subscription: ...

    async def request(self, topic: str, payload: Any, *, timeout: float) -> Any: ...  # noqa: ASYNC109 (bus contract)

    def serve(self, pattern: str, handler: Handler) -> Service: ...


class SchedulerFacet(Protocol):
    """Jobs of one app on the terminal's scheduler (local time zone, catch-up policies)."""

    def add(
        self, name: str, schedule: Schedule, func: JobFunc, *, catch_up: CatchUp = CatchUp.LATEST
    ) -> Job: ...


@runtime_checkable
class AppStore(Protocol):
    """The store as one app sees it: key-value in the app's own namespace, readings, events,
    and the terminal's append-only ledger (in process only)."""

    async def get(self, key: str, default: Any = None) -> Any: ...

    @property
    def ledger(self) -> Ledger:
        """The hash-chained ledger (``runtime.store.Ledger``); ``CapabilityError`` for an isolated app."""
        ...

    async def set(self, key: str, value: Any) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def write_readings(self, readings: Iterable[Reading]) -> int: ...

    async def write_event(self, event: Event) -> int: ...

    async def query_readings(
        self,
        *,
        device: str | None = None,
        quantity: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[Reading]: ...


@runtime_checkable
class UplinkClient(Protocol):
    """The durable uplink: ``send`` returns the message's idempotency key once it is in the outbox."""

    async def send(self, stream: str, body: dict[str, Any]) -> str: ...

    async def send_many(self, stream: str, bodies: Sequence[dict[str, Any]]) -> list[str]:
        """``send`` of several bodies in order, durable together (one store transaction)."""
        ...

    def register_command(self, name: str, handler: CommandHandler) -> None: ...

    def unregister_command(self, name: str) -> None: ...


class HalFacet(Protocol):
    """The hal capabilities the manifest declares; ``CapabilityMissing`` when the board lacks a node."""

    @property
    def has_backend(self) -> bool: ...

    def rs485(self, name: str) -> TransactionPort: ...

    def hplc(self) -> CarrierModule: ...

    def metrology(self) -> Metrology: ...

    def slot(self, name: str) -> Slot: ...

    def watchdog(self) -> Watchdog: ...

    def power(self) -> PowerMonitor: ...


class StationFacet(Protocol):
    """The station model (``protocols.station``) as the runtime holds it."""

    @property
    def model(self) -> StationModel:
        """The current model (never None; empty before an archive arrived)."""
        ...

    def watch(self, *, maxsize: int = 64) -> Stream[StationChange]:
        """Every change from now on: ``async with ctx.station.watch() as changes: async for c in
        changes``; ``c.model`` is the model as of ``c.version``."""
        ...

    async def propose(self, corrections: Sequence[Correction]) -> ProposalResult:
        """Propose corrections (needs ``[capabilities] station = "propose"``)."""
        ...


class AppContext(Protocol):
    """Everything an app may touch; built fresh for every start of the app."""

    @property
    def name(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def terminal(self) -> TerminalInfo: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def log(self) -> logging.Logger: ...

    @property
    def config(self) -> Mapping[str, Any]: ...

    @property
    def bus(self) -> BusFacet: ...

    @property
    def scheduler(self) -> SchedulerFacet: ...

    @property
    def store(self) -> AppStore: ...

    @property
    def uplink(self) -> UplinkClient: ...

    @property
    def hal(self) -> HalFacet: ...

    @property
    def station(self) -> StationFacet: ...

    @property
    def stop_requested(self) -> bool: ...

    async def ready(self) -> None:
        """Report that the app has started and is doing its job."""
        ...

    async def wait_stop(self) -> None:
        """Return when the supervisor asks the app to stop (it is cancelled after stop_timeout_s)."""
        ...


EntryPoint = Callable[[AppContext, dict[str, Any]], Awaitable[None]]
"""An app's ``run(ctx, config)``."""

__all__ = [
    "AppContext",
    "AppStore",
    "BusFacet",
    "CommandHandler",
    "EntryPoint",
    "HalFacet",
    "SchedulerFacet",
    "StationFacet",
    "TerminalInfo",
    "UplinkClient",
]
