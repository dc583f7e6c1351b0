"""Isolated apps in their own processes: bus and store over the bridge, limits, hangs, stops, no leaks."""

from __future__ import annotations

import os

import psutil
import pytest

from runtime.bus import Overflow
from runtime.container.isolation.bridge import IsolationSettings, violation_topic
from runtime.container.supervisor import AppState
from runtime.errors import AppError

from .conftest import FAST, core


def _gone(pid: int) -> bool:
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return False  # still there, or a zombie nobody reaped


def _children() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


async def test_isolated_app_uses_bus_store_and_serves_requests() -> None:
    async with core(isolated=("keeper",)) as c:
        await c.wait("keeper", AppState.RUNNING)
        pid = c.sup.pid("keeper")
        assert pid is not None and pid != os.getpid() and pid in _children()
        first = await c.next("keeper/pong", publish=("keeper/ping", "a"))
        second = await c.next("keeper/pong", publish=("keeper/ping", "b"))
        assert first.payload == {"n": 1, "stored": 1, "readings": [221.0], "ping": "a"}
        assert second.payload == {"n": 2, "stored": 2, "readings": [221.0, 222.0], "ping": "b"}
        # The app's key-value went into the runtime's store, in its own namespace.
        assert await c.store.kv_get("app.keeper", "pings") == 2
        assert await c.bus.request("keeper/ask", {"q": 21}, timeout=10) == {"answer": 42, "pid_app": "keeper"}
        status = {s["name"]: s for s in c.sup.status()}
        assert status["keeper"]["isolated"] is True and status["keeper"]["state"] == "running"
    assert _gone(pid)
    assert c.bus.statistics()["subscribers"] == []  # its bridge-side subscription went with it


async def test_memory_hog_is_stopped_at_its_limit_while_others_keep_running() -> None:
    async with core(isolated=("hog", "keeper"), inproc=("good",)) as c:
        await c.wait("keeper", AppState.RUNNING)
        await c.wait("good", AppState.RUNNING)
        async with c.bus.subscribe("hog/size", maxsize=10_000) as sizes:
            await c.wait("hog", AppState.QUARANTINED, within=60)
            seen = [m.payload for m in iter(sizes.get_nowait, None)]
        record = c.sup.record("hog")
        assert record.last_error is not None and "memory limit 32 MB reached" in record.last_error
        assert len(record.crashes) == 2  # crashed, restarted once, crashed again: quarantined
        # It got about its 32 MB budget, not the machine's memory.
        assert seen and 16 <= max(seen) <= 32
        # The neighbours never noticed.
        pong = await c.next("keeper/pong", publish=("keeper/ping", 1))
        assert pong.payload["n"] == 1
        good = await c.next("good/pong", publish=("good/ping", 5))
        assert good.payload == {"greeting": "pong", "n": 5}
        assert c.sup.state("keeper") is AppState.RUNNING and c.sup.state("good") is AppState.RUNNING
        assert c.sup.pid("hog") is None


async def test_capability_violations_through_the_app_api_are_refused_and_reported() -> None:
    async with core(isolated=("sneaky",)) as c, c.bus.subscribe(violation_topic("sneaky"), maxsize=50) as v:
        await c.wait("sneaky", AppState.RUNNING)
        refused = c.bus.retained("sneaky/refused")
        assert refused is not None
        assert refused.payload == [
            "publish on 'billing/ledger' not declared in [topics] publish",
            "subscribe on 'meter/#' not covered by [topics] subscribe",
            "hal capability 'metrology' not declared",
        ]
        events = []
        async with c.clock.timeout(10):
            while len(events) < 3:
                events.append((await v.get()).payload)
        assert sorted((e["op"], e["kind"]) for e in events) == [
            ("bus.publish", "publish"),
            ("bus.subscribe", "subscribe"),
            ("hal.open", "hal"),
        ]
        assert c.bridge.statistics()["violations"] == {"sneaky": 3}
        assert c.bus.retained("billing/ledger") is None
        assert c.sup.state("sneaky") is AppState.RUNNING  # refused, not killed; the runtime is fine


