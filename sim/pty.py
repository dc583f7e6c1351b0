"""Pseudo-terminal pairs that stand in for RS-485 ports.

Layer: sim. The simulator keeps the master side (non-blocking fd, read from the event
loop with ``loop.add_reader``); the terminal opens ``slave_path`` with pyserial exactly
as it would open ``/dev/ttyS1``. This module only creates and closes ptys: it knows no
protocol, no timing and no event loop.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from dataclasses import dataclass, field


@dataclass(slots=True)
class PtyPair:
    """One pty: the simulator's ``master_fd`` and the path the terminal opens.

    The slave fd is held open by the simulator too, so the line stays up (no EIO on
    the master) between the terminal's open/close cycles.
    """

    master_fd: int
    slave_path: str
    name: str
    _slave_fd: int = field(default=-1, repr=False)
    closed: bool = False

    def close(self) -> None:
        """Close both ends; idempotent."""
        if self.closed:
            return
        self.closed = True
        for fd in (self.master_fd, self._slave_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):  # already gone: closing is idempotent
                    os.close(fd)

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pty(name: str) -> PtyPair:
    """Open a pty in raw mode (no echo, no line discipline), master non-blocking."""
    try:
        master_fd, slave_fd = os.openpty()
    except OSError as err:
        raise OSError(f"pty {name}: cannot open a pseudo-terminal: {err}") from err
    try:
        tty.setraw(slave_fd, termios.TCSANOW)
        attrs = termios.tcgetattr(slave_fd)
        attrs[3] &= ~termios.ECHO  # lflag: raw already clears it; be explicit for the master side
        termios.tcsetattr(slave_fd, termios.TCSANOW, attrs)
        os.set_blocking(master_fd, False)
        slave_path = os.ttyname(slave_fd)
    except BaseException:
        os.close(master_fd)
        os.close(slave_fd)
        raise
    return PtyPair(master_fd=master_fd, slave_path=slave_path, name=name, _slave_fd=slave_fd)


__all__ = ["PtyPair", "open_pty"]
