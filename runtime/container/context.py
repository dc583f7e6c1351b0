"""``AppContext``: everything an app may touch, handed to ``run(ctx, config)``.

Layer: runtime. The context is the app's only door to the terminal: a bus client
and a scheduler scoped to the app and checked against its manifest, its own
store namespace, the uplink, and the hal capabilities it declared. Every refused
use raises ``CapabilityError`` and is counted. The concrete store, uplink and hal
objects are written elsewhere and typed here as small Protocols; this module must
not import them, nor any app.

When the app stops (returns, crashes, is stopped), the supervisor calls
``close()``: everything the app registered goes with it -- bus subscriptions and
responders, scheduler jobs, downlink commands, carrier event streams -- so a restarted
instance registers them afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from base.clock import Clock
from hal.interfaces import (
    CarrierEvent,
    CarrierModule,
    Metrology,
    NetworkNode,
    NodePhase,
    Slot,
    Watchdog,
)
from runtime.bus import Bus, Handler, Overflow, Service, Subscription, pattern_covers, topic_matches
from runtime.container.manifest import Manifest
from runtime.errors import CapabilityError
from runtime.model import Event, Reading
from runtime.scheduler import CatchUp, Job, JobFunc, Schedule, Scheduler

CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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


@runtime_checkable
class AppStore(Protocol):
    """The store as one app sees it: key-value in the app's namespace, readings, events."""

    async def get(self, key: str, default: Any = None) -> Any: ...

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


class TerminalStore(Protocol):
    """What ``NamespacedStore`` needs of the terminal's store (``runtime.store.Store``)."""

    async def kv_get(self, ns: str, key: str, default: Any = None) -> Any: ...

    async def kv_set(self, ns: str, key: str, value: Any) -> None: ...

    async def kv_delete(self, ns: str, key: str) -> bool: ...

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


class NamespacedStore:
    """An ``AppStore`` over the terminal store, key-value confined to namespace ``app.<name>``."""

    def __init__(self, store: TerminalStore, app: str) -> None:
        self._store = store
        self._ns = f"app.{app}"

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._store.kv_get(self._ns, key, default)

    @property
    def ledger(self) -> Any:
        """The terminal store's append-only, hash-chained ledger (``runtime.store.Ledger``)."""
        ledger = getattr(self._store, "ledger", None)
        if ledger is None:
            raise CapabilityError(self._ns.removeprefix("app."), "this terminal's store has no ledger")
        return ledger

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
class UplinkClient(Protocol):
    """The durable uplink: ``send`` returns the message's idempotency key once it is in the outbox."""

    async def send(self, stream: str, body: dict[str, Any]) -> str: ...

    def register_command(self, name: str, handler: CommandHandler) -> None: ...

    def unregister_command(self, name: str) -> None: ...


class ScopedUplink:
    """The uplink as one app uses it: the commands it registers are unregistered when it stops."""

    def __init__(self, uplink: UplinkClient) -> None:
        self._uplink = uplink
        self._commands: list[str] = []

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        return await self._uplink.send(stream, body)

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


@runtime_checkable
class HalAccess(Protocol):
    """The hal as the runtime holds it. ``rs485`` returns the port's transaction
    scheduler (``hal.rs485.Rs485Port``); typed loosely so the runtime need not import it."""

    def rs485(self, name: str) -> Any: ...

    def hplc(self) -> CarrierModule: ...

    def metrology(self) -> Metrology: ...

    def slot(self, name: str) -> Slot: ...

    def watchdog(self) -> Watchdog: ...


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
    """The carrier module as one app holds it: the event streams it opens close when it stops."""

    def __init__(self, module: CarrierModule, streams: list[Any]) -> None:
        self._module = module
        self._streams = streams

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

    def _need(self, cap: str) -> HalAccess:
        if cap not in self._m.hal:
            raise _refuse(self._m.name, self._violations, "hal", f"hal capability {cap!r} not declared")
        if self._hal is None:
            raise _refuse(self._m.name, self._violations, "hal", f"no hal on this terminal for {cap!r}")
        return self._hal

    def rs485(self, name: str) -> Any:
        return self._need("rs485").rs485(name)

    def hplc(self) -> CarrierModule:
        return _AppCarrier(self._need("hplc").hplc(), self._streams)

    def metrology(self) -> Metrology:
        return self._need("metrology").metrology()

    def slot(self, name: str) -> Slot:
        return self._need("slots").slot(name)

    def watchdog(self) -> Watchdog:
        return self._need("watchdog").watchdog()

    def close(self) -> None:
        """Close the carrier event streams the app left open (a crash skips its ``async with``)."""
        for stream in self._streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        self._streams.clear()


class AppContext:
    """What ``run(ctx, config)`` receives. Built fresh for every start of the app."""

    def __init__(
        self,
        *,
        manifest: Manifest,
        clock: Clock,
        bus: Bus,
        scheduler: Scheduler,
        store: AppStore | None = None,
        uplink: UplinkClient | None = None,
        hal: HalAccess | None = None,
        terminal: TerminalInfo | None = None,
    ) -> None:
        self.manifest = manifest
        self.name = manifest.name
        self.terminal = terminal or TerminalInfo.default()
        self.clock = clock
        self.log = logging.getLogger(f"ttu.app.{manifest.name}")
        self.violations = Violations()
        self.bus = ScopedBus(bus, manifest, self.violations)
        self.scheduler = ScopedScheduler(scheduler, manifest.name)
        self.hal = ScopedHal(hal, manifest, self.violations)
        self._store = store
        self._uplink = None if uplink is None else ScopedUplink(uplink)
        self._ready: asyncio.Future[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def store(self) -> AppStore:
        if self._store is None:
            raise CapabilityError(self.name, "no store on this terminal")
        return self._store

    @property
    def uplink(self) -> UplinkClient:
        if self._uplink is None:
            raise CapabilityError(self.name, "no uplink on this terminal")
        return self._uplink

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
            self.log.debug("ready")

    @property
    def stop_requested(self) -> bool:
        """True once the supervisor asked the app to stop (it is cancelled after stop_timeout_s)."""
        return self._stopping.is_set()

    async def wait_stop(self) -> None:
        """Wait until the supervisor asks the app to stop; return from ``run`` then."""
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Release everything the app registered (called by the supervisor when it ends)."""
        self.bus.close()
        self.scheduler.close()
        if self._uplink is not None:
            self._uplink.close()
        self.hal.close()


ContextFactory = Callable[[Manifest], AppContext]


class AppContextFactory:
    """Builds an ``AppContext`` per app start from the terminal's shared services.

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
        uplinks: Callable[[str], UplinkClient] | None = None,
        hal: HalAccess | None = None,
        terminal: TerminalInfo | None = None,
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._scheduler = scheduler
        self._stores = stores
        self._uplinks = uplinks
        self._hal = hal
        self._terminal = terminal

    def __call__(self, manifest: Manifest) -> AppContext:
        return AppContext(
            manifest=manifest,
            clock=self._clock,
            bus=self._bus,
            scheduler=self._scheduler,
            store=self._stores(manifest.name) if self._stores else None,
            uplink=self._uplinks(manifest.name) if self._uplinks else None,
            hal=self._hal,
            terminal=self._terminal,
        )


__all__ = [
    "AppContext",
    "AppContextFactory",
    "AppStore",
    "CommandHandler",
    "ContextFactory",
    "HalAccess",
    "NamespacedStore",
    "ScopedBus",
    "ScopedHal",
    "ScopedScheduler",
    "ScopedUplink",
    "TerminalInfo",
    "TerminalStore",
    "UplinkClient",
    "Violations",
]
