"""A bounded, drop-oldest stream of items for one consumer: ``async for item in stream``.

Layer: hal (below runtime). Used wherever one producer fans items out to subscribers that must never slow it
down: carrier events (``hal.hplc``), station-model changes (``runtime.station``) and their
proxies in an isolated app. ``put`` never blocks: a full stream drops its oldest item
(``dropped``, ``on_drop`` is told). ``on_close`` is called once when the consumer closes it
(``aclose()``, leaving ``async with``), so the producer forgets it. Must not do I/O.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Stream(Generic[T]):
    """One subscriber's queue of at most ``maxlen`` items."""

    def __init__(
        self,
        maxlen: int,
        *,
        on_close: Callable[[Stream[T]], None],
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        if maxlen < 1:
            raise ValueError(f"stream length must be >= 1, not {maxlen}")
        self._items: deque[T] = deque()
        self._maxlen = maxlen
        self._on_close = on_close
        self._on_drop = on_drop
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        if self.closed:
            return
        if len(self._items) >= self._maxlen:
            self._items.popleft()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
        self._items.append(item)
        self._wake.set()

    def get_nowait(self) -> T | None:
        return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
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


__all__ = ["Stream"]
