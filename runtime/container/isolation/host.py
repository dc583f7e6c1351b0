"""The app host: one process per isolated app, joined to the runtime over the bridge socket.

Layer: runtime, in its own process (``python -m runtime.container.isolation.host``, started
by the supervisor with ``TTU_BRIDGE_SOCKET`` and a one-time ``TTU_BRIDGE_TOKEN``).
It connects, says hello with the token, receives the manifest, config, terminal
info and clock, applies the limits (``limits``) *before* importing app
code, imports the entry point from the app's folder and runs ``run(ctx, config)``
with an ``AppContext`` whose bus, store, scheduler, uplink, hal, log and
``ready()`` are proxies over the socket: the same API an in-process app sees.

The proxies check the manifest locally so that refusals raise at the same place
as in-process; the refused attempt is still sent, because the bridge is the one
that enforces and reports (a process can bypass anything done here). hal is
proxied by ``runtime.container.isolation.hal_proxy`` (declared capabilities only; the
watchdog is runtime-only), and the runtime's clock steps (time sync) are applied
to this process's clock as they arrive, so ``sleep_until`` and timestamps follow.

It sends a heartbeat every ``heartbeat_s`` from its event loop, so an app that
blocks the loop stops the heartbeat and the runtime kills it. Exit statuses are
``isolation.EXIT_*``. It must not import the supervisor or the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import importlib.util
import inspect
import logging
import os
import signal
import sys
import traceback
import types
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from hal.clock import Clock, LoopClock
from hal.streams import Stream
from protocols.station import (
    Correction,
    ProposalResult,
    StationChange,
    StationError,
    StationModel,
    model_from_doc,
)
from runtime.api import AppContext, CommandHandler, EntryPoint, TerminalInfo
from runtime.bus import Bus, Handler, Message, Overflow, Service, Subscription, payload_to_json
from runtime.container.context import (
    ContextCore,
    LocalContext,
    ScopedBus,
    ScopedScheduler,
    Violations,
    check_propose,
    check_stream,
)
from runtime.container.isolation.channel import Channel
from runtime.container.isolation.hal_proxy import RemoteHal
from runtime.container.isolation.limits import apply_limits
from runtime.container.isolation.wire import (
    ENV_SOCKET,
    ENV_TOKEN,
    EXIT_BRIDGE,
    EXIT_CRASHED,
    EXIT_IMPORT,
    EXIT_MEMORY,
    EXIT_OK,
    WireError,
    catch_up_to_json,
    manifest_from_json,
    read_frame,
    schedule_to_json,
    terminal_from_json,
)
from runtime.container.manifest import Manifest
from runtime.errors import AppError, BusError, CapabilityError, TerminalError
from runtime.model import Event, Reading
from runtime.scheduler import CatchUp, Job, JobFunc, MemoryKeyValue, Schedule, Scheduler
from runtime.scheduler import Slot as JobSlot
from runtime.store import Ledger

log = logging.getLogger("ttu.host")
_PR_SET_PDEATHSIG = 1


class RemoteSubscription(Subscription):
    """A subscription whose messages the bridge forwards; same queue semantics as in-process."""

    def __init__(self, bus: Bus, chan: Channel, sid: int, pattern: str, **kw: Any) -> None:
        super().__init__(bus, pattern, **kw)
        self._chan = chan
        self.sid = sid

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(BusError):
                self._chan.request_nowait("bus.unsubscribe", {"sid": self.sid})
        super().close()


class RemoteService(Service):
    def __init__(self, bus: Bus, chan: Channel, sid: int, pattern: str, handler: Handler) -> None:
        super().__init__(bus, pattern, handler)
        self._chan = chan
        self.sid = sid

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(BusError):
                self._chan.request_nowait("bus.unserve", {"sid": self.sid})


class RemoteBus(ScopedBus):
    """``ctx.bus`` of an isolated app: each call crosses to the bridge."""

    def __init__(self, local: Bus, manifest: Manifest, violations: Violations, chan: Channel) -> None:
        super().__init__(local, manifest, violations)
        self._local = local
        self._chan = chan
        self._next_sid = 0
        self.subscriptions: dict[int, RemoteSubscription] = {}
        self.services: dict[int, RemoteService] = {}

    def _sid(self) -> int:
        self._next_sid += 1
        return self._next_sid

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        body = {"topic": topic, "payload": payload_to_json(payload), "retain": retain}
        try:
            self._may_publish(topic, "publish")
        except CapabilityError:
            self._chan.request_nowait("bus.publish", body)  # the bridge refuses and reports it
            raise
        self._chan.request_nowait("bus.publish", body)

    def subscribe(
        self, pattern: str, *, maxsize: int = 1000, overflow: Overflow = Overflow.DROP_OLDEST
    ) -> Subscription:
        sid = self._sid()
        body = {"sid": sid, "pattern": pattern, "maxsize": maxsize, "overflow": overflow.value}
        try:
            self._may_subscribe(pattern, "subscribe")
        except CapabilityError:
            self._chan.request_nowait("bus.subscribe", body)
            raise
        sub = RemoteSubscription(
            self._local, self._chan, sid, pattern, maxsize=maxsize, overflow=overflow, name=pattern
        )
        self.subscriptions[sid] = sub
        self._subs.append(sub)
        self._chan.request_nowait("bus.subscribe", body)
        return sub

    async def request(self, topic: str, payload: Any, *, timeout: float) -> Any:  # noqa: ASYNC109 (bus contract)
        body = {"topic": topic, "payload": payload_to_json(payload), "timeout": timeout}
        try:
            self._may_publish(topic, "request")
        except CapabilityError:
            self._chan.request_nowait("bus.request", body)
            raise
        # The bridge applies ``timeout``; the margin only covers a bridge that never answers.
        return await self._chan.request("bus.request", body, timeout=timeout + 5.0)

    def serve(self, pattern: str, handler: Handler) -> Service:
        sid = self._sid()
        try:
            self._may_subscribe(pattern, "serve")
        except CapabilityError:
            self._chan.request_nowait("bus.serve", {"sid": sid, "pattern": pattern})
            raise
        service = RemoteService(self._local, self._chan, sid, pattern, handler)
        self.services[sid] = service
        self._services.append(service)
        self._chan.request_nowait("bus.serve", {"sid": sid, "pattern": pattern})
        return service

    def deliver(self, frame: dict[str, Any]) -> None:
        sub = self.subscriptions.get(frame.get("sid", -1))
        if sub is None or sub.closed:
            return
        sub._put(
            Message(
                str(frame["topic"]), frame.get("payload"), float(frame["ts"]), bool(frame.get("retained"))
            )
        )


class RemoteJob(Job):
    __slots__ = ("_on_cancel",)

    def cancel(self) -> None:
        self._on_cancel(self)  # type: ignore[attr-defined]


class RemoteScheduler(ScopedScheduler):
    """``ctx.scheduler``: the runtime's scheduler runs the job and calls back for each run."""

    def __init__(self, local: Scheduler, app: str, chan: Channel) -> None:
        super().__init__(local, app)
        self._chan = chan
        self._next = 0
        self.funcs: dict[int, tuple[RemoteJob, JobFunc]] = {}

    def add(self, name: str, schedule: Schedule, func: JobFunc, *, catch_up: CatchUp = CatchUp.LATEST) -> Job:
        full = f"{self._app}.{name}"
        if any(j.name == full for j, _ in self.funcs.values()):
            raise TerminalError(f"scheduler: job {full!r} already exists")
        self._next += 1
        jid = self._next
        job = RemoteJob(full, schedule, func, catch_up)
        job._on_cancel = lambda j: self._cancel(jid)  # type: ignore[attr-defined]
        self.funcs[jid] = (job, func)
        self._chan.request_nowait(
            "scheduler.add",
            {
                "jid": jid,
                "name": name,
                "schedule": schedule_to_json(schedule),
                "catch_up": catch_up_to_json(catch_up),
            },
        )
        return job

    def _cancel(self, jid: int) -> None:
        if self.funcs.pop(jid, None) is not None:
            with contextlib.suppress(BusError):
                self._chan.request_nowait("scheduler.cancel", {"jid": jid})

    def close(self) -> None:
        for jid in list(self.funcs):
            self._cancel(jid)


