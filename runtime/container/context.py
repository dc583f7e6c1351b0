"""The in-process ``AppContext``: everything an app may touch, scoped to its manifest.

Layer: runtime. ``LocalContext`` implements ``runtime.api.AppContext`` for an app running in
the runtime's own process: a bus client and a scheduler scoped to the app and checked against
its manifest, its own store namespace, the uplink on its declared streams, the hal
capabilities it declared, and the station model. Every refused use raises ``CapabilityError``
and is counted (``Violations``). ``ContextCore`` holds what both contexts share (identity,
clock, log, config, ready/stop); the isolated app's proxy (``isolation.host.IsolatedContext``)
builds on it too, and reuses the scoped facets' checks, so each rule is written once. This
module must not import the concrete store, uplink or hal, nor any app.

When the app stops (returns, crashes, is stopped), the supervisor calls ``close()``: everything
the app registered goes with it -- bus subscriptions and responders, scheduler jobs, downlink
commands, carrier event streams, station watches -- so a restarted instance registers them afresh
(the tasks it left running are the supervisor's to cancel: ``runtime.container.tasks``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from hal.clock import Clock
from hal.errors import CapabilityMissing
from hal.interfaces import (
    CarrierEvent,
    CarrierModule,
    Metrology,
    NetworkNode,
    NodePhase,
    PowerMonitor,
    RouteModule,
    RouteReader,
    Slot,
    Watchdog,
)
from hal.meters.transport import TransactionPort
from hal.streams import Stream
from protocols.cloud import StreamPriority
from protocols.station import Correction, ProposalResult, StationChange, StationModel
from runtime.api import AppStore, CommandHandler, TerminalInfo, UplinkClient
from runtime.bus import Bus, Handler, Overflow, Service, Subscription, pattern_covers, topic_matches
from runtime.container.manifest import Manifest
from runtime.errors import CapabilityError
from runtime.model import Event, Reading
from runtime.scheduler import CatchUp, Job, JobFunc, Schedule, Scheduler

if TYPE_CHECKING:
    from runtime.station import StationService
    from runtime.store import Ledger, Store


@dataclass(slots=True)
class Violations:
    """Refused uses of the bus, hal or scheduler by one app."""

    count: int = 0
    last: str | None = None
    by_kind: dict[str, int] = field(default_factory=dict)


def _refuse(app: str, violations: Violations, kind: str, reason: str) -> CapabilityError:
    violations.count += 1
    violations.by_kind[kind] = violations.by_kind.get(kind, 0) + 1
    violations.last = reason
    logging.getLogger(f"ttu.app.{app}").warning("refused: %s", reason)
    return CapabilityError(app, reason)


class ScopedBus:
    """The bus as an app may use it: publish/request on its ``publish`` patterns,
    subscribe/serve on its ``subscribe`` patterns."""

    def __init__(self, bus: Bus, manifest: Manifest, violations: Violations) -> None:
        self._bus = bus
        self._m = manifest
        self._violations = violations
        self._subs: list[Subscription] = []
        self._services: list[Service] = []

    def _may_publish(self, topic: str, kind: str) -> None:
        if not any(topic_matches(p, topic) for p in self._m.publish):
            raise _refuse(
                self._m.name, self._violations, kind, f"{kind} on {topic!r} not declared in [topics] publish"
            )

    def _may_subscribe(self, pattern: str, kind: str) -> None:
        if not any(pattern_covers(p, pattern) for p in self._m.subscribe):
            raise _refuse(
                self._m.name,
                self._violations,
                kind,
                f"{kind} on {pattern!r} not covered by [topics] subscribe",
            )

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        self._may_publish(topic, "publish")
        self._bus.publish(topic, payload, retain=retain)

    def subscribe(
        self, pattern: str, *, maxsize: int = 1000, overflow: Overflow = Overflow.DROP_OLDEST
    ) -> Subscription:
        self._may_subscribe(pattern, "subscribe")
        sub = self._bus.subscribe(
            pattern, maxsize=maxsize, overflow=overflow, name=f"{self._m.name}:{pattern}"
        )
        self._subs.append(sub)
        return sub

    async def request(self, topic: str, payload: Any, *, timeout: float) -> Any:  # noqa: ASYNC109 (bus contract)
        self._may_publish(topic, "request")
        return await self._bus.request(topic, payload, timeout=timeout)

    def serve(self, pattern: str, handler: Handler) -> Service:
        self._may_subscribe(pattern, "serve")
        service = self._bus.serve(pattern, handler)
        self._services.append(service)
        return service

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        for service in self._services:
            service.close()
        self._subs.clear()
        self._services.clear()


class ScopedScheduler:
    """Scheduler jobs of one app, named ``<app>.<name>``, removed when the app stops."""

    def __init__(self, scheduler: Scheduler, app: str) -> None:
        self._scheduler = scheduler
        self._app = app
        self._jobs: list[Job] = []

    def add(self, name: str, schedule: Schedule, func: JobFunc, *, catch_up: CatchUp = CatchUp.LATEST) -> Job:
        job = self._scheduler.add(f"{self._app}.{name}", schedule, func, catch_up=catch_up)
        self._jobs.append(job)
        return job

    def close(self) -> None:
        for job in self._jobs:
            job.cancel()
        self._jobs.clear()


class _AppCarrier:
    """The carrier module as one app holds it: the event streams it opens close when it stops,
    and so does its lead of the module's reading (``lead``/``route``, when the module can lead)."""

    def __init__(self, module: CarrierModule, streams: list[Any]) -> None:
        self._module = module
        self._streams = streams

    def lead(self, reader: RouteReader | None) -> None:
        module = self._module
        if not isinstance(module, RouteModule):
            raise CapabilityMissing("this carrier module cannot lead the reading (no AFN14 route)")
        module.lead(reader)
        if reader is not None:
            self._streams.append(_Lead(module))

    async def route(self, action: Literal["restart", "pause", "resume"]) -> None:
        module = self._module
        if not isinstance(module, RouteModule):
            raise CapabilityMissing("this carrier module cannot lead the reading (no AFN14 route)")
        await module.route(action)

    async def reset(self) -> None:
        await self._module.reset()

    async def sync_archive(
        self, addresses: Sequence[str], *, protocols: Mapping[str, str] | None = None
    ) -> None:
        await self._module.sync_archive(addresses, protocols=protocols)

    async def transact(self, address: str, frame: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109 (the module-side timeout)
        return await self._module.transact(address, frame, timeout=timeout)

    async def broadcast(self, frame: bytes) -> None:
        await self._module.broadcast(frame)

    def events(self) -> AsyncIterator[CarrierEvent]:
        stream = self._module.events()
        self._streams.append(stream)
        return stream

    async def network(self) -> tuple[NetworkNode, ...]:
        return await self._module.network()

    async def phases(self) -> tuple[NodePhase, ...]:
        return await self._module.phases()


class _Lead:
    """Closed with the app's streams: the module stops asking the stopped app."""

    def __init__(self, module: RouteModule) -> None:
        self._module = module

    def close(self) -> None:
        self._module.lead(None)


class ScopedHal:
    """The hal capabilities the manifest declares; anything else is refused."""

    def __init__(self, hal: HalAccess | None, manifest: Manifest, violations: Violations) -> None:
        self._hal = hal
        self._m = manifest
        self._violations = violations
        self._streams: list[Any] = []  # carrier event streams the app opened

    @property
    def has_backend(self) -> bool:
        """Whether this terminal has a hal at all (asking is no use of a capability)."""
        return self._hal is not None

    def _declared(self, cap: str) -> None:
        if cap not in self._m.hal:
            raise _refuse(self._m.name, self._violations, "hal", f"hal capability {cap!r} not declared")

    def _need(self, cap: str) -> HalAccess:
        self._declared(cap)
        if self._hal is None:
            raise _refuse(self._m.name, self._violations, "hal", f"no hal on this terminal for {cap!r}")
        return self._hal

    def rs485(self, name: str) -> TransactionPort:
        return self._need("rs485").rs485(name)

    def hplc(self) -> CarrierModule:
        return _AppCarrier(self._need("hplc").hplc(), self._streams)

    def metrology(self) -> Metrology:
        return self._need("metrology").metrology()

    def slot(self, name: str) -> Slot:
        return self._need("slots").slot(name)

    def watchdog(self) -> Watchdog:
        return self._need("watchdog").watchdog()

    def power(self) -> PowerMonitor:
        """The terminal's own supply monitor (capability ``power``)."""
        return self._need("power").power()

    def close(self) -> None:
        """Close the carrier event streams the app left open (a crash skips its ``async with``)."""
        for stream in self._streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        self._streams.clear()


def check_stream(manifest: Manifest, violations: Violations, stream: str) -> None:
    """Refuse (counted) a send on a stream the manifest does not declare."""
    if stream not in manifest.streams:
        declared = ", ".join(manifest.streams) or "none"
        raise _refuse(
            manifest.name,
            violations,
            "uplink",
            f"send on stream {stream!r} not declared in [uplink] streams (declared: {declared})",
        )


class TerminalUplink(UplinkClient, Protocol):
    """The terminal's uplink (``runtime.uplink.Uplink``, ``OutboxOnlyUplink``) behind the apps':
    it also orders streams by priority."""

    def declare_stream(self, stream: str, *, priority: StreamPriority | str) -> None: ...


class ScopedUplink:
    """The uplink as one app uses it: sends on the streams its manifest declares; the commands it
    registers are unregistered when it stops."""

    def __init__(self, uplink: TerminalUplink, manifest: Manifest, violations: Violations) -> None:
        self._uplink = uplink
        self._m = manifest
        self._violations = violations
        self._commands: list[str] = []
        for stream, priority in manifest.priorities.items():  # [uplink] priority of the manifest
            uplink.declare_stream(stream, priority=priority)

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        check_stream(self._m, self._violations, stream)
        return await self._uplink.send(stream, body)

    async def send_many(self, stream: str, bodies: Sequence[dict[str, Any]]) -> list[str]:
        check_stream(self._m, self._violations, stream)
        return await self._uplink.send_many(stream, bodies)

    def register_command(self, name: str, handler: CommandHandler) -> None:
        self._uplink.register_command(name, handler)
        self._commands.append(name)

    def unregister_command(self, name: str) -> None:
        if name in self._commands:
            self._commands.remove(name)
            self._uplink.unregister_command(name)

    def close(self) -> None:
        for name in self._commands:
            self._uplink.unregister_command(name)
        self._commands.clear()


def check_propose(manifest: Manifest, violations: Violations) -> None:
    """Refuse (counted) a proposal from an app whose manifest does not declare it."""
    if manifest.station != "propose":
        raise _refuse(
            manifest.name,
            violations,
            "station",
            'station.propose needs [capabilities] station = "propose" in the manifest',
        )


class LocalStation:
    """``ctx.station`` in process: the terminal's ``StationService`` as one app may use it."""

    def __init__(self, service: StationService | None, manifest: Manifest, violations: Violations) -> None:
        self._service = service
        self._m = manifest
        self._violations = violations
        self._empty = StationModel()
        self._streams: list[Stream[StationChange]] = []

    @property
    def model(self) -> StationModel:
        return self._empty if self._service is None else self._service.model

    def watch(self, *, maxsize: int = 64) -> Stream[StationChange]:
        if self._service is None:  # no station model on this terminal: a stream that never yields
            stream: Stream[StationChange] = Stream(maxsize, on_close=lambda s: None)
        else:
            stream = self._service.watch(maxsize=maxsize)
        self._streams.append(stream)
        return stream

    async def propose(self, corrections: Sequence[Correction]) -> ProposalResult:
        check_propose(self._m, self._violations)
        if self._service is None:
            raise CapabilityError(self._m.name, "no station model on this terminal")
        return await self._service.propose(self._m.name, list(corrections))

    def close(self) -> None:
        for stream in self._streams:
            stream.close()
        self._streams.clear()


class NamespacedStore:
    """An ``AppStore`` over the terminal store, key-value confined to namespace ``app.<name>``."""

    def __init__(self, store: Store, app: str) -> None:
        self._store = store
        self._ns = f"app.{app}"

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._store.kv_get(self._ns, key, default)

    @property
    def ledger(self) -> Ledger:
        """The terminal store's append-only, hash-chained ledger (``runtime.store.Ledger``)."""
        return self._store.ledger

    async def set(self, key: str, value: Any) -> None:
        await self._store.kv_set(self._ns, key, value)

    async def delete(self, key: str) -> bool:
        return await self._store.kv_delete(self._ns, key)

    async def write_readings(self, readings: Iterable[Reading]) -> int:
        return await self._store.write_readings(readings)

    async def write_event(self, event: Event) -> int:
        return await self._store.write_event(event)

    async def query_readings(
        self,
        *,
        device: str | None = None,
        quantity: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[Reading]:
        return await self._store.query_readings(
            device=device, quantity=quantity, since=since, until=until, limit=limit
        )


@runtime_checkable
class HalAccess(Protocol):
    """The hal as the runtime holds it (``runtime.board_hal.BoardHal``), unscoped."""

    def rs485(self, name: str) -> TransactionPort: ...

    def hplc(self) -> CarrierModule: ...

    def metrology(self) -> Metrology: ...

    def slot(self, name: str) -> Slot: ...

    def watchdog(self) -> Watchdog: ...

    def power(self) -> PowerMonitor: ...


class ContextCore:
    """What every app context has, in process or isolated: identity, clock, log, config,
    refusals, and the ready / stop handshake with the supervisor."""

    def __init__(
        self,
        *,
        manifest: Manifest,
        clock: Clock,
        terminal: TerminalInfo | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._manifest = manifest
        self._terminal = terminal or TerminalInfo.default()
        self._clock = clock
        self._log = logging.getLogger(f"ttu.app.{manifest.name}")
        self._config: Mapping[str, Any] = MappingProxyType(dict(config or {}))
        self.violations = Violations()
        self._ready: asyncio.Future[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def name(self) -> str:
        return self._manifest.name

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def terminal(self) -> TerminalInfo:
        return self._terminal

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def log(self) -> logging.Logger:
        return self._log

    @property
    def config(self) -> Mapping[str, Any]:
        """The app's resolved config (read-only; the same values ``run`` receives)."""
        return self._config

    def use_config(self, config: Mapping[str, Any]) -> None:
        """Set the resolved config (the supervisor does, before the app starts)."""
        self._config = MappingProxyType(dict(config))

    def ready_future(self) -> asyncio.Future[None]:
        """The future the supervisor waits on; resolved by ``ready()``."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    async def ready(self) -> None:
        """Report that the app has started and is doing its job."""
        fut = self.ready_future()
        if not fut.done():
            fut.set_result(None)
            self._log.debug("ready")

    @property
    def stop_requested(self) -> bool:
        """True once the supervisor asked the app to stop (it is cancelled after stop_timeout_s)."""
        return self._stopping.is_set()

    async def wait_stop(self) -> None:
        """Wait until the supervisor asks the app to stop; return from ``run`` then."""
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()


class LocalContext(ContextCore):
    """The ``AppContext`` of an app in the runtime's process. Built fresh for every start."""

    def __init__(
        self,
        *,
        manifest: Manifest,
        clock: Clock,
        bus: Bus,
        scheduler: Scheduler,
        store: AppStore | None = None,
        uplink: TerminalUplink | None = None,
        hal: HalAccess | None = None,
        terminal: TerminalInfo | None = None,
        station: StationService | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(manifest=manifest, clock=clock, terminal=terminal, config=config)
        self._bus = ScopedBus(bus, manifest, self.violations)
        self._scheduler = ScopedScheduler(scheduler, manifest.name)
        self._hal = ScopedHal(hal, manifest, self.violations)
        self._station = LocalStation(station, manifest, self.violations)
        self._store = store
        self._uplink = None if uplink is None else ScopedUplink(uplink, manifest, self.violations)

    @property
    def bus(self) -> ScopedBus:
        return self._bus

    @property
    def scheduler(self) -> ScopedScheduler:
        return self._scheduler

    @property
    def hal(self) -> ScopedHal:
        return self._hal

    @property
    def station(self) -> LocalStation:
        return self._station

    @property
    def store(self) -> AppStore:
        if self._store is None:
            raise CapabilityError(self.name, "no store on this terminal")
        return self._store

    @property
    def uplink(self) -> ScopedUplink:
        if self._uplink is None:
            raise CapabilityError(self.name, "no uplink on this terminal")
        return self._uplink

    def close(self) -> None:
        """Release everything the app registered (the supervisor calls it when the app ends)."""
        self._bus.close()
        self._scheduler.close()
        if self._uplink is not None:
            self._uplink.close()
        self._hal.close()
        self._station.close()


ContextFactory = Callable[[Manifest], LocalContext]


class AppContextFactory:
    """Builds a ``LocalContext`` per app start from the terminal's shared services.

    ``stores``/``uplinks`` map an app name to its store view and uplink client
    (e.g. ``lambda name: NamespacedStore(store, name)``).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        bus: Bus,
        scheduler: Scheduler,
        stores: Callable[[str], AppStore] | None = None,
        uplinks: Callable[[str], TerminalUplink] | None = None,
        hal: HalAccess | None = None,
        terminal: TerminalInfo | None = None,
        station: StationService | None = None,
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._scheduler = scheduler
        self._stores = stores
        self._uplinks = uplinks
        self._hal = hal
        self._terminal = terminal
        self._station = station

    def __call__(self, manifest: Manifest) -> LocalContext:
        return LocalContext(
            manifest=manifest,
            clock=self._clock,
            bus=self._bus,
            scheduler=self._scheduler,
            store=self._stores(manifest.name) if self._stores else None,
            uplink=self._uplinks(manifest.name) if self._uplinks else None,
            hal=self._hal,
            terminal=self._terminal,
            station=self._station,
        )


__all__ = [
    "AppContextFactory",
    "AppStore",
    "CommandHandler",
    "ContextCore",
    "ContextFactory",
    "HalAccess",
    "LocalContext",
    "LocalStation",
    "NamespacedStore",
    "ScopedBus",
    "ScopedHal",
    "ScopedScheduler",
    "ScopedUplink",
    "TerminalInfo",
    "TerminalUplink",
    "UplinkClient",
    "Violations",
    "check_propose",
    "check_stream",
]
