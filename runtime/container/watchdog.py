"""Loop-lag watchdog: notices when the event loop is blocked and names the app doing it.

Layer: runtime. A daemon thread (real time is its job: it must run while the loop
cannot) asks the loop for a heartbeat every quarter threshold of *wall* time
(``call_soon_threadsafe``: no timer in the loop, so a loop whose clock is not the
wall's -- ``ttu sim --speed max`` -- is not woken four times per simulated second),
sees the heartbeat go stale beyond ``threshold_s``, looks at the loop thread's current stack
(``sys._current_frames()``) and finds the app by its folder in the frame
filenames, or by the current task's name (``app:<name>``). Once per stall it logs
``loop blocked 1.8 s by app 'x' at file:line``, counts it per app and publishes
``runtime/watchdog/stall`` on the bus (delivered once the loop runs again). A loop that
runs executor jobs in place (``ttu sim --speed max``'s virtual loop: a job that runs
on a worker thread on a real terminal runs on the loop's own thread there, for order) is
not blocked by them on a real box: such a hold is logged at INFO as an in-place job
and counted apart (``in_place_jobs``), not as a stall. The
watchdog's task kicks the hardware watchdog, if one is given, every quarter of its
timeout, so a loop that stays blocked lets the board reset. It must not touch app state or stop apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from hal.clock import Clock
from hal.interfaces import Watchdog
from runtime.bus import Bus

log = logging.getLogger("ttu.watchdog")

STALL_TOPIC = "runtime/watchdog/stall"
_APP_PATH = re.compile(r"(?:^|[/\\])apps[/\\]([a-z][a-z0-9_]*)[/\\]")


@dataclass(frozen=True, slots=True)
class Stall:
    """One detected stall: how long the loop had been blocked when noticed, by whom, where."""

    app: str | None
    blocked_s: float
    where: str | None
    task: str | None
    in_executor_job: bool = False  # the loop was running an executor job in place (not a real stall)

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "blocked_s": round(self.blocked_s, 3),
            "where": self.where,
            "task": self.task,
            "in_executor_job": self.in_executor_job,
        }


class LoopWatchdog:
    """``await watchdog.run()`` inside the terminal's TaskGroup; cancel it to stop (joins the thread)."""

    def __init__(
        self,
        *,
        clock: Clock,
        bus: Bus | None = None,
        threshold_s: float = 1.0,
        app_dirs: Callable[[], Mapping[str, str]] | None = None,
        hal_watchdog: Watchdog | None = None,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> None:
        if threshold_s <= 0:
            raise ValueError(f"threshold_s must be positive, not {threshold_s}")
        self._clock = clock
        self._bus = bus
        self._threshold = threshold_s
        self._app_dirs = app_dirs
        self._hal = hal_watchdog
        self._on_stall = on_stall
        self._beat = time.monotonic()  # wall time the loop last answered the thread
        self._asked = False  # a heartbeat is queued on the loop and has not run yet
        self._lock = threading.Lock()
        self._stalls: dict[str, int] = {}
        self._in_place: dict[str, int] = {}
        self._kick_errors = 0
        self.last_stall: Stall | None = None

    def statistics(self) -> dict[str, Any]:
        with self._lock:
            return {
                "stalls": dict(self._stalls),
                "in_place_jobs": dict(self._in_place),
                "kick_errors": self._kick_errors,
            }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        stop = threading.Event()
        self._beat = time.monotonic()
        self._asked = False
        thread = threading.Thread(
            target=self._watch, args=(loop, loop_thread, stop), name="ttu-loop-watchdog", daemon=True
        )
        thread.start()
        try:
            if self._hal is None:
                await loop.create_future()  # the thread asks for the heartbeats: wait to be cancelled
                return
            period = self._hal.timeout / 4
            while True:
                await self._kick()
                await self._clock.sleep(period * self._clock.speed)  # loop seconds, not clock seconds
        finally:
            stop.set()
            thread.join()

    def _heartbeat(self) -> None:
        """Run by the loop when it gets to the thread's request: the loop is alive now."""
        self._beat = time.monotonic()
        self._asked = False

    async def _kick(self) -> None:
        assert self._hal is not None
        try:
            await self._hal.kick()
        except Exception as err:  # a failing kick is logged and counted; the board may reset
            with self._lock:
                self._kick_errors += 1
            log.error("hardware watchdog kick failed: %s: %s", type(err).__name__, err)

    def _watch(self, loop: asyncio.AbstractEventLoop, loop_thread: int, stop: threading.Event) -> None:
        interval = self._threshold / 4
        stalled_since: float | None = None  # the last beat before the current stall
        while not stop.wait(interval):
            if not self._asked:  # one request at a time: a blocked loop does not pile them up
                self._asked = True
                try:
                    loop.call_soon_threadsafe(self._heartbeat)
                except RuntimeError:  # the loop closed: the task is being cancelled
                    return
            beat = self._beat
            lag = time.monotonic() - beat
            if lag <= self._threshold:
                if stalled_since is not None:
                    log.info("loop running again after %.1f s", beat - stalled_since)
                stalled_since = None
                continue
            if stalled_since is not None:
                continue
            stalled_since = beat
            stall = self._inspect(loop, loop_thread, lag)
            self._report(loop, stall)

    def _inspect(self, loop: asyncio.AbstractEventLoop, loop_thread: int, lag: float) -> Stall:
        frame = sys._current_frames().get(loop_thread)
        dirs = dict(self._app_dirs()) if self._app_dirs is not None else {}
        app, where = self._app_from_stack(frame, dirs)
        task_name: str | None = None
        try:
            task = asyncio.current_task(loop)
            task_name = task.get_name() if task is not None else None
        except RuntimeError:
            task_name = None
        if app is None and task_name and task_name.startswith("app:"):
            app = task_name[4:]
        return Stall(app, lag, where, task_name, self._in_executor_job(frame))

    @staticmethod
    def _app_from_stack(frame: FrameType | None, dirs: Mapping[str, str]) -> tuple[str | None, str | None]:
        innermost: str | None = None
        while frame is not None:  # innermost first: the app frame nearest the blocking call wins
            filename = frame.f_code.co_filename
            here = f"{filename}:{frame.f_lineno}"
            innermost = innermost or here
            for folder, name in dirs.items():
                if filename.startswith(folder.rstrip("/\\") + "/"):
                    return name, here
            match = _APP_PATH.search(filename)
            if match:
                return match.group(1), here
            frame = frame.f_back
        return None, innermost

    @staticmethod
    def _in_executor_job(frame: FrameType | None) -> bool:
        """Whether the stack runs a job inside ``run_in_executor``: only a loop that runs its
        executor jobs in place (the simulator's virtual loop) does; asyncio's hands them to a
        worker thread."""
        while frame is not None:
            if frame.f_code.co_name == "run_in_executor":
                return True
            frame = frame.f_back
        return False

    def _report(self, loop: asyncio.AbstractEventLoop, stall: Stall) -> None:
        key = stall.app or "?"
        counts = self._in_place if stall.in_executor_job else self._stalls
        with self._lock:
            counts[key] = counts.get(key, 0) + 1
            self.last_stall = stall
        who = f"app {stall.app!r}" if stall.app else f"task {stall.task!r}"
        if stall.in_executor_job:
            log.info(
                "loop ran an executor job of %s in place for %.1f s at %s (a real terminal runs it on a "
                "worker thread)",
                who,
                stall.blocked_s,
                stall.where or "?",
            )
        else:
            log.warning("loop blocked %.1f s by %s at %s", stall.blocked_s, who, stall.where or "?")
        if self._bus is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._bus.publish, STALL_TOPIC, stall.to_json())
        if self._on_stall is not None:
            self._on_stall(stall)


__all__ = ["STALL_TOPIC", "LoopWatchdog", "Stall"]
