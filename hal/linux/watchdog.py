"""``DevWatchdog``: the Linux ``/dev/watchdog`` interface (one byte written per kick).

Layer: hal (linux backend). Opening the device arms the hardware timer; every write
re-arms it; writing the magic character ``V`` right before closing disarms it (the
kernel's "magic close", ``CONFIG_WATCHDOG_NOWAYOUT`` permitting). The path is
configurable so the behaviour is testable on a regular file.

Must not decide *when* to kick (the supervisor does), sleep, or swallow OS errors
(they surface as ``TransportBroken`` naming the path).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Self

from hal.errors import TransportBroken, TransportClosed

MAGIC_CLOSE = b"V"


class DevWatchdog:
    """A kernel watchdog device. ``timeout`` is the period the board is configured for.

    Writes to a watchdog character device complete at once, so ``kick`` does the
    ``os.write`` inline rather than in a thread.
    """

    def __init__(
        self, path: str = "/dev/watchdog", *, timeout: float = 60.0, magic_close: bool = True
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"watchdog timeout must be positive, not {timeout}")
        self._path = path
        self._timeout = float(timeout)
        self._magic_close = magic_close
        self._fd: int | None = None
        self._kicks = 0

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def path(self) -> str:
        return self._path

    @property
    def kicks(self) -> int:
        return self._kicks

    async def open(self) -> None:
        if self._fd is not None:
            return
        try:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            raise TransportBroken(f"watchdog {self._path}: cannot open: {err}") from err

    async def kick(self) -> None:
        if self._fd is None:
            raise TransportClosed(f"watchdog {self._path}: not open")
        try:
            os.write(self._fd, b"\0")
        except OSError as err:
            raise TransportBroken(f"watchdog {self._path}: kick failed: {err}") from err
        self._kicks += 1

    async def close(self) -> None:
        """Disarm (magic close) and release the device. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._magic_close:
                os.write(fd, MAGIC_CLOSE)
        except OSError as err:
            raise TransportBroken(f"watchdog {self._path}: magic close failed: {err}") from err
        finally:
            os.close(fd)

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


__all__ = ["MAGIC_CLOSE", "DevWatchdog"]
