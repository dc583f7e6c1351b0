"""The terminal's own life in the simulated world: its supply, its hold-up, dying and booting again.

Layer: sim. A station-level outage takes the transformer's LV side -- and the terminal on it:
``TerminalLife`` switches the terminal's mains (a ``hal.sim.SimPowerMonitor`` the terminal reads
as its ``[power]`` node), lets it run on its supercapacitor for the board's ``holdup_s``, then
stops it (the process is gone: its task is cancelled, nothing is flushed on purpose; the
carrier module in it goes dark too), and boots a fresh terminal on the same store once the
supply is back (after the scenario's ``[terminal] boot_s``). A dip shorter than the hold-up
only flickers the power monitor. Each time the terminal was down is a ``terminal_down`` row
of the ground truth. Must not reach into the terminal beyond starting and stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from hal.clock import Clock
from hal.sim import SimPowerMonitor
from sim.hplc.cco import VirtualCco
from sim.world import TruthEvent, World

log = logging.getLogger("ttu.sim.terminal")


class Terminal(Protocol):
    """What this needs of ``runtime.terminal.Terminal`` (sim reaches the runtime only in runner.py)."""

    async def run(self) -> None: ...


T = TypeVar("T", bound=Terminal)


class TerminalLife(Generic[T]):
    """Owns the running terminal (``terminal``, ``task``); ``on_boot`` hears of each new one."""

    def __init__(
        self,
        make: Callable[[], T],
        *,
        clock: Clock,
        monitor: SimPowerMonitor,
        boot_s: float,
        world: World | None = None,
        cco: VirtualCco | None = None,
        on_boot: Callable[[T], None] | None = None,
    ) -> None:
        self._make = make
        self._clock = clock
        self.monitor = monitor
        self.boot_s = boot_s
        self._world = world
        self._cco = cco
        self.on_boot = on_boot
        self.terminal = make()
        self.task: asyncio.Task[None] | None = None
        self._work: set[asyncio.Task[None]] = set()
        self.down_since: float | None = None
        self.deaths = 0
        self.boots = 0
        self._generation = 0  # supply changes so far: a hold-up booked before one is stale
        if world is not None:
            world.on_station(self.supply)

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.terminal.run(), name="terminal")
        return self.task

    def supply(self, powered: bool, t: float) -> None:
        """The transformer's LV side lost (False) or regained supply at ``t``."""
        if not self.monitor.set_supply(powered, t):
            return
        self._generation += 1
        generation = self._generation
        world = self._world
        if not powered:
            due = t + self.monitor.holdup_s
            if world is not None:
                world.schedule(due, lambda _t: self._holdup_over(generation))
            else:
                self._spawn(self._after(due, lambda: self._holdup_over(generation)))
        elif self.down_since is not None:
            due = t + self.boot_s
            if world is not None:
                world.schedule(due, lambda _t: self._boot(generation))
            else:
                self._spawn(self._after(due, lambda: self._boot(generation)))

    async def _after(self, t: float, then: Callable[[], None]) -> None:
        await self._clock.sleep_until(t)
        then()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="sim-terminal-life")
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def _holdup_over(self, generation: int) -> None:
        if generation != self._generation or self.monitor.state().powered or not self.alive:
            return  # the supply came back within the hold-up: the terminal rode through
        self._spawn(self._die())

    async def _die(self) -> None:
        now = self._clock.now()
        log.warning("terminal: the supercapacitor ran out at %.0f: the terminal stops", now)
        self.down_since = now
        self.deaths += 1
        task = self.task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._cco is not None:
            self._cco.module_power(False)

    def _boot(self, generation: int) -> None:
        if generation != self._generation or not self.monitor.state().powered or self.down_since is None:
            return
        now = self._clock.now()
        if self._world is not None:
            self._world.events.append(
                TruthEvent("terminal_down", "station", self._world.station_id, self.down_since, now)
            )
        log.warning("terminal: supply back, booting again at %.0f", now)
        self.down_since = None
        self.boots += 1
        if self._cco is not None:
            self._cco.module_power(True)
        self.terminal = self._make()
        self.start()
        if self.on_boot is not None:
            self.on_boot(self.terminal)

    async def stop(self) -> None:
        """End the run: the terminal and any pending death or boot. A terminal that died on its
        own is the report's business (``SimRun.terminal_failure``), not raised here."""
        for task in [*self._work, *([self.task] if self.task is not None else [])]:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as err:
                log.debug("terminal task ended with %s", err)
        if self.down_since is not None and self._world is not None:
            self._world.events.append(
                TruthEvent("terminal_down", "station", self._world.station_id, self.down_since, None)
            )


__all__ = ["TerminalLife"]
