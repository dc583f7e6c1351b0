"""The loop watchdog names the app that blocks the event loop (real time: that is its job)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from pathlib import Path

import pytest

from hal.clock import LoopClock
from runtime.bus import Bus
from runtime.container.context import AppContextFactory
from runtime.container.supervisor import AppState, Supervisor
from runtime.container.watchdog import STALL_TOPIC, LoopWatchdog, Stall
from runtime.scheduler import MemoryKeyValue, Scheduler
from tests.runtime.core.fixture_apps import blocker

FIXTURES = Path(__file__).parent / "fixture_apps"


async def test_watchdog_names_the_blocking_app(caplog: pytest.LogCaptureFixture) -> None:
    blocker.release.clear()
    clock = LoopClock()
    bus = Bus(clock=clock)
    scheduler = Scheduler(clock=clock, tz="UTC", state=MemoryKeyValue())
    sup = Supervisor(
        clock=clock, bus=bus, context_factory=AppContextFactory(clock=clock, bus=bus, scheduler=scheduler)
    )
    sup.load(FIXTURES, enabled=["blocker", "good"])
    seen: list[Stall] = []

    def on_stall(stall: Stall) -> None:  # runs in the watchdog thread while the loop is blocked
        seen.append(stall)
        blocker.release.set()

    watchdog = LoopWatchdog(clock=clock, bus=bus, threshold_s=0.3, app_dirs=sup.app_dirs, on_stall=on_stall)
    caplog.set_level(logging.WARNING, logger="ttu.watchdog")
    async with bus.subscribe(STALL_TOPIC) as stalls, asyncio.TaskGroup() as tg:
        wd_task = tg.create_task(watchdog.run(), name="watchdog")
        sup_task = tg.create_task(sup.run(), name="supervisor")
        async with asyncio.timeout(20):
            msg = await stalls.get()
            await sup.wait_state("blocker", AppState.RUNNING)
        await sup.stop()
        await sup_task
        wd_task.cancel()
    blocker.release.clear()
    assert msg.payload["app"] == "blocker"
    assert msg.payload["blocked_s"] >= 0.3
    assert msg.payload["in_executor_job"] is False  # the app itself held the loop
    assert "fixture_apps/blocker/__init__.py:" in msg.payload["where"]
    assert len(seen) == 1  # once per stall
    assert watchdog.statistics()["stalls"] == {"blocker": 1}
    warnings = [r.getMessage() for r in caplog.records if r.name == "ttu.watchdog"]
    assert len(warnings) == 1
    assert warnings[0].startswith("loop blocked ")
    assert "by app 'blocker' at " in warnings[0]
    assert sup.state("good") is AppState.STOPPED  # stopped cleanly with the rest, not harmed


def test_app_found_from_installed_apps_path() -> None:
    frame = sys._getframe()
    code = compile("def f(): return __import__('sys')._getframe()", "/opt/ttu/apps/lineloss/calc.py", "exec")
    ns: dict[str, object] = {}
    exec(code, ns)
    inner = ns["f"]()  # type: ignore[operator]
    app, where = LoopWatchdog._app_from_stack(inner, {})
    assert app == "lineloss"
    assert where == "/opt/ttu/apps/lineloss/calc.py:1"
    assert LoopWatchdog._app_from_stack(frame, {}) == (None, f"{__file__}:{frame.f_lineno}")


class FakeWatchdog:
    def __init__(self) -> None:
        self.kicks = 0

    @property
    def timeout(self) -> float:
        return 4.0

    async def kick(self) -> None:
        self.kicks += 1


@pytest.mark.looptime
async def test_heartbeat_kicks_the_hardware_watchdog() -> None:
    clock = LoopClock(start=1_767_225_600.0)
    hw = FakeWatchdog()
    watchdog = LoopWatchdog(clock=clock, threshold_s=1.0, hal_watchdog=hw)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(watchdog.run(), name="watchdog")
        await clock.sleep(10)
        task.cancel()
    assert 9 <= hw.kicks <= 11  # every timeout/4 = 1 s of loop time
    assert watchdog.statistics() == {"stalls": {}, "in_place_jobs": {}, "kick_errors": 0}


def test_the_heartbeat_follows_wall_time_not_the_loop_clock() -> None:
    """On a loop whose clock is not the wall's (``ttu sim --speed max``), a simulated hour costs
    the watchdog no timer: the thread asks for heartbeats in wall time. (A heartbeat on loop
    time woke the loop 4 times per simulated second: 14,400 jumps per simulated hour.)"""
    from sim.vloop import VirtualTimeLoop, run_virtual

    async def main() -> tuple[int, dict[str, object]]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        watchdog = LoopWatchdog(clock=LoopClock(start=1_767_225_600.0), threshold_s=1.0)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(watchdog.run(), name="watchdog")
            await asyncio.sleep(3600.0)
            task.cancel()
        return loop.jumps, watchdog.statistics()

    jumps, stats = run_virtual(main)
    assert jumps <= 2
    assert stats == {"stalls": {}, "in_place_jobs": {}, "kick_errors": 0}


def test_a_job_the_virtual_loop_runs_in_place_is_counted_apart_not_as_a_stall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``ttu sim --speed max`` runs executor jobs on the loop's thread (for order); on a real
    terminal they run on a worker thread and hold no loop: not a stall, not a warning."""
    from sim.vloop import run_virtual

    release = threading.Event()
    seen: list[Stall] = []

    def on_stall(stall: Stall) -> None:  # the watchdog thread, while the job holds the loop
        seen.append(stall)
        release.set()

    def job() -> str:
        assert release.wait(20), "the watchdog never saw the job"
        return "done"

    async def main() -> tuple[str, dict[str, object]]:
        watchdog = LoopWatchdog(clock=LoopClock(start=1_767_225_600.0), threshold_s=0.3, on_stall=on_stall)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(watchdog.run(), name="watchdog")
            await asyncio.sleep(0)  # the watchdog's thread is up
            result = await asyncio.to_thread(job)
            task.cancel()
        return result, watchdog.statistics()

    caplog.set_level(logging.INFO, logger="ttu.watchdog")
    result, stats = run_virtual(main)
    assert result == "done"
    assert len(seen) == 1 and seen[0].in_executor_job and seen[0].to_json()["in_executor_job"] is True
    assert stats == {"stalls": {}, "in_place_jobs": {"?": 1}, "kick_errors": 0}
    records = [r for r in caplog.records if r.name == "ttu.watchdog"]
    assert [r.levelno for r in records if "executor job" in r.getMessage()] == [logging.INFO]
    assert not [r for r in records if r.levelno >= logging.WARNING]
