"""The supervisor: starts apps, checks they become ready, restarts crashes, quarantines.

Layer: runtime. Owns one TaskGroup; every app runs in its own named task
(``app:<name>``) next to its supervising task (``supervise:<name>``). An app's
exception never reaches the TaskGroup (it is caught, logged, counted), so one app
crashing, hanging on start or raising never takes the others down.

Lifecycle::

    LOADED -> STARTING -> READY -> RUNNING -> STOPPING -> STOPPED
                 |          (ready reported)     (returned / stopped)
                 +-> CRASHED (raised, or no ready within ready_timeout_s: AppNotReady)
                        -> BACKOFF (initial * 2^(n-1), capped) -> STARTING ...
                        -> QUARANTINED (max_crashes within window_s; stays down)

``ready_timeout_s`` and ``stop_timeout_s`` are real seconds (``wall_timeout``): they bound the
machine's work, so a simulation at x600 gives an app the same time to start as the field does;
restart backoff and the crash window stay on the clock. When a run of an app ends (returned,
crashed, stopped), its context releases what it registered and the tasks it started and left
running (timers, background loops: ``runtime.container.tasks``) are cancelled, so a restarted
instance starts clean. An app that returns normally is STOPPED and not restarted. An app added with
``isolated=True`` (board.toml ``[apps.<name>] isolated``, or installed from a
package) runs the same lifecycle in its own host process through the bridge
(``runtime.container.isolation.runner``); CRASHED then also covers a host
killed by its memory limit or for a missed heartbeat. Every change is
published retained on ``runtime/apps/<name>/state`` and written atomically
(temp file + rename) to ``<state_dir>/apps.json``. It must not import app code
except through the manifest's entry point.
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import inspect
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hal.clock import Clock, wall_timeout
from runtime.api import EntryPoint
from runtime.bus import Bus
from runtime.container.context import ContextFactory, LocalContext
from runtime.container.isolation.bridge import Bridge
from runtime.container.isolation.runner import IsolatedAppError, IsolatedRunner
from runtime.container.manifest import Manifest, load_manifest, resolve_config
from runtime.container.tasks import TaskOwner
from runtime.errors import AppError, AppNotReady, ConfigError, ConfigErrors, TerminalError

log = logging.getLogger("ttu.supervisor")

STATUS_FILE = "apps.json"


class AppState(enum.StrEnum):
    LOADED = "loaded"
    STARTING = "starting"
    READY = "ready"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"
    BACKOFF = "backoff"
    QUARANTINED = "quarantined"


@dataclass(slots=True)
class AppRecord:
    """What the supervisor knows of one app."""

    manifest: Manifest
    config: dict[str, Any]
    isolated: bool = False
    nice: int | None = None  # niceness of an isolated app's host (None: the bridge's default)
    state: AppState = AppState.LOADED
    since: float = 0.0
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)  # monotonic times within the window
    last_error: str | None = None
    leftover_tasks: int = 0  # tasks an ended run of the app left running, cancelled by us
    context: LocalContext | None = None
    task: asyncio.Task[BaseException | None] | None = None
    supervisor_task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.manifest.name,
            "version": self.manifest.version,
            "state": self.state.value,
            "since": self.since,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "isolated": self.isolated,
        }


class Supervisor:
    """Runs apps. ``add``/``load`` before or during ``run()``; ``stop()`` ends ``run()``."""

    def __init__(
        self,
        *,
        clock: Clock,
        bus: Bus,
        context_factory: ContextFactory,
        state_dir: str | Path | None = None,
        bridge: Bridge | None = None,
    ) -> None:
        self._clock = clock
        self._runner = (
            IsolatedRunner(bridge=bridge, clock=clock, context_factory=context_factory)
            if bridge is not None
            else None
        )
        self._bus = bus
        self._factory = context_factory
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._apps: dict[str, AppRecord] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()

    # -- registry ---------------------------------------------------------------

    def add(
        self,
        manifest: Manifest,
        config: Mapping[str, Any] | None = None,
        *,
        isolated: bool = False,
        nice: int | None = None,
    ) -> AppRecord:
        """Register an app with its raw config (validated against the manifest: ``ConfigErrors``).

        ``isolated`` runs it in its own host process (needs the supervisor's ``bridge``).
        """
        if manifest.name in self._apps:
            raise AppError(manifest.name, "already loaded")
        if isolated and self._runner is None:
            raise AppError(manifest.name, "marked isolated, but this supervisor has no app bridge")
        resolved = resolve_config(manifest, config or {})
        rec = AppRecord(manifest, resolved, isolated=isolated, nice=nice, since=self._clock.now())
        self._apps[manifest.name] = rec
        self._set_state(rec, AppState.LOADED)
        if self._tg is not None:
            self._launch(rec)
        return rec

    def load(
        self,
        apps_dir: str | Path,
        *,
        configs: Mapping[str, Mapping[str, Any]] | None = None,
        enabled: Iterable[str] | None = None,
        isolated: Iterable[str] = (),
        nice: Mapping[str, int | None] | None = None,
    ) -> list[Manifest]:
        """Load ``<apps_dir>/<name>/app.toml`` for each enabled app (all if ``enabled`` is None);
        the apps named in ``isolated`` run in their own processes."""
        apps_dir = Path(apps_dir)
        names = (
            sorted(p.parent.name for p in apps_dir.glob("*/app.toml")) if enabled is None else list(enabled)
        )
        configs = configs or {}
        isolated = set(isolated)
        nice = nice or {}
        errors: list[ConfigError] = []
        loaded: list[Manifest] = []
        for name in names:
            try:
                manifest = load_manifest(apps_dir / name / "app.toml")
                self.add(manifest, configs.get(name, {}), isolated=name in isolated, nice=nice.get(name))
            except ConfigErrors as err:
                errors.extend(err.errors)
                continue
            loaded.append(manifest)
        if errors:
            raise ConfigErrors(errors)
        return loaded

    def state(self, name: str) -> AppState:
        return self._record(name).state

    def record(self, name: str) -> AppRecord:
        return self._record(name)

    def status(self) -> list[dict[str, Any]]:
        return [rec.status() for rec in self._apps.values()]

    def app_dirs(self) -> dict[str, str]:
        """App folder -> app name, for the loop watchdog."""
        return {str(rec.manifest.folder.resolve()): name for name, rec in self._apps.items()}

    def _record(self, name: str) -> AppRecord:
        try:
            return self._apps[name]
        except KeyError:
            raise AppError(name, "not loaded") from None

    async def wait_state(self, name: str, *states: AppState) -> AppState:
        """Wait until app ``name`` is in one of ``states`` (bound it with a clock timeout)."""
        rec = self._record(name)
        while rec.state not in states:
            rec.changed.clear()
            await rec.changed.wait()
        return rec.state

    # -- lifecycle --------------------------------------------------------------

    async def run(self) -> None:
        """Start every app and supervise them until ``stop()`` (or cancellation)."""
        if self._tg is not None:
            raise TerminalError("supervisor is already running")
        self._stop.clear()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for rec in self._apps.values():
                    self._launch(rec)
                try:
                    await self._stop.wait()
                finally:
                    await self._stop_all()
        finally:
            self._tg = None
            self._write_status(running=False)

    async def stop(self) -> None:
        """Stop every app (each within its stop_timeout_s, then cancelled) and end ``run()``."""
        self._stop.set()

    async def stop_app(self, name: str) -> None:
        """Stop one app; it stays STOPPED until ``start_app``."""
        rec = self._record(name)
        task = rec.supervisor_task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task})

    def start_app(self, name: str) -> None:
        """(Re)start an app that is STOPPED, QUARANTINED or LOADED; clears its crash history."""
        rec = self._record(name)
        if rec.supervisor_task is not None and not rec.supervisor_task.done():
            raise AppError(name, f"is {rec.state.value}, not stopped")
        rec.crashes.clear()
        if self._tg is not None:
            self._launch(rec)

    async def remove(self, name: str) -> None:
        """Stop and forget an app (e.g. before installing another version)."""
        await self.stop_app(name)
        del self._apps[name]
        self._bus.publish(f"runtime/apps/{name}/state", None, retain=True)
        self._write_status(running=self._tg is not None)

    async def _stop_all(self) -> None:
        tasks = [r.supervisor_task for r in self._apps.values() if r.supervisor_task is not None]
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _launch(self, rec: AppRecord) -> None:
        assert self._tg is not None
        rec.supervisor_task = self._tg.create_task(
            self._supervise(rec), name=f"supervise:{rec.manifest.name}"
        )

    def _set_state(self, rec: AppRecord, state: AppState, error: str | None = None) -> None:
        rec.state = state
        rec.since = self._clock.now()
        if error is not None:
            rec.last_error = error
        rec.changed.set()
        log.info("app %s: %s%s", rec.manifest.name, state.value, f" ({error})" if error else "")
        self._bus.publish(f"runtime/apps/{rec.manifest.name}/state", rec.status(), retain=True)
        self._write_status(running=True)

    def _write_status(self, *, running: bool) -> None:
        if self._state_dir is None:
            return
        doc = {"pid": os.getpid(), "running": running, "updated": self._clock.now(), "apps": self.status()}
        path = self._state_dir / STATUS_FILE
        tmp = path.with_name(f".{STATUS_FILE}.tmp")
        try:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            # Tiny file, written whole and renamed: readers never see half of it.
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as err:
            log.error("cannot write app status %s: %s", path, err)

    def _entry(self, manifest: Manifest) -> EntryPoint:
        module_name, func_name = manifest.entry_module, manifest.entry_function
        try:
            module = importlib.import_module(module_name)
        except Exception as err:
            raise AppError(
                manifest.name, f"cannot import {module_name}: {type(err).__name__}: {err}"
            ) from err
        func = getattr(module, func_name, None)
        if func is None or not inspect.iscoroutinefunction(func):
            raise AppError(manifest.name, f"{manifest.entry} is not an async function")
        entry: EntryPoint = func
        return entry

    async def _guarded(
        self, rec: AppRecord, entry: EntryPoint, ctx: LocalContext, owner: TaskOwner
    ) -> BaseException | None:
        """The app's own task: returns its exception instead of raising it into the TaskGroup."""
        try:
            with owner.running():  # the tasks the app starts are its own (cancelled when it ends)
                await entry(ctx, dict(rec.config))
        except (Exception, SystemExit) as err:  # CancelledError / KeyboardInterrupt propagate
            return err
        return None

    async def _supervise(self, rec: AppRecord) -> None:
        name = rec.manifest.name
        limits = rec.manifest.limits
        policy = limits.restart
        try:
            while True:
                self._set_state(rec, AppState.STARTING)
                error = await self._run_once(rec)
                if error is None:
                    self._set_state(rec, AppState.STOPPED)
                    return
                now = self._clock.monotonic()
                rec.crashes = [t for t in rec.crashes if now - t < policy.window_s] + [now]
                if isinstance(error, IsolatedAppError):  # already "Type: message", from the host
                    reason = error.reason
                    log.error("app %s crashed: %s", name, reason)
                else:
                    reason = f"{type(error).__name__}: {error}"
                    log.error("app %s crashed: %s", name, reason, exc_info=error)
                self._set_state(rec, AppState.CRASHED, reason)
                if len(rec.crashes) >= policy.max_crashes:
                    log.error(
                        "app %s quarantined: %d crashes within %g s", name, len(rec.crashes), policy.window_s
                    )
                    self._set_state(rec, AppState.QUARANTINED)
                    return
                self._set_state(rec, AppState.BACKOFF)
                await self._clock.sleep(policy.backoff(len(rec.crashes)))
                rec.restarts += 1
        except asyncio.CancelledError:
            if rec.state not in (AppState.QUARANTINED, AppState.STOPPED):
                self._set_state(rec, AppState.STOPPED)
            raise

    async def _run_once(self, rec: AppRecord) -> BaseException | None:
        """Start the app, wait for ready, wait for its end; return its error (None: returned)."""
        if rec.isolated:
            return await self._run_isolated(rec)
        manifest = rec.manifest
        try:
            entry = self._entry(manifest)
        except AppError as err:
            return err
        assert self._tg is not None
        ctx = self._factory(manifest)
        ctx.use_config(rec.config)
        rec.context = ctx
        ready = ctx.ready_future()
        owner = TaskOwner(manifest.name, _code_root(entry))
        task = self._tg.create_task(self._guarded(rec, entry, ctx, owner), name=f"app:{manifest.name}")
        rec.task = task
        waiting: list[asyncio.Future[Any]] = [task, ready]
        try:
            try:
                # a start-up deadline: real seconds, however fast the simulated clock runs
                async with wall_timeout(manifest.limits.ready_timeout_s):
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                await self._cancel(task)
                return AppNotReady(manifest.name, f"not ready within {manifest.limits.ready_timeout_s:g} s")
            if ready.done():
                self._set_state(rec, AppState.READY)
                self._set_state(rec, AppState.RUNNING)
            return await task
        except asyncio.CancelledError:
            await self._stop_app_task(rec, task, ctx)
            raise
        finally:
            ctx.close()
            rec.context = None
            rec.task = None
            await self._cancel_leftovers(rec, owner)

    async def _cancel_leftovers(self, rec: AppRecord, owner: TaskOwner) -> None:
        """Cancel the tasks (timers, background loops) an ended run of the app left running."""
        if not owner.live():
            return
        left = await owner.cancel_leftovers(timeout=rec.manifest.limits.stop_timeout_s)
        rec.leftover_tasks += left
        log.warning("app %s left %d task(s) running when it ended: cancelled", rec.manifest.name, left)

    async def _run_isolated(self, rec: AppRecord) -> BaseException | None:
        assert self._runner is not None

        def ready() -> None:
            self._set_state(rec, AppState.READY)
            self._set_state(rec, AppState.RUNNING)

        return await self._runner.run_once(
            rec.manifest,
            rec.config,
            nice=rec.nice,
            on_ready=ready,
            on_stopping=lambda: self._set_state(rec, AppState.STOPPING),
        )

    def pid(self, name: str) -> int | None:
        """The host process id of a running isolated app (None in-process or not running)."""
        self._record(name)
        return self._runner.pids.get(name) if self._runner is not None else None

    async def _stop_app_task(self, rec: AppRecord, task: asyncio.Task[Any], ctx: LocalContext) -> None:
        """Ask the app to stop, give it stop_timeout_s, then cancel it."""
        if task.done():
            return
        self._set_state(rec, AppState.STOPPING)
        ctx.request_stop()
        try:
            async with wall_timeout(rec.manifest.limits.stop_timeout_s):
                await asyncio.wait({task})
        except TimeoutError:
            log.warning(
                "app %s did not stop within %g s: cancelling",
                rec.manifest.name,
                rec.manifest.limits.stop_timeout_s,
            )
        await self._cancel(task)

    async def _cancel(self, task: asyncio.Task[Any]) -> None:
        if task.done():
            return
        task.cancel()
        await asyncio.wait({task})


def _code_root(entry: EntryPoint) -> Path | None:
    """The directory of the app's package: a task running code from there is the app's."""
    try:
        return Path(inspect.getfile(entry)).parent
    except TypeError:  # not defined in a file
        return None


__all__ = ["STATUS_FILE", "AppRecord", "AppState", "EntryPoint", "Supervisor"]
