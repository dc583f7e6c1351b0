"""``Cco``: the terminal side of Q/GDW 1376.2 towards an HPLC carrier module (CCO).

Layer: hal. Implements ``hal.interfaces.CarrierModule`` and ``RouteModule`` over one
``SerialLink`` (the module's UART, 9600 8E1). One reader task owns the receive side: it feeds
the 1376.2 ``Framer``, hands replies (PRM=0) to the request waiting on that R6 sequence number,
and answers the module's own frames (PRM=1): AFN06 reports are confirmed with AFN00 F1 and
published as ``CarrierEvent``s (repeats de-duplicated), AFN14 F1/F2 module-led reading requests
are answered (F1 by the ``RouteReader`` given to ``lead``, each ask in a task of its own; the
meters' replies of AFN06 F2 go to that reader, not to the event stream), and an unsolicited
AFN03 F10 means the module restarted. A recovery task then re-identifies the module and re-syncs
the archive it was last given.

Flows (PROTOCOLS.md §3.4):

* identify (``reset``): AFN01 F1 hardware init, AFN03 F10 running mode (monitor timeout,
  concurrency, vendor), AFN05 F1 master address if it differs, AFN05 F2 allow event reports;
* archive sync: AFN10 F1 count, AFN10 F2 pages, then AFN11 F2 delete extras and AFN11 F1 add
  missing, in batches;
* point read: AFN13 F1, one at a time, bounded by the module's monitor timeout;
* concurrent read: AFN F1 F1, up to the module's concurrency in flight (replies matched by
  seq, else by node address); a deny 109 (max concurrency exceeded) lowers the limit;
* broadcast: AFN05 F3;
* module-led reading (路由主动抄表): ``lead(reader)`` answers the module's AFN14 F1 asks;
  ``route(restart|pause|resume)`` is AFN12 F1/F2/F3. While the module leads a round, a read
  of the terminal's own (``transact``, whichever app asks) first pauses the route (AFN12 F2,
  Q/GDW 1376.2 A.4: pause, then point read), waits for capacity as the frames the route still
  carries come back (AFN06 F2; a silent meter's after the module's monitor timeout), reads,
  and resumes the route (AFN12 F3) ``RESUME_AFTER_S`` after the last read of a burst -- or
  restarts it (F1) if the module lost its place meanwhile (it restarted, or refused F3). The
  route's frames in flight count against the module's concurrency like the terminal's own.

Concurrency is taken from byte 5 of the AFN03 F10 mode word (reserved in the 2019 table; the
virtual CCO in ``sim/hplc`` puts its limit there); 0 falls back to ``default_concurrency``.

Must not: know apps, the archive file or the bus (the runtime publishes ``events()``), sleep
outside the given clock, or let a module's bad frame end the reader (it is counted and traced).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from hal.errors import HalError, TransportError, TransportTimeout
from hal.hplc._events import EventHub, EventStream, ReportFilter, node_event
from hal.hplc.errors import ModuleDenied, ModuleError, ModuleReset, NodeTimeout
from hal.interfaces import (
    CarrierEvent,
    HalClock,
    NetworkNode,
    NodePhase,
    RouteAnswer,
    RouteAsk,
    RouteReader,
    SerialLink,
)
from hal.trace import Direction, FrameTrace
from protocols import gdw1376_2 as q
from protocols.errors import ProtocolError

_log = logging.getLogger(__name__)

LOCAL_ANSWER_S = 6.0  # every direct terminal<->module command is answered within 6 s (App. A.1)
DEFAULT_MONITOR_TIMEOUT_S = 90.0
PAGE_SIZE = 16  # nodes per AFN10 F2 page / AFN11 batch: well under a 2048-byte frame
DEDUP_WINDOW_S = 300.0
# Deny codes that mean "the node did not answer": raised as NodeTimeout (a TransportTimeout).
NODE_SILENT = frozenset({0, 8, 11, 12})
MAX_CONCURRENCY_EXCEEDED = 109
#: a burst of the terminal's own reads keeps the route paused: resumed this long after the last
RESUME_AFTER_S = 2.0
#: a frame the route carries holds a slot of the module until its reply is reported (AFN06 F2)
#: or the module's monitor timeout plus this has passed (a silent meter is not reported)
ROUTE_FRAME_SLACK_S = 2.0
RESUME_RETRY_MAX_S = 60.0
#: a read refused "max concurrency exceeded" while the module leads a round waits at most this
#: long for one of the route's frames to come back before it asks again
CROWDED_RETRY_S = 1.0

ReadMethod = Literal["auto", "monitor", "concurrent"]
RouteAction = Literal["restart", "pause", "resume"]
RouteState = Literal["idle", "leading", "paused"]


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What the module said about itself in AFN03 F10."""

    vendor: str
    chip: str
    version: str
    version_date: dt.date
    master_address: str
    monitor_timeout_s: int
    broadcast_timeout_s: int
    max_frame_len: int
    max_nodes: int
    current_nodes: int
    concurrency: int
    comm_type: int
    periodic_read_mode: int

    @classmethod
    def of(cls, mode: q.RunMode, *, default_concurrency: int) -> ModuleInfo:
        return cls(
            vendor=mode.vendor.vendor,
            chip=mode.vendor.chip,
            version=mode.vendor.version,
            version_date=mode.vendor.date,
            master_address=mode.master_address,
            monitor_timeout_s=mode.monitor_timeout_s,
            broadcast_timeout_s=mode.broadcast_timeout_s,
            max_frame_len=mode.max_frame_len,
            max_nodes=mode.max_nodes,
            current_nodes=mode.current_nodes,
            concurrency=mode.mode_word[4] or default_concurrency,
            comm_type=mode.comm_type,
            periodic_read_mode=mode.periodic_read_mode,
        )


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one archive sync changed in the module's node table."""

    module_nodes: int
    deleted: tuple[str, ...]
    added: tuple[str, ...]