async def test_bridge_refuses_a_host_that_bypasses_its_context() -> None:
    async with core(isolated=("rogue",)) as c:
        async with c.bus.subscribe("billing/#") as billing, c.bus.subscribe(violation_topic("rogue")) as v:
            await c.wait("rogue", AppState.RUNNING)
            answers = c.bus.retained("rogue/answers")
            assert answers is not None
            a = answers.payload
            assert a["publish"]["ok"] is False and a["publish"]["type"] == "CapabilityError"
            assert "billing/ledger" in a["publish"]["message"]
            assert a["subscribe"]["ok"] is False and a["subscribe"]["type"] == "CapabilityError"
            assert a["hal"]["ok"] is False and "'metrology' not declared" in a["hal"]["message"]
            # Declared hal on a port this board lacks: the board's answer, not a violation.
            assert a["hal_declared"]["ok"] is False and a["hal_declared"]["type"] == "CapabilityMissing"
            assert "no enabled RS-485 port 'rs485-1'" in a["hal_declared"]["message"]
            assert a["allowed"] == {"ok": True, "result": None}
            assert billing.get_nowait() is None
            kinds = sorted(m.payload["kind"] for m in iter(v.get_nowait, None))
        assert kinds == ["hal", "publish", "subscribe"]
        assert c.bridge.statistics()["violations"] == {"rogue": 3}


async def test_hung_host_is_detected_killed_and_restarted_then_quarantined() -> None:
    async with core(isolated=("wedged",)) as c:
        states: list[str] = []
        async with c.bus.subscribe("runtime/apps/wedged/state", overflow=Overflow.DROP_NEWEST) as sub:
            await c.wait("wedged", AppState.QUARANTINED, within=60)
            states = [m.payload["state"] for m in iter(sub.get_nowait, None)]
        record = c.sup.record("wedged")
        assert record.last_error is not None and record.last_error.startswith("hung: no heartbeat within 1 s")
        assert states.count("running") == 2 and states.count("crashed") == 2 and record.restarts == 1


async def test_crash_in_the_host_restarts_with_backoff_and_return_is_stopped() -> None:
    settings = IsolationSettings(heartbeat_s=0.05, heartbeat_timeout_s=30.0, nice=1)
    async with core(isolated=("quitter", "crasher"), settings=settings) as c:
        # quitter returns at once: STOPPED, not restarted (exit status 0 with "done").
        await c.wait("quitter", AppState.STOPPED)
        assert c.sup.record("quitter").restarts == 0
        # crasher raises 10 s after ready, in its own process; back after a 2 s backoff.
        seen: list[tuple[str, int]] = []
        async with c.bus.subscribe("runtime/apps/crasher/state", maxsize=100) as sub, c.clock.timeout(40):
            async for m in sub:
                seen.append((m.payload["state"], m.payload["restarts"]))
                if seen[-1] == ("running", 1):
                    break
        assert ("crashed", 0) in seen and ("backoff", 0) in seen
        assert c.sup.record("crasher").last_error == "RuntimeError: meter table corrupt"


async def test_stop_escalates_to_sigkill_within_stop_timeout_and_leaves_no_process() -> None:
    settings = IsolationSettings(heartbeat_s=0.05, heartbeat_timeout_s=60.0, nice=1)
    async with core(isolated=("stubborn", "keeper"), settings=settings) as c:
        await c.wait("stubborn", AppState.RUNNING)
        await c.wait("keeper", AppState.RUNNING)
        pids = {c.sup.pid("stubborn"), c.sup.pid("keeper")}
        assert None not in pids and pids <= _children()
        t0 = c.clock.monotonic()
        await c.sup.stop_app("stubborn")
        took = c.clock.monotonic() - t0
        assert c.sup.state("stubborn") is AppState.STOPPED
        assert took <= c.sup.record("stubborn").manifest.limits.stop_timeout_s + 0.5
        assert c.sup.state("keeper") is AppState.RUNNING
        c.sup.start_app("stubborn")
        await c.wait("stubborn", AppState.RUNNING)
    # Supervisor stopped: every host is gone and reaped.
    assert not (pids & _children())


async def test_isolated_needs_a_bridge() -> None:
    from hal.clock import LoopClock
    from runtime.bus import Bus
    from runtime.container.context import AppContextFactory
    from runtime.container.manifest import load_manifest
    from runtime.container.supervisor import Supervisor
    from runtime.scheduler import MemoryKeyValue, Scheduler

    from .conftest import FIXTURES

    clock = LoopClock()
    bus = Bus(clock=clock)
    factory = AppContextFactory(
        clock=clock, bus=bus, scheduler=Scheduler(clock=clock, tz="UTC", state=MemoryKeyValue())
    )
    sup = Supervisor(clock=clock, bus=bus, context_factory=factory)
    with pytest.raises(AppError, match="no app bridge"):
        sup.add(load_manifest(FIXTURES / "good" / "app.toml"), isolated=True)


def test_fast_settings_are_valid() -> None:
    assert FAST.heartbeat_s < FAST.heartbeat_timeout_s
    with pytest.raises(ValueError):
        IsolationSettings(heartbeat_s=1, heartbeat_timeout_s=1)
