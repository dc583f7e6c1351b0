"""Jobs on calendar boundaries in the station's local time zone, with declared catch-up.

Layer: runtime. Drives callbacks at aligned boundaries (every 15 min at
:00/:15/:30/:45, daily freezes, monthly billing days) and at plain intervals. All
time comes from the injected ``Clock``; the local zone is applied here only. It
must not know what the jobs do (no meters, no tariffs) and never touches storage
other than through the small ``KeyValue`` protocol.

Guarantees, for calendar schedules (``Aligned``, ``Daily``, ``Monthly``):

* Each job persists its last completed boundary (``KeyValue``). A boundary at or
  before it is never run again: a backward clock step (time sync) or a restart
  does not duplicate a daily freeze.
* Boundaries passed while the terminal was down, while the clock jumped forward,
  or while the previous run was still busy are *missed* and handled by the job's
  ``CatchUp`` policy: ``ALL`` runs each, oldest first (at most ``max_missed``, the
  most recent ones; older ones are counted as skipped); ``LATEST`` runs only the
  most recent; ``SKIP`` runs none of them, only a boundary that is on time
  (within ``grace_s``).
* A job never runs twice at once: a boundary that comes while the job is busy is
  queued behind it and, once the run ends, treated as missed (so ``ALL`` queues,
  ``LATEST`` coalesces). Such overruns are counted.
* A job that raises is logged and counted; its boundary counts as done (no retry
  storm) and the scheduler keeps going.
* The first start with no persisted state runs nothing retroactively: the first
  run is the next boundary.

``Interval`` schedules are unaligned and monotonic (unaffected by clock steps),
not persisted, and skip ticks they overran.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from hal.clock import Clock
from runtime.errors import TerminalError

log = logging.getLogger("ttu.scheduler")

_DAY = 86400.0


@runtime_checkable
class KeyValue(Protocol):
    """Where the scheduler keeps each job's last completed boundary."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...


