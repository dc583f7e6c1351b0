"""The clock: virtual time, scaling, steps. Runs under looptime (no wall-clock waits)."""

from __future__ import annotations

import asyncio

import pytest

from hal.clock import LoopClock, ticking

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.looptime
async def test_now_and_monotonic_advance_with_sleep() -> None:
    clock = LoopClock(start=START)
    assert clock.now() == pytest.approx(START)
    await clock.sleep(90)
    assert clock.now() == pytest.approx(START + 90)
    assert clock.monotonic() == pytest.approx(90)


@pytest.mark.looptime
async def test_speed_scales_clock_seconds_per_loop_second() -> None:
    loop = asyncio.get_running_loop()
    clock = LoopClock(start=START, speed=60)
    t0 = loop.time()
    await clock.sleep(3600)  # an hour of clock time ...
    assert loop.time() - t0 == pytest.approx(60)  # ... is a minute of loop time
    assert clock.now() == pytest.approx(START + 3600)


@pytest.mark.looptime
async def test_step_moves_wall_time_only() -> None:
    clock = LoopClock(start=START)
    clock.step(-300)
    assert clock.now() == pytest.approx(START - 300)
    assert clock.monotonic() == pytest.approx(0)


@pytest.mark.looptime
async def test_sleep_until_wakes_early_on_forward_step() -> None:
    clock = LoopClock(start=START)
    waiter = asyncio.create_task(clock.sleep_until(START + 3600))
    await clock.sleep(10)
    clock.step(3600)
    await asyncio.wait_for(waiter, timeout=1)
    assert clock.monotonic() == pytest.approx(10)


@pytest.mark.looptime
async def test_sleep_until_keeps_waiting_after_backward_step() -> None:
    clock = LoopClock(start=START)
    waiter = asyncio.create_task(clock.sleep_until(START + 100))
    await clock.sleep(50)
    clock.step(-50)  # wall time is back at START: 100 s still to go
    await clock.sleep(60)
    assert not waiter.done()
    await waiter
    assert clock.monotonic() == pytest.approx(150)
    assert clock.now() == pytest.approx(START + 100)


@pytest.mark.looptime
async def test_timeout_scope_uses_clock_seconds() -> None:
    clock = LoopClock(start=START, speed=10)
    with pytest.raises(TimeoutError):
        async with clock.timeout(30):
            await clock.sleep(31)
    assert clock.monotonic() == pytest.approx(30)


@pytest.mark.looptime
async def test_ticking_is_drift_free() -> None:
    clock = LoopClock(start=START)
    seen = []
    async with ticking(clock, 15) as ticks:
        async for ts in ticks:
            seen.append(ts - START)
            await clock.sleep(4)  # work inside a tick does not shift the next one
            if len(seen) == 4:
                break
    assert seen == pytest.approx([0, 15, 30, 45])


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="speed"):
        LoopClock(speed=0)
