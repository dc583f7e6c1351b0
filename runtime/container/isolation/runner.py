"""One start of an isolated app: the host process, its bridge session, hang detection, stopping.

Layer: runtime, called by the supervisor for apps marked isolated; the
supervisor keeps the lifecycle (states, backoff, quarantine), this module only
runs the process once and says how it ended. It starts
``python -m runtime.container.isolation.host`` with a one-time bridge token, pipes its
stdout/stderr into the app's log, reports READY when the host does, and turns
the end into an error: the app's own exception text, the memory limit (exit
``EXIT_MEMORY`` or a cgroup OOM kill), a missed heartbeat (killed as hung), or
an unexpected exit status / signal. Stopping: a stop message, SIGTERM after half
of ``stop_timeout_s``, SIGKILL at ``stop_timeout_s``. A child is never left
behind: every path out waits for the process to be reaped.

It must not change app states itself nor import app code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import runtime
from hal.clock import Clock, wall_timeout
from runtime.container.context import ContextFactory
from runtime.container.isolation.bridge import AppSession, Bridge, Connection
from runtime.container.isolation.wire import ENV_SOCKET, ENV_TOKEN, EXIT_MEMORY, EXIT_REASONS
from runtime.container.manifest import Manifest
from runtime.errors import AppError, AppNotReady

log = logging.getLogger("ttu.supervisor")
_RUNTIME_ROOT = str(Path(runtime.__file__).resolve().parent.parent)


class IsolatedAppError(AppError):
    """How an isolated app ended; ``reason`` reads like the in-process error (``RuntimeError: boom``)."""


class IsolatedRunner:
    """Runs isolated apps through ``bridge``; one instance per supervisor."""

    def __init__(self, *, bridge: Bridge, clock: Clock, context_factory: ContextFactory) -> None:
        self.bridge = bridge
        self._clock = clock
        self._factory = context_factory
        self.pids: dict[str, int] = {}

    async def run_once(
        self,
        manifest: Manifest,
        config: Mapping[str, Any],
        *,
        nice: int | None,
        on_ready: Callable[[], None],
        on_stopping: Callable[[], None],
    ) -> BaseException | None:
        name = manifest.name
        settings = self.bridge.settings
        token = secrets.token_urlsafe(24)
        pending = self.bridge.expect(name, token)
        env = dict(os.environ)
        env[ENV_SOCKET] = self.bridge.address
        env[ENV_TOKEN] = token
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_RUNTIME_ROOT, env.get("PYTHONPATH")) if p)
        try:
            proc = await asyncio.create_subprocess_exec(
                settings.python,
                "-m",
                "runtime.container.isolation.host",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C to the terminal does not hit apps before an orderly stop
            )
        except OSError as err:
            self.bridge.forget(token)
            return IsolatedAppError(name, f"cannot start the app host: {err}")
        self.pids[name] = proc.pid
        log.info("app %s: host process %d started", name, proc.pid)
        run = _Run(self, manifest, config, proc, pending, nice if nice is not None else settings.nice)
        try:
            return await run.go(on_ready, on_stopping)
        finally:
            self.bridge.forget(token)
            self.pids.pop(name, None)
            await run.reap()


class _Run:
    def __init__(
        self,
        runner: IsolatedRunner,
        manifest: Manifest,
        config: Mapping[str, Any],
        proc: asyncio.subprocess.Process,
        pending: asyncio.Future[Connection],
        nice: int,
    ) -> None:
        self.r = runner
        self.m = manifest
        self.name = manifest.name
        self.config = config
        self.proc = proc
        self.pending = pending
        self.nice = nice
        self.clock = runner._clock
        self.session: AppSession | None = None
        self.hung = False

    async def go(self, on_ready: Callable[[], None], on_stopping: Callable[[], None]) -> BaseException | None:
        async with asyncio.TaskGroup() as tg:
            assert self.proc.stdout is not None
            pump = tg.create_task(self._pump(self.proc.stdout), name=f"host-log:{self.name}")
            exited = tg.create_task(self.proc.wait(), name=f"host-wait:{self.name}")
            try:
                error = await self._supervise(tg, exited, on_ready)
            except asyncio.CancelledError:
                on_stopping()
                await self._stop(exited)
                raise
            finally:
                if not exited.done():
                    self._signal(signal.SIGKILL)
                    await asyncio.wait({exited})
                await asyncio.wait({pump})  # EOF once the process is gone
        return error

    async def _supervise(
        self, tg: asyncio.TaskGroup, exited: asyncio.Task[int], on_ready: Callable[[], None]
    ) -> BaseException | None:
        timeout = self.m.limits.ready_timeout_s
        try:
            async with wall_timeout(timeout):  # a start-up deadline: real seconds
                waiting: set[asyncio.Future[Any]] = {self.pending, exited}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if self.pending.done():
                    session = AppSession(
                        self.r.bridge,
                        self.pending.result(),
                        self.r._factory(self.m),
                        self.config,
                        nice=self.nice,
                    )
                    self.session = session
                    tg.create_task(session.run(), name=f"bridge:{self.name}")
                    ready = tg.create_task(session.ready.wait(), name=f"host-ready:{self.name}")
                    try:
                        await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        ready.cancel()
        except TimeoutError:
            self._signal(signal.SIGKILL)
            return AppNotReady(self.name, f"not ready within {timeout:g} s")
        if self.session is not None and self.session.ready.is_set() and not exited.done():
            on_ready()
            watch = tg.create_task(self._watch(self.session), name=f"host-heartbeat:{self.name}")
            try:
                await asyncio.wait({exited})
            finally:
                watch.cancel()
        else:
            await asyncio.wait({exited})
        return self._outcome(exited.result())

    async def _watch(self, session: AppSession) -> None:
        settings = self.r.bridge.settings
        while True:
            await self.clock.sleep(settings.heartbeat_s)
            silent = self.clock.monotonic() - session.last_beat
            if silent > settings.heartbeat_timeout_s:
                self.hung = True
                log.error(
                    "app %s: no heartbeat for %.1f s: killing host %d", self.name, silent, self.proc.pid
                )
                self._signal(signal.SIGKILL)
                return

    def _outcome(self, rc: int) -> BaseException | None:
        session = self.session
        outcome = session.outcome if session is not None else None
        limits = (session.limits if session is not None else None) or {}
        if self.hung:
            timeout = self.r.bridge.settings.heartbeat_timeout_s
            return IsolatedAppError(self.name, f"hung: no heartbeat within {timeout:g} s, host killed")
        if rc == 0 and outcome is not None and outcome.get("op") == "done":
            return None
        if rc == EXIT_MEMORY or (outcome is not None and outcome.get("memory")) or self._oom_killed(limits):
            how = limits.get("memory", "?")
            return IsolatedAppError(
                self.name, f"MemoryError: memory limit {self.m.limits.memory_mb} MB reached ({how})"
            )
        if outcome is not None and outcome.get("op") == "crash":
            return IsolatedAppError(self.name, str(outcome.get("error")))
        if rc < 0:
            return IsolatedAppError(self.name, f"host killed by {signal.Signals(-rc).name}")
        return IsolatedAppError(
            self.name, f"host exited with status {rc} ({EXIT_REASONS.get(rc, 'unexpected')})"
        )

    def _oom_killed(self, limits: Mapping[str, Any]) -> bool:
        cgroup = limits.get("cgroup")
        if not cgroup:
            return False
        try:
            events = Path(cgroup, "memory.events").read_text()
        except OSError:
            return False
        return any(
            line.split()[:1] == ["oom_kill"] and line.split()[1] != "0" for line in events.splitlines()
        )

    async def _stop(self, exited: asyncio.Task[int]) -> None:
        """Stop message, SIGTERM at half of stop_timeout_s, SIGKILL at stop_timeout_s."""
        half = self.m.limits.stop_timeout_s / 2
        if self.session is not None:
            await self.session.stop()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(TimeoutError):
                async with wall_timeout(half):
                    await asyncio.wait({exited})
            if exited.done():
                return
            log.warning("app %s: host %d still running: %s", self.name, self.proc.pid, sig.name)
            self._signal(sig)
        await asyncio.wait({exited})

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        out = logging.getLogger(f"ttu.app.{self.name}")
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line beyond the reader's limit: take what is there
                line = await stream.read(65536)
            if not line:
                return
            out.info("[host %d] %s", self.proc.pid, line.decode("utf-8", "replace").rstrip())

    async def reap(self) -> None:
        if self.proc.returncode is None:
            self._signal(signal.SIGKILL)
            await self.proc.wait()
        limits = (self.session.limits if self.session is not None else None) or {}
        if limits.get("cgroup"):
            with contextlib.suppress(OSError):
                os.rmdir(limits["cgroup"])


__all__ = ["IsolatedAppError", "IsolatedRunner"]
