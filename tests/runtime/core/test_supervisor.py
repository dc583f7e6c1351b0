"""The supervisor under virtual time: ready, crash -> backoff -> quarantine, hangs, capabilities."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from protocols.cloud import Command, StreamPriority, sign_command
from runtime.bus import Bus
from runtime.container.context import AppContextFactory
from runtime.container.manifest import load_manifest
from runtime.container.supervisor import AppState, Supervisor
from runtime.scheduler import MemoryKeyValue, Scheduler
from runtime.store import Store
from runtime.uplink import Uplink
from tests.runtime.core.fixture_apps import phoenix
from tests.runtime.uplink.helpers import KEY

FIXTURES = Path(__file__).parent / "fixture_apps"
START = 1_767_225_600.0


@asynccontextmanager
async def terminal(
    *apps: str, state_dir: Path | None = None, speed: float = 1.0
) -> AsyncIterator[tuple[Supervisor, Bus, LoopClock]]:
    clock = LoopClock(start=START, speed=speed)
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


# -- everything an app registers goes when it stops ------------------------------------------


class _Carrier:
    """A carrier module whose event streams are counted (the hub of ``hal.hplc``)."""

    def __init__(self) -> None:
        from hal.hplc._events import EventHub

        self.hub = EventHub()

    def events(self) -> Any:
        return self.hub.stream()


class _Hal:
    def __init__(self) -> None:
        self.carrier = _Carrier()

    def hplc(self) -> Any:
        return self.carrier


@asynccontextmanager
async def phoenix_terminal(
    tmp_path: Path,
) -> AsyncIterator[tuple[Supervisor, Bus, LoopClock, Scheduler, Uplink, _Hal]]:
    clock = LoopClock(start=START)
    bus = Bus(clock=clock)
    scheduler = Scheduler(clock=clock, tz="Asia/Shanghai", state=MemoryKeyValue())
    hal = _Hal()
    async with await Store.open(tmp_path / "ttu.sqlite", clock=clock) as store:
        uplink = Uplink(
            store=store,
            clock=clock,
            terminal_id="T1",
            broker_url="mqtt://127.0.0.1:1",
            client_id="t1",
            command_key=KEY,
        )
        factory = AppContextFactory(
            clock=clock,
            bus=bus,
            scheduler=scheduler,
            uplinks=lambda name: uplink,
            hal=hal,  # type: ignore[arg-type]
        )
        sup = Supervisor(clock=clock, bus=bus, context_factory=factory)
        sup.load(FIXTURES, enabled=["phoenix"])
        async with asyncio.TaskGroup() as tg:
            sched_task = tg.create_task(scheduler.run(), name="scheduler")
            sup_task = tg.create_task(sup.run(), name="supervisor")
            yield sup, bus, clock, scheduler, uplink, hal
            await sup.stop()
            await sup_task
            sched_task.cancel()


async def _ping(uplink: Uplink, clock: LoopClock, n: int) -> dict[str, Any]:
    command = sign_command(
        Command(f"c-{n}-{clock.monotonic()}", "phoenix.ping", {"n": n}, ts=clock.now()), KEY
    )
    reply = await uplink._commands.dispatch(command.encode())
    return reply.to_json()


@pytest.mark.looptime
async def test_a_crashed_app_comes_back_and_works_having_released_what_it_held(tmp_path: Path) -> None:
    async with phoenix_terminal(tmp_path) as (sup, bus, clock, scheduler, uplink, hal):
        for round_ in range(4):
            await wait(sup, clock, "phoenix", AppState.RUNNING)
            # it works: its command answers, its responder and its subscription are there, once
            assert (await _ping(uplink, clock, round_))["result"] == {"pong": round_}
            assert await bus.request("phoenix/echo", round_, timeout=1.0) == round_
            async with bus.subscribe("phoenix/out") as out:
                bus.publish("phoenix/in", f"hello {round_}")
                async with clock.timeout(1):
                    assert (await out.get()).payload == f"hello {round_}"
            stats = bus.statistics()
            assert [s["pattern"] for s in stats["subscribers"]] == ["phoenix/in"]
            assert stats["services"] == ["phoenix/echo"]
            assert list(scheduler.jobs()) == ["phoenix.tick"]
            assert len(hal.carrier.hub._streams) == 1
            assert uplink._commands.names.count("phoenix.ping") == 1
            assert [t.done() for t in phoenix.TIMERS[-(round_ + 1) :]] == [True] * round_ + [False]
            if round_ == 3:
                break
            # crash it, then wait past the crash window so the quarantine is not reached
            bus.publish("phoenix/in", "crash")
            await wait(sup, clock, "phoenix", AppState.CRASHED, AppState.BACKOFF)
            assert "phoenix.ping" not in uplink._commands.names
            assert bus.statistics()["services"] == []
            assert scheduler.jobs() == {}
            assert hal.carrier.hub._streams == []
            assert phoenix.TIMERS[-1].cancelled()  # the timer task it never awaited went with it
            await clock.sleep(601)
        assert sup.record("phoenix").restarts == 3
        assert sup.record("phoenix").leftover_tasks == 3
        assert uplink._delivery.priority("alerts") is StreamPriority.URGENT  # from its manifest
        assert sup.state("phoenix") is AppState.RUNNING


@pytest.mark.looptime
async def test_quarantine_only_after_real_repeated_crashes(tmp_path: Path) -> None:
    async with phoenix_terminal(tmp_path) as (sup, bus, clock, scheduler, uplink, hal):
        for _ in range(3):  # max_crashes = 3 within 600 s
            await wait(sup, clock, "phoenix", AppState.RUNNING)
            bus.publish("phoenix/in", "crash")
            await wait(sup, clock, "phoenix", AppState.BACKOFF, AppState.QUARANTINED)
        assert sup.state("phoenix") is AppState.QUARANTINED
        assert sup.record("phoenix").restarts == 2
        assert "told to crash" in (sup.record("phoenix").last_error or "")
        # quarantined: nothing of it remains registered
        assert "phoenix.ping" not in uplink._commands.names
        assert hal.carrier.hub._streams == [] and scheduler.jobs() == {}
        assert all(t.done() for t in phoenix.TIMERS)
        reply = await _ping(uplink, clock, 9)
        assert reply["error"]["code"] == "unknown_command"


@pytest.mark.looptime
async def test_ready_deadline_is_real_seconds_whatever_the_simulated_speed() -> None:
    # 600 simulated seconds of start-up: 1 real second at x600, well inside ready_timeout_s = 5
    async with terminal("slowstart", speed=600.0) as (sup, _bus, clock):
        await wait(sup, clock, "slowstart", AppState.RUNNING, AppState.CRASHED, within=6000)
        assert sup.state("slowstart") is AppState.RUNNING
        assert sup.record("slowstart").restarts == 0
    # the same start-up in the field (x1) takes 600 real seconds: not ready within 5
    async with terminal("slowstart") as (sup, _bus, clock):
        await wait(sup, clock, "slowstart", AppState.BACKOFF, AppState.QUARANTINED, within=60)
        assert "not ready within 5 s" in (sup.record("slowstart").last_error or "")
