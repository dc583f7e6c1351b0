"""The supervisor under virtual time: ready, crash -> backoff -> quarantine, hangs, capabilities."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from base.clock import LoopClock
from runtime.bus import Bus
from runtime.container.context import AppContextFactory
from runtime.container.manifest import load_manifest
from runtime.container.supervisor import AppState, Supervisor
from runtime.scheduler import MemoryKeyValue, Scheduler

FIXTURES = Path(__file__).parent / "fixture_apps"
START = 1_767_225_600.0


@asynccontextmanager
async def terminal(
    *apps: str, state_dir: Path | None = None
) -> AsyncIterator[tuple[Supervisor, Bus, LoopClock]]:
    clock = LoopClock(start=START)
    bus = Bus(clock=clock)
    scheduler = Scheduler(clock=clock, tz="Asia/Shanghai", state=MemoryKeyValue())
    factory = AppContextFactory(clock=clock, bus=bus, scheduler=scheduler)
    sup = Supervisor(clock=clock, bus=bus, context_factory=factory, state_dir=state_dir)
    sup.load(FIXTURES, enabled=apps)
    async with asyncio.TaskGroup() as tg:
        sched_task = tg.create_task(scheduler.run(), name="scheduler")
        sup_task = tg.create_task(sup.run(), name="supervisor")
        yield sup, bus, clock
        await sup.stop()
        await sup_task
        sched_task.cancel()


async def wait(sup: Supervisor, clock: LoopClock, name: str, *states: AppState, within: float = 60) -> None:
    async with clock.timeout(within):
        await sup.wait_state(name, *states)


@pytest.mark.looptime
async def test_good_app_becomes_running_and_answers(tmp_path: Path) -> None:
    async with terminal("good", state_dir=tmp_path) as (sup, bus, clock):
        await wait(sup, clock, "good", AppState.RUNNING)
        async with bus.subscribe("good/pong") as pongs:
            bus.publish("good/ping", 7)
            async with clock.timeout(1):
                msg = await pongs.get()
        assert msg.payload == {"greeting": "pong", "n": 7}
        state = bus.retained("runtime/apps/good/state")
        assert state is not None and state.payload["state"] == "running"
        status = json.loads((tmp_path / "apps.json").read_text())
        assert status["running"] is True
        assert status["apps"] == [
            {
                "name": "good",
                "version": "1.0.0",
                "state": "running",
                "since": pytest.approx(START, abs=1),
                "restarts": 0,
                "last_error": None,
                "isolated": False,
            }
        ]
    status = json.loads((tmp_path / "apps.json").read_text())
    assert status["running"] is False
    assert status["apps"][0]["state"] == "stopped"
    assert bus.statistics()["subscribers"] == []  # the app's subscription went with it


@pytest.mark.looptime
async def test_crash_restarts_with_backoff_then_quarantine() -> None:
    async with terminal("crasher", "good") as (sup, bus, clock):
        states: list[tuple[float, str]] = []
        async with bus.subscribe("runtime/apps/crasher/state") as sub:

            async def watch() -> None:
                async for msg in sub:
                    states.append((round(clock.monotonic()), msg.payload["state"]))

            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(watch(), name="watch")
                await wait(sup, clock, "crasher", AppState.QUARANTINED, within=120)
                await asyncio.sleep(0)
                watcher.cancel()
        rec = sup.record("crasher")
        assert rec.restarts == 2
        assert rec.last_error == "RuntimeError: meter table corrupt"
        crashes = [t for t, s in states if s == "crashed"]
        starts = [t for t, s in states if s == "starting"]
        assert crashes == [10, 22, 36]  # backoff 2 s, then 4 s, each run lasting 10 s
        assert starts == [0, 12, 26]
        assert states[-1][1] == "quarantined"
        # the other app never noticed
        assert sup.state("good") is AppState.RUNNING
        assert sup.record("good").restarts == 0


@pytest.mark.looptime
async def test_hang_on_start_is_app_not_ready() -> None:
    async with terminal("hanger", "good") as (sup, _bus, clock):
        await wait(sup, clock, "hanger", AppState.QUARANTINED)
        rec = sup.record("hanger")
        assert rec.last_error == "AppNotReady: app hanger: not ready within 5 s"
        assert rec.restarts == 1
        assert clock.monotonic() == pytest.approx(11)  # 5 s + backoff 1 s + 5 s
        assert sup.state("good") is AppState.RUNNING


@pytest.mark.looptime
async def test_capability_violations_are_refused_and_counted() -> None:
    async with terminal("sneaky") as (sup, bus, clock):
        await wait(sup, clock, "sneaky", AppState.RUNNING)
        refused = bus.retained("sneaky/refused")
        assert refused is not None
        assert refused.payload == [
            "publish on 'billing/ledger' not declared in [topics] publish",
            "subscribe on 'meter/#' not covered by [topics] subscribe",
            "hal capability 'metrology' not declared",
        ]
        ctx = sup.record("sneaky").context
        assert ctx is not None
        assert ctx.violations.count == 3
        assert ctx.violations.by_kind == {"publish": 1, "subscribe": 1, "hal": 1}
    assert sup.state("sneaky") is AppState.STOPPED  # returned on the stop request


@pytest.mark.looptime
async def test_returning_app_is_stopped_not_restarted() -> None:
    async with terminal("quitter") as (sup, _bus, clock):
        await wait(sup, clock, "quitter", AppState.STOPPED)
        await clock.sleep(60)
        assert sup.state("quitter") is AppState.STOPPED
        assert sup.record("quitter").restarts == 0


@pytest.mark.looptime
async def test_stop_app_and_start_again() -> None:
    async with terminal("good", "quitter") as (sup, _bus, clock):
        await wait(sup, clock, "good", AppState.RUNNING)
        await sup.stop_app("good")
        assert sup.state("good") is AppState.STOPPED
        sup.start_app("good")
        await wait(sup, clock, "good", AppState.RUNNING)


async def test_bad_config_is_refused_with_path() -> None:
    clock = LoopClock(start=START)
    bus = Bus(clock=clock)
    scheduler = Scheduler(clock=clock, tz="UTC", state=MemoryKeyValue())
    sup = Supervisor(
        clock=clock, bus=bus, context_factory=AppContextFactory(clock=clock, bus=bus, scheduler=scheduler)
    )
    from runtime.errors import ConfigErrors

    with pytest.raises(ConfigErrors) as info:
        sup.load(FIXTURES, configs={"good": {"greeting": 5, "colour": "red"}}, enabled=["good"])
    assert [(e.path, e.reason) for e in info.value.errors] == [
        ("apps.good.config.colour", "unknown key (known: greeting)"),
        ("apps.good.config.greeting", "expected str, not int 5"),
    ]
    assert load_manifest(FIXTURES / "good" / "app.toml").name == "good"
