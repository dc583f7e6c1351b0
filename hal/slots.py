"""``PrioritySlots``: admission of callers to a medium that serves at most ``size`` at once.

Layer: hal. One RS-485 bus is ``size=1`` (a transaction holds the line); the carrier
module admits several transactions at once. Waiters are admitted by ``Priority`` (CONTROL >
EVENT > REALTIME > CURVE), FIFO within a priority; a slot passes directly from the releaser
to the next waiter, so a newcomer never overtakes the queue. A waiter cancelled while
queued leaves it; one cancelled just as it was handed a slot passes the slot on.

Must not: time anything, know what the slots are used for, or import runtime/.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Coroutine
from typing import Any

from hal.interfaces import Priority


class PrioritySlots:
    """At most ``size`` holders at once; waiters admitted by priority, FIFO within one."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, not {size}")
        self._free = size
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.in_use = 0

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._queue if not fut.done())

    def waiting_by_priority(self) -> dict[str, int]:
        """Live waiters per ``Priority`` name (every priority listed)."""
        queue = {p.name: 0 for p in Priority}
        for prio, _, granted in self._queue:
            if not granted.done():
                queue[Priority(prio).name] += 1
        return queue

    async def acquire(self, priority: Priority) -> None:
        if self._free > 0 and not self._queue:
            self._free -= 1
            self.in_use += 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (int(priority), next(self._seq), granted)
        heapq.heappush(self._queue, entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            elif entry in self._queue:  # release may already have popped (and skipped) it
                self._queue.remove(entry)
                heapq.heapify(self._queue)
            raise

    def release(self) -> None:
        while self._queue:
            _, _, granted = heapq.heappop(self._queue)
            if not granted.done():
                granted.set_result(None)  # the slot passes directly to the next waiter
                return
        self._free += 1
        self.in_use -= 1

    def hold(self, priority: Priority) -> _Hold:
        """``async with slots.hold(priority):`` -- a slot for the block (released on any exit)."""
        return _Hold(self, priority)


class _Hold:
    """``PrioritySlots.hold``: a plain async context manager (one per transaction: cheaper than a
    generator-based one)."""

    __slots__ = ("_priority", "_slots")

    def __init__(self, slots: PrioritySlots, priority: Priority) -> None:
        self._slots = slots
        self._priority = priority

    def __aenter__(self) -> Coroutine[Any, Any, None]:
        # the acquire itself, not a coroutine around it: one frame less for each of the
        # hundreds of transactions a cycle queues on one bus
        return self._slots.acquire(self._priority)

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


__all__ = ["PrioritySlots"]
