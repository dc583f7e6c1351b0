"""The terminal's own supply, shared by every ``PowerMonitor`` backend: state and change streams.

Layer: hal. ``SupplyHub`` keeps the current ``SupplyState`` and hands each change to every open
``SupplyStream`` (bounded: when a subscriber falls behind, its oldest change is dropped and
counted -- the latest state is always kept). Backends (``hal.linux.power``, ``hal.sim.power``)
call ``SupplyHub.set``. Must not do I/O or know apps.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

from hal.interfaces import SupplyState


class SupplyStream:
    """One subscriber's changes: ``async for state in stream`` until ``aclose()``."""

    def __init__(self, maxlen: int, on_close: Callable[[SupplyStream], None]) -> None:
        self._items: deque[SupplyState] = deque()
        self._maxlen = maxlen
        self._on_close = on_close
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, state: SupplyState) -> None:
        if len(self._items) >= self._maxlen:
            self._items.popleft()
            self.dropped += 1
        self._items.append(state)
        self._wake.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SupplyState:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self)
            self._wake.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SupplyHub:
    """The current supply state and its subscribers."""

    def __init__(self, initial: SupplyState, *, maxlen: int = 64) -> None:
        self._state = initial
        self._maxlen = maxlen
        self._streams: list[SupplyStream] = []
        self.changes = 0

    @property
    def state(self) -> SupplyState:
        return self._state

    def set(self, state: SupplyState) -> bool:
        """Take ``state``; tell the subscribers if ``powered`` changed. Returns whether it did."""
        if state.powered == self._state.powered:
            self._state = SupplyState(state.powered, self._state.since, state.voltage_v)
            return False
        self._state = state
        self.changes += 1
        for s in list(self._streams):
            s.put(state)
        return True

    def stream(self) -> SupplyStream:
        s = SupplyStream(self._maxlen, self._remove)
        self._streams.append(s)
        return s

    def _remove(self, stream: SupplyStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    def close(self) -> None:
        for s in list(self._streams):
            s.close()


def check_holdup(holdup_s: float) -> float:
    if not holdup_s > 0:
        raise ValueError(f"hold-up time must be positive, not {holdup_s}")
    return float(holdup_s)


__all__ = ["SupplyHub", "SupplyStream", "check_holdup"]
