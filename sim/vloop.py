"""A virtual-time asyncio event loop: time jumps to the next timer whenever nothing is runnable.

Layer: sim. ``ttu sim --speed max`` runs the whole world (physics, virtual meters, virtual CCO,
terminal, broker, cloud stub) in one process on this loop; tests boot it the same way. Its
``time()`` is virtual: it starts at 0 and moves only when the loop has nothing to do, then
straight to the earliest scheduled timer. Every ``Clock`` built on the loop (``LoopClock``)
therefore runs on virtual time, and so does every ``asyncio.sleep``/``timeout`` the
terminal's code uses -- unchanged.

Three things the loop must get right so the world stays faithful:

* real sockets still flow: before jumping, the selector is polled with a zero timeout, so an
  in-process loopback MQTT exchange (embedded broker, terminal uplink, cloud stub) is delivered
  at the virtual instant it was sent. Only a loop with no timers at all waits for real I/O.
* executor jobs (the sqlite store and the cloud database run off-loop on worker threads) finish
  before anything else happens: ``run_in_executor`` hands the job to its executor and waits for
  it, so the result is delivered in a fixed order and never overtakes a virtual timer. That keeps
  runs deterministic; a job's wall time costs wall time, not virtual time.
* MQTT keep-alive follows the loop: paho (under aiomqtt) measures keep-alive on its own clock,
  ``paho.mqtt.client.time_func``. ``virtual_paho_time`` points it at the loop, so clients ping
  every keep-alive of *virtual* time, as the broker (on this loop) expects.

Must not: sleep, run callbacks out of asyncio's order, or know anything about the simulator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import selectors
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: a loop with no timer at all waits this long for real I/O per poll (a wake-up from another
#: thread or a signal arrives at once through the loop's self-pipe)
IDLE_POLL_S = 1.0


class _VirtualSelector(selectors.BaseSelector):
    """The loop's selector, with ``select(timeout)`` that polls instead of waiting."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer: only real I/O (another thread, a signal) can wake us
            return self._real.select(IDLE_POLL_S)
        self._loop._jump()
        return []

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``asyncio.Runner(loop_factory=VirtualTimeLoop)``: an event loop on virtual time.

    ``jumps`` counts the times time moved; ``wall_started`` is ``time.perf_counter()`` at
    creation, for the achieved speed (virtual seconds per wall second).
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        self.jumps = 0
        self.executor_jobs = 0
        self.wall_started = time.perf_counter()
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self._now

    def _jump(self) -> None:
        """Move time to the earliest live timer (asyncio pops cancelled ones before polling)."""
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if scheduled:
            when = scheduled[0].when()
            if when > self._now:
                self._now = when
                self.jumps += 1

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run ``func`` on ``executor`` (the default one for None) and wait for it: the result is
        ready before the loop runs anything else, at the same virtual instant."""
        self._check_closed()  # type: ignore[attr-defined]
        if executor is None:
            executor = self._default_executor  # type: ignore[has-type]
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="vloop")
                self._default_executor = executor
        self.executor_jobs += 1
        job = executor.submit(func, *args)
        future: asyncio.Future[T] = self.create_future()
        try:
            result = job.result()
        except concurrent.futures.CancelledError:
            future.cancel()
        except BaseException as err:  # delivered to the awaiting task, as asyncio would
            future.set_exception(err)
        else:
            future.set_result(result)
        return future

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncio's signature)
        """Join the default executor's threads here (asyncio would wait for a helper thread)."""
        executor = self._default_executor  # type: ignore[has-type]
        self._executor_shutdown_called = True
        if executor is not None:
            executor.shutdown(wait=True)

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.wall_started


@contextlib.contextmanager
def virtual_paho_time(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Let paho's keep-alive bookkeeping read ``loop.time()`` while inside (see the docstring)."""
    import paho.mqtt.client as paho

    saved = paho.time_func
    paho.time_func = loop.time
    try:
        yield
    finally:
        paho.time_func = saved


def run_virtual(main: Callable[[], Any]) -> Any:
    """``asyncio.run(main())`` on a ``VirtualTimeLoop`` (with paho on its time)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner, virtual_paho_time(runner.get_loop()):
        return runner.run(main())


def running_virtual_loop() -> VirtualTimeLoop | None:
    """The running loop if it is a ``VirtualTimeLoop``, else None."""
    loop = asyncio.get_running_loop()
    return loop if isinstance(loop, VirtualTimeLoop) else None


__all__ = ["IDLE_POLL_S", "VirtualTimeLoop", "run_virtual", "running_virtual_loop", "virtual_paho_time"]
