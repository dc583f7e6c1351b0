"""A reading cycle's meters reserve their places on the transport (``each_meter(queue=...)``):
the same read order as one task a meter queueing at once, a task only when a meter's turn comes,
decisions (is the meter still there?) taken at that turn. And the route task's progress columns."""

from __future__ import annotations

import asyncio

import pytest

from apps.acquisition.plan import each_meter
from apps.acquisition.route import Progress
from hal.interfaces import Priority
from hal.slots import PrioritySlots, Reservation, Start
from protocols.station import Meter


class Line:
    """A transport of one slot that notes who used it; ``reserve`` as an RS-485 port has it."""

    def __init__(self) -> None:
        self.slots = PrioritySlots(1)
        self.order: list[str] = []
        self.tasks_seen = 0

    def reserve(self, priority: Priority, count: int, start: Start) -> Reservation | None:
        return self.slots.reserve(priority, count, start)

    async def turn(self, priority: Priority) -> None:
        await self.slots.turn(priority)

    async def use(self, what: str, priority: Priority) -> None:
        async with self.slots.hold(priority):
            self.order.append(what)
            await asyncio.sleep(0)

    def live_tasks(self) -> int:
        return sum(1 for t in asyncio.all_tasks() if (t.get_name() or "").startswith(("rt:", "cv:")))


def meters(n: int, prefix: str = "m") -> list[Meter]:
    return [Meter(id=f"{prefix}{i}", address=f"{i:012d}", port="rs485-1") for i in range(n)]


async def cycles(line: Line, *, reserve: bool, gone: set[str] | None = None) -> list[str]:
    """A realtime cycle (two batches a meter) and a curve cycle started together, behind a holder."""
    peak: list[int] = []

    async def realtime(meter: Meter) -> None:
        if gone and meter.id in gone:
            return  # no longer in the plan: nothing to read
        peak.append(line.live_tasks())
        for batch in (1, 2):
            if batch > 1 and reserve:
                await line.turn(Priority.REALTIME)  # as the realtime task waits for a later batch
            await line.use(f"rt {meter.id}.{batch}", Priority.REALTIME)

    async def curve(meter: Meter) -> None:
        await line.use(f"cv {meter.id}", Priority.CURVE)

    queue = line if reserve else None
    await line.slots.acquire(Priority.CONTROL)  # the bus is busy when the cycles start
    both = asyncio.gather(
        each_meter(meters(4), realtime, task="rt", queue=queue, priority=Priority.REALTIME),
        each_meter(meters(3, "c"), curve, task="cv", queue=queue, priority=Priority.CURVE),
    )
    for _ in range(5):
        await asyncio.sleep(0)
    line.tasks_seen = line.live_tasks()
    line.slots.release()
    await both
    assert (line.slots.in_use, line.slots.waiting) == (0, 0)
    return line.order


async def test_reserved_cycles_read_in_the_order_of_one_task_a_meter() -> None:
    eager, lazy = Line(), Line()
    assert await cycles(lazy, reserve=True) == await cycles(eager, reserve=False)
    assert lazy.order[:5] == ["rt m0.1", "rt m1.1", "rt m2.1", "rt m3.1", "rt m0.2"]
    assert lazy.order[-3:] == ["cv c0", "cv c1", "cv c2"]
    assert eager.tasks_seen == 7  # one task a meter, all waiting
    assert lazy.tasks_seen == 0  # places only: no task before its turn


async def test_a_meter_gone_while_its_place_waited_is_skipped_at_its_turn() -> None:
    line = Line()
    order = await cycles(line, reserve=True, gone={"m1"})
    assert [o for o in order if o.startswith("rt") and o.endswith(".1")] == ["rt m0.1", "rt m2.1", "rt m3.1"]
    assert len(order) == 3 * 2 + 3


async def test_a_cycle_cancelled_while_its_places_wait_starts_no_more_reads() -> None:
    line = Line()
    started: list[str] = []

    async def read(meter: Meter) -> None:
        started.append(meter.id)
        await line.use(meter.id, Priority.REALTIME)

    await line.slots.acquire(Priority.CONTROL)
    cycle = asyncio.create_task(
        each_meter(meters(3), read, task="rt", queue=line, priority=Priority.REALTIME)
    )
    for _ in range(5):
        await asyncio.sleep(0)
    assert line.slots.waiting == 3 and started == []
    cycle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cycle
    assert line.slots.waiting == 0
    line.slots.release()
    assert (line.slots.in_use, started) == (0, [])


async def test_a_failing_read_ends_the_cycle_and_withdraws_the_places_left() -> None:
    line = Line()
    started: list[str] = []

    async def read(meter: Meter) -> None:
        started.append(meter.id)
        if meter.id == "m1":
            raise RuntimeError("boom")
        await line.use(meter.id, Priority.REALTIME)

    with pytest.raises(ExceptionGroup):
        await each_meter(meters(4), read, task="rt", queue=line, priority=Priority.REALTIME)
    assert started == ["m0", "m1"]
    assert (line.slots.in_use, line.slots.waiting) == (0, 0)


async def test_without_a_queue_every_meter_gets_its_task_at_once() -> None:
    got: list[str] = []

    async def read(meter: Meter) -> None:
        got.append(meter.id)

    await each_meter(meters(3), read, task="rt")
    assert got == ["m0", "m1", "m2"]


def test_route_progress_columns_round_trip_and_keep() -> None:
    p = Progress()
    assert (p.point("a"), p.freeze("a"), p.visited("a")) == (None, None, None)
    p.set_point("a", 1_717_200_000.0)
    p.set_freeze("b", 1_717_171_200.0)
    p.set_visited("c", 0)
    p.set_visited("a", 7)
    assert (p.point("a"), p.freeze("a"), p.visited("a")) == (1_717_200_000.0, None, 7)
    assert (p.point("b"), p.freeze("b"), p.visited("b")) == (None, 1_717_171_200.0, None)
    assert p.visited("c") == 0
    assert list(p.saved()) == [("a", 1_717_200_000.0, None), ("b", None, 1_717_171_200.0)]
    p.keep(["b", "c"])  # "a" left the model: its point goes, its visit stays
    assert (p.point("a"), p.visited("a")) == (None, 7)
    assert list(p.saved()) == [("b", None, 1_717_171_200.0)]
    assert p.visited("c") == 0
