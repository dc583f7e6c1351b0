"""``SimWatchdog``: a watchdog that records kicks and reports missed deadlines.

Layer: hal (sim backend). Time comes from the monotonic side of the clock it is given
(a ``hal.clock.Clock``), so tests under ``looptime`` can check a supervisor's
kicking in virtual time. Must not reset anything: it only observes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

#: kicks remembered (the newest): the runtime kicks every quarter of the timeout for as long as
#: the terminal runs, so every kick kept would grow without end
KICKS_KEPT = 1024


class MonotonicClock(Protocol):
    """The part of ``hal.clock.Clock`` a watchdog needs (hal does not import runtime)."""

    def monotonic(self) -> float: ...


@dataclass(frozen=True, slots=True)
class MissedDeadline:
    """A gap between kicks (or since arming) longer than the timeout, in clock-monotonic seconds."""

    since: float
    until: float

    @property
    def late_by(self) -> float:
        return self.until - self.since


class SimWatchdog:
    """Armed at ``arm()`` (or the first kick); the newest ``KICKS_KEPT`` kicks are recorded with
    their clock time, every missed deadline is."""

    def __init__(self, clock: MonotonicClock, *, timeout: float = 60.0) -> None:
        if timeout <= 0:
            raise ValueError(f"watchdog timeout must be positive, not {timeout}")
        self._clock = clock
        self._timeout = float(timeout)
        self._armed_at: float | None = None
        self._kicks: deque[float] = deque(maxlen=KICKS_KEPT)
        self._missed: list[MissedDeadline] = []

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def kicks(self) -> tuple[float, ...]:
        """Monotonic clock times of the newest kicks (``KICKS_KEPT``), oldest first."""
        return tuple(self._kicks)

    def arm(self) -> None:
        """Start the deadline (done implicitly by the first kick)."""
        if self._armed_at is None:
            self._armed_at = self._clock.monotonic()

    def _last(self) -> float | None:
        return self._kicks[-1] if self._kicks else self._armed_at

    async def kick(self) -> None:
        now = self._clock.monotonic()
        last = self._last()
        if last is not None and now - last > self._timeout:
            self._missed.append(MissedDeadline(since=last, until=now))
        self._kicks.append(now)

    def missed(self) -> list[MissedDeadline]:
        """Every deadline missed so far, including a gap still open now (the board would have reset)."""
        out = list(self._missed)
        last = self._last()
        now = self._clock.monotonic()
        if last is not None and now - last > self._timeout:
            out.append(MissedDeadline(since=last, until=now))
        return out

    @property
    def expired(self) -> bool:
        """True if the watchdog would have reset the board at some point."""
        return bool(self.missed())


__all__ = ["MissedDeadline", "SimWatchdog"]