@dataclass(slots=True)
class CcoCounters:
    """Totals since the driver was opened (for the live summary)."""

    frames_tx: int = 0
    frames_rx: int = 0
    decode_errors: int = 0
    bad_units: int = 0
    late_replies: int = 0  # replies whose request had already timed out (or never existed)
    commands: int = 0
    command_timeouts: int = 0
    denials: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    concurrency_denials: int = 0
    peak_in_flight: int = 0
    reports: int = 0
    duplicate_reports: int = 0
    confirms_sent: int = 0
    unsupported_frames: int = 0
    route_requests: int = 0
    route_data: int = 0  # meters' replies the module brought back while leading the reading
    route_restarts: int = 0  # AFN12 F1: rounds started, and restarts after the module lost its place
    route_pauses: int = 0  # AFN12 F2: for the terminal's own reads (or asked by the route's owner)
    route_resumes: int = 0  # AFN12 F3 after them
    route_lost: int = 0  # the module lost its place in a round (restarted, refused F3): restarted
    route_control_failures: int = 0  # AFN12 commands the module did not confirm
    point_reads_in_round: int = 0  # the terminal's own reads while the module led a round
    point_read_max_s: float = 0.0  # the longest of them, pause and wait for capacity included
    route_paused_s: float = 0.0  # time the route stood paused (resumed or restarted since)
    module_resets: int = 0
    identifies: int = 0
    syncs: int = 0
    recovery_failures: int = 0
    broadcasts: int = 0


@dataclass(slots=True)
class _Pending:
    afn: int
    future: asyncio.Future[q.Frame]
    address: str | None = None


@dataclass(slots=True)
class _ArchiveWish:
    addresses: tuple[str, ...]
    protocols: dict[str, int] = field(default_factory=dict)


def protocol_of(frame: bytes) -> int:
    """The 1376.2 protocol type of a carried meter frame: 645-2007 or 698.45 by its layout."""
    i = 0
    while i < len(frame) and frame[i] == 0xFE:
        i += 1
    if len(frame) >= i + 8 and frame[i] == 0x68 and frame[i + 7] == 0x68:
        return q.DLT645_2007
    return q.DLT698


def _normal(address: str) -> str:
    """12 upper-case hex digits (nameplate order), or ``ValueError`` naming the address."""
    text = address.upper() if isinstance(address, str) else ""
    if len(text) != 12 or any(c not in "0123456789ABCDEF" for c in text):
        raise ValueError(f"node address {address!r}: not 12 hex/BCD digits")
    return text


_PROTOCOL_BY_NAME = {"dlt645": q.DLT645_2007, "dlt645-1997": q.DLT645_1997, "dlt698": q.DLT698}


