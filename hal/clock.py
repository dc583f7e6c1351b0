"""The one source of time for the terminal: wall time, monotonic time, sleeps and timeouts.

Layer: hal (below runtime and apps; the simulator drives its virtual devices on it too).
Every timer in runtime/, apps/, hal/ and sim/ goes through a
``Clock``; nothing else may call ``time.time()`` or ``asyncio.sleep()`` with
wall-clock meaning. Timestamps are UTC epoch seconds; local time zones are applied
by the scheduler only.

Three flavours, one class (``LoopClock``), all derived from the event loop's own
time so that ``looptime`` fast-forwards every one of them in tests:

* real:          ``LoopClock()`` — speed 1, anchored to the system's wall time;
* scaled:        ``LoopClock(speed=60)`` — one loop second is a simulated minute
                 (``make sim``);
* fast-forward:  ``LoopClock(start=...)`` under ``looptime`` — a simulated day of
                 15-minute cycles runs in well under a second of wall time.

Start-up deadlines (an app's ready, a broker connection, a pty open) measure the machine, not
the simulated world: ``wall_timeout`` bounds them in real (loop) seconds whatever the clock's
speed, so a run at x600 does not give an app 50 ms to start. Protocol timeouts (a meter's reply,
a module's answer) stay on the clock.

``step(delta)`` moves wall time (a time sync) without touching monotonic time; any
``sleep_until`` in progress re-evaluates its deadline at once, and ``wait_step()``
returns (the app bridge forwards steps to isolated apps' clocks that way).

This module must not know about schedules, time zones or apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What every component may ask of time."""

    @property
    def speed(self) -> float:
        """Simulated seconds per loop second (1.0 in the field)."""
        ...

    def now(self) -> float:
        """UTC epoch seconds (may jump when the clock is stepped)."""
        ...

    def monotonic(self) -> float:
        """Seconds since the clock started; never jumps, unaffected by ``step``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of clock time."""
        ...

    async def sleep_until(self, epoch: float) -> None:
        """Sleep until wall time reaches ``epoch``, following clock steps."""
        ...

    def timeout(self, seconds: float) -> asyncio.Timeout:
        """A timeout scope of ``seconds`` clock time (``async with clock.timeout(5):``)."""
        ...

    def step(self, delta: float) -> None:
        """Move wall time by ``delta`` seconds (time sync); monotonic time is unchanged."""
        ...

    async def wait_step(self) -> None:
        """Return at the next ``step`` (e.g. to tell an app host process; ``now() - monotonic()``
        then holds the new offset)."""
        ...


class LoopClock:
    """A clock derived from the running event loop's time.

    ``start`` is the wall time at the first use (default: the system's current time);
    ``speed`` how many clock seconds pass per loop second. The anchor is taken
    lazily on first use, inside the loop that will run the clock.
    """

    def __init__(self, *, start: float | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, not {speed}")
        self._speed = float(speed)
        self._start = start
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_t0 = 0.0
        self._offset = 0.0
        self._stepped = asyncio.Event()
        # Anchor now when constructed inside the loop that runs the clock; otherwise on first use.
        with contextlib.suppress(RuntimeError):
            self._elapsed()

    @property
    def speed(self) -> float:
        return self._speed

    def _elapsed(self) -> float:
        loop = self._loop
        if loop is None:
            loop = asyncio.get_running_loop()
            self._loop = loop
            self._loop_t0 = loop.time()
            if self._start is None:
                self._start = time.time()
        return (loop.time() - self._loop_t0) * self._speed

    def now(self) -> float:
        elapsed = self._elapsed()
        assert self._start is not None
        return self._start + self._offset + elapsed

    def monotonic(self) -> float:
        return self._elapsed()

    async def sleep(self, seconds: float) -> None:
        self._elapsed()
        await asyncio.sleep(max(0.0, seconds) / self._speed)

    async def sleep_until(self, epoch: float) -> None:
        while True:
            remaining = epoch - self.now()
            if remaining <= 0:
                return
            stepped = self._stepped
            waiter = asyncio.ensure_future(stepped.wait())
            try:
                await asyncio.wait({waiter}, timeout=remaining / self._speed)
            finally:
                waiter.cancel()

    def timeout(self, seconds: float) -> asyncio.Timeout:
        self._elapsed()
        return asyncio.timeout(max(0.0, seconds) / self._speed)

    def step(self, delta: float) -> None:
        self._elapsed()  # anchor first so the step is relative to a defined start
        self._offset += delta
        stepped, self._stepped = self._stepped, asyncio.Event()
        stepped.set()

    async def wait_step(self) -> None:
        await self._stepped.wait()


def wall_timeout(seconds: float) -> asyncio.Timeout:
    """A timeout scope of ``seconds`` REAL seconds (event-loop time), whatever any clock's speed.

    For start-up and shutdown deadlines only (app ready/stop, broker connection, pty open), which
    bound how long the machine may take; ``looptime`` fast-forwards them in tests like any timer.
    """
    return asyncio.timeout(max(0.0, seconds))


@asynccontextmanager
async def ticking(clock: Clock, period: float) -> AsyncIterator[AsyncIterator[float]]:
    """Yield an async iterator that ticks every ``period`` clock seconds (monotonic, drift-free)."""

    async def ticks() -> AsyncIterator[float]:
        next_at = clock.monotonic()
        while True:
            yield clock.now()
            next_at += period
            delay = next_at - clock.monotonic()
            if delay < 0:  # fell behind: skip missed ticks rather than burst
                next_at = clock.monotonic()
                delay = 0.0
            await clock.sleep(delay)

    yield ticks()


__all__ = ["Clock", "LoopClock", "ticking", "wall_timeout"]