class RemoteStore:
    """``ctx.store``: the app's key-value namespace, readings and events, in the runtime's store."""

    def __init__(self, chan: Channel, app: str) -> None:
        self._chan = chan
        self._app = app

    @property
    def ledger(self) -> Ledger:
        raise CapabilityError(self._app, "the ledger is the runtime's: isolated apps cannot append to it")

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._chan.request("store.get", {"key": key, "default": payload_to_json(default)})

    async def set(self, key: str, value: Any) -> None:
        await self._chan.request("store.set", {"key": key, "value": payload_to_json(value)})

    async def delete(self, key: str) -> bool:
        return bool(await self._chan.request("store.delete", {"key": key}))

    async def write_readings(self, readings: Iterable[Reading]) -> int:
        rows = [r.to_json() for r in readings]
        return int(await self._chan.request("store.write_readings", {"readings": rows}))

    async def write_event(self, event: Event) -> int:
        return int(await self._chan.request("store.write_event", {"event": event.to_json()}))

    async def query_readings(
        self,
        *,
        device: str | None = None,
        quantity: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[Reading]:
        rows = await self._chan.request(
            "store.query_readings",
            {"device": device, "quantity": quantity, "since": since, "until": until, "limit": limit},
        )
        return [Reading.from_json(r) for r in rows]


class RemoteUplink:
    """``ctx.uplink``: declared streams are checked here (and again by the bridge), sent there."""

    def __init__(self, chan: Channel, manifest: Manifest, violations: Violations) -> None:
        self._chan = chan
        self._m = manifest
        self._violations = violations
        self.commands: dict[str, CommandHandler] = {}

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        request = {"stream": stream, "body": payload_to_json(body)}
        try:
            check_stream(self._m, self._violations, stream)
        except CapabilityError:
            self._chan.request_nowait("uplink.send", request)  # the bridge refuses and reports it
            raise
        return str(await self._chan.request("uplink.send", request))

    async def send_many(self, stream: str, bodies: Sequence[dict[str, Any]]) -> list[str]:
        request = {"stream": stream, "bodies": [payload_to_json(b) for b in bodies]}
        try:
            check_stream(self._m, self._violations, stream)
        except CapabilityError:
            self._chan.request_nowait("uplink.send_many", request)  # the bridge refuses and reports it
            raise
        keys = await self._chan.request("uplink.send_many", request)
        return [str(k) for k in keys] if isinstance(keys, list) else []

    def register_command(self, name: str, handler: CommandHandler) -> None:
        self.commands[name] = handler
        self._chan.request_nowait("uplink.register", {"name": name})

    def unregister_command(self, name: str) -> None:
        if self.commands.pop(name, None) is not None:
            self._chan.request_nowait("uplink.unregister", {"name": name})


class RemoteStation:
    """``ctx.station``: a mirror of the runtime's model, kept current by the bridge's ``station``
    frames (every new version, with the whole model); proposals cross as requests."""

    def __init__(
        self, chan: Channel, manifest: Manifest, violations: Violations, model: StationModel
    ) -> None:
        self._chan = chan
        self._m = manifest
        self._violations = violations
        self._model = model
        self._streams: set[Stream[StationChange]] = set()

    @property
    def model(self) -> StationModel:
        return self._model

    def watch(self, *, maxsize: int = 64) -> Stream[StationChange]:
        stream: Stream[StationChange] = Stream(maxsize, on_close=self._streams.discard)
        self._streams.add(stream)
        return stream

    async def propose(self, corrections: Sequence[Correction]) -> ProposalResult:
        request = {"corrections": [c.to_doc() for c in corrections]}
        try:
            check_propose(self._m, self._violations)
        except CapabilityError:
            self._chan.request_nowait("station.propose", request)  # the bridge refuses and reports it
            raise
        return ProposalResult.from_doc(await self._chan.request("station.propose", request))

    def deliver(self, frame: dict[str, Any]) -> None:
        """A new version from the runtime (``{"op": "station", "change": .., "model": ..}``)."""
        try:
            model = model_from_doc(frame["model"], source="bridge")
            change = StationChange.from_doc(frame["change"], model)
        except (KeyError, StationError) as err:
            log.warning("station change from the runtime not understood: %s", err)
            return
        self._model = model
        for stream in list(self._streams):
            stream.put(change)

    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()


class IsolatedContext(ContextCore):
    """The ``AppContext`` of an isolated app: every facet is a proxy of the runtime's, with the
    manifest checks of the in-process facets; ``ready()`` also tells the runtime."""

    def __init__(
        self,
        *,
        chan: Channel,
        manifest: Manifest,
        clock: Clock,
        terminal: TerminalInfo,
        hal_nodes: dict[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        station: StationModel | None = None,
    ) -> None:
        super().__init__(manifest=manifest, clock=clock, terminal=terminal, config=config)
        local = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz=terminal.tz, state=MemoryKeyValue())
        self._channel = chan
        self.remote_store = RemoteStore(chan, manifest.name)
        self.remote_uplink = RemoteUplink(chan, manifest, self.violations)
        self.remote_bus = RemoteBus(local, manifest, self.violations, chan)
        self.remote_scheduler = RemoteScheduler(scheduler, manifest.name, chan)
        self.remote_hal = RemoteHal(manifest, self.violations, chan, hal_nodes or {})
        self.remote_station = RemoteStation(chan, manifest, self.violations, station or StationModel())

    @property
    def bus(self) -> RemoteBus:
        return self.remote_bus

    @property
    def scheduler(self) -> RemoteScheduler:
        return self.remote_scheduler

    @property
    def store(self) -> RemoteStore:
        return self.remote_store

    @property
    def uplink(self) -> RemoteUplink:
        return self.remote_uplink

    @property
    def hal(self) -> RemoteHal:
        return self.remote_hal

    @property
    def station(self) -> RemoteStation:
        return self.remote_station

    async def ready(self) -> None:
        fut = self.ready_future()
        if not fut.done():
            await super().ready()
            await self._channel.send({"op": "ready"})


def _implements(ctx: IsolatedContext, local: LocalContext) -> tuple[AppContext, AppContext]:
    """Never called: mypy checks here that both contexts implement the ``AppContext`` protocol."""
    return ctx, local


class _BridgeLog(logging.Handler):
    """App log records go to the runtime's log over the bridge."""

    def __init__(self, chan: Channel) -> None:
        super().__init__()
        self._chan = chan
        self._busy = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._busy:  # a failure to send must not log about itself forever
            return
        self._busy = True
        try:
            self._chan.send_nowait(
                {"op": "log", "level": record.levelno, "logger": record.name, "msg": record.getMessage()}
            )
        except Exception:
            pass
        finally:
            self._busy = False


def _import_entry(manifest: Manifest) -> EntryPoint:
    """Import the entry point from the app's own folder (not wherever ``sys.path`` points)."""
    parts = manifest.entry_module.split(".")
    if manifest.name not in parts:
        raise AppError(manifest.name, f"entry {manifest.entry!r} is not inside the app's package")
    i = len(parts) - 1 - parts[::-1].index(manifest.name)
    folder = manifest.folder.resolve()
    for depth in range(i):  # the app package's parents: real ones if importable, else placeholders
        parent = ".".join(parts[: depth + 1])
        if parent in sys.modules:
            continue
        try:
            importlib.import_module(parent)
        except ImportError:
            placeholder = types.ModuleType(parent)
            placeholder.__path__ = [str(folder.parents[i - depth - 1])]
            sys.modules[parent] = placeholder
    package = ".".join(parts[: i + 1])
    init = folder / "__init__.py"
    spec = importlib.util.spec_from_file_location(package, init, submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None or not init.is_file():
        raise AppError(manifest.name, f"no package at {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
        if manifest.entry_module != package:
            module = importlib.import_module(manifest.entry_module)
    except Exception as err:
        raise AppError(
            manifest.name, f"cannot import {manifest.entry_module}: {type(err).__name__}: {err}"
        ) from err
    func = getattr(module, manifest.entry_function, None)
    if func is None or not inspect.iscoroutinefunction(func):
        raise AppError(manifest.name, f"{manifest.entry} is not an async function")
    entry: EntryPoint = func
    return entry


class Host:
    """One app in this process. ``await Host(socket, token).run()`` returns the exit status."""

    def __init__(self, socket_path: str, token: str) -> None:
        self._socket = socket_path
        self._token = token
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> int:
        try:
            path = "\0" + self._socket[1:] if self._socket.startswith("@") else self._socket
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as err:
            print(f"app host: cannot connect to {self._socket}: {err}", file=sys.stderr)
            return EXIT_BRIDGE
        boot = LoopClock()
        chan = Channel(writer, clock=boot, name="host", on_orphan_error=self._orphan_error)
        try:
            await chan.send({"op": "hello", "token": self._token, "pid": os.getpid()})
            welcome = await read_frame(reader)
        except (WireError, BusError, OSError) as err:
            print(f"app host: bridge handshake failed: {err}", file=sys.stderr)
            chan.close()
            return EXIT_BRIDGE
        if welcome is None or welcome.get("op") != "welcome":
            print(f"app host: refused by the runtime: {(welcome or {}).get('message')}", file=sys.stderr)
            chan.close()
            return EXIT_BRIDGE
        try:
            return await self._serve(reader, chan, welcome)
        finally:
            chan.close()

    def _orphan_error(self, op: str, error: dict[str, Any]) -> None:
        log.warning("runtime refused %s: %s", op, error.get("message"))

    async def _serve(self, reader: asyncio.StreamReader, chan: Channel, welcome: dict[str, Any]) -> int:
        manifest = manifest_from_json(welcome["manifest"])
        config = dict(welcome["config"])
        terminal = terminal_from_json(welcome["terminal"])
        clock = LoopClock(start=float(welcome["clock"]["now"]), speed=float(welcome["clock"]["speed"]))
        chan.clock = clock
        applied = apply_limits(
            app=manifest.name,
            memory_mb=manifest.limits.memory_mb,
            nice=int(welcome.get("nice", 0)),
            use_cgroup=bool(welcome.get("cgroup", True)),
        )
        await chan.send({"op": "limits", **applied.to_json()})
        handler = _BridgeLog(chan)
        logging.getLogger("ttu").addHandler(handler)
        logging.getLogger("ttu").setLevel(logging.DEBUG if welcome.get("debug") else logging.INFO)
        logging.getLogger("ttu").propagate = False
        try:
            entry = _import_entry(manifest)
        except AppError as err:
            await chan.send({"op": "crash", "error": f"{type(err).__name__}: {err.reason}", "traceback": ""})
            return EXIT_IMPORT
        station = StationModel()
        if welcome.get("station") is not None:
            try:
                station = model_from_doc(welcome["station"], source="bridge")
            except StationError as err:
                log.warning("station model from the runtime not understood: %s", err)
        ctx = IsolatedContext(
            chan=chan,
            manifest=manifest,
            clock=clock,
            terminal=terminal,
            hal_nodes=dict(welcome.get("hal") or {}),
            config=config,
            station=station,
        )
        heartbeat_s = float(welcome["heartbeat_s"])
        async with asyncio.TaskGroup() as tg:
            app = tg.create_task(self._app(entry, ctx, config), name=f"app:{manifest.name}")
            beat = tg.create_task(self._heartbeat(chan, clock, heartbeat_s), name="heartbeat")
            pump = tg.create_task(self._read(reader, chan, ctx, tg, app), name="bridge-reader")
            outcome = await asyncio.wait({app, pump}, return_when=asyncio.FIRST_COMPLETED)
            beat.cancel()
            if pump in outcome[0]:  # the runtime went away: nobody to serve
                app.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await app
                return EXIT_BRIDGE
            status, message = app.result()
            await self._send_outcome(chan, status, message)
            pump.cancel()
            for task in list(self._tasks):
                task.cancel()
        return status

    async def _send_outcome(self, chan: Channel, status: int, message: dict[str, Any]) -> None:
        with contextlib.suppress(BusError, ConnectionError):
            await chan.send(message)

    async def _app(
        self,
        entry: EntryPoint,
        ctx: IsolatedContext,
        config: dict[str, Any],
    ) -> tuple[int, dict[str, Any]]:
        try:
            await entry(ctx, config)
        except MemoryError:
            # Free what we can before building a message: the traceback holds the app's frames.
            sys.last_value = sys.last_traceback = None
            return EXIT_MEMORY, {"op": "crash", "error": "MemoryError: memory limit reached", "memory": True}
        except (Exception, SystemExit) as err:  # CancelledError / KeyboardInterrupt propagate
            tb = "".join(traceback.format_exception(err))[-4000:]
            return EXIT_CRASHED, {"op": "crash", "error": f"{type(err).__name__}: {err}", "traceback": tb}
        return EXIT_OK, {"op": "done"}

    async def _heartbeat(self, chan: Channel, clock: Clock, period: float) -> None:
        while True:
            await chan.send({"op": "hb"})
            await clock.sleep(period)

    async def _read(
        self,
        reader: asyncio.StreamReader,
        chan: Channel,
        ctx: IsolatedContext,
        tg: asyncio.TaskGroup,
        app: asyncio.Task[Any],
    ) -> None:
        while True:
            try:
                frame = await read_frame(reader)
            except (WireError, ConnectionError) as err:
                log.error("bridge connection broken: %s", err)
                return
            if frame is None:
                return
            op = frame["op"]
            if op == "reply":
                chan.resolve(frame)
            elif op == "msg":
                ctx.remote_bus.deliver(frame)
            elif op == "hal.event":
                ctx.remote_hal.deliver_event(frame)
            elif op == "station":
                ctx.remote_station.deliver(frame)
            elif op == "clock":
                step = frame.get("step")
                if isinstance(step, int | float) and step == step:
                    ctx.clock.step(float(step))  # the runtime's time sync: sleeps and stamps follow
            elif op == "stop":
                ctx.request_stop()
            elif op == "call":
                task = tg.create_task(self._call(chan, ctx, frame), name=f"call:{frame.get('kind')}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                log.warning("unknown frame from the runtime: %r", op)

    async def _call(self, chan: Channel, ctx: IsolatedContext, frame: dict[str, Any]) -> None:
        """Run a callback the runtime asked for: a bus request we serve, a command, a job."""
        kind = frame.get("kind")
        try:
            result: Any = None
            if kind == "serve":
                service = ctx.remote_bus.services.get(frame.get("sid", -1))
                if service is None or service.closed:
                    raise BusError(f"no service {frame.get('sid')}")
                result = service.handler(frame.get("payload"))
                if inspect.isawaitable(result):
                    result = await result
                result = payload_to_json(result)
            elif kind == "command":
                handler = ctx.remote_uplink.commands.get(str(frame.get("name")))
                if handler is None:
                    raise BusError(f"no command {frame.get('name')!r}")
                result = payload_to_json(await handler(dict(frame.get("args") or {})))
            elif kind == "job":
                entry = ctx.remote_scheduler.funcs.get(frame.get("jid", -1))
                if entry is None:
                    raise BusError(f"no job {frame.get('jid')}")
                job, func = entry
                s = frame["slot"]
                epoch = float(s["epoch"])
                slot = JobSlot(
                    job.name, epoch, datetime.fromtimestamp(epoch, ctx.terminal.tz), bool(s["late"])
                )
                job.stats.runs += 1
                try:
                    await func(slot)
                except Exception:
                    job.stats.errors += 1
                    raise
            else:
                raise BusError(f"unknown call kind {kind!r}")
        except Exception as err:  # the error goes back to the runtime's caller
            await chan.reply(
                frame.get("id"),
                error=err if isinstance(err, TerminalError) else BusError(f"{type(err).__name__}: {err}"),
            )
            return
        await chan.reply(frame.get("id"), result)


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process if the runtime dies, even mid-hang."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def _main(socket_path: str, token: str) -> int:
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)  # SIGTERM: the app is cancelled, then we exit
    return await Host(socket_path, token).run()


def main(argv: list[str] | None = None) -> int:
    """``python -m runtime.container.isolation.host``: the socket and token come in the environment."""
    _die_with_parent()
    socket_path, token = os.environ.get(ENV_SOCKET), os.environ.get(ENV_TOKEN)
    if not socket_path or not token:
        print(
            f"app host: {ENV_SOCKET} and {ENV_TOKEN} must be set (the supervisor starts this)",
            file=sys.stderr,
        )
        return EXIT_BRIDGE
    os.environ.pop(ENV_TOKEN, None)  # the app has no business reusing it
    try:
        return asyncio.run(_main(socket_path, token))
    except asyncio.CancelledError:
        return EXIT_CRASHED
    except KeyboardInterrupt:
        return EXIT_CRASHED
    except MemoryError:
        os._exit(EXIT_MEMORY)
    except BaseExceptionGroup as group:  # raised through a TaskGroup
        if group.subgroup(MemoryError) is not None:
            os._exit(EXIT_MEMORY)
        raise


__all__ = ["Host", "IsolatedContext", "RemoteBus", "RemoteHal", "RemoteScheduler", "RemoteStore", "main"]

if __name__ == "__main__":
    sys.exit(main())