class MemoryKeyValue:
    """A ``KeyValue`` in memory (tests, and terminals without a store)."""

    def __init__(self, data: dict[str, str] | None = None) -> None:
        self.data: dict[str, str] = dict(data or {})

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str) -> None:
        self.data[key] = value


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Declared catch-up policy for missed boundaries (see module docstring).

    Use ``CatchUp.ALL`` / ``CatchUp.LATEST`` / ``CatchUp.SKIP``, or
    ``CatchUp.all(max_missed=..., grace_s=...)`` to tune the limits.
    """

    kind: Literal["all", "latest", "skip"]
    max_missed: int = 96
    grace_s: float = 60.0

    ALL: ClassVar[CatchUp]
    LATEST: ClassVar[CatchUp]
    SKIP: ClassVar[CatchUp]

    def __post_init__(self) -> None:
        if self.kind not in ("all", "latest", "skip"):
            raise ValueError(f"unknown catch-up policy {self.kind!r}")
        if self.max_missed < 1:
            raise ValueError(f"max_missed must be >= 1, not {self.max_missed}")

    @classmethod
    def all(cls, *, max_missed: int = 96, grace_s: float = 60.0) -> CatchUp:
        return cls("all", max_missed, grace_s)

    @classmethod
    def latest(cls, *, grace_s: float = 60.0) -> CatchUp:
        return cls("latest", 96, grace_s)

    @classmethod
    def skip(cls, *, grace_s: float = 60.0) -> CatchUp:
        return cls("skip", 96, grace_s)


CatchUp.ALL = CatchUp("all")
CatchUp.LATEST = CatchUp("latest")
CatchUp.SKIP = CatchUp("skip")


@dataclass(frozen=True, slots=True)
class Slot:
    """The nominal boundary a run is for.

    ``epoch`` is UTC epoch seconds, ``local`` the same instant in the station's
    zone; ``late`` is True when this run is a catch-up of a missed boundary (the
    job may tag its data ``Quality.CATCH_UP``).
    """

    job: str
    epoch: float
    local: datetime
    late: bool = False


class Calendar(Protocol):
    """A set of boundaries in local time."""

    def next_after(self, epoch: float, tz: ZoneInfo) -> float:
        """The first boundary strictly after ``epoch``."""
        ...

    def last_at_or_before(self, epoch: float, tz: ZoneInfo) -> float:
        """The last boundary at or before ``epoch``."""
        ...


def _midnight(d: date, tz: ZoneInfo) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def _local_date(epoch: float, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(epoch, tz).date()


@dataclass(frozen=True, slots=True)
class Aligned:
    """Every ``period_s`` seconds counted from each local midnight (15 min: :00/:15/:30/:45).

    On a DST day the boundaries keep their spacing in real seconds from midnight;
    for periods that divide an hour they are also the expected wall-clock times.
    """

    period_s: float

    def __post_init__(self) -> None:
        if not (0 < self.period_s <= _DAY):
            raise ValueError(f"period_s must be in (0, 86400], not {self.period_s}")

    def _candidates(self, epoch: float, tz: ZoneInfo) -> tuple[float, float, float]:
        d = _local_date(epoch, tz)
        start = _midnight(d, tz)
        if start > epoch:  # midnight skipped by a DST change at 00:00
            d -= timedelta(days=1)
            start = _midnight(d, tz)
        return start, _midnight(d + timedelta(days=1), tz), epoch - start

    def next_after(self, epoch: float, tz: ZoneInfo) -> float:
        start, end, since = self._candidates(epoch, tz)
        cand = start + (math.floor(since / self.period_s) + 1) * self.period_s
        return cand if cand < end else end

    def last_at_or_before(self, epoch: float, tz: ZoneInfo) -> float:
        start, _, since = self._candidates(epoch, tz)
        return start + math.floor(since / self.period_s) * self.period_s


@dataclass(frozen=True, slots=True)
class Daily:
    """Once a day at ``hour:minute`` local time (a time skipped by DST runs just after the gap)."""

    hour: int
    minute: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.hour < 24 and 0 <= self.minute < 60):
            raise ValueError(f"invalid daily time {self.hour}:{self.minute}")

    def _at(self, d: date, tz: ZoneInfo) -> float:
        return datetime(d.year, d.month, d.day, self.hour, self.minute, tzinfo=tz).timestamp()

    def next_after(self, epoch: float, tz: ZoneInfo) -> float:
        d = _local_date(epoch, tz) - timedelta(days=1)
        for i in range(4):
            cand = self._at(d + timedelta(days=i), tz)
            if cand > epoch:
                return cand
        raise AssertionError("unreachable")  # pragma: no cover

    def last_at_or_before(self, epoch: float, tz: ZoneInfo) -> float:
        d = _local_date(epoch, tz) + timedelta(days=1)
        for i in range(4):
            cand = self._at(d - timedelta(days=i), tz)
            if cand <= epoch:
                return cand
        raise AssertionError("unreachable")  # pragma: no cover


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    idx = year * 12 + (month - 1) + n
    return idx // 12, idx % 12 + 1


def _days_in_month(year: int, month: int) -> int:
    ny, nm = _add_months(year, month, 1)
    return (date(ny, nm, 1) - timedelta(days=1)).day


@dataclass(frozen=True, slots=True)
class Monthly:
    """Once a month on ``day`` at ``hour:minute`` local (day 29-31 clamp to the month's last day)."""

    day: int
    hour: int = 0
    minute: int = 0

    def __post_init__(self) -> None:
        if not (1 <= self.day <= 31 and 0 <= self.hour < 24 and 0 <= self.minute < 60):
            raise ValueError(f"invalid monthly time day {self.day} {self.hour}:{self.minute}")

    def _at(self, year: int, month: int, tz: ZoneInfo) -> float:
        day = min(self.day, _days_in_month(year, month))
        return datetime(year, month, day, self.hour, self.minute, tzinfo=tz).timestamp()

    def next_after(self, epoch: float, tz: ZoneInfo) -> float:
        d = _local_date(epoch, tz)
        for i in range(-1, 3):
            cand = self._at(*_add_months(d.year, d.month, i), tz)
            if cand > epoch:
                return cand
        raise AssertionError("unreachable")  # pragma: no cover

    def last_at_or_before(self, epoch: float, tz: ZoneInfo) -> float:
        d = _local_date(epoch, tz)
        for i in range(1, -3, -1):
            cand = self._at(*_add_months(d.year, d.month, i), tz)
            if cand <= epoch:
                return cand
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Interval:
    """Every ``seconds`` of monotonic time, unaligned; unaffected by clock steps."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"interval must be positive, not {self.seconds}")


Schedule = Aligned | Daily | Monthly | Interval
JobFunc = Callable[[Slot], Awaitable[None]]


@dataclass(slots=True)
class JobStats:
    runs: int = 0
    late_runs: int = 0
    errors: int = 0
    skipped: int = 0
    overruns: int = 0
    last_error: str | None = None
    last_boundary: float | None = None


@dataclass(slots=True)
class Job:
    """A registered job; ``cancel()`` removes it (an in-flight run is cancelled)."""

    name: str
    schedule: Schedule
    func: JobFunc
    catch_up: CatchUp
    stats: JobStats = field(default_factory=JobStats)
    _scheduler: Scheduler | None = None
    _task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self._scheduler is not None:
            self._scheduler._remove(self)


class Scheduler:
    """Runs jobs; ``add`` before or while ``run()`` is going."""

    def __init__(self, *, clock: Clock, tz: ZoneInfo | str, state: KeyValue) -> None:
        self._clock = clock
        self._tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self._state = state
        self._jobs: dict[str, Job] = {}
        self._tg: asyncio.TaskGroup | None = None

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    def add(self, name: str, schedule: Schedule, func: JobFunc, *, catch_up: CatchUp = CatchUp.LATEST) -> Job:
        """Register ``func`` to run on ``schedule``; names are unique (``TerminalError`` if not)."""
        if not name or "/" in name:
            raise TerminalError(f"scheduler: invalid job name {name!r}")
        if name in self._jobs:
            raise TerminalError(f"scheduler: job {name!r} already exists")
        job = Job(name, schedule, func, catch_up, _scheduler=self)
        self._jobs[name] = job
        if self._tg is not None:
            self._start(job)
        return job

    def jobs(self) -> dict[str, Job]:
        return dict(self._jobs)

    def statistics(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "runs": j.stats.runs,
                "late_runs": j.stats.late_runs,
                "errors": j.stats.errors,
                "skipped": j.stats.skipped,
                "overruns": j.stats.overruns,
                "last_error": j.stats.last_error,
                "last_boundary": j.stats.last_boundary,
            }
            for name, j in self._jobs.items()
        }

    def _remove(self, job: Job) -> None:
        if self._jobs.get(job.name) is job:
            del self._jobs[job.name]
        if job._task is not None and not job._task.done():
            job._task.cancel()
        job._scheduler = None

    def _start(self, job: Job) -> None:
        assert self._tg is not None
        job._task = self._tg.create_task(self._drive(job), name=f"scheduler:{job.name}")

    async def run(self) -> None:
        """Drive every job until cancelled."""
        if self._tg is not None:
            raise TerminalError("scheduler is already running")
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for job in list(self._jobs.values()):
                    self._start(job)
                await asyncio.Future()  # runs until cancelled
        finally:
            self._tg = None

    async def _drive(self, job: Job) -> None:
        if isinstance(job.schedule, Interval):
            await self._drive_interval(job, job.schedule)
        else:
            await self._drive_calendar(job, job.schedule)

    def _slot(self, job: Job, epoch: float, *, late: bool) -> Slot:
        return Slot(job.name, epoch, datetime.fromtimestamp(epoch, self._tz), late)

    async def _invoke(self, job: Job, slot: Slot) -> None:
        try:
            await job.func(slot)
        except Exception as err:  # a failing job must not stop the others; CancelledError passes
            job.stats.errors += 1
            job.stats.last_error = f"{type(err).__name__}: {err}"
            log.exception("job %s failed for %s", job.name, slot.local.isoformat())
        else:
            job.stats.runs += 1
            if slot.late:
                job.stats.late_runs += 1

    async def _drive_interval(self, job: Job, sched: Interval) -> None:
        next_at = self._clock.monotonic() + sched.seconds
        while True:
            await self._clock.sleep(next_at - self._clock.monotonic())
            await self._invoke(job, self._slot(job, self._clock.now(), late=False))
            next_at += sched.seconds
            behind = self._clock.monotonic() - next_at
            if behind >= 0:  # overran one or more ticks: skip them rather than burst
                missed = int(behind // sched.seconds) + 1
                job.stats.overruns += 1
                job.stats.skipped += missed
                next_at += missed * sched.seconds

    def _key(self, job: Job) -> str:
        return f"scheduler.{job.name}.last"

    async def _load_last(self, job: Job, cal: Calendar) -> float:
        raw = await self._state.get(self._key(job))
        if raw is not None:
            try:
                return float(raw)
            except ValueError:
                log.error("job %s: persisted boundary %r is not a number; starting fresh", job.name, raw)
        return cal.last_at_or_before(self._clock.now(), self._tz)

    async def _drive_calendar(self, job: Job, cal: Calendar) -> None:
        tz = self._tz
        last = await self._load_last(job, cal)
        job.stats.last_boundary = last
        while True:
            await self._clock.sleep_until(cal.next_after(last, tz))
            now = self._clock.now()
            due: list[float] = []
            b = cal.next_after(last, tz)
            while b <= now:
                due.append(b)
                if len(due) > job.catch_up.max_missed:
                    due.pop(0)
                    job.stats.skipped += 1
                b = cal.next_after(b, tz)
            if not due:
                continue  # woken by a step that did not reach the next boundary
            for epoch in self._select(job, due, now):
                await self._invoke(job, self._slot(job, epoch, late=now - epoch > job.catch_up.grace_s))
                last = epoch
                await self._commit(job, epoch)
            if last != due[-1]:
                last = due[-1]
                await self._commit(job, last)
            if cal.next_after(last, tz) <= self._clock.now():
                job.stats.overruns += 1  # the next boundary came while this run was busy

    def _select(self, job: Job, due: list[float], now: float) -> list[float]:
        policy = job.catch_up
        if policy.kind == "all":
            return due
        latest = due[-1]
        if policy.kind == "latest" or now - latest <= policy.grace_s:
            job.stats.skipped += len(due) - 1
            return [latest]
        job.stats.skipped += len(due)
        log.info("job %s: skipped %d missed boundaries (policy skip)", job.name, len(due))
        return []

    async def _commit(self, job: Job, epoch: float) -> None:
        job.stats.last_boundary = epoch
        await self._state.set(self._key(job), repr(epoch))


__all__ = [
    "Aligned",
    "Calendar",
    "CatchUp",
    "Daily",
    "Interval",
    "Job",
    "JobFunc",
    "KeyValue",
    "MemoryKeyValue",
    "Monthly",
    "Schedule",
    "Scheduler",
    "Slot",
]
