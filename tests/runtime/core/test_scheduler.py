"""Scheduler guarantees under virtual time (looptime + LoopClock + clock.step())."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hal.clock import LoopClock
from runtime.errors import TerminalError
from runtime.scheduler import (
    Aligned,
    CatchUp,
    Daily,
    Interval,
    MemoryKeyValue,
    Monthly,
    Scheduler,
    Slot,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def local(tz: ZoneInfo, *args: int) -> float:
    return datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


class Recorder:
    def __init__(self) -> None:
        self.slots: list[Slot] = []

    async def __call__(self, slot: Slot) -> None:
        self.slots.append(slot)

    @property
    def hm(self) -> list[str]:
        return [s.local.strftime("%m-%d %H:%M") for s in self.slots]


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(scheduler.run(), name="test-scheduler")
        await asyncio.sleep(0)
        yield
        task.cancel()


@pytest.mark.looptime
async def test_a_day_of_15_min_jobs_runs_at_quarter_hours() -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 0, 0) - 1)
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    rec = Recorder()
    s.add("curve", Aligned(900), rec)
    async with running(s):
        await clock.sleep(86400)
    assert len(rec.slots) == 96
    assert rec.hm[:5] == ["01-01 00:00", "01-01 00:15", "01-01 00:30", "01-01 00:45", "01-01 01:00"]
    assert rec.hm[-1] == "01-01 23:45"
    assert all(not slot.late for slot in rec.slots)


@pytest.mark.looptime
async def test_backward_step_never_reruns_a_done_boundary() -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 23, 50))
    state = MemoryKeyValue()
    s = Scheduler(clock=clock, tz=SHANGHAI, state=state)
    rec = Recorder()
    s.add("freeze", Daily(0, 0), rec, catch_up=CatchUp.ALL)
    async with running(s):
        await clock.sleep(20 * 60)  # past midnight: the daily freeze runs once
        assert rec.hm == ["01-02 00:00"]
        clock.step(-30 * 60)  # time sync puts us back to 23:40 the day before
        await clock.sleep(40 * 60)  # crosses "midnight" again
        assert rec.hm == ["01-02 00:00"]
        await clock.sleep(86400)
    assert rec.hm == ["01-02 00:00", "01-03 00:00"]
    assert state.data["scheduler.freeze.last"] == repr(local(SHANGHAI, 2026, 1, 3))


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("policy", "expected", "late"),
    [
        (CatchUp.ALL, ["10:15", "10:30", "10:45", "11:00"], [True, True, True, True]),
        (CatchUp.LATEST, ["11:00"], [True]),
        (CatchUp.SKIP, [], []),
    ],
)
async def test_forward_step_runs_missed_boundaries_per_policy(
    policy: CatchUp, expected: list[str], late: list[bool]
) -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 10, 5))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    rec = Recorder()
    s.add("curve", Aligned(900), rec, catch_up=policy)
    async with running(s):
        await clock.sleep(60)
        clock.step(3600)  # 10:06 -> 11:06
        await clock.sleep(1)
        assert [x.local.strftime("%H:%M") for x in rec.slots] == expected
        assert [x.late for x in rec.slots] == late
        await clock.sleep(9 * 60)  # 11:15 is on time for every policy
    assert rec.slots[-1].local.strftime("%H:%M") == "11:15"
    assert not rec.slots[-1].late
    assert s.statistics()["curve"]["skipped"] == 4 - len(expected)


@pytest.mark.looptime
@pytest.mark.parametrize(("policy", "runs"), [(CatchUp.ALL, 8), (CatchUp.LATEST, 1), (CatchUp.SKIP, 0)])
async def test_downtime_catches_up_from_persisted_state(policy: CatchUp, runs: int) -> None:
    state = MemoryKeyValue()
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 9, 59))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=state)
    rec = Recorder()
    s.add("curve", Aligned(900), rec, catch_up=policy)
    async with running(s):
        await clock.sleep(120)
    assert rec.hm == ["01-01 10:00"]
    # "reboot" two hours later with the persisted state
    clock2 = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 12, 5))
    s2 = Scheduler(clock=clock2, tz=SHANGHAI, state=state)
    rec2 = Recorder()
    s2.add("curve", Aligned(900), rec2, catch_up=policy)
    async with running(s2):
        await clock2.sleep(1)
    assert len(rec2.slots) == runs
    if runs:
        assert rec2.hm[-1] == "01-01 12:00"
        assert rec2.slots == sorted(rec2.slots, key=lambda x: x.epoch)


@pytest.mark.looptime
async def test_all_policy_caps_missed_runs_at_max_missed() -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 0, 1))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    rec = Recorder()
    s.add("curve", Aligned(900), rec, catch_up=CatchUp.all(max_missed=3))
    async with running(s):
        await clock.sleep(1)
        clock.step(86400)
        await clock.sleep(1)
    assert rec.hm == ["01-01 23:30", "01-01 23:45", "01-02 00:00"]
    assert s.statistics()["curve"]["skipped"] == 93


@pytest.mark.looptime
async def test_dst_spring_forward_and_fall_back_in_berlin() -> None:
    # 2026-03-29: 02:00 CET -> 03:00 CEST (23 h); 2026-10-25: 03:00 CEST -> 02:00 CET (25 h)
    for day, hours in (((2026, 3, 29), 23), ((2026, 10, 25), 25)):
        clock = LoopClock(start=local(BERLIN, *day) - 1)
        s = Scheduler(clock=clock, tz=BERLIN, state=MemoryKeyValue())
        hourly, daily = Recorder(), Recorder()
        s.add("hourly", Aligned(3600), hourly)
        s.add("daily", Daily(2, 30), daily)
        async with running(s):
            await clock.sleep(hours * 3600 - 2)
        assert len(hourly.slots) == hours
        assert len({x.epoch for x in hourly.slots}) == hours
        assert len(daily.slots) == 1, daily.hm
    # on the spring day 02:30 does not exist: the freeze runs right after the gap
    assert daily.slots[0].local.utcoffset() is not None


@pytest.mark.looptime
async def test_daily_freeze_once_per_day_across_dst_week() -> None:
    clock = LoopClock(start=local(BERLIN, 2026, 3, 26))
    s = Scheduler(clock=clock, tz=BERLIN, state=MemoryKeyValue())
    rec = Recorder()
    s.add("freeze", Daily(2, 30), rec)
    async with running(s):
        await clock.sleep(7 * 86400)
    assert [x.local.day for x in rec.slots] == [26, 27, 28, 29, 30, 31, 1]
    assert rec.hm[3] == "03-29 03:30"  # 02:30 was skipped by the clocks going forward


@pytest.mark.looptime
async def test_monthly_billing_day_in_local_time() -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 15))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    rec, end = Recorder(), Recorder()
    s.add("bill", Monthly(1, 0, 0), rec)
    s.add("eom", Monthly(31, 23, 0), end)
    async with running(s):
        await clock.sleep(80 * 86400)
    assert rec.hm == ["02-01 00:00", "03-01 00:00", "04-01 00:00"]
    assert end.hm == ["01-31 23:00", "02-28 23:00", "03-31 23:00"]


@pytest.mark.looptime
async def test_failing_job_is_counted_and_scheduler_keeps_going() -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 0, 1))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    rec = Recorder()
    calls = 0

    async def broken(slot: Slot) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("meter archive missing")

    s.add("broken", Aligned(900), broken)
    s.add("ok", Aligned(900), rec)
    async with running(s):
        await clock.sleep(3600)
    stats = s.statistics()
    assert calls == 4
    assert stats["broken"]["errors"] == 4
    assert stats["broken"]["last_error"] == "RuntimeError: meter archive missing"
    assert len(rec.slots) == 4


@pytest.mark.looptime
@pytest.mark.parametrize(("policy", "runs"), [(CatchUp.ALL, 3), (CatchUp.LATEST, 2)])
async def test_slow_job_is_never_started_twice(policy: CatchUp, runs: int) -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 0, 1))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    active = 0
    peak = 0
    seen: list[str] = []

    async def slow(slot: Slot) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        seen.append(slot.local.strftime("%H:%M"))
        try:
            if len(seen) == 1:
                await clock.sleep(40 * 60)  # overruns two boundaries
        finally:
            active -= 1

    s.add("slow", Aligned(900), slow, catch_up=policy)
    async with running(s):
        await clock.sleep(56 * 60)  # until 00:57: the first run ended at 00:55
    assert peak == 1
    assert len(seen) == runs
    assert seen[0] == "00:15"
    assert seen[-1] == "00:45"
    assert s.statistics()["slow"]["overruns"] == 1


@pytest.mark.looptime
async def test_interval_is_monotonic_and_ignores_steps() -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 0, 0, 7))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    ticks: list[float] = []

    async def tick(slot: Slot) -> None:
        ticks.append(clock.monotonic())

    s.add("poll", Interval(60), tick)
    async with running(s):
        await clock.sleep(150)
        clock.step(-3600)
        await clock.sleep(100)
    assert ticks == pytest.approx([60, 120, 180, 240])


@pytest.mark.looptime
async def test_jobs_added_while_running_and_cancelled() -> None:
    clock = LoopClock(start=local(SHANGHAI, 2026, 1, 1, 0, 1))
    s = Scheduler(clock=clock, tz=SHANGHAI, state=MemoryKeyValue())
    rec = Recorder()
    async with running(s):
        job = s.add("late", Aligned(900), rec)
        with pytest.raises(TerminalError, match="already exists"):
            s.add("late", Aligned(900), rec)
        await clock.sleep(1800)
        job.cancel()
        await clock.sleep(3600)
    assert rec.hm == ["01-01 00:15", "01-01 00:30"]
    assert "late" not in s.jobs()
