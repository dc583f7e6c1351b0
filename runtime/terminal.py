"""One terminal, assembled from board.toml: store, bus, scheduler, hal, uplink, apps.

Layer: runtime. Owns the task group every long-running part runs in (uplink sender,
scheduler, supervisor, loop watchdog, store upkeep) and tears it down in order.
Knows no grid or protocol specifics: apps bring those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hal.clock import Clock
from hal.interfaces import PowerMonitor, SerialLink
from runtime import RUNTIME_API_VERSION, heap
from runtime.board_hal import BoardHal
from runtime.bus import Bus
from runtime.config import Board, TlsConfig, load_credentials
from runtime.container import (
    AppContextFactory,
    LoopWatchdog,
    NamespacedStore,
    Supervisor,
    TerminalInfo,
)
from runtime.container.isolation.bridge import SOCKET_NAME, Bridge
from runtime.container.supervisor import AppState
from runtime.diagnostics import trace_handler, validate_trace_args
from runtime.errors import ConfigError, TerminalDied
from runtime.packages.jobs import JobRunner
from runtime.packages.manager import PackageManager
from runtime.packages.verify import board_capabilities
from runtime.scheduler import Daily, Scheduler
from runtime.station import StationService
from runtime.store import Store, StoreLimits
from runtime.uplink import OutboxOnlyUplink, Uplink

log = logging.getLogger("ttu.terminal")
PRUNE_EVERY_S = 3600.0
SETTLE_WAIT_S = 60.0  # the longest the heap waits for the apps to start before it is frozen
STARTED = (AppState.RUNNING, AppState.CRASHED, AppState.BACKOFF, AppState.QUARANTINED, AppState.STOPPED)
STATUS_EVERY_S = 300.0


@dataclass(slots=True)
class TerminalParts:
    """The running parts, for the CLI, the live summary and tests."""

    store: Store
    bus: Bus
    scheduler: Scheduler
    hal: BoardHal
    supervisor: Supervisor
    uplink: Uplink | None
    info: TerminalInfo
    station: StationService
    alarms: dict[str, Any] = field(default_factory=dict)
    packages: PackageManager | None = None
    jobs: JobRunner | None = None


def _tls_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca))
    if tls.cert is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    return context


class Terminal:
    """Run a terminal until cancelled: ``await Terminal(board, clock=...).run()``.

    ``sim_devices`` maps ``sim:<name>`` board devices to what the simulator serves them on (a
    pty path, or an in-memory ``SerialLink``: ``runtime.board_hal.BoardHal``); ``sim_power`` is
    the simulator's mains behind a ``sim:`` ``[power]`` node;
    ``broker_url`` overrides ``uplink.broker`` (``make sim --broker``).
    """

    def __init__(
        self,
        board: Board,
        *,
        clock: Clock,
        apps_dir: Path | None = None,
        sim_devices: Mapping[str, str | SerialLink] | None = None,
        sim_power: PowerMonitor | None = None,
        broker_url: str | None = None,
        state_dir: Path | None = None,
        settle_heap: bool = False,
    ) -> None:
        self._board = board
        self._clock = clock
        self._apps_dir = apps_dir or board.packages.apps_dir
        self._sim_devices = sim_devices
        self._sim_power = sim_power
        self._broker_url = broker_url
        self._state_dir = state_dir or board.store.path.parent / "state"
        self._settle_heap = settle_heap  # ttu run: freeze the start-up heap (runtime.heap)
        self._command_key = b""
        self.parts: TerminalParts | None = None
        self.started = asyncio.Event()

    def info(self) -> TerminalInfo:
        board = self._board
        return TerminalInfo(
            id=board.terminal.id,
            tz=ZoneInfo(board.terminal.timezone),
            root=board.root,
            rs485_ports=tuple(p.name for p in board.rs485 if p.enabled),
            hplc=board.hplc is not None and board.hplc.enabled,
            metrology=board.metrology is not None and board.metrology.enabled,
            slots=tuple(s.name for s in board.slots if s.enabled),
        )

    def _uplink(self, store: Store) -> Uplink | None:
        node = self._board.uplink
        if node is None or not node.enabled:
            return None
        if node.credentials_file is None:
            raise ConfigError("uplink.credentials_file", "required: it holds the downlink command key")
        credentials = load_credentials(node.credentials_file)
        self._command_key = credentials.command_key  # package chunks are authenticated like commands
        return Uplink(
            store=store,
            clock=self._clock,
            terminal_id=self._board.terminal.id,
            broker_url=self._broker_url or node.broker,
            client_id=node.client_id,
            command_key=credentials.command_key,
            tls=_tls_context(node.tls),
            username=credentials.username,
            password=credentials.password,
            batch_max=node.batch_max,
            max_command_bytes=node.max_command_bytes,
            ack_timeout_s=node.ack_timeout_s,
            keepalive_s=node.keepalive_s,
        )

    async def run(self) -> None:
        board = self._board
        limits = StoreLimits(
            max_bytes=board.store.max_mb * 1024 * 1024,
            retention_days=float(board.store.retention_days),
            curve_retention_days=float(board.store.curve_retention_days),
        )
        alarms: dict[str, Any] = {}

        def store_alarm(full: bool, used: int) -> None:
            alarms["store_full"] = {"active": full, "used_bytes": used, "ts": self._clock.now()}
            if full:
                log.error("store full: %d bytes, only undelivered data left", used)
            else:
                log.info("store full alarm cleared")

        board.store.path.parent.mkdir(parents=True, exist_ok=True)
        store = await Store.open(
            board.store.path, clock=self._clock, limits=limits, on_alarm=store_alarm, fsync=board.store.fsync
        )
        try:
            bus = Bus(clock=self._clock)
            info = self.info()
            scheduler = Scheduler(clock=self._clock, tz=info.tz, state=NamespacedStore(store, "scheduler"))
            uplink = self._uplink(store)
            offline = OutboxOnlyUplink(store, terminal_id=board.terminal.id)
            station = StationService(
                store=store,
                bus=bus,
                clock=self._clock,
                file=board.station.file,
                proposals=board.station.proposals,
                auto_min_confidence=board.station.auto_min_confidence,
                send=(uplink or offline).send,
                known_ports=info.rs485_ports,
            )
            await station.start()
            async with (
                BoardHal(
                    board, clock=self._clock, sim_devices=self._sim_devices, sim_power=self._sim_power
                ) as hal,
                contextlib.AsyncExitStack() as stack,  # the app bridge, closed after the supervisor
            ):
                factory = AppContextFactory(
                    clock=self._clock,
                    bus=bus,
                    scheduler=scheduler,
                    stores=lambda name: NamespacedStore(store, name),
                    uplinks=lambda name: uplink if uplink is not None else offline,
                    hal=hal,
                    terminal=info,
                    station=station,
                )
                bridge = await stack.enter_async_context(
                    Bridge(self._state_dir / SOCKET_NAME, bus=bus, clock=self._clock, terminal=info)
                )
                supervisor = Supervisor(
                    clock=self._clock,
                    bus=bus,
                    context_factory=factory,
                    state_dir=self._state_dir,
                    bridge=bridge,
                )
                supervisor.load(
                    self._apps_dir,
                    configs={name: app.config for name, app in board.apps.items()},
                    enabled=[name for name, app in board.apps.items() if app.enabled],
                    isolated=[name for name, app in board.apps.items() if app.isolated],
                    nice={name: app.nice for name, app in board.apps.items()},
                )
                packages, jobs = await self._packages(store, supervisor, uplink)
                watchdog = LoopWatchdog(
                    clock=self._clock,
                    bus=bus,
                    app_dirs=supervisor.app_dirs,
                    hal_watchdog=hal.watchdog() if board.watchdog and board.watchdog.enabled else None,
                )
                self.parts = TerminalParts(
                    store, bus, scheduler, hal, supervisor, uplink, info, station, alarms, packages, jobs
                )
                scheduler.add("station.snapshot", Daily(0, 5), lambda slot: station.snapshot())
                if uplink is not None:
                    self._register_commands(uplink)
                    station.register_commands(uplink.register_command)
                    uplink.register_command(
                        "hal.trace", trace_handler(hal.traces), validate=validate_trace_args
                    )
                log.info(
                    "terminal %s up: runtime API %d, %d apps, %d RS-485 ports",
                    info.id,
                    RUNTIME_API_VERSION,
                    len(supervisor.status()),
                    len(hal.ports),
                )
                try:
                    async with asyncio.TaskGroup() as tg:

                        def essential(name: str, coro: Coroutine[Any, Any, None]) -> None:
                            tg.create_task(_essential(name, coro), name=name)

                        if uplink is not None:
                            essential("uplink", uplink.run())
                        essential("scheduler", scheduler.run())
                        essential("supervisor", supervisor.run())
                        if jobs is not None:
                            essential("package-jobs", jobs.run())
                        essential("loop-watchdog", watchdog.run())
                        essential("hplc-events", hal.carrier_events(bus.publish))
                        essential("store-upkeep", self._upkeep(store, uplink, supervisor, alarms))
                        if self._settle_heap:
                            tg.create_task(_settle_heap(supervisor), name="settle-heap")
                        self.started.set()
                except BaseExceptionGroup as group:
                    died = [e for e in group.exceptions if isinstance(e, TerminalDied)]
                    if not died:
                        raise
                    raise died[0] from group
        finally:
            self.parts = None
            await store.close()

    async def _packages(
        self, store: Store, supervisor: Supervisor, uplink: Uplink | None
    ) -> tuple[PackageManager, JobRunner | None]:
        """The package manager, recovered from a power cut and its installed apps loaded (isolated);
        with an uplink, the ``app.*`` commands and the chunk topic."""
        board = self._board
        packages = PackageManager(
            state_dir=self._state_dir,
            runner=supervisor,
            store=store,
            clock=self._clock,
            trusted_keys=[k.raw for k in board.packages.trusted_keys],
            capabilities=board_capabilities(board),
            configs=lambda name: board.apps[name].config if name in board.apps else {},
            grace_s=board.packages.health_grace_s,
        )
        recovered = await packages.recover()
        packages.load_installed()
        if uplink is None:
            return packages, None
        jobs = JobRunner(
            manager=packages,
            clock=self._clock,
            command_key=self._command_key,
            report=lambda body: uplink.send("jobs", body),
            stall_s=board.packages.stall_s,
            recovered=recovered,
        )
        jobs.register(uplink.register_command)
        uplink.register_chunks(jobs.handle_chunk)
        return packages, jobs

    def _register_commands(self, uplink: Uplink) -> None:
        async def status(args: dict[str, Any]) -> dict[str, Any]:
            return self.status()

        uplink.register_command("terminal.status", status)

    def status(self) -> dict[str, Any]:
        parts = self.parts
        if parts is None:
            return {"running": False}
        return {
            "running": True,
            "terminal": parts.info.id,
            "ts": self._clock.now(),
            "apps": parts.supervisor.status(),
            "uplink": parts.uplink.statistics() if parts.uplink else None,
            "ports": parts.hal.statistics(),
            "alarms": parts.alarms,
            "station": parts.station.statistics(),
            "packages": parts.jobs.statistics() if parts.jobs else None,
        }

    async def _upkeep(
        self, store: Store, uplink: Uplink | None, supervisor: Supervisor, alarms: dict[str, Any]
    ) -> None:
        """Prune the store hourly and give freed memory back (``heap.give_back``); report
        terminal status and alarms upward."""
        last_prune = self._clock.monotonic()
        while True:
            await self._clock.sleep(STATUS_EVERY_S)
            if self._clock.monotonic() - last_prune >= PRUNE_EVERY_S:
                last_prune = self._clock.monotonic()
                result = await store.prune()
                log.info("store pruned: %s", result)
                heap.give_back()
            if uplink is not None:
                body = {
                    "ts": self._clock.now(),
                    "apps": [
                        {k: a.get(k) for k in ("name", "version", "state")} for a in supervisor.status()
                    ],
                    "backlog": await store.outbox_backlog(),
                    "alarms": alarms,
                }
                await uplink.send("status", body)
                if alarms.get("store_full", {}).get("active"):
                    await uplink.send("alarms", {"kind": "store_full", **alarms["store_full"]})


async def _settle_heap(supervisor: Supervisor) -> None:
    """Once every app has started (or given up), freeze the start-up heap (``runtime.heap``):
    the apps import their services as they start, so not before."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SETTLE_WAIT_S):  # loop time: the apps' start is real work
            for app in supervisor.status():
                await supervisor.wait_state(app["name"], *STARTED)
    frozen = heap.settle()
    log.info("start-up heap frozen: %d objects the garbage collector no longer walks", frozen)


async def _essential(name: str, coro: Coroutine[Any, Any, None]) -> None:
    """Run one part the terminal cannot do without; its failure is logged with its cause and
    becomes ``TerminalDied`` (the task group then stops the rest, and ``run`` raises it)."""
    try:
        await coro
    except Exception as err:
        log.critical(
            "terminal part %s failed, stopping the terminal: %s: %s",
            name,
            type(err).__name__,
            err,
            exc_info=err,
        )
        raise TerminalDied(name, f"{type(err).__name__}: {err}") from err
