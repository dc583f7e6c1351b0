"""PrioritySlots: admission by priority, FIFO within one, and reserved places (work started when granted)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hal.interfaces import Priority
from hal.slots import PrioritySlots


async def settle() -> None:
    """Let every ready task run until the loop is idle (no clock involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Log:
    """Work that takes the slot, notes its name, and holds the slot until told to go on."""

    def __init__(self, slots: PrioritySlots) -> None:
        self.slots = slots
        self.order: list[str] = []
        self.go = asyncio.Event()

    async def use(self, name: str, priority: Priority) -> None:
        async with self.slots.hold(priority):
            self.order.append(name)
            await self.go.wait()


async def test_reserved_places_are_served_in_the_order_tasks_queueing_now_would_be() -> None:
    slots = PrioritySlots(1)
    log = Log(slots)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(log.use("holder", Priority.CONTROL))]
    await settle()
    tasks.append(asyncio.create_task(log.use("curve-before", Priority.CURVE)))
    tasks.append(asyncio.create_task(log.use("realtime-before", Priority.REALTIME)))
    await settle()
    started: list[int] = []

    def start(i: int) -> asyncio.Task[None]:
        started.append(i)
        task = asyncio.create_task(log.use(f"place{i}", Priority.REALTIME))
        tasks.append(task)
        return task

    reservation = slots.reserve(Priority.REALTIME, 3, start)
    tasks.append(asyncio.create_task(log.use("event-after", Priority.EVENT)))
    tasks.append(asyncio.create_task(log.use("realtime-after", Priority.REALTIME)))
    await settle()
    assert started == [] and reservation.left == 3
    assert slots.waiting == 7 and slots.waiting_by_priority()["REALTIME"] == 5
    log.go.set()  # each holder lets go as soon as it has the slot
    await asyncio.gather(*tasks)
    await reservation.wait()
    assert log.order == [
        "holder",
        "event-after",
        "realtime-before",
        "place0",
        "place1",
        "place2",
        "realtime-after",
        "curve-before",
    ]
    assert started == [0, 1, 2]
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_a_free_slot_starts_the_first_place_at_once_and_the_rest_one_by_one() -> None:
    slots = PrioritySlots(2)
    log = Log(slots)
    started: list[int] = []

    def start(i: int) -> asyncio.Task[None]:
        started.append(i)
        return asyncio.create_task(log.use(f"place{i}", Priority.CURVE))

    reservation = slots.reserve(Priority.CURVE, 4, start)
    await asyncio.sleep(0)  # the places join on the loop's next turn
    assert started == [0, 1]  # two slots: two tasks, no task at all for the others yet
    await settle()
    assert log.order == ["place0", "place1"] and slots.in_use == 2 and slots.waiting == 2
    log.go.set()
    await reservation.wait()
    await settle()
    assert log.order == ["place0", "place1", "place2", "place3"]
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_work_that_ends_without_taking_its_slot_passes_it_on() -> None:
    """A meter removed from the plan while its place was queued: its task decides at its turn."""
    slots = PrioritySlots(1)
    log = Log(slots)
    log.go.set()
    removed = {1}

    async def work(i: int) -> None:
        if i in removed:
            return  # decided when granted: nothing to read
        await log.use(f"place{i}", Priority.REALTIME)

    holder = asyncio.create_task(slots.acquire(Priority.CONTROL))
    await holder
    reservation = slots.reserve(Priority.REALTIME, 3, lambda i: asyncio.create_task(work(i)))
    await settle()
    assert slots.waiting == 3
    slots.release()
    await reservation.wait()
    await settle()
    assert log.order == ["place0", "place2"]
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_start_returning_none_passes_the_slot_on() -> None:
    slots = PrioritySlots(1)
    log = Log(slots)
    log.go.set()

    def start(i: int) -> asyncio.Task[None] | None:
        return None if i == 0 else asyncio.create_task(log.use(f"place{i}", Priority.REALTIME))

    reservation = slots.reserve(Priority.REALTIME, 2, start)
    await reservation.wait()
    await settle()
    assert log.order == ["place1"] and (slots.in_use, slots.waiting) == (0, 0)


