"""``RouteTransport``: meter frames sent as answers to a carrier module that leads the reading.

Layer: hal. Module-led reading (路由主动抄表, Q/GDW 1376.2 App. A.6.2, PROTOCOLS.md §3.4): the
module walks its node table -- several nodes at once -- and asks for each "what shall I read
here" (AFN14 F1); the terminal answers with a meter frame, the module carries it and brings the
meter's reply back (AFN06 F2), then asks again for the same node, until the terminal says the
node is done (read succeeded / failed). This transport is the ``RouteReader`` the module's
driver calls (``RouteModule.lead``) and a ``MeterTransport`` for the protocol masters, so the
same ``MeterClient`` code (645 load-curve blocks, 698 record reads and their fragments) reads a
meter whichever side leads.

How the two meet: when the module asks about a node, ``jobs(address)`` (the app's) says what is
due there -- a coroutine function that reads the meter through a client on this transport --
or None (nothing: the node is done at once). The job runs in a session of that node: each
``transact`` it makes hands its frame to the module as the answer to the pending ask and waits
for the reply the module brings back. The job's end is the node's last answer (succeeded when
it returned True). A frame the module never answers fails the job's exchange when the module
asks about the node again or moves on for longer than the reply timeout, counted from when the
frame was handed (a route paused for the terminal's own reads asks again when it resumes); a
frame the module never came back for fails when the round ends. Outside a session
``transact`` refuses (``TransportError``): only the module decides when a node is read.

Must not: know any protocol (the caller's decoder reads the reply), retry (the module retries
failed nodes in its own passes), know apps or archives, or sleep outside the given clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from hal.errors import HalError, TransportError, TransportTimeout
from hal.health import DeviceHealth, DeviceHealthBook
from hal.interfaces import HalClock, Priority, RouteAnswer, RouteAsk, StreamDecoder
from hal.meters.transport import CARRIER_SLACK_S, TransportKind, accepted_reply
from protocols.errors import ProtocolError

_log = logging.getLogger(__name__)

F = TypeVar("F")

#: The module waits this long for the answer to an ask (Q/GDW 1376.2 App. A.1: 6 s); the next
#: frame of a job must be ready well within it.
ANSWER_WITHIN_S = 4.0

#: What is due at a node: a coroutine function reading it through this transport (True = done).
Job = Callable[[], Awaitable[bool]]
JobSource = Callable[[str], Job | None]


@dataclass(slots=True)
class _Session:
    """One node being read while the module leads it."""

    address: str
    step: asyncio.Future[bytes | None]  # the job's next frame, or None once it ended
    reply: asyncio.Future[bytes] | None = None  # the reply awaited for the job's current frame
    handed: asyncio.Future[bytes] | None = None  # ... once that frame went to the module
    taken: asyncio.Future[None] | None = None  # done when the module asked for the job's frame
    task: asyncio.Task[None] | None = None
    ok: bool = False
    ended_at: float | None = None
    frames: int = 0


class RouteTransport:
    """``MeterTransport`` + ``RouteReader`` for module-led reading of the carrier's nodes."""

    kind: TransportKind = "hplc"

    def __init__(
        self,
        *,
        clock: HalClock,
        name: str = "hplc-route",
        jobs: JobSource | None = None,
        fail_threshold: int = 3,
        answer_within: float = ANSWER_WITHIN_S,
    ) -> None:
        self._clock = clock
        self._name = name
        self._jobs = jobs
        self._answer_within = answer_within
        self._sessions: dict[str, _Session] = {}
        self._health = DeviceHealthBook(
            clock=clock, name=name, fail_threshold=fail_threshold, log=_log, noun="node"
        )
        self._round_over = asyncio.Event()
        self._round_over.set()
        self.last_exchange: tuple[int, int] = (0, 0)
        self.rounds_started = 0
        self.rounds_finished = 0
        self.asks = 0
        self.idle_asks = 0  # nothing was due at the node
        self.jobs_ok = 0
        self.jobs_failed = 0
        self.transactions = 0
        self.unanswered = 0  # frames the module never brought a reply for

    # ------------------------------------------------------------------ the app's side

    @property
    def name(self) -> str:
        return self._name

    def set_jobs(self, jobs: JobSource | None) -> None:
        """What is due at a node when the module asks (None: nothing anywhere)."""
        self._jobs = jobs

    @property
    def in_round(self) -> bool:
        """A round was started and the module has not reported it finished."""
        return not self._round_over.is_set()

    def round_started(self) -> None:
        """The terminal restarted the module's routing: a round is under way."""
        self.rounds_started += 1
        self._round_over.clear()

    async def wait_round(self) -> None:
        """Until the module reports the round finished (AFN06 F3)."""
        await self._round_over.wait()

    # ------------------------------------------------------------------ RouteReader

    async def ask(self, ask: RouteAsk) -> RouteAnswer:
        self.asks += 1
        address = ask.address
        now = self._clock.monotonic()
        session = self._sessions.get(address)
        stale = session is not None and session.ended_at is not None
        if stale and session is not None and now - (session.ended_at or now) > self._answer_within:
            del self._sessions[address]  # a job that ended while the module was elsewhere: a new visit
            session = None
        if session is not None and session.handed is not None and not session.handed.done():
            # asked again while the frame it carried has no reply: the module gave up on it
            self.unanswered += 1
            gave_up = TransportTimeout(f"{self._name}: node {address}: no reply came back")
            session.handed.set_exception(gave_up)
        if session is None:
            job = self._jobs(address) if self._jobs is not None else None
            if job is None:
                self.idle_asks += 1
                return RouteAnswer(ok=True)
            session = _Session(address, asyncio.get_running_loop().create_future())
            self._sessions[address] = session
            session.task = asyncio.create_task(self._run(session, job), name=f"{self._name}:{address}")
        try:
            async with self._clock.timeout(self._answer_within):
                step = await asyncio.shield(session.step)
        except TimeoutError:
            _log.warning("%s: node %s: next frame not ready in time; node failed", self._name, address)
            self._drop(session)
            return RouteAnswer(ok=False)
        if step is None:
            self._drop(session)
            return RouteAnswer(ok=session.ok)
        session.step = asyncio.get_running_loop().create_future()
        session.handed = session.reply
        if session.taken is not None and not session.taken.done():
            session.taken.set_result(None)
        return RouteAnswer(frame=step)

    def data(self, address: str, frame: bytes, *, duration_s: float) -> None:
        session = self._sessions.get(address)
        reply = session.reply if session is not None else None
        if reply is None or reply.done():
            _log.debug("%s: reply of node %s that no frame waits for: dropped", self._name, address)
            return
        reply.set_result(frame)

    def finished(self) -> None:
        self.rounds_finished += 1
        self._round_over.set()
        for session in self._sessions.values():
            if session.taken is not None and not session.taken.done():  # the module did not come back
                ended = TransportTimeout(f"{self._name}: node {session.address}: the round ended first")
                session.taken.set_exception(ended)

    # ------------------------------------------------------------------ sessions

    async def _run(self, session: _Session, job: Job) -> None:
        try:
            session.ok = bool(await job())
        except (HalError, ProtocolError) as err:
            _log.debug("%s: node %s: %s", self._name, session.address, err)
            session.ok = False
        except asyncio.CancelledError:
            session.ok = False
            raise
        except Exception:  # the app's job failing must not leave the module waiting
            _log.exception("%s: job for node %s failed", self._name, session.address)
            session.ok = False
        finally:
            if session.ok:
                self.jobs_ok += 1
            else:
                self.jobs_failed += 1
            session.ended_at = self._clock.monotonic()
            if not session.step.done():
                session.step.set_result(None)

    def _drop(self, session: _Session) -> None:
        if self._sessions.get(session.address) is session:
            del self._sessions[session.address]
        if session.task is not None and not session.task.done():
            session.task.cancel()

    def close(self) -> None:
        """Cancel every job under way (the app stops leading)."""
        for session in list(self._sessions.values()):
            self._drop(session)

    # ------------------------------------------------------------------ MeterTransport

    def available(self, device: str) -> bool:
        return self._health.available(device)

    def health(self, device: str) -> DeviceHealth:
        return self._health.snapshot(device)

    def wire_seconds(self, nbytes: int) -> float:
        """0: the module's own timing covers a frame's air time."""
        return 0.0

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority,
        timeout: float,  # noqa: ASYNC109 (the carrier reply timeout, applied with the clock)
    ) -> F:
        """Hand ``request`` to the module as the answer to its ask about ``device``; return the
        matching reply it brings back. Only inside the node's session (a job of ``jobs``)."""
        session = self._sessions.get(device)
        if session is None or session.step.done() or session.reply is not None:
            raise TransportError(f"{self._name}: node {device} is not being led by the module now")
        self._health.track(device)
        self.transactions += 1
        session.frames += 1
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bytes] = loop.create_future()
        taken: asyncio.Future[None] = loop.create_future()
        session.reply, session.taken = reply, taken
        session.step.set_result(request)
        try:
            await taken  # the module asks when it leads the node again (a paused route: on resume)
            async with self._clock.timeout(timeout + CARRIER_SLACK_S):
                raw = await reply
        except TimeoutError as err:
            self.unanswered += 1
            self._health.failure(device, "timeouts")
            raise TransportTimeout(
                f"{self._name}: node {device} did not answer within {timeout:g} s"
            ) from err
        except TransportTimeout:
            self._health.failure(device, "timeouts")
            raise
        finally:
            session.reply = session.handed = session.taken = None
        answer = accepted_reply(raw, decoder, match, health=self._health, device=device, port=self._name)
        self.last_exchange = (len(request), len(raw))
        return answer

    async def broadcast(self, frame: bytes, *, priority: Priority = Priority.CONTROL) -> None:
        raise TransportError(f"{self._name}: a broadcast goes through the module directly, not the route")

    def statistics(self) -> dict[str, object]:
        return {
            "transport": self._name,
            "in_round": self.in_round,
            "rounds_started": self.rounds_started,
            "rounds_finished": self.rounds_finished,
            "asks": self.asks,
            "idle_asks": self.idle_asks,
            "jobs_ok": self.jobs_ok,
            "jobs_failed": self.jobs_failed,
            "transactions": self.transactions,
            "unanswered": self.unanswered,
            "sessions": len(self._sessions),
        }

    def __repr__(self) -> str:
        return f"<RouteTransport {self._name}>"


__all__ = ["ANSWER_WITHIN_S", "Job", "JobSource", "RouteTransport"]
