"""Serving a pty line: read the master side from the event loop, hand bytes on, write replies.

Layer: sim. Knows no protocol: ``serve_pty`` feeds every chunk the terminal writes to
``on_bytes`` and writes whatever a ``Reply`` coroutine produces back. Timing (wire time,
response delay) is the caller's, taken from the clock.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable

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


async def serve_pty(pty: PtyPair, handle: Callable[[bytes], Awaitable[None]]) -> None:
    """Call ``handle(chunk)`` for every chunk read from the pty, one at a time, until cancelled."""
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

    loop.add_reader(fd, readable)
    try:
        while True:
            item = await queue.get()
            if isinstance(item, OSError):
                raise item
            await handle(item)
    finally:
        loop.remove_reader(fd)


__all__ = ["serve_pty", "write_all"]
