"""Serving a pty line: read the master side from the event loop, hand bytes on, write replies.

Layer: sim. The one place the simulator's line models (meter buses, the virtual CCO, field
devices) read and write a pty master. Knows no protocol: ``pty_reader`` gives the chunks
the terminal writes (a read error raised in order, after the chunks before it),
``serve_pty`` feeds each chunk to a handler, ``write_all`` writes replies back. Framing
and timing (wire time, response delay, taken from the clock) are the caller's.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sim.pty import PtyPair


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to a non-blocking pty master; a hung-up slave (EIO) drops it."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _set_done, ready)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
        except OSError as err:
            if err.errno == errno.EIO:  # nobody holds the slave side
                return
            raise


@asynccontextmanager
async def pty_reader(pty: PtyPair) -> AsyncIterator[Callable[[], Awaitable[bytes]]]:
    """Read ``pty``'s master from the event loop while inside; yields ``receive()``: the next chunk.

    ``receive`` raises ``OSError`` (naming the pty) once the chunks read before a failed
    read are consumed. The reader is removed on the way out; the pty stays open.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | OSError] = asyncio.Queue()
    fd = pty.master_fd

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            loop.remove_reader(fd)
            queue.put_nowait(OSError(err.errno, f"pty {pty.name}: read failed: {err}"))
            return
        if data:
            queue.put_nowait(data)

    async def receive() -> bytes:
        item = await queue.get()
        if isinstance(item, OSError):
            raise item
        return item

    loop.add_reader(fd, readable)
    try:
        yield receive
    finally:
        loop.remove_reader(fd)


async def serve_pty(pty: PtyPair, handle: Callable[[bytes], Awaitable[None]]) -> None:
    """Call ``handle(chunk)`` for every chunk read from the pty, one at a time, until cancelled."""
    async with pty_reader(pty) as receive:
        while True:
            await handle(await receive())


__all__ = ["pty_reader", "serve_pty", "write_all"]
