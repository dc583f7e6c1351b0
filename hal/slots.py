"""``PrioritySlots``: admission of callers to a medium that serves at most ``size`` at once.

Layer: hal. One RS-485 bus is ``size=1`` (a transaction holds the line); the carrier
module admits several transactions at once. Waiters are admitted by ``Priority`` (CONTROL >
EVENT > REALTIME > CURVE), FIFO within a priority; a slot passes directly from the releaser
to the next waiter, so a newcomer never overtakes the queue. A waiter cancelled while
queued leaves it; one cancelled just as it was handed a slot passes the slot on.

A caller with many pieces of work for the medium (a reading cycle: one a meter) can
``reserve`` their places in the queue at once instead of starting them all to wait in
``acquire``: a place is a small queue entry, and its work (a task) is started only when the
place is handed a slot. That task holds the slot from then on; its first ``acquire`` on these
slots takes it without queueing, and if it ends without one the slot passes on. The queue
order is the same as if the tasks had been created at the moment of the reservation and had
queued themselves in ``acquire``.

Must not: time anything, know what the slots are used for, or import runtime/.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from hal.interfaces import Priority

Start = Callable[[int], "asyncio.Task[Any] | None"]


class _Waiter(Protocol):
    def done(self) -> bool: ...


class PrioritySlots:
    """At most ``size`` holders at once; waiters admitted by priority, FIFO within one."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, not {size}")
        self._free = size
        # (priority, seq, waiter): an acquire's future, or a reserved place
        self._queue: list[tuple[int, int, _Waiter]] = []
        self._seq = itertools.count()
        self._handed: set[asyncio.Task[Any]] = set()  # started on a reserved place, slot not taken yet
        self.in_use = 0

    @property
    def waiting(self) -> int:
        return sum(1 for *_, waiter in self._queue if not waiter.done())

    def waiting_by_priority(self) -> dict[str, int]:
        """Live waiters per ``Priority`` name (every priority listed)."""
        queue = {p.name: 0 for p in Priority}
        for prio, _, waiter in self._queue:
            if not waiter.done():
                queue[Priority(prio).name] += 1
        return queue

    async def acquire(self, priority: Priority) -> None:
        if self._handed:
            task = asyncio.current_task()
            if task is not None and task in self._handed:  # started on a reserved place: its slot
                self._handed.discard(task)
                task.remove_done_callback(self._unclaimed)
                return
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

    async def turn(self, priority: Priority) -> None:
        """Wait for a slot as ``acquire`` does, for the calling task's next ``acquire`` to take: a
        caller whose transaction goes through many layers awaits its turn here first and builds
        them once it is its turn (one waiting coroutine, not a chain). The slot passes on if the
        task ends without taking it; it must take it before it awaits anything else."""
        await self.acquire(priority)
        task = asyncio.current_task()
        if task is None:  # pragma: no cover (acquire needs a task)
            self.release()
            return
        self._handed.add(task)
        task.add_done_callback(self._unclaimed)

    def release(self) -> None:
        self._free += 1
        self.in_use -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        """Give free slots to the first live waiters (a slot passes directly to the next one)."""
        while self._free > 0 and self._queue:
            _, _, waiter = heapq.heappop(self._queue)
            if isinstance(waiter, _Place):
                self._give(waiter)
            elif isinstance(waiter, asyncio.Future) and not waiter.done():
                self._free -= 1
                self.in_use += 1
                waiter.set_result(None)

    def _give(self, place: _Place) -> None:
        """A free slot to a reserved place: its task is started and holds it (withdrawn, or its
        work did not start: the slot stays free)."""
        task = place.take()
        if task is None:
            return
        self._free -= 1
        self.in_use += 1
        self._handed.add(task)
        task.add_done_callback(self._unclaimed)

    def _unclaimed(self, task: asyncio.Task[Any]) -> None:
        """A task started on a reserved place ended: its slot passes on if it never took it."""
        if task in self._handed:
            self._handed.discard(task)
            self.release()

    def reserve(self, priority: Priority, count: int, start: Start) -> Reservation:
        """Queue ``count`` places at ``priority``, in index order, each as a task created now
        would reach ``acquire``: on the loop's next turn, in turn with whatever else is ready
        then (``call_soon``) -- so against everyone else the order is the one such tasks had.

        When place ``i`` is handed a slot, ``start(i)`` is called (from whoever released it):
        the task it returns holds the slot -- its first ``acquire`` here takes it, and the slot
        passes on when the task ends without that. ``start`` returning None passes it on."""
        reservation = Reservation(self, start, count)
        loop = asyncio.get_running_loop()
        for index in range(count):
            loop.call_soon(self._join, int(priority), reservation, index)
        return reservation

    def _join(self, priority: int, reservation: Reservation, index: int) -> None:
        """Place ``index`` of ``reservation`` joins the queue (or, the way ``acquire`` would, takes
        a free slot when nobody waits)."""
        if reservation.withdrawn:
            return
        place = _Place(reservation, index)
        if self._free > 0 and not self._queue:
            self._give(place)
        else:
            heapq.heappush(self._queue, (priority, next(self._seq), place))

    def _withdraw(self, reservation: Reservation) -> None:
        self._queue = [e for e in self._queue if not (isinstance(e[2], _Place) and e[2].of is reservation)]
        heapq.heapify(self._queue)

    def hold(self, priority: Priority) -> _Hold:
        """``async with slots.hold(priority):`` -- a slot for the block (released on any exit)."""
        return _Hold(self, priority)


class Reservation:
    """The places one ``PrioritySlots.reserve`` queued: ``wait`` until every one was handed out."""

    __slots__ = ("_done", "_left", "_slots", "_start", "withdrawn")

    def __init__(self, slots: PrioritySlots, start: Start, count: int) -> None:
        self._slots = slots
        self._start = start
        self._left = count
        self.withdrawn = False
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if count == 0:
            self._done.set_result(None)

    @property
    def left(self) -> int:
        """Places still queued."""
        return 0 if self.withdrawn else self._left

    def start(self, index: int) -> asyncio.Task[Any] | None:
        self._left -= 1
        if self._left == 0 and not self._done.done():
            self._done.set_result(None)
        return self._start(index)

    async def wait(self) -> None:
        """Until every place was handed a slot (its task started); cancelled: the places still
        queued are withdrawn (tasks already started are the caller's)."""
        try:
            await self._done
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Withdraw the places still queued."""
        if not self.withdrawn:
            self.withdrawn = True
            self._slots._withdraw(self)
            if not self._done.done():
                self._done.set_result(None)


class _Place:
    """One reserved place in the queue (an index into its reservation's work)."""

    __slots__ = ("index", "of")

    def __init__(self, of: Reservation, index: int) -> None:
        self.of = of
        self.index = index

    def done(self) -> bool:
        return self.of.withdrawn

    def take(self) -> asyncio.Task[Any] | None:
        """Start this place's work (None: withdrawn, or it did not start)."""
        return None if self.of.withdrawn else self.of.start(self.index)


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


__all__ = ["PrioritySlots", "Reservation"]
