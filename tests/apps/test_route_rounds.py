"""Module-led rounds over the hour: a round that outlasts its period is followed at once.

At 2,000 carrier meters the midnight round (every meter's curve block plus its daily freeze)
took 68 minutes. The 01:00 slot saw it still running and left it alone, and when it ended at
01:08 nothing read the points that had come due since until the 02:00 round. These tests drive
``RouteTask.run`` slot by slot against a carrier module whose rounds take a set time, on
looptime's virtual clock.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest

from apps.acquisition.route import ROUND_DELAY_S, RouteTask
from hal.clock import LoopClock
from hal.interfaces import RouteReader
from hal.meters.route import RouteTransport
from protocols.station import Meter
from runtime.scheduler import Slot

pytestmark = pytest.mark.looptime

TZ = ZoneInfo("Asia/Shanghai")
MIDNIGHT = datetime(2024, 6, 2, tzinfo=TZ).timestamp()
HOUR = 3600.0


class Module:
    """A carrier module whose next rounds last the given seconds each (then 10 min)."""

    def __init__(self, clock: LoopClock, durations: list[float]) -> None:
        self._clock = clock
        self._durations = durations
        self.transport: RouteTransport | None = None
        self.restarts: list[float] = []
        self._end: asyncio.TimerHandle | None = None

    def lead(self, reader: RouteReader | None) -> None:
        self.transport = reader if isinstance(reader, RouteTransport) else None

    async def route(self, action: Literal["restart", "pause", "resume"]) -> None:
        assert action == "restart"
        self.restarts.append(self._clock.now())
        if self._end is not None:
            self._end.cancel()
        took = self._durations.pop(0) if self._durations else 600.0
        transport = self.transport
        assert transport is not None
        self._end = asyncio.get_running_loop().call_later(took, transport.finished)


@dataclass
class Store:
    values: dict[str, Any] = field(default_factory=dict)

    async def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        self.values[key] = value


@dataclass
class Ctx:
    clock: LoopClock
    store: Store = field(default_factory=Store)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("test.route"))


class Reader:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def record(self, meter: Meter, kind: str, ok: bool) -> None: ...


class Output:
    async def readings(self, readings: list[Any], kind: str = "") -> None: ...


class Clients:
    def client(self, transport: Any, protocol: str, address: str, *, three_phase: bool) -> object:
        return object()


@dataclass
class Model:
    meters: list[Meter]


async def rounds(durations: list[float], hours: int) -> tuple[list[float], dict[str, int]]:
    """Run the hourly slots from midnight for ``hours``; the module's restart times (hours after
    midnight) and the task's counters."""
    clock = LoopClock(start=MIDNIGHT)
    ctx = Ctx(clock)
    task = RouteTask(
        ctx, Reader(), Output(), Clients(),  # type: ignore[arg-type]
        tz=TZ, catch_up_hours=24, round_s=HOUR, daily_freeze=True,
    )  # fmt: skip
    task.use(Model([Meter(id="m-0001", address="000000000001", channel="hplc")]))  # type: ignore[arg-type]
    module = Module(clock, durations)
    assert task.attach(module)
    for h in range(hours):
        epoch = MIDNIGHT + h * HOUR
        await clock.sleep_until(epoch)
        await task.run(Slot("route", epoch, datetime.fromtimestamp(epoch, TZ)))
    return [round((t - MIDNIGHT) / HOUR, 3) for t in module.restarts], task.counters


async def test_a_round_that_outlasts_its_hour_is_followed_at_once_by_a_catch_up_round() -> None:
    midnight_round = 68 * 60.0  # ends at 01:09 (started at 00:01)
    restarts, counters = await rounds([midnight_round], hours=3)
    start = ROUND_DELAY_S / HOUR
    ended = start + midnight_round / HOUR
    # 00:01 the midnight round; 01:01 it still runs (left alone); 01:09 it ends: a catch-up
    # round at once, not at 02:01; 02:01 the next round as usual
    assert restarts == [round(start, 3), round(ended, 3), round(2 + start, 3)]
    assert counters["route_rounds_unfinished"] == 1
    assert counters["route_rounds_catch_up"] == 1
    assert counters["route_rounds"] == 3


async def test_rounds_that_fit_their_hour_are_not_repeated() -> None:
    restarts, counters = await rounds([50 * 60.0, 20 * 60.0, 58 * 60.0], hours=3)
    start = round(ROUND_DELAY_S / HOUR, 3)
    assert restarts == [start, 1 + start, 2 + start]
    assert counters["route_rounds_catch_up"] == 0
    assert counters["route_rounds_unfinished"] == 0


async def test_a_round_ending_in_the_last_minutes_of_the_next_period_waits_for_its_slot() -> None:
    # 00:01 + 116 min = 01:57: past the 01:55 deadline of the 01:00 slot, the 02:01 slot restarts
    restarts, counters = await rounds([116 * 60.0], hours=3)
    start = round(ROUND_DELAY_S / HOUR, 3)
    assert restarts == [start, 2 + start]
    assert counters["route_rounds_catch_up"] == 0
