"""The far end of a link under test: a pty master fd, or the other end of a memory pair.

Test helper (tests/hal). Every backend's harness offers the same peer operations so one
conformance suite (test_serial_conformance.py) runs against each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from typing import Protocol

from hal.sim import MemoryLink


class Peer(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def receive_some(self, max_bytes: int = 65536) -> bytes: ...

    async def hang_up(self) -> None: ...

    async def aclose(self) -> None: ...


async def receive_exactly(peer: Peer, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += await peer.receive_some(n - len(out))
    return bytes(out)


class PtyPeer:
    """The master side of a pty whose slave path the link under test opens."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.slave_path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self._open = True

    def release_slave(self) -> None:
        """Drop our own slave fd once the link has the path open (so a hang-up is seen by it alone)."""
        if self._slave >= 0:
            os.close(self._slave)
            self._slave = -1

    async def _ready(self, *, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        (loop.add_writer if writable else loop.add_reader)(self.master, wake)
        try:
            await fut
        finally:
            (loop.remove_writer if writable else loop.remove_reader)(self.master)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with contextlib.suppress(BlockingIOError):  # the pty buffer is full: wait below
                view = view[os.write(self.master, view) :]
            if view:
                await self._ready(writable=True)

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        while True:
            try:
                data = os.read(self.master, max_bytes)
            except OSError as err:
                if err.errno != errno.EAGAIN:
                    raise
            else:
                return data
            await self._ready(writable=False)

    async def hang_up(self) -> None:
        if self._open:
            self._open = False
            os.close(self.master)

    async def aclose(self) -> None:
        await self.hang_up()
        self.release_slave()


class MemoryPeer:
    """The other end of a ``memory_link_pair``."""

    def __init__(self, link: MemoryLink) -> None:
        self.link = link

    async def send(self, data: bytes) -> None:
        await self.link.write(data)

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        return await self.link.read(max_bytes)

    async def hang_up(self) -> None:
        await self.link.close()

    async def aclose(self) -> None:
        await self.link.close()
