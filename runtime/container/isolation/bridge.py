"""The bridge: the runtime's end of every isolated app, a Unix socket server that enforces manifests.

Layer: runtime. One ``Bridge`` per terminal listens on ``<state_dir>/apps.sock``
(mode 0600). The supervisor registers a one-time token per app start
(``expect``), starts the host with it and gets the connection once the host says
hello with that token; a connection with an unknown token is refused, so one
app's process cannot speak as another app.

An ``AppSession`` serves one connected host. It works through an ``LocalContext``
built by the terminal's context factory, exactly the one an in-process app
would get: the bus, scheduler and hal scoping (and their cleanup on ``close``)
are the in-process code. Enforcement therefore happens here, whatever the host
process does: a publish outside ``topics.publish``, a subscribe/serve outside
``topics.subscribe`` or an undeclared hal capability is refused with an error
reply, counted, logged and published on ``runtime/apps/<name>/violation``.
Declared hal capabilities are served by ``hal_ops`` against the real hal
objects (RS-485 transactions as bytes, carrier, metrology, slots; the watchdog
stays runtime-only), checked on every request. The session also forwards the
runtime clock's steps (time sync) so the host's clock stays aligned. Nothing an
app sends can raise into the runtime: bad frames end that app's connection (and
so the app), bad requests get error replies.

It must not start or kill processes (the supervisor's runner does) nor import apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hal.clock import Clock
from hal.errors import HalError
from protocols.errors import ProtocolError
from protocols.station import Correction, StationError, model_to_doc
from runtime.bus import Bus, Overflow, Subscription, payload_to_json
from runtime.container.context import LocalContext, TerminalInfo
from runtime.container.isolation.channel import Channel
from runtime.container.isolation.hal_ops import HAL_OPS, describe
from runtime.container.isolation.wire import (
    WireError,
    catch_up_from_json,
    manifest_to_json,
    read_frame,
    schedule_from_json,
    terminal_to_json,
)
from runtime.errors import BusError, CapabilityError, TerminalError
from runtime.model import Event, Reading
from runtime.scheduler import Slot

log = logging.getLogger("ttu.bridge")

SOCKET_NAME = "apps.sock"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus the terminating NUL


def violation_topic(app: str) -> str:
    return f"runtime/apps/{app}/violation"


@dataclass(frozen=True, slots=True)
class IsolationSettings:
    """Knobs of process isolation (defaults suit the field; tests shrink the intervals)."""

    heartbeat_s: float = 1.0  # the host beats this often (clock seconds)
    heartbeat_timeout_s: float = 10.0  # no beat for this long -> the host is killed as hung
    nice: int = 10  # default niceness of an app host (board.toml [apps.<name>] nice overrides)
    hello_timeout_s: float = 10.0  # a connection must say hello within this (loop seconds)
    max_inflight: int = 64  # concurrent requests per app before the bridge stops reading it
    use_cgroup: bool = True  # try a cgroup v2 memory limit before RLIMIT_AS
    python: str = sys.executable

    def __post_init__(self) -> None:
        if self.heartbeat_s <= 0 or self.heartbeat_timeout_s <= self.heartbeat_s:
            raise ValueError("need 0 < heartbeat_s < heartbeat_timeout_s")


@dataclass(slots=True)
class Connection:
    """A host that said hello with a valid token."""

    app: str
    pid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class BridgeStats:
    connections: int = 0
    rejected: int = 0
    protocol_errors: int = 0
    violations: dict[str, int] = field(default_factory=dict)


class Bridge:
    """``async with Bridge(path, bus=..., clock=...) as bridge:`` serves isolated apps."""

    def __init__(
        self,
        path: str | Path,
        *,
        bus: Bus,
        clock: Clock,
        terminal: TerminalInfo | None = None,
        settings: IsolationSettings | None = None,
    ) -> None:
        self.path = Path(path)
        # sun_path holds 107 bytes; a deeper state dir gets a Linux abstract socket named after it
        # (no file, so no file mode: the one-time tokens are then the only gate).
        self.abstract: str | None = None
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            digest = hashlib.sha256(os.fsencode(self.path.resolve())).hexdigest()[:24]
            self.abstract = f"ttu-bridge-{digest}"
        self.bus = bus
        self.clock = clock
        self.terminal = terminal or TerminalInfo.default()
        self.settings = settings or IsolationSettings()
        self.stats = BridgeStats()
        self._server: asyncio.Server | None = None
        self._expected: dict[str, tuple[str, asyncio.Future[Connection]]] = {}
        self._handlers: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Bridge:
        if self.abstract is not None:
            self._server = await asyncio.start_unix_server(self._on_connect, path="\0" + self.abstract)
            log.warning("app bridge: %s is too long for a socket, listening on @%s", self.path, self.abstract)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()  # left by a terminal that was killed
        self._server = await asyncio.start_unix_server(self._on_connect, path=str(self.path))
        os.chmod(self.path, 0o600)
        log.info("app bridge listening on %s", self.path)
        return self

    @property
    def address(self) -> str:
        """Where hosts connect: a path, or ``@name`` for an abstract socket (env-safe, no NUL)."""
        return f"@{self.abstract}" if self.abstract is not None else str(self.path)

    async def __aexit__(self, *exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers)
        if server is not None:
            await server.wait_closed()
        for _, fut in self._expected.values():
            fut.cancel()
        self._expected.clear()
        if self.abstract is None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def expect(self, app: str, token: str) -> asyncio.Future[Connection]:
        """Register a one-time token; the future resolves when the host presents it."""
        if self._server is None:
            raise TerminalError("app bridge is not running")
        fut: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._expected[token] = (app, fut)
        return fut

    def forget(self, token: str) -> None:
        entry = self._expected.pop(token, None)
        if entry is not None and not entry[1].done():
            entry[1].cancel()

    def statistics(self) -> dict[str, Any]:
        s = self.stats
        return {
            "connections": s.connections,
            "rejected": s.rejected,
            "protocol_errors": s.protocol_errors,
            "violations": dict(s.violations),
        }

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handshake(reader, writer)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.settings.hello_timeout_s):
                hello = await read_frame(reader)
        except (TimeoutError, WireError, ConnectionError) as err:
            self.stats.protocol_errors += 1
            log.warning("bridge: connection dropped before hello: %s", err or type(err).__name__)
            return
        token = hello.get("token") if hello is not None and hello.get("op") == "hello" else None
        entry = self._expected.pop(token, None) if isinstance(token, str) else None
        if entry is None or entry[1].done():
            self.stats.rejected += 1
            log.warning("bridge: refused a connection with an unknown token")
            with contextlib.suppress(ConnectionError):
                writer.write(_error_frame("unknown or used token"))
                await writer.drain()
            return
        app, fut = entry
        pid = hello.get("pid") if hello is not None else None
        conn = Connection(app, pid if isinstance(pid, int) else -1, reader, writer)
        self.stats.connections += 1
        fut.set_result(conn)
        await conn.done.wait()  # the session owns the connection now; it ends it

    def report_violation(self, app: str, kind: str, reason: str, op: str) -> None:
        self.stats.violations[app] = self.stats.violations.get(app, 0) + 1
        log.warning("app %s: refused %s: %s", app, op, reason)
        self.bus.publish(
            violation_topic(app),
            {
                "app": app,
                "kind": kind,
                "op": op,
                "reason": reason,
                "ts": self.clock.now(),
                "count": self.stats.violations[app],
            },
        )


def _error_frame(message: str) -> bytes:
    from runtime.container.isolation.wire import encode_frame

    return encode_frame({"op": "error", "message": message})


Op = Callable[["AppSession", dict[str, Any]], Awaitable[Any]]


class AppSession:
    """The runtime side of one connected app host; ``await run()`` until the host hangs up."""

    def __init__(
        self,
        bridge: Bridge,
        conn: Connection,
        ctx: LocalContext,
        config: Mapping[str, Any],
        *,
        nice: int,
    ) -> None:
        self.bridge = bridge
        self.conn = conn
        self.ctx = ctx
        self.app = ctx.name
        self._config = dict(config)
        self._nice = nice
        self.chan = Channel(conn.writer, clock=bridge.clock, name=self.app)
        self.ready = asyncio.Event()
        self.last_beat = bridge.clock.monotonic()
        self.outcome: dict[str, Any] | None = None  # the host's "done" or "crash" message
        self.limits: dict[str, Any] | None = None
        self.applog = logging.getLogger(f"ttu.app.{self.app}")
        self._subs: dict[int, Subscription] = {}
        self._services: dict[int, Any] = {}
        self._jobs: dict[int, Any] = {}
        self.event_streams: dict[int, asyncio.Task[Any]] = {}  # carrier event forwarders by sid
        self._hal_calls: dict[int, asyncio.Task[Any]] = {}  # by request id, for hal.cancel
        self._inflight = asyncio.Semaphore(bridge.settings.max_inflight)
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task of this session, cancelled when the host hangs up."""
        assert self._tg is not None
        task: asyncio.Task[Any] = self._tg.create_task(coro, name=f"bridge:{self.app}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self) -> None:
        settings = self.bridge.settings
        await self.chan.send(
            {
                "op": "welcome",
                "manifest": manifest_to_json(self.ctx.manifest),
                "config": payload_to_json(self._config),
                "terminal": terminal_to_json(self.bridge.terminal),
                "clock": {"now": self.bridge.clock.now(), "speed": self.bridge.clock.speed},
                "heartbeat_s": settings.heartbeat_s,
                "nice": self._nice,
                "cgroup": settings.use_cgroup,
                "debug": self.applog.isEnabledFor(logging.DEBUG),
                "hal": describe(self.ctx, self.bridge.terminal.rs485_ports, self.bridge.terminal.slots),
                "station": model_to_doc(self.ctx.station.model),
            }
        )
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.spawn(self._clock_steps(), "clock-steps")
                self.spawn(self._station_changes(), "station-changes")
                try:
                    await self._read()
                finally:
                    # The host is gone: nobody will answer, so nothing of it may keep running here.
                    self.chan.close()
                    for sub in self._subs.values():
                        sub.close()
                    for task in list(self._tasks):
                        task.cancel()
        finally:
            self._tg = None
            self.close()

    async def _clock_steps(self) -> None:
        """Forward every step of the runtime clock (time sync) to the host's clock."""
        clock = self.bridge.clock
        offset = clock.now() - clock.monotonic()  # changes by exactly the steps, whatever the speed
        while True:
            await clock.wait_step()
            now = clock.now()
            new = now - clock.monotonic()
            delta, offset = new - offset, new
            try:
                await self.chan.send({"op": "clock", "step": delta, "now": now})
            except BusError:
                return
            log.info("app %s: clock step of %+.3f s forwarded", self.app, delta)

    async def _station_changes(self) -> None:
        """Forward every new version of the station model (with the model) to the host's mirror."""
        async with self.ctx.station.watch() as changes:
            async for change in changes:
                if change.model is None:
                    continue
                frame = {"op": "station", "change": change.to_doc(), "model": model_to_doc(change.model)}
                try:
                    await self.chan.send(frame)
                except BusError:
                    return

    def close(self) -> None:
        self.chan.close()
        self.ctx.close()  # subscriptions, services, jobs go with the app, as in-process
        self.conn.done.set()

    async def stop(self) -> None:
        """Ask the app to return (``ctx.wait_stop()`` ends in the host)."""
        with contextlib.suppress(BusError):
            await self.chan.send({"op": "stop"})

    async def _read(self) -> None:
        while True:
            try:
                frame = await read_frame(self.conn.reader)
            except (WireError, ConnectionError) as err:
                self.bridge.stats.protocol_errors += 1
                log.error("app %s: bridge protocol error, dropping its connection: %s", self.app, err)
                return
            if frame is None:
                return
            op = frame["op"]
            if op == "hb":
                self.last_beat = self.bridge.clock.monotonic()
            elif op == "reply":
                self.chan.resolve(frame)
            elif op == "ready":
                self.ready.set()
            elif op == "log":
                self._log(frame)
            elif op == "limits":
                self.limits = {k: v for k, v in frame.items() if k != "op"}
                log.info("app %s limits: %s", self.app, self.limits.get("detail"))
            elif op in ("done", "crash"):
                self.outcome = frame
            elif op == "hal.cancel":
                call = self._hal_calls.get(frame.get("rid", -1))
                if call is not None:
                    call.cancel()  # the app stopped waiting: leave the port's queue too
            elif op in _OPS and "id" in frame:
                await self._inflight.acquire()  # backpressure: stop reading a flooding app
                task = self.spawn(self._serve(frame), op)
                rid = frame["id"]
                if op.startswith("hal.") and isinstance(rid, int):
                    self._track_hal_call(rid, task)
            else:
                self.bridge.stats.protocol_errors += 1
                log.warning("app %s: unknown bridge op %.60r", self.app, op)
                if "id" in frame:
                    await self.chan.reply(frame["id"], error=BusError(f"unknown op {op!r}"), req=str(op))

    def _track_hal_call(self, rid: int, task: asyncio.Task[Any]) -> None:
        self._hal_calls[rid] = task

        def forget(_: asyncio.Task[Any]) -> None:
            self._hal_calls.pop(rid, None)

        task.add_done_callback(forget)

    def _log(self, frame: dict[str, Any]) -> None:
        level = frame.get("level")
        level = level if isinstance(level, int) and 0 <= level <= 50 else logging.INFO
        self.applog.log(level, "%s", str(frame.get("msg"))[:4000])

    async def _serve(self, frame: dict[str, Any]) -> None:
        op = frame["op"]
        try:
            before = self.ctx.violations.count
            try:
                result = await _OPS[op](self, frame)
            except CapabilityError as err:
                if self.ctx.violations.count > before:  # a refusal by the scoping, not "no store here"
                    kind = op.split(".", 1)[1] if op.startswith("bus.") else op.split(".", 1)[0]
                    self.bridge.report_violation(self.app, kind, err.reason, op)
                raise
            if not frame.get("nowait"):
                await self.chan.reply(frame["id"], result)
        except (HalError, ProtocolError) as err:  # the hal's answer (timeout, abnormal reply, no such port)
            await self.chan.reply(frame["id"], error=err, req=op)
        except (TerminalError, KeyError, TypeError, ValueError) as err:
            if not isinstance(err, TerminalError):
                err = BusError(f"bad {op} request: {type(err).__name__}: {err}")
            await self.chan.reply(frame["id"], error=err, req=op)
        except Exception as err:  # a failure of the runtime's side must not end the runtime
            log.exception("app %s: %s failed", self.app, op)
            await self.chan.reply(
                frame["id"], error=BusError(f"{op} failed: {type(err).__name__}: {err}"), req=op
            )
        finally:
            self._inflight.release()

    async def call(self, kind: str, body: Mapping[str, Any], *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Ask the host to run a callback (bus responder, uplink command, scheduler job)."""
        return await self.chan.request("call", {**body, "kind": kind}, timeout=timeout)

    # -- ops ------------------------------------------------------------------------------

    async def _forward(self, sid: int, sub: Subscription) -> None:
        async for msg in sub:
            try:
                payload = payload_to_json(msg.payload)
            except BusError as err:
                log.warning("app %s: message on %s not forwarded: %s", self.app, msg.topic, err)
                continue
            frame = {
                "op": "msg",
                "sid": sid,
                "topic": msg.topic,
                "payload": payload,
                "ts": msg.ts,
                "retained": msg.retained,
            }
            try:
                await self.chan.send(frame)  # waits on the socket: the bus queue takes the overflow
            except BusError:
                return


async def _publish(s: AppSession, f: dict[str, Any]) -> None:
    s.ctx.bus.publish(str(f["topic"]), f.get("payload"), retain=bool(f.get("retain", False)))


async def _subscribe(s: AppSession, f: dict[str, Any]) -> None:
    sid = int(f["sid"])
    sub = s.ctx.bus.subscribe(
        str(f["pattern"]),
        maxsize=max(1, min(int(f.get("maxsize", 1000)), 100_000)),
        overflow=Overflow(f.get("overflow", Overflow.DROP_OLDEST.value)),
    )
    old = s._subs.pop(sid, None)
    if old is not None:
        old.close()
    s._subs[sid] = sub
    s.spawn(s._forward(sid, sub), f"forward:{sid}")


async def _unsubscribe(s: AppSession, f: dict[str, Any]) -> None:
    sub = s._subs.pop(int(f["sid"]), None)
    if sub is not None:
        sub.close()


async def _request(s: AppSession, f: dict[str, Any]) -> Any:
    timeout = float(f.get("timeout", 5.0))
    return payload_to_json(await s.ctx.bus.request(str(f["topic"]), f.get("payload"), timeout=timeout))


async def _serve_pattern(s: AppSession, f: dict[str, Any]) -> None:
    sid = int(f["sid"])

    async def handler(payload: Any) -> Any:
        return await s.call("serve", {"sid": sid, "payload": payload_to_json(payload)})

    s._services[sid] = s.ctx.bus.serve(str(f["pattern"]), handler)


async def _unserve(s: AppSession, f: dict[str, Any]) -> None:
    service = s._services.pop(int(f["sid"]), None)
    if service is not None:
        service.close()


async def _store_get(s: AppSession, f: dict[str, Any]) -> Any:
    return payload_to_json(await s.ctx.store.get(str(f["key"]), f.get("default")))


async def _store_set(s: AppSession, f: dict[str, Any]) -> None:
    await s.ctx.store.set(str(f["key"]), f.get("value"))


async def _store_delete(s: AppSession, f: dict[str, Any]) -> bool:
    return await s.ctx.store.delete(str(f["key"]))


async def _write_readings(s: AppSession, f: dict[str, Any]) -> int:
    return await s.ctx.store.write_readings([Reading.from_json(r) for r in f["readings"]])


async def _write_event(s: AppSession, f: dict[str, Any]) -> int:
    return await s.ctx.store.write_event(Event.from_json(f["event"]))


async def _query(s: AppSession, f: dict[str, Any]) -> list[dict[str, Any]]:
    limit = f.get("limit")
    rows = await s.ctx.store.query_readings(
        device=f.get("device"),
        quantity=f.get("quantity"),
        since=f.get("since"),
        until=f.get("until"),
        limit=None if limit is None else int(limit),
    )
    return [r.to_json() for r in rows]


async def _uplink_send(s: AppSession, f: dict[str, Any]) -> str:
    body = f.get("body")
    if not isinstance(body, dict):
        raise BusError("uplink.send: body must be an object")
    return await s.ctx.uplink.send(str(f["stream"]), body)


async def _uplink_send_many(s: AppSession, f: dict[str, Any]) -> list[str]:
    bodies = f.get("bodies")
    if not isinstance(bodies, list) or not all(isinstance(b, dict) for b in bodies):
        raise BusError("uplink.send_many: bodies must be a list of objects")
    return await s.ctx.uplink.send_many(str(f["stream"]), bodies)


async def _uplink_register(s: AppSession, f: dict[str, Any]) -> None:
    name = str(f["name"])

    async def handler(args: dict[str, Any]) -> dict[str, Any]:
        result = await s.call("command", {"name": name, "args": args})
        return result if isinstance(result, dict) else {"result": result}

    s.ctx.uplink.register_command(name, handler)


async def _uplink_unregister(s: AppSession, f: dict[str, Any]) -> None:
    s.ctx.uplink.unregister_command(str(f["name"]))


async def _scheduler_add(s: AppSession, f: dict[str, Any]) -> None:
    jid = int(f["jid"])

    async def run_job(slot: Slot) -> None:
        # Awaited: the scheduler's "never twice at once" and overrun counting hold across processes.
        await s.call("job", {"jid": jid, "slot": {"job": slot.job, "epoch": slot.epoch, "late": slot.late}})

    s._jobs[jid] = s.ctx.scheduler.add(
        str(f["name"]), schedule_from_json(f["schedule"]), run_job, catch_up=catch_up_from_json(f["catch_up"])
    )


async def _scheduler_cancel(s: AppSession, f: dict[str, Any]) -> None:
    job = s._jobs.pop(int(f["jid"]), None)
    if job is not None:
        job.cancel()


async def _station_propose(s: AppSession, f: dict[str, Any]) -> dict[str, Any]:
    raw = f.get("corrections")
    if not isinstance(raw, list):
        raise BusError("station.propose: corrections must be a list")
    try:
        corrections = [Correction.from_doc(c, f"corrections[{i}]") for i, c in enumerate(raw)]
        result = await s.ctx.station.propose(corrections)
    except StationError as err:
        raise BusError(f"station.propose: {err.reason}") from err
    return result.to_doc()


_OPS: dict[str, Op] = {
    "bus.publish": _publish,
    "bus.subscribe": _subscribe,
    "bus.unsubscribe": _unsubscribe,
    "bus.request": _request,
    "bus.serve": _serve_pattern,
    "bus.unserve": _unserve,
    "store.get": _store_get,
    "store.set": _store_set,
    "store.delete": _store_delete,
    "store.write_readings": _write_readings,
    "store.write_event": _write_event,
    "store.query_readings": _query,
    "uplink.send": _uplink_send,
    "uplink.send_many": _uplink_send_many,
    "uplink.register": _uplink_register,
    "uplink.unregister": _uplink_unregister,
    "scheduler.add": _scheduler_add,
    "scheduler.cancel": _scheduler_cancel,
    "station.propose": _station_propose,
    **HAL_OPS,
}


__all__ = ["SOCKET_NAME", "AppSession", "Bridge", "Connection", "IsolationSettings", "violation_topic"]
