"""``PySerialLink``: a ``SerialLink`` over a real tty (or a pty slave) driven from the event loop.

Layer: hal (linux backend). pyserial opens and configures the port (termios: baud,
parity, exclusive lock, flushes); the bytes themselves move with ``os.read`` /
``os.write`` on the non-blocking file descriptor, woken by ``loop.add_reader`` /
``loop.add_writer`` -- the scheme of pymodbus ``transport/serialtransport.py``.

Why not pyserial-asyncio-fast: it gives a Transport/Protocol pair, so a stream API
would need a second buffering layer on top, and a read that is cancelled would have to
be untangled from the protocol callbacks. Waiting for readiness per call keeps a read
cancellable with nothing left behind, and keeps unread bytes in the kernel buffer where
``discard_input`` (``tcflush``) drops them. (pyserial's own ``write`` with
``write_timeout=0`` spins on EAGAIN, hence the direct ``os.write``.)

Must not: block the loop (no pyserial ``read``/``write`` with a timeout, no sleeps),
know frames or protocols, or let ``serial.SerialException`` / ``OSError`` escape
unwrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import termios
from types import TracebackType
from typing import Self

import serial

from hal.errors import TransportBroken, TransportClosed
from hal.interfaces import SerialSettings

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_STOPBITS = {1: serial.STOPBITS_ONE, 2: serial.STOPBITS_TWO}
_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_PTY_SLAVE_MAJORS = range(136, 144)  # UNIX98 pty slaves (/dev/pts/N), Documentation/admin-guide/devices.txt


def _is_pty(device: str) -> bool:
    try:
        st = os.stat(device)
    except OSError:
        return False  # let the open report it
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) in _PTY_SLAVE_MAJORS


class PySerialLink:
    """An async byte stream on ``device`` (``/dev/ttyS1``, ``/dev/pts/7``, ...).

    ``open`` and ``close`` are idempotent; after ``close`` every ``read``/``write``
    raises ``TransportClosed``. OS errors (device unplugged, pty peer hung up) raise
    ``TransportBroken`` naming the device.
    """

    def __init__(self, device: str, settings: SerialSettings, *, name: str | None = None) -> None:
        self._device = device
        self._settings = settings
        self._name = name or device
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._closed = False  # closed by us (as opposed to never opened)
        self._waiters: set[asyncio.Future[None]] = set()
        self._busy: set[bool] = set()  # {False: a read is waiting, True: a write is waiting}

    @property
    def name(self) -> str:
        return self._name

    @property
    def settings(self) -> SerialSettings:
        return self._settings

    @property
    def device(self) -> str:
        return self._device

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def _label(self) -> str:
        return self._name if self._name == self._device else f"{self._name} ({self._device})"

    async def open(self) -> None:
        if self._serial is not None:
            return
        s = self._settings
        # A pty has no wire, and Linux refuses PARENB on a pty slave that was opened
        # before (EINVAL on reopen): open pseudo-terminals without parity.
        parity = "N" if _is_pty(self._device) else s.parity
        try:
            port = serial.Serial(
                port=self._device,
                baudrate=s.baud,
                parity=_PARITY[parity],
                bytesize=s.bytesize,
                stopbits=_STOPBITS[s.stopbits],
                timeout=0,
                write_timeout=0,
                exclusive=True,
            )
        except (serial.SerialException, OSError, termios.error, ValueError, KeyError) as err:
            raise TransportBroken(f"{self._label()}: cannot open: {err}") from err
        fd = port.fileno()
        try:
            # pyserial leaves VMIN=0 for timeout=0, where read() returns b"" when the buffer
            # is empty. With VMIN=1 an empty non-blocking read is EAGAIN, so b"" (or EIO)
            # can only mean a hang-up.
            attrs = termios.tcgetattr(fd)
            attrs[6][termios.VMIN] = 1
            attrs[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error as err:
            port.close()
            raise TransportBroken(f"{self._label()}: cannot set VMIN: {err}") from err
        self._serial = port
        self._fd = fd
        self._closed = False

    async def close(self) -> None:
        port, self._serial = self._serial, None
        self._closed = True
        if port is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._fd)
        loop.remove_writer(self._fd)
        self._fd = -1
        for waiter in self._waiters:  # wake blocked readers/writers: they see the link closed
            if not waiter.done():
                waiter.set_result(None)
        with contextlib.suppress(serial.SerialException, OSError):
            port.close()  # the fd is gone either way; nothing a caller could do about it

    def _require_open(self) -> int:
        if self._serial is None:
            state = "closed" if self._closed else "not open"
            raise TransportClosed(f"{self._label()}: link {state}")
        return self._fd

    async def _wait(self, fd: int, *, writable: bool) -> None:
        """Wait until ``fd`` is readable/writable; cancellation removes the callback."""
        if writable in self._busy:
            what = "write" if writable else "read"
            raise RuntimeError(f"{self._label()}: another task is already waiting to {what}")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if writable:
            loop.add_writer(fd, wake)
        else:
            loop.add_reader(fd, wake)
        self._waiters.add(ready)
        self._busy.add(writable)
        try:
            await ready
        finally:
            self._waiters.discard(ready)
            self._busy.discard(writable)
            if self._fd == fd:  # close() may already have removed it (and the fd number may be reused)
                if writable:
                    loop.remove_writer(fd)
                else:
                    loop.remove_reader(fd)

    async def read(self, max_bytes: int = 4096) -> bytes:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
        while True:
            fd = self._require_open()
            try:
                data = os.read(fd, max_bytes)
            except OSError as err:
                if err.errno not in _RETRY:
                    raise TransportBroken(f"{self._label()}: read failed: {err}") from err
            else:
                if not data:
                    raise TransportBroken(f"{self._label()}: peer hung up (end of file)")
                return data
            await self._wait(fd, writable=False)  # close() wakes us; the loop then raises TransportClosed

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            fd = self._require_open()
            try:
                sent = os.write(fd, view)
            except OSError as err:
                if err.errno not in _RETRY:
                    raise TransportBroken(f"{self._label()}: write failed: {err}") from err
                sent = 0
            view = view[sent:]
            if view:
                await self._wait(fd, writable=True)

    def discard_input(self) -> int:
        port = self._serial
        if port is None:
            return 0
        try:
            dropped = int(port.in_waiting)
            port.reset_input_buffer()
        except (serial.SerialException, OSError) as err:
            raise TransportBroken(f"{self._label()}: cannot flush input: {err}") from err
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
        state = "open" if self._serial is not None else "closed"
        return f"<PySerialLink {self._label()} {self._settings.baud} {state}>"


__all__ = ["PySerialLink"]