class Cco:
    """The CCO driver. ``async with Cco(link, clock=clock) as cco:`` opens the link and runs it.

    ``master_address`` (12 digits) is the terminal's address, written to the module if it
    differs; without it the module's own master address is used in addressed frames. ``tz``
    is the station area's zone for the clock the module asks for (AFN14 F2).
    """

    def __init__(
        self,
        link: SerialLink,
        *,
        clock: HalClock,
        name: str = "hplc",
        master_address: str | None = None,
        tz: dt.tzinfo = dt.UTC,
        trace_size: int = 512,
        event_queue: int = 1024,
        default_concurrency: int = 1,
        local_timeout: float = LOCAL_ANSWER_S,
        retries: int = 1,
        boot_wait: float = 10.0,
    ) -> None:
        if default_concurrency < 1:
            raise ValueError(f"default_concurrency must be >= 1, not {default_concurrency}")
        self._link = link
        self._clock = clock
        self._name = name
        self._master = None if master_address is None else _normal(master_address)
        self._tz = tz
        self._trace = FrameTrace(trace_size)
        self._hub = EventHub(maxlen=event_queue)
        self._filter = ReportFilter(window=DEDUP_WINDOW_S)
        self._framer = q.Framer()
        self._default_concurrency = default_concurrency
        self._local_timeout = local_timeout
        self._retries = retries
        self.counters = CcoCounters()
        self.info: ModuleInfo | None = None
        self.last_sync: SyncResult | None = None
        self._archive: _ArchiveWish | None = None
        self._indices: dict[int, str] = {}  # node index (AFN10 F2 / AFN14 F1) -> address
        self._pending: dict[int, _Pending] = {}
        self._seq = 0
        self._write_lock = asyncio.Lock()
        self._local_lock = asyncio.Lock()  # the module runs one local command / monitor at a time
        self._ready_lock = asyncio.Lock()
        self._capacity = asyncio.Event()  # replaced (and set) whenever a slot of the module frees
        self._in_flight = 0  # the terminal's own reads at the module
        self._limit: int | None = None
        self._route_reader: RouteReader | None = None
        self._route_out: dict[str, float] = {}  # node -> monotonic deadline of the frame the route carries
        self._route_state: RouteState = "idle"  # what the module was last told (AFN06 F3: idle)
        self._route_yielded = False  # paused for the terminal's own reads: resumed when they end
        self._route_wanted: Literal["restart", "resume"] | None = None  # the owner's, held during reads
        self._route_lost = False  # the module restarted while it led a round
        self._route_lock = asyncio.Lock()  # one AFN12 decision at a time
        self._paused_at: float | None = None
        self._point_reads = 0
        self._resumer: asyncio.Task[None] | None = None
        self._asks: set[asyncio.Task[None]] = set()
        self._identified = False
        self._expect_restart = False
        self._restart_seen = asyncio.Event()
        self._boot_wait = boot_wait
        self._reset_seen = asyncio.Event()
        self._broken: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: asyncio.Queue[q.Frame] = asyncio.Queue()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def link(self) -> SerialLink:
        return self._link

    @property
    def trace(self) -> FrameTrace:
        return self._trace

    @property
    def concurrency(self) -> int:
        """Concurrent reads allowed now (the module's figure, lowered by any deny 109)."""
        if self._limit is not None:
            return self._limit
        return self.info.concurrency if self.info is not None else self._default_concurrency

    @property
    def master_address(self) -> str:
        if self._master is not None:
            return self._master
        return self.info.master_address if self.info is not None else "000000000000"

    def statistics(self) -> dict[str, object]:
        info = self.info
        return {
            "module": self._name,
            "link": self._link.name,
            "identified": self._identified,
            "vendor": None if info is None else f"{info.vendor}/{info.chip} {info.version}",
            "monitor_timeout_s": None if info is None else info.monitor_timeout_s,
            "concurrency": self.concurrency,
            "in_flight": self._in_flight,
            "route_state": self._route_state,
            "route_frames_out": len(self._route_out),
            "archive_nodes": None if self._archive is None else len(self._archive.addresses),
            "events_published": self._hub.published,
            "events_dropped": self._hub.dropped,
            "framer_skipped_bytes": self._framer.skipped,
            **{k: getattr(self.counters, k) for k in CcoCounters.__dataclass_fields__},
        }

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self._link.open()
        self._tasks = [
            asyncio.create_task(self._reader(), name=f"{self._name}-reader"),
            asyncio.create_task(self._writer(), name=f"{self._name}-confirms"),
            asyncio.create_task(self._answerer(), name=f"{self._name}-route-requests"),
            asyncio.create_task(self._recovery(), name=f"{self._name}-recovery"),
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._resumer is not None:
            self._resumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resumer
        self._fail_pending(TransportError(f"{self._name}: driver closed"))
        self._hub.close()
        await self._link.close()

    # ------------------------------------------------------------------ CarrierModule

    async def reset(self) -> None:
        """Hardware-init the module and identify it (AFN01 F1, AFN03 F10, AFN05 F1/F2)."""
        async with self._ready_lock:
            await self._identify(hardware_init=True)

    async def sync_archive(
        self, addresses: Sequence[str], *, protocols: Mapping[str, str | int] | None = None
    ) -> None:
        """Make the module's node table equal ``addresses`` (result in ``last_sync``).

        ``protocols`` maps an address to "dlt645" / "dlt698" (or the 1376.2 type byte);
        others are registered as DL/T 645-2007. Remembered: re-applied after a module reset.
        """
        wish = _ArchiveWish(tuple(_normal(a) for a in addresses))
        for address, proto in (protocols or {}).items():
            key = _normal(address)
            if isinstance(proto, str) and proto not in _PROTOCOL_BY_NAME:
                known = ", ".join(_PROTOCOL_BY_NAME)
                raise ValueError(f"sync_archive: node {address}: protocol {proto!r} is not one of {known}")
            wish.protocols[key] = _PROTOCOL_BY_NAME[proto] if isinstance(proto, str) else int(proto)
        if len(set(wish.addresses)) != len(wish.addresses):
            raise ValueError("sync_archive: duplicate addresses")
        self._archive = wish
        async with self._ready_lock:
            if not self._identified:
                await self._identify(hardware_init=False)
            await self._sync(wish)

    async def transact(
        self,
        address: str,
        frame: bytes,
        *,
        timeout: float,  # noqa: ASYNC109 (the node's reply timeout, capped by the module's monitor timeout)
        method: ReadMethod = "auto",
    ) -> bytes:
        """Forward ``frame`` to the node at ``address``; return the meter's reply frame.

        ``auto`` reads concurrently (AFN F1 F1) when the module allows more than one read in
        flight, else by point read (AFN13 F1). While the module leads a round the route is
        paused first and resumed after (see the module docstring). A read cut by a module reset
        is retried once after the driver recovered. Raises ``NodeTimeout`` if the node does not
        answer.
        """
        address = _normal(address)
        async with self._point_read():
            for attempt in (0, 1):
                await self._ensure_ready()
                use = method
                if use == "auto":
                    use = "concurrent" if self.concurrency > 1 else "monitor"
                try:
                    if use == "concurrent":
                        return await self._concurrent(address, frame, timeout)
                    return await self._monitor(address, frame, timeout)
                except ModuleReset:
                    if attempt:
                        raise
                    _log.info("%s: read of %s cut by a module reset; retrying", self._name, address)
        raise AssertionError("unreachable")

    async def broadcast(self, frame: bytes) -> None:
        """Broadcast a meter frame to every node (AFN05 F3), e.g. a time sync."""
        await self._ensure_ready()
        unit = q.StartBroadcast(protocol_of(frame), frame)
        reply = await self._local(0x05, 3, unit, what="broadcast")
        self.counters.broadcasts += 1
        if reply.afn == 0x00 and reply.fn == 1:
            confirm = self._parse(reply)
            if isinstance(confirm, q.Confirm) and confirm.wait_s:
                _log.debug("%s: broadcast takes %d s in the network", self._name, confirm.wait_s)

    def events(self) -> EventStream:
        """A new subscription to carrier events (meter events, power-off/on lists, resets, ...)."""
        return self._hub.stream()

    async def network(self) -> tuple[NetworkNode, ...]:
        """Every node of the carrier network (AFN10 F21, paged), the CCO itself left out:
        STAs that joined whether the archive lists them or not."""
        nodes: list[NetworkNode] = []
        for node in await self._pages(21, q.Topology, "network topology"):
            assert isinstance(node, q.TopologyNode)
            if node.address != self.master_address:
                nodes.append(NetworkNode(node.address, node.tei, node.proxy_tei, node.level, node.role))
        return tuple(nodes)

    async def phases(self) -> tuple[NodePhase, ...]:
        """Every node's phase as the module identified it (AFN10 F31, paged), the CCO left out."""
        out: list[NodePhase] = []
        for node in await self._pages(31, q.PhaseInfo, "phase info"):
            assert isinstance(node, q.PhaseNode)
            if node.address == self.master_address:
                continue
            sequence = q.PHASE_SEQUENCES.get(node.sequence, "") if node.three_phase else ""
            out.append(NodePhase(node.address, node.phases, node.three_phase, node.line_abnormal, sequence))
        return tuple(out)

    async def _pages(self, fn: int, unit: type[q.Topology] | type[q.PhaseInfo], what: str) -> list[object]:
        """All nodes of a paged AFN10 query (F21 topology, F31 phase info): 1-based start index,
        ``PAGE_SIZE`` at a time, until the module's total is reached or a page comes back empty."""
        await self._ensure_ready()
        nodes: list[object] = []
        start = 1
        while True:
            page = self._parse(await self._local(0x10, fn, q.NodeQuery(start, PAGE_SIZE), what=what))
            if not isinstance(page, unit):
                raise ModuleError(f"{self._name}: AFN10 F{fn} answered with {type(page).__name__}")
            nodes.extend(page.nodes)
            start += len(page.nodes)
            if not page.nodes or start > page.total:
                return nodes

    # ------------------------------------------------------------------ module-led reading

    def lead(self, reader: RouteReader | None) -> None:
        """Who answers the module's AFN14 F1 "what shall I read at this node" asks (``RouteModule``).

        With a reader, the meters' replies the module brings back (AFN06 F2) go to
        ``reader.data`` and the end of a round (AFN06 F3) to ``reader.finished``; asks are
        answered concurrently (the module leads several nodes at once). Without one the driver
        answers "read succeeded" (nothing to read), so the route moves on, and the data that
        still comes back is published as ``read_data`` events.
        """
        self._route_reader = reader

    async def route(self, action: RouteAction) -> None:
        """AFN12 F1 restart / F2 pause / F3 resume the module's routing (module-led reading).

        A restart or resume asked while reads of the terminal's own are under way is held until
        they end (the route is paused for them); a pause asked by the route's owner stays until
        the owner resumes (the driver does not resume it after its reads)."""
        if action not in ("restart", "pause", "resume"):
            raise ValueError(f"route action {action!r}: restart, pause or resume")
        async with self._route_lock:
            if action == "pause":
                self._route_yielded, self._route_wanted = False, None
                if self._route_state != "paused":
                    await self._control("pause")
                return
            if self._point_reads and self._route_state != "leading":
                self._route_wanted = "restart" if "restart" in (action, self._route_wanted) else "resume"
                self._route_yielded = True  # the reads' end starts it
                return
            await self._control(action)

    async def _control(self, action: RouteAction) -> None:
        """Send one AFN12 command (the caller holds ``_route_lock``) and follow its state."""
        if action == "resume" and self._route_lost:
            action = "restart"  # the module lost its place: a resume would find no round
        fn = {"restart": 1, "pause": 2, "resume": 3}[action]
        await self._ensure_ready()
        try:
            await self._local(0x12, fn, None, what=f"route {action}")
        except HalError:
            self.counters.route_control_failures += 1
            raise
        if action == "pause":
            self._route_state = "paused"
            self._paused_at = self._clock.monotonic()
            self.counters.route_pauses += 1
            return
        if self._paused_at is not None:
            self.counters.route_paused_s += self._clock.monotonic() - self._paused_at
            self._paused_at = None
        if action == "restart":
            self.counters.route_restarts += 1
            self._forget_route_frames()  # a new round: the module dropped what it carried
        else:
            self.counters.route_resumes += 1
        self._route_state = "leading"
        self._route_yielded, self._route_wanted, self._route_lost = False, None, False

    # ------------------------------------------------------------------ the terminal's reads in a round

    @contextlib.asynccontextmanager
    async def _point_read(self) -> AsyncIterator[None]:
        """One read of the terminal's own: pauses a route the module leads, and has it resumed
        ``RESUME_AFTER_S`` after the last read of a burst ended."""
        self._point_reads += 1
        started = self._clock.monotonic()
        in_round = self._route_state != "idle" or self._route_yielded
        try:
            if self._route_state == "leading":
                await self._yield_route()
            yield
        finally:
            self._point_reads -= 1
            if in_round:
                self.counters.point_reads_in_round += 1
                took = self._clock.monotonic() - started
                self.counters.point_read_max_s = max(self.counters.point_read_max_s, took)
            resumer = self._resumer
            if self._point_reads == 0 and self._route_yielded and (resumer is None or resumer.done()):
                self._resumer = asyncio.create_task(self._resume_route(), name=f"{self._name}-route-resume")

    async def _yield_route(self) -> None:
        async with self._route_lock:
            if self._route_state != "leading":
                return  # paused meanwhile (another read of the burst, the owner) or over
            try:
                await self._control("pause")
            except HalError as err:
                _log.warning("%s: route not paused (%s): the read shares the module with it", self._name, err)
                return
            self._route_yielded = True

    async def _resume_route(self) -> None:
        """Resume (or restart) the route the terminal's reads paused, once they stayed quiet for
        ``RESUME_AFTER_S``; retried with backoff while the module does not confirm."""
        delay = RESUME_AFTER_S
        while True:
            await self._clock.sleep(delay)
            async with self._route_lock:
                if self._point_reads or not self._route_yielded:
                    return  # another read is under way (its end resumes) or nothing to resume
                action = self._route_wanted or "resume"
                try:
                    await self._control(action)
                    return
                except ModuleDenied as err:
                    if action == "resume" and not self._route_lost:  # no round to go on with
                        _log.warning("%s: route resume refused (%s): restarting the round", self._name, err)
                        self._route_lost = True
                        self.counters.route_lost += 1
                        delay = 0.0
                        continue
                    _log.warning("%s: route %s refused (%s); retrying", self._name, action, err)
                except HalError as err:
                    _log.warning("%s: route %s failed (%s); retrying", self._name, action, err)
            delay = min(max(2 * delay, 1.0), RESUME_RETRY_MAX_S)

    # ------------------------------------------------------------------ the module's capacity

    def _busy(self) -> int:
        """Slots of the module in use: the terminal's reads and the frames the route carries."""
        if self._route_out:
            now = self._clock.monotonic()
            for address in [a for a, deadline in self._route_out.items() if deadline <= now]:
                del self._route_out[address]  # a silent meter: the module gave up on it by now
        return self._in_flight + len(self._route_out)

    def _freed(self) -> None:
        event, self._capacity = self._capacity, asyncio.Event()
        event.set()

    async def _take_slot(self) -> None:
        while self._busy() >= self.concurrency:
            event = self._capacity
            if not self._route_out:
                await event.wait()
                continue
            wait = min(self._route_out.values()) - self._clock.monotonic()
            with contextlib.suppress(TimeoutError):
                async with self._clock.timeout(max(wait, 0.0)):
                    await event.wait()
        self._in_flight += 1
        self.counters.peak_in_flight = max(self.counters.peak_in_flight, self._in_flight)

    def _release_slot(self) -> None:
        self._in_flight -= 1
        self._freed()

    def _forget_route_frames(self) -> None:
        if self._route_out:
            self._route_out.clear()
            self._freed()

    def _route_frame_s(self) -> float:
        info = self.info
        if info is not None and info.monitor_timeout_s:
            return info.monitor_timeout_s + ROUTE_FRAME_SLACK_S
        return DEFAULT_MONITOR_TIMEOUT_S + ROUTE_FRAME_SLACK_S

    def _route_finished(self) -> None:
        """AFN06 F3: the module finished its round (a restart held for the reads still comes)."""
        self._route_state = "idle"
        self._route_lost = False
        if self._paused_at is not None:
            self.counters.route_paused_s += self._clock.monotonic() - self._paused_at
            self._paused_at = None
        if self._route_wanted is None:
            self._route_yielded = False
        self._forget_route_frames()

    async def _restart_lost_route(self) -> None:
        """After the module restarted in a round it led: start the round again. (A route paused
        for reads is restarted when they end, one the owner paused when the owner resumes it:
        ``_control`` turns that resume into a restart.)"""
        async with self._route_lock:
            if self._route_lost and self._route_state == "leading":
                await self._control("restart")

    # ------------------------------------------------------------------ identify / sync

    async def _ensure_ready(self) -> None:
        if self._broken is not None:
            raise TransportError(f"{self._name}: link failed: {self._broken}") from self._broken
        if self._identified:
            return
        async with self._ready_lock:
            if self._identified:
                return
            await self._identify(hardware_init=False)
            if self._archive is not None:
                await self._sync(self._archive)

    async def _identify(self, *, hardware_init: bool) -> None:
        self._identified = False
        if hardware_init:
            # The module restarts and announces AFN03 F10 by itself (App. A.2): wait for that
            # announcement (it is not a spontaneous reset), then query anyway.
            self._restart_seen.clear()
            self._expect_restart = True
            try:
                await self._local(0x01, 1, None, what="hardware init")
                with contextlib.suppress(TimeoutError):
                    async with self._clock.timeout(self._boot_wait):
                        await self._restart_seen.wait()
            finally:
                self._expect_restart = False
        reply = await self._local(0x03, 10, None, what="running-mode query")
        mode = self._parse(reply)
        if not isinstance(mode, q.RunMode):
            raise ModuleError(f"{self._name}: AFN03 F10 answered with {type(mode).__name__}")
        self._learn(mode)
        if self._master is not None and mode.master_address != self._master:
            await self._local(0x05, 1, q.MasterAddress(self._master), what="set master address")
        await self._local(0x05, 2, q.EventReport(1), what="allow event reports")
        self._identified = True
        self.counters.identifies += 1
        info = self.info
        assert info is not None
        _log.info(
            "%s: module %s/%s version %s, %d/%d nodes, monitor timeout %d s, concurrency %d",
            self._name, info.vendor, info.chip, info.version, info.current_nodes, info.max_nodes,
            info.monitor_timeout_s, info.concurrency,
        )  # fmt: skip

    def _learn(self, mode: q.RunMode) -> None:
        self.info = ModuleInfo.of(mode, default_concurrency=self._default_concurrency)
        self._limit = None

    async def _sync(self, wish: _ArchiveWish) -> None:
        count = self._parse(await self._local(0x10, 1, None, what="node count"))
        if not isinstance(count, q.NodeCount):
            raise ModuleError(f"{self._name}: AFN10 F1 answered with {type(count).__name__}")
        present: dict[str, int] = {}
        self._indices.clear()
        start = 1
        while start <= count.count:
            page = self._parse(await self._local(0x10, 2, q.NodeQuery(start, PAGE_SIZE), what="node list"))
            if not isinstance(page, q.NodePage):
                raise ModuleError(f"{self._name}: AFN10 F2 answered with {type(page).__name__}")
            if not page.nodes:
                break
            for i, node in enumerate(page.nodes):
                present[node.address] = node.protocol
                self._indices[start + i] = node.address
            start += len(page.nodes)
        wanted = {a: wish.protocols.get(a, q.DLT645_2007) for a in wish.addresses}
        extras = [a for a, proto in present.items() if a not in wanted or wanted[a] != proto]
        missing = [a for a in wish.addresses if a not in present or a in extras]
        for i in range(0, len(extras), PAGE_SIZE):
            batch = tuple(extras[i : i + PAGE_SIZE])
            await self._local(0x11, 2, q.DeleteNodes(batch), what="delete nodes")
        for i in range(0, len(missing), PAGE_SIZE):
            nodes = tuple(q.ArchiveNode(a, wanted[a]) for a in missing[i : i + PAGE_SIZE])
            await self._local(0x11, 1, q.AddNodes(nodes), what="add nodes")
        self.counters.syncs += 1
        self.last_sync = SyncResult(len(present), tuple(extras), tuple(missing))
        _log.info(
            "%s: archive synced: module had %d nodes, %d deleted, %d added",
            self._name, len(present), len(extras), len(missing),
        )  # fmt: skip

    # ------------------------------------------------------------------ reads

    async def _monitor(self, address: str, frame: bytes, timeout: float) -> bytes:  # noqa: ASYNC109
        unit = q.Monitor(protocol_of(frame), frame)
        limit = self._node_timeout(timeout)
        async with self._local_lock:
            await self._take_slot()
            try:
                reply = await self._request(
                    0x13, 1, unit, dst=address, timeout=limit, what=f"point read of {address}", node=address
                )
            finally:
                self._release_slot()
        result = self._parse(reply)
        if not isinstance(result, q.MonitorReply):
            self.counters.reads_failed += 1
            raise ModuleError(f"{self._name}: point read of {address} answered with {type(result).__name__}")
        if not result.frame:
            self.counters.reads_failed += 1
            raise NodeTimeout(f"{self._name}: node {address} did not answer (empty AFN13 F1 reply)")
        self.counters.reads_ok += 1
        return result.frame

    async def _concurrent(self, address: str, frame: bytes, timeout: float) -> bytes:  # noqa: ASYNC109
        unit = q.Concurrent(protocol_of(frame), frame)
        limit = self._node_timeout(timeout)
        crowded = False
        while True:
            if crowded:  # refused in a round: wait until one of the route's frames comes back
                event = self._capacity
                with contextlib.suppress(TimeoutError):
                    async with self._clock.timeout(CROWDED_RETRY_S):
                        await event.wait()
            await self._take_slot()
            try:
                reply = await self._request(
                    0xF1, 1, unit, dst=address, timeout=limit, what=f"concurrent read of {address}",
                    node=address,
                )  # fmt: skip
            except ModuleDenied as err:
                if err.code != MAX_CONCURRENCY_EXCEEDED:
                    raise
                self.counters.concurrency_denials += 1
                crowded = self._route_state != "idle"
                if not crowded:
                    # The module holds fewer than it announced: run with what was in flight without us.
                    self._limit = max(1, self._busy() - 1)
                    limit_now = self._limit
                    _log.warning("%s: module refused a concurrent read; limit now %d", self._name, limit_now)
                # else the route holds a slot we did not count (a frame it carried late): not a lower limit
                continue
            finally:
                self._release_slot()
            break
        result = self._parse(reply)
        if not isinstance(result, q.Concurrent):
            self.counters.reads_failed += 1
            kind = type(result).__name__
            raise ModuleError(f"{self._name}: concurrent read of {address} answered with {kind}")
        if not result.frame:
            self.counters.reads_failed += 1
            raise NodeTimeout(f"{self._name}: node {address} did not answer (empty AFN F1 reply)")
        self.counters.reads_ok += 1
        return result.frame

    def _node_timeout(self, timeout: float) -> float:
        module = float(self.info.monitor_timeout_s) if self.info and self.info.monitor_timeout_s else None
        wait = min(timeout, module) if module is not None else min(timeout, DEFAULT_MONITOR_TIMEOUT_S)
        return max(wait, 0.0) + self._local_timeout

    # ------------------------------------------------------------------ requests

    def _next_seq(self) -> int:
        for _ in range(256):
            self._seq = (self._seq + 1) & 0xFF
            if self._seq not in self._pending:
                return self._seq
        raise ModuleError(f"{self._name}: 256 requests in flight, no free sequence number")

    async def _local(self, afn: int, fn: int, unit: q.Unit | None, *, what: str) -> q.Frame:
        """A command to the module itself, answered within the local timeout; retried on silence."""
        async with self._local_lock:
            for attempt in range(self._retries + 1):
                try:
                    return await self._request(afn, fn, unit, timeout=self._local_timeout, what=what)
                except TransportTimeout:
                    if attempt == self._retries:
                        # Silent across retries: the module may have restarted without telling.
                        self._identified = False
                        raise
        raise AssertionError("unreachable")

    async def _request(
        self,
        afn: int,
        fn: int,
        unit: q.Unit | None,
        *,
        timeout: float,  # noqa: ASYNC109 (bounded with clock.timeout)
        what: str,
        dst: str | None = None,
        node: str | None = None,
    ) -> q.Frame:
        if self._broken is not None:
            raise TransportError(f"{self._name}: link failed: {self._broken}") from self._broken
        seq = self._next_seq()
        src = self.master_address if dst is not None else None
        frame = q.make_frame(afn, fn, unit, seq=seq, src=src, dst=dst)
        pending = _Pending(afn, asyncio.get_running_loop().create_future(), node)
        self._pending[seq] = pending
        self.counters.commands += 1
        try:
            await self._send(frame, note=what)
            try:
                async with self._clock.timeout(timeout):
                    reply = await pending.future
            except TimeoutError as err:
                self.counters.command_timeouts += 1
                self._record("rx", b"", f"timeout: {what}, seq {seq}, {timeout:g} s")
                cls = NodeTimeout if node is not None else TransportTimeout
                if node is not None:
                    self.counters.reads_failed += 1
                raise cls(f"{self._name}: {what}: no answer within {timeout:g} s") from err
        finally:
            self._pending.pop(seq, None)
        if reply.afn == 0x00 and reply.fn == 2:
            self.counters.denials += 1
            deny = self._parse(reply)
            code = deny.code if isinstance(deny, q.Deny) else -1
            reason = deny.reason if isinstance(deny, q.Deny) else "unreadable deny"
            if node is not None and code in NODE_SILENT:
                self.counters.reads_failed += 1
                raise NodeTimeout(f"{self._name}: {what}: {reason}")
            if node is not None and code != MAX_CONCURRENCY_EXCEEDED:
                self.counters.reads_failed += 1
            raise ModuleDenied(f"{self._name}: {what}", code, reason)
        return reply

    async def _send(self, frame: q.Frame, *, note: str) -> None:
        raw = q.encode(frame)
        async with self._write_lock:
            self._record("tx", raw, f"{note} (AFN{frame.afn:02X} F{frame.fn} seq {frame.seq})")
            self.counters.frames_tx += 1
            async with self._clock.timeout(self._link.settings.wire_seconds(len(raw)) + self._local_timeout):
                await self._link.write(raw)

    def _parse(self, frame: q.Frame) -> q.Unit:
        try:
            return q.parse_unit(frame)
        except ProtocolError as err:
            self.counters.bad_units += 1
            self._record("rx", q.encode(frame), f"bad data unit: {err}")
            raise ModuleError(f"{self._name}: AFN{frame.afn:02X} F{frame.fn}: {err}") from err

    def _record(self, direction: Direction, data: bytes, note: str) -> None:
        self._trace.record(direction, data, ts=self._clock.now(), device=self._name, note=note)

    def _fail_pending(self, error: BaseException) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error)
                pending.future.exception()  # retrieved here: a waiter may have gone already

    # ------------------------------------------------------------------ receive side

    async def _reader(self) -> None:
        try:
            while True:
                data = await self._link.read()
                for item in self._framer.feed(data):
                    if isinstance(item, ProtocolError):
                        self.counters.decode_errors += 1
                        self._record("rx", data, f"decode error: {item}")
                        _log.debug("%s: %s", self._name, item)
                        continue
                    self.counters.frames_rx += 1
                    try:
                        self._dispatch(item)
                    except (ProtocolError, HalError) as err:
                        self.counters.bad_units += 1
                        self._record("rx", q.encode(item), f"rejected: {err}")
                        _log.warning("%s: frame from the module rejected: %s", self._name, err)
        except TransportError as err:
            self._broken = err
            _log.error("%s: link failed, driver stops: %s", self._name, err)
            self._fail_pending(err)

    def _dispatch(self, frame: q.Frame) -> None:
        note = f"AFN{frame.afn:02X} F{frame.fn} seq {frame.seq}"
        if not frame.is_up:
            self.counters.unsupported_frames += 1
            self._record("rx", q.encode(frame), f"down frame on the up line ({note}): ignored")
            return
        if not frame.prm:
            self._on_reply(frame, note)
            return
        self._record("rx", q.encode(frame), f"module request {note}")
        if frame.afn == 0x06:
            self._on_report(frame)
        elif frame.afn == 0x14:
            self.counters.route_requests += 1
            self._requests.put_nowait(frame)
        elif frame.afn == 0x03 and frame.fn == 10:
            self._on_restart(frame)
        else:
            self.counters.unsupported_frames += 1
            _log.info("%s: module-initiated %s not handled", self._name, note)

    def _on_reply(self, frame: q.Frame, note: str) -> None:
        pending = self._pending.get(frame.seq)
        if pending is not None and frame.afn not in (pending.afn, 0x00):
            pending = None
        if pending is None and frame.afn == 0xF1 and frame.src is not None:
            # Some modules do not echo R6 on concurrent replies: match by node address.
            pending = next(
                (p for p in self._pending.values() if p.afn == 0xF1 and p.address == frame.src), None
            )
        if pending is None or pending.future.done():
            self.counters.late_replies += 1
            self._record("rx", q.encode(frame), f"late or unrequested reply {note}")
            return
        self._record("rx", q.encode(frame), f"reply {note}")
        pending.future.set_result(frame)

    def _confirm(self, frame: q.Frame) -> None:
        reply = q.make_frame(0x00, 1, q.Confirm(status=0xFFFFFFFF), seq=frame.seq, prm=False)
        raw = q.encode(reply)
        self._record("tx", raw, f"confirm AFN{frame.afn:02X} F{frame.fn} seq {frame.seq}")
        self.counters.confirms_sent += 1
        self.counters.frames_tx += 1
        self._outbox.put_nowait(raw)

    def _on_report(self, frame: q.Frame) -> None:
        now = self._clock.now()
        self.counters.reports += 1
        self._confirm(frame)
        if self._filter.repeated(frame, now):
            self.counters.duplicate_reports += 1
            return
        unit = q.parse_unit(frame)  # ProtocolError: counted and traced by the reader
        event: CarrierEvent
        if isinstance(unit, q.NodeEvent):
            event = node_event(frame, unit, ts=now)
        elif isinstance(unit, q.ReadData):
            address = self._indices.get(unit.index)
            self.counters.route_data += 1
            if address is not None and self._route_out.pop(address, None) is not None:
                self._freed()  # the route's frame came back: its slot is free
            if self._route_reader is not None and address is not None:
                self._route_reader.data(address, unit.frame, duration_s=float(unit.duration_s))
                return
            event = CarrierEvent(
                "read_data", (address,) if address else (), now, unit.frame,
                {"index": unit.index, "protocol": unit.protocol, "duration_s": unit.duration_s},
            )  # fmt: skip
        elif isinstance(unit, q.RouteChange):
            if unit.task == 1:
                self._route_finished()
            if unit.task == 1 and self._route_reader is not None:
                self._route_reader.finished()
            event = CarrierEvent("route_change", (), now, b"", {"task": unit.task})
        elif isinstance(unit, q.NodeReport | q.DeviceReport):
            event = CarrierEvent("node_registered", tuple(n.address for n in unit.nodes), now, frame.unit)
        else:
            event = CarrierEvent("report", (), now, frame.unit, {"afn": frame.afn, "fn": frame.fn})
        self._hub.publish(event)

    def _on_restart(self, frame: q.Frame) -> None:
        self._confirm(frame)
        mode = q.parse_unit(frame)
        if isinstance(mode, q.RunMode):
            self._learn(mode)
        if self._expect_restart:
            self._restart_seen.set()
            return  # the announcement after our own hardware init
        self.counters.module_resets += 1
        _log.warning("%s: the module restarted on its own; re-identifying", self._name)
        self._identified = False
        if self._route_state != "idle" or self._route_yielded:
            self._route_lost = True  # its round is gone: restarted after recovery
            self.counters.route_lost += 1
        self._forget_route_frames()
        self._fail_pending(ModuleReset(f"{self._name}: module restarted, command lost"))
        self._hub.publish(CarrierEvent("module_reset", (), self._clock.now(), frame.unit))
        self._reset_seen.set()

    # ------------------------------------------------------------------ background tasks

    async def _writer(self) -> None:
        """Writes confirmations queued by the reader (which must never wait on the line)."""
        try:
            while True:
                raw = await self._outbox.get()
                async with self._write_lock:
                    await self._link.write(raw)
        except TransportError as err:
            self._broken = err
            _log.error("%s: cannot write to the module: %s", self._name, err)

    async def _answerer(self) -> None:
        """Answers the module's AFN14 requests: each in a task of its own (the module leads
        several nodes at once, and the answer for one may wait on that node's previous reply)."""
        try:
            while True:
                frame = await self._requests.get()
                task = asyncio.create_task(self._answer(frame), name=f"{self._name}-ask-{frame.seq}")
                self._asks.add(task)
                task.add_done_callback(self._asks.discard)
        finally:
            for task in list(self._asks):
                task.cancel()

    async def _answer(self, frame: q.Frame) -> None:
        try:
            await self._answer_route(frame)
        except (ProtocolError, ModuleError) as err:
            self.counters.bad_units += 1
            self._record("rx", q.encode(frame), f"module request rejected: {err}")
        except TransportError as err:
            self._broken = err
            _log.error("%s: cannot answer the module: %s", self._name, err)

    async def _answer_route(self, frame: q.Frame) -> None:
        unit = q.parse_unit(frame)
        if isinstance(unit, q.ReadRequest):
            self._indices[unit.index] = unit.address
            reply = q.ReadReply(1)
            if self._route_reader is not None:
                try:
                    answer = await self._route_reader.ask(RouteAsk(unit.address, unit.index, unit.phase))
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # an app's reader failing must not stop the route
                    _log.warning("%s: route reader failed for %s: %s", self._name, unit.address, err)
                    answer = RouteAnswer(ok=False)
                reply = q.ReadReply(2, answer.frame) if answer.frame else q.ReadReply(1 if answer.ok else 0)
            if reply.flag == 2:
                self._route_out[unit.address] = self._clock.monotonic() + self._route_frame_s()
            elif self._route_out.pop(unit.address, None) is not None:
                self._freed()  # the node is done: nothing of it is carried any more
            out = q.make_frame(0x14, 1, reply, seq=frame.seq, src=self.master_address, dst=unit.address)
        elif frame.fn == 2:
            local = dt.datetime.fromtimestamp(self._clock.now(), self._tz).replace(tzinfo=None, microsecond=0)
            out = q.make_frame(0x14, 2, q.Clock(local), seq=frame.seq)
        else:
            self.counters.unsupported_frames += 1
            out = q.make_frame(0x00, 2, q.Deny(4), seq=frame.seq, prm=False)
        await self._send(out, note="answer to module request")

    async def _recovery(self) -> None:
        """After an unsolicited restart: identify again and re-sync the archive, with backoff."""
        delay = 1.0
        while True:
            await self._reset_seen.wait()
            self._reset_seen.clear()
            while not self._identified and self._broken is None:
                try:
                    await self._ensure_ready()
                    delay = 1.0
                    await self._restart_lost_route()
                except HalError as err:
                    self.counters.recovery_failures += 1
                    _log.warning("%s: recovery failed (%s); retrying in %g s", self._name, err, delay)
                    await self._clock.sleep(delay)
                    delay = min(delay * 2, 60.0)


__all__ = [
    "DEFAULT_MONITOR_TIMEOUT_S",
    "LOCAL_ANSWER_S",
    "Cco",
    "CcoCounters",
    "ModuleInfo",
    "ReadMethod",
    "SyncResult",
    "protocol_of",
]
