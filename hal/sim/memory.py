"""An in-memory pair of ``SerialLink``s: bytes written on one end are read on the other.

Layer: hal (sim backend). Used by tests and by the simulator when no pty is wanted.
Each direction is a bounded pipe (``buffer_size`` bytes, like a kernel tty buffer): a
writer waits while the peer's buffer is full, so a stalled reader applies back-pressure
instead of growing memory. Closing one end is a hang-up for the other: its reads drain
what is buffered and then raise ``TransportBroken``; its writes raise ``TransportBroken``.
An end made ``steady`` (the simulator's side of a line, like a pty master while the simulator
holds the slave open) sees no hang-up: a closed peer is silence, bytes written to it are
dropped, and the line resumes when the peer opens again.

Must not: sleep, model wire timing (that belongs to a Clock-driven wrapper), or know
frames.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from hal.errors import TransportBroken, TransportClosed
from hal.interfaces import SerialSettings

DEFAULT_BUFFER = 64 * 1024


class _Pipe:
    """One direction: a bounded byte buffer plus waiters woken on every change."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = bytearray()
        self.writer_hung_up = False  # the writing end was open and closed
        self.reader_hung_up = False
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def changed(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)


class MemoryLink:
    """One end of a ``memory_link_pair``; implements ``SerialLink``."""

    def __init__(
        self, name: str, settings: SerialSettings, rx: _Pipe, tx: _Pipe, *, steady: bool = False
    ) -> None:
        self._name = name
        self._settings = settings
        self._steady = steady
        self._rx = rx
        self._tx = tx
        self._open = False
        self._closed = False
        self.bytes_written = 0
        self.bytes_read = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def settings(self) -> SerialSettings:
        return self._settings

    @property
    def is_open(self) -> bool:
        return self._open

    async def open(self) -> None:
        if self._open:
            return
        self._open = True
        self._closed = False
        self._rx.reader_hung_up = False
        self._tx.writer_hung_up = False
        self._rx.notify()
        self._tx.notify()

    async def close(self) -> None:
        if not self._open:
            self._closed = True
            return
        self._open = False
        self._closed = True
        self._rx.reader_hung_up = True
        self._rx.buffer.clear()
        self._tx.writer_hung_up = True
        self._rx.notify()
        self._tx.notify()

    def _require_open(self) -> None:
        if not self._open:
            state = "closed" if self._closed else "not open"
            raise TransportClosed(f"{self._name}: link {state}")

    async def read(self, max_bytes: int = 4096) -> bytes:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        while True:
            self._require_open()
            pipe = self._rx
            if pipe.buffer:
                data = bytes(pipe.buffer[:max_bytes])
                del pipe.buffer[:max_bytes]
                self.bytes_read += len(data)
                pipe.notify()  # room for a waiting writer
                return data
            if pipe.writer_hung_up and not self._steady:
                raise TransportBroken(f"{self._name}: peer hung up")
            await pipe.changed()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._require_open()
            pipe = self._tx
            if pipe.reader_hung_up:
                if self._steady:
                    return  # nobody listens: the bytes go nowhere
                raise TransportBroken(f"{self._name}: peer hung up")
            room = pipe.size - len(pipe.buffer)
            if room > 0:
                chunk = view[:room]
                pipe.buffer += chunk
                self.bytes_written += len(chunk)
                view = view[len(chunk) :]
                pipe.notify()
            if view:
                await pipe.changed()

    def discard_input(self) -> int:
        dropped = len(self._rx.buffer)
        if dropped:
            self._rx.buffer.clear()
            self._rx.notify()
        return dropped

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<MemoryLink {self._name} {'open' if self._open else 'closed'}>"


def memory_link_pair(
    settings: SerialSettings,
    *,
    names: tuple[str, str] = ("a", "b"),
    buffer_size: int = DEFAULT_BUFFER,
    steady_b: bool = False,
) -> tuple[MemoryLink, MemoryLink]:
    """Two connected links (not yet open): what ``a`` writes, ``b`` reads, and back.
    ``steady_b``: ``b`` never sees ``a`` hang up (see the module docstring)."""
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be >= 1, not {buffer_size}")
    a_to_b, b_to_a = _Pipe(buffer_size), _Pipe(buffer_size)
    return (
        MemoryLink(names[0], settings, rx=b_to_a, tx=a_to_b),
        MemoryLink(names[1], settings, rx=a_to_b, tx=b_to_a, steady=steady_b),
    )


__all__ = ["DEFAULT_BUFFER", "MemoryLink", "memory_link_pair"]
