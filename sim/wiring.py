"""How the simulator's devices are wired to the terminal: pseudo-terminals or in-memory links.

Layer: sim. Every virtual device (a meter bus, the CCO, the metrology unit, a Modbus line)
serves one ``hal.interfaces.SerialLink``; a ``Wiring`` makes that link and tells the terminal
what to open on its side of the line:

* ``PtyWiring`` -- a pty per line (``make sim``): the device serves a ``PtyLink`` on the pty
  master, the terminal opens the slave path with pyserial exactly as it would ``/dev/ttyS1``.
  Real I/O on the wall clock, so it only works for a clock the kernel can keep up with.
* ``MemoryWiring`` -- an in-memory link pair per line (``ttu sim --speed max``, tests): the
  terminal gets the other end as a ``SerialLink`` object. Nothing real happens on the line, so
  it follows any clock, virtual time included.

Either way the wire itself is modelled by the device from its clock (bytes x bits / baud,
response delays): the links carry bytes and nothing else. ``PtyLink`` reads the master from
the event loop (``loop.add_reader``) and never blocks it. Must not know protocols or timing.
"""

from __future__ import annotations

import asyncio
import errno
import os
from types import TracebackType
from typing import Protocol, Self

from hal.errors import TransportBroken, TransportClosed
from hal.interfaces import SerialLink, SerialSettings
from hal.sim.memory import memory_link_pair
from sim.pty import PtyPair, open_pty

#: what the terminal opens: a device path (``PySerialLink``) or a link object (memory wiring)
TerminalEnd = str | SerialLink


class PtyLink:
    """The simulator's side of a pty as a ``SerialLink``: reads and writes the master fd.

    Closing it closes the pty (both ends). A read failure (the pty went away) raises
    ``TransportBroken``; a write to a pty nobody holds open (EIO) is dropped, as on a line
    with no receiver.
    """

    def __init__(self, pty: PtyPair, settings: SerialSettings) -> None:
        self._pty = pty
        self._settings = settings
        self._open = False

    @property
    def name(self) -> str:
        return self._pty.name

    @property
    def settings(self) -> SerialSettings:
        return self._settings

    @property
    def pty(self) -> PtyPair:
        return self._pty

    async def open(self) -> None:
        if self._pty.closed:
            raise TransportClosed(f"pty {self._pty.name}: closed")
        self._open = True

    async def close(self) -> None:
        self._open = False
        self._pty.close()

    def _fd(self) -> int:
        if not self._open or self._pty.closed:
            raise TransportClosed(f"pty {self._pty.name}: link not open")
        return self._pty.master_fd

    async def _ready(self, fd: int, *, write: bool) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        (loop.add_writer if write else loop.add_reader)(fd, wake)
        try:
            await ready
        finally:
            (loop.remove_writer if write else loop.remove_reader)(fd)

    async def read(self, max_bytes: int = 4096) -> bytes:
        while True:
            fd = self._fd()
            try:
                data = os.read(fd, max_bytes)
            except (BlockingIOError, InterruptedError):
                await self._ready(fd, write=False)
                continue
            except OSError as err:
                raise TransportBroken(f"pty {self._pty.name}: read failed: {err}") from err
            if data:
                return data
            await self._ready(fd, write=False)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            fd = self._fd()
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await self._ready(fd, write=True)
            except OSError as err:
                if err.errno == errno.EIO:  # nobody holds the slave side: the bytes go nowhere
                    return
                raise TransportBroken(f"pty {self._pty.name}: write failed: {err}") from err

    def discard_input(self) -> int:
        """Nothing to drop: the simulator reads every byte the terminal writes."""
        return 0

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Wiring(Protocol):
    """Makes the line of one device: (the device's link, what the terminal opens)."""

    @property
    def mode(self) -> str:
        """``"pty"`` or ``"memory"`` (for the report)."""
        ...

    def line(self, name: str, settings: SerialSettings) -> tuple[SerialLink, TerminalEnd]: ...


class PtyWiring:
    mode = "pty"

    def line(self, name: str, settings: SerialSettings) -> tuple[SerialLink, TerminalEnd]:
        pty = open_pty(name)
        return PtyLink(pty, settings), pty.slave_path


class MemoryWiring:
    mode = "memory"

    def line(self, name: str, settings: SerialSettings) -> tuple[SerialLink, TerminalEnd]:
        # the device's end is steady: the terminal closing (or reopening) its port is no hang-up
        terminal, device = memory_link_pair(settings, names=(name, f"sim-{name}"), steady_b=True)
        return device, terminal


__all__ = ["MemoryWiring", "PtyLink", "PtyWiring", "TerminalEnd", "Wiring"]