async def test_cancelled_while_waiting_withdraws_the_places_still_queued() -> None:
    slots = PrioritySlots(1)
    log = Log(slots)
    holder = asyncio.create_task(log.use("holder", Priority.CONTROL))
    await settle()
    started: list[int] = []

    def start(i: int) -> asyncio.Task[None]:
        started.append(i)
        return asyncio.create_task(log.use(f"place{i}", Priority.REALTIME))

    async def cycle() -> None:
        await slots.reserve(Priority.REALTIME, 3, start).wait()

    waiter = asyncio.create_task(cycle())
    await settle()
    assert slots.waiting == 3
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting == 0 and started == []
    later = asyncio.create_task(log.use("later", Priority.CURVE))
    log.go.set()
    await asyncio.gather(holder, later)
    assert log.order == ["holder", "later"] and started == []
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_a_started_task_cancelled_before_it_runs_passes_the_slot_on() -> None:
    slots = PrioritySlots(1)
    log = Log(slots)
    log.go.set()
    tasks: list[asyncio.Task[None]] = []

    def start(i: int) -> asyncio.Task[None]:
        task = asyncio.create_task(log.use(f"place{i}", Priority.REALTIME))
        tasks.append(task)
        if i == 0:
            task.cancel()  # e.g. its cycle is being torn down
        return task

    reservation = slots.reserve(Priority.REALTIME, 2, start)
    await reservation.wait()
    await settle()
    assert log.order == ["place1"] and tasks[0].cancelled()
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_a_started_task_takes_its_slot_once_then_queues_like_anyone() -> None:
    """Its second transaction (the next realtime batch) goes behind the places still queued."""
    slots = PrioritySlots(1)
    order: list[str] = []

    async def two(i: int) -> None:
        for n in (1, 2):
            async with slots.hold(Priority.REALTIME):
                order.append(f"{i}.{n}")
                await asyncio.sleep(0)

    reservation = slots.reserve(Priority.REALTIME, 3, lambda i: asyncio.create_task(two(i)))
    await reservation.wait()
    for _ in range(100):
        await asyncio.sleep(0)
    assert order == ["0.1", "1.1", "2.1", "0.2", "1.2", "2.2"]
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_a_turn_is_served_like_an_acquire_and_taken_by_the_tasks_next_acquire() -> None:
    slots = PrioritySlots(1)
    order: list[str] = []

    async def batches(name: str, *, turn: bool) -> None:
        for n in (1, 2):
            if turn and n > 1:
                await slots.turn(Priority.REALTIME)  # waits here; the acquire below takes the slot
            async with slots.hold(Priority.REALTIME):
                order.append(f"{name}.{n}")
                await asyncio.sleep(0)

    async def run(turn: bool) -> list[str]:
        order.clear()
        await asyncio.gather(*(batches(x, turn=turn) for x in "abc"))
        assert (slots.in_use, slots.waiting) == (0, 0)
        return list(order)

    assert await run(True) == await run(False) == ["a.1", "b.1", "c.1", "a.2", "b.2", "c.2"]


async def test_a_task_that_ends_after_its_turn_without_taking_it_passes_the_slot_on() -> None:
    slots = PrioritySlots(1)
    got: list[str] = []

    async def gives_up() -> None:
        await slots.turn(Priority.EVENT)

    async def later() -> None:
        async with slots.hold(Priority.CURVE):
            got.append("later")

    await slots.acquire(Priority.CONTROL)
    tasks = [asyncio.create_task(gives_up()), asyncio.create_task(later())]
    await settle()
    slots.release()
    await asyncio.gather(*tasks)
    await settle()
    assert got == ["later"] and (slots.in_use, slots.waiting) == (0, 0)
