"""``VirtualCco``: a simulated HPLC carrier module speaking Q/GDW 1376.2 to the terminal on a pty.

Layer: sim. Talks to the terminal only through bytes on a ``SerialLink`` (a pty or an in-memory
link, ``sim.wiring``); every frame goes through ``protocols.gdw1376_2``. Models:

* the module itself: AFN01 init, AFN03 F1/F4/F10 identity (the AFN03 F10 mode word's byte 5
  carries the concurrency limit, as ``hal.hplc`` reads it), AFN05 F1/F2/F3, AFN12 route control;
* the node table (archive): AFN10 F1/F2 query, AFN11 F1/F2 add/delete; it survives a reset
  (flash) unless AFN01 F2 clears it;
* the network: every powered STA joined, archived or not: AFN10 F21 topology (seeded relay
  levels) and AFN10 F31 phase info (the node's phase, three-phase meters marked), the CCO first;
  reads reach any node of the network;
* the carrier network: per-node latency (seeded uniform draw per exchange, default 0.3-3 s for
  multi-hop), loss probability, a concurrency limit (AFN F1 F1 beyond it: deny 109); a point read
  (AFN13 F1) or concurrent read hands the carried frame to the node's meter (``SimNode.answer``)
  and returns its reply; silence costs ``silent_s`` and then a deny 11 / empty F1 reply;
* module-led reading (路由主动抄表): AFN12 F1 starts a round over the node table, F2 pauses it,
  F3 resumes it; ``concurrency`` nodes are led at once: AFN14 F1 "what to read here", the
  terminal's frame carried to the meter, its reply reported with AFN06 F2 (awaiting the AFN00 F1
  confirmation), asked again until the terminal says the node is done; nodes whose meter was
  silent get one more visit at the end, then AFN06 F3 "reading task finished". Paused, the module
  asks nothing new: what is under way completes (an ask already sent is answered, its frame
  carried and reported), and F3 goes on where it stopped (a node in the middle of its visit is
  asked again); F3 with no round under way changes nothing (a round that finished, or one lost to a
  restart of the module: the terminal starts a new one with F1). The carrier's capacity is shared exactly:
  the route carries only in what the terminal's reads leave free, and a terminal read that finds
  every slot taken by the route is refused (AFN F1 F1: deny 109, AFN13 F1: deny 9 "master node
  busy") -- a terminal pauses the route before its own reads (Q/GDW 1376.2 A.4);
* outages: ``node_power`` feeds ``sim.hplc.outage.OutageModel``; its reports go out as AFN06 F5
  power-off/on lists (collectors with a state byte per address), one report in flight at a time,
  resent every ``resend_s`` until the terminal confirms with AFN00 F1 (same R6);
* faults for tests: ``restart()`` (in-flight work lost, AFN03 F10 announced after ``boot_s``),
  ``inject(bytes)`` and ``garbage_rate`` (noise before a reply), ``drop_confirms`` (ignore the next
  N confirmations, so reports repeat), ``local_delay_s`` (slow answers to local commands).

Must not import the terminal, hal backends or apps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hal.clock import Clock
from hal.interfaces import SerialLink, SerialSettings
from protocols import gdw1376_2 as q
from protocols.errors import ProtocolError
from sim.hplc.nodes import SimNode
from sim.hplc.outage import POWER_OFF, LastGaspTiming, OutageModel, OutageReport
from sim.pty import PtyPair
from sim.wiring import PtyLink

log = logging.getLogger(__name__)

MAX_POWER_ADDRESSES = 42  # 1 + 6 n <= 255 content bytes (PROTOCOLS.md §3.5: longer lists split)
MAX_COLLECTOR_ADDRESSES = 36  # 1 + 7 n <= 255
#: frames, reports and broadcasts the virtual module remembers for tests (the newest; a run can be weeks)
KEPT_FRAMES = 4096
Latency = float | tuple[float, float]


@dataclass(slots=True)
class CcoCounters:
    frames_rx: int = 0
    frames_tx: int = 0
    garbage_rx: int = 0
    garbage_tx: int = 0  # noise bytes written on purpose
    reads: int = 0
    reads_lost: int = 0
    concurrency_denied: int = 0
    peak_in_flight: int = 0
    reports_sent: int = 0  # every send, resends included
    reports_confirmed: int = 0
    confirms_dropped: int = 0
    restarts: int = 0
    route_requests: int = 0  # AFN14 F1 asks
    route_rounds: int = 0
    route_rounds_finished: int = 0  # AFN06 F3 "reading task finished" reported
    route_reads: int = 0
    route_reads_lost: int = 0
    route_pauses: int = 0  # AFN12 F2
    route_resumes: int = 0  # AFN12 F3 that went on with a paused round
    route_asks_paused: int = 0  # AFN14 F1 asks started while paused (the model never does: 0)
    busy_denied: int = 0  # terminal reads refused because the route held every slot


@dataclass(slots=True)
class SentReport:
    """A report the CCO put on the line: for tests and the ground truth."""

    frame: q.Frame
    first_sent: float
    sends: int = 1
    confirmed_at: float | None = None
    outage: OutageReport | None = None


@dataclass(slots=True)
class _Outgoing:
    frame: q.Frame
    record: SentReport
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # confirmed, or given up


class VirtualCco:
    """One simulated CCO with its carrier network of ``nodes`` (the STAs in the field)."""

    def __init__(
        self,
        nodes: Iterable[SimNode],
        *,
        clock: Clock,
        seed: int = 0,
        settings: SerialSettings | None = None,
        latency_s: Latency = (0.3, 3.0),
        loss: float = 0.0,
        concurrency: int = 5,
        monitor_timeout_s: int = 20,
        silent_s: float | None = None,
        master_address: str = "000000000001",
        vendor: str = "SM",
        chip: str = "VC",
        max_nodes: int = 2040,
        timing: LastGaspTiming | None = None,
        resend_s: float = 10.0,
        max_sends: int = 10,
        boot_s: float = 2.0,
        local_delay_s: float = 0.02,
        lastgasp_loss: float = 0.0,
    ) -> None:
        if not 1 <= concurrency <= 255:
            raise ValueError(f"concurrency {concurrency}: expected 1..255")
        self.clock = clock
        self.settings = settings or SerialSettings(baud=9600, parity="E")
        self.nodes: dict[str, SimNode] = {}
        for n in nodes:
            if n.address in self.nodes:
                raise ValueError(f"node {n.address} listed twice")
            self.nodes[n.address] = n
        self.table: dict[str, int] = {}  # the module's archive: address -> protocol type
        self.latency_s = latency_s
        self.loss = loss
        self.concurrency = concurrency
        self.monitor_timeout_s = monitor_timeout_s
        self.silent_s = float(monitor_timeout_s) if silent_s is None else silent_s
        self.master_address = master_address
        self.vendor, self.chip = vendor, chip
        self.max_nodes = max_nodes
        self.resend_s = resend_s
        self.max_sends = max_sends
        self.boot_s = boot_s
        self.local_delay_s = local_delay_s
        self.garbage_rate = 0.0
        self.drop_confirms = 0
        self.reports_enabled = False
        self.counters = CcoCounters()
        self._timing = timing
        self._seed = seed
        self.lastgasp_loss = lastgasp_loss
        self.outages = OutageModel(timing=timing, seed=seed, loss=lastgasp_loss)
        self.module_powered = True
        self.lastgasp_lost = 0  # over every outage model this module had (it restarts with the terminal)
        # what the module saw and did, for tests and inspection: the newest KEPT_FRAMES of each
        # (a week at 2,000 meters is millions of frames)
        self.sent: deque[SentReport] = deque(maxlen=KEPT_FRAMES)
        self.broadcasts: deque[bytes] = deque(maxlen=KEPT_FRAMES)
        self.received: deque[q.Frame] = deque(maxlen=KEPT_FRAMES)  # well-formed down frames
        self._rng = np.random.default_rng([seed, 13762])
        self._levels: dict[str, int] = {}
        self._framer = q.Framer()
        self._seq = 0
        self._in_flight = 0
        self._busy_monitor = False
        self._work: set[asyncio.Task[None]] = set()
        self._outgoing: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._current: _Outgoing | None = None
        self._route_waiters: dict[int, asyncio.Future[q.Frame]] = {}
        self._route_task: asyncio.Task[None] | None = None
        self._route_pending: deque[int] = deque()  # node indices (1-based) left in this round
        self._route_failed: list[int] = []
        self._route_retried = False
        self._route_in_flight = 0
        self._route_go = asyncio.Event()  # clear while the route is paused (AFN12 F2)
        self._carrier = asyncio.Condition()  # carrier capacity shared by the route and terminal reads
        self._power_changed = asyncio.Event()
        self._enabled = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._write: Callable[[bytes], Awaitable[None]] | None = None
        self._alive = True
        self._tg: asyncio.TaskGroup | None = None

    @property
    def leading(self) -> bool:
        """A module-led round is under way (paused or not)."""
        return self._route_task is not None and not self._route_task.done()

    # ------------------------------------------------------------------ knobs

    def node_power(self, addresses: Iterable[str], on: bool, *, at: float | None = None) -> None:
        """Nodes lost (``on=False``) or regained power at ``at`` (default now)."""
        t = self.clock.now() if at is None else at
        known = [a for a in addresses if a in self.nodes]
        for a in known:
            self.nodes[a].powered = on
        if not self.module_powered:
            return  # the module is dark too: nobody listens to the last gasps
        (self.outages.power_on if on else self.outages.power_off)(known, t)
        self._power_changed.set()

    def module_power(self, on: bool) -> None:
        """The module's own supply (it sits in the terminal): off drops what it was aggregating
        and what it had not reported yet; on, it comes back knowing nothing of earlier outages."""
        if on == self.module_powered:
            return
        self.module_powered = on
        self.lastgasp_lost += len(self.outages.lost)
        self._seed += 1
        self.outages = OutageModel(timing=self._timing, seed=self._seed, loss=self.lastgasp_loss)
        if not on:
            while not self._outgoing.empty():
                self._outgoing.get_nowait()
            self.reports_enabled = False
            self._enabled.clear()
        self._power_changed.set()

    async def restart(self, *, wipe: bool = False) -> None:
        """The module restarts: in-flight work is lost, AFN03 F10 is announced after ``boot_s``."""
        self.counters.restarts += 1
        self._alive = False
        for task in list(self._work):
            task.cancel()
        self._stop_route()
        self._route_pending.clear()
        self._route_in_flight = 0
        self._in_flight = 0
        self._busy_monitor = False
        if wipe:
            self.table.clear()
        self.reports_enabled = False
        self._enabled.clear()
        await self.clock.sleep(self.boot_s)
        self._alive = True
        self._framer.reset()
        await self._send(q.make_frame(0x03, 10, self._run_mode(), up=True, prm=True, seq=self._next_seq()))

    async def inject(self, noise: bytes) -> None:
        """Write line noise to the terminal now."""
        self.counters.garbage_tx += len(noise)
        await self._raw_write(noise)

    # ------------------------------------------------------------------ serving

    async def serve(self, pty: PtyPair) -> None:
        """Serve on a pty master until cancelled; closes the pty on the way out."""
        await self.serve_link(PtyLink(pty, self.settings))

    async def serve_link(self, link: SerialLink) -> None:
        """Serve over any hal ``SerialLink`` (opened and closed here; ``sim.wiring``)."""
        async with link:
            await self._run(link.read, link.write)

    async def _run(
        self, receive: Callable[[], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        self._write = write
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._reporter(), name="sim-cco-reporter")
                tg.create_task(self._outage_clock(), name="sim-cco-outages")
                while True:
                    self._received(await receive(), tg)
        finally:
            for task in list(self._work):
                task.cancel()
            if self._route_task is not None:
                self._route_task.cancel()
            self._write = None

    # ------------------------------------------------------------------ wire

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    async def _raw_write(self, data: bytes) -> None:
        if self._write is None:
            raise RuntimeError("virtual CCO is not serving")
        async with self._write_lock:
            await self.clock.sleep(self.settings.wire_seconds(len(data)))
            await self._write(data)

    async def _send(self, frame: q.Frame) -> None:
        raw = q.encode(frame)
        if self.garbage_rate and self._rng.random() < self.garbage_rate:
            noise = bytes(self._rng.integers(0, 256, int(self._rng.integers(3, 24)), dtype=np.uint8))
            self.counters.garbage_tx += len(noise)
            raw = noise + raw
        self.counters.frames_tx += 1
        await self._raw_write(raw)

    def _spawn(self, tg: asyncio.TaskGroup, work: Awaitable[None], name: str) -> None:
        async def run() -> None:
            await work

        task = tg.create_task(run(), name=name)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def _received(self, data: bytes, tg: asyncio.TaskGroup) -> None:
        for item in self._framer.feed(data):
            if isinstance(item, ProtocolError):
                self.counters.garbage_rx += 1
                log.info("virtual CCO: garbage from the terminal: %s", item)
                continue
            if not self._alive:
                continue  # rebooting: the UART is deaf
            self.counters.frames_rx += 1
            self.received.append(item)
            if item.is_up:
                continue
            self._dispatch(item, tg)

    # ------------------------------------------------------------------ down frames

    def _dispatch(self, frame: q.Frame, tg: asyncio.TaskGroup) -> None:
        key = (frame.afn, frame.fn)
        if frame.afn == 0x00 and not frame.prm:
            self._on_confirm(frame)
            return
        if frame.afn == 0x14:
            waiter = self._route_waiters.pop(frame.seq, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            return
        try:
            unit = q.parse_unit(frame)
        except ProtocolError as err:
            log.info("virtual CCO: bad data unit in AFN%02X F%d: %s", frame.afn, frame.fn, err)
            self._spawn(tg, self._deny(frame, 1), "sim-cco-deny")
            return
        if key == (0x13, 1):
            assert isinstance(unit, q.Monitor)
            self._spawn(tg, self._monitor(frame, unit), f"sim-cco-monitor-{frame.dst}")
        elif key == (0xF1, 1):
            assert isinstance(unit, q.Concurrent)
            if self._in_flight + self._route_in_flight >= self.concurrency:
                self.counters.concurrency_denied += 1
                if self._in_flight < self.concurrency:
                    self.counters.busy_denied += 1  # the route holds the slots the terminal lacks
                self._spawn(tg, self._deny(frame, 109), "sim-cco-deny")
            else:
                self._in_flight += 1
                self.counters.peak_in_flight = max(self.counters.peak_in_flight, self._in_flight)
                self._spawn(tg, self._concurrent(frame, unit), f"sim-cco-read-{frame.dst}")
        elif key == (0x12, 1):
            self._start_route(tg)
            self._spawn(tg, self._confirm(frame), "sim-cco-confirm")
        elif key == (0x12, 3):
            if self.leading and not self._route_go.is_set():
                self.counters.route_resumes += 1
                self._route_go.set()  # the paused round goes on where it was
            self._spawn(tg, self._confirm(frame), "sim-cco-confirm")
        elif key == (0x12, 2):
            if self._route_go.is_set():
                self.counters.route_pauses += 1
            self._route_go.clear()  # no new asks; what is under way completes
            self._spawn(tg, self._confirm(frame), "sim-cco-confirm")
        else:
            self._spawn(tg, self._local(frame, unit), f"sim-cco-afn{frame.afn:02x}")

    async def _confirm(self, frame: q.Frame, *, wait_s: int = 0) -> None:
        await self.clock.sleep(self.local_delay_s)
        await self._send(q.make_frame(0x00, 1, q.Confirm(0xFFFFFFFF, wait_s), up=True, seq=frame.seq))

    async def _deny(self, frame: q.Frame, code: int) -> None:
        await self.clock.sleep(self.local_delay_s)
        await self._send(q.make_frame(0x00, 2, q.Deny(code), up=True, seq=frame.seq))

    def _run_mode(self) -> q.RunMode:
        # byte 0: HPLC (2) | route management | periodic reading: both terminal- and module-led (3)
        mode = bytes([0x02 | 0x10 | 0xC0, 0x00, 0x01, 0x00, self.concurrency, 0x00])
        return q.RunMode(
            mode_word=mode,
            monitor_timeout_s=self.monitor_timeout_s,
            broadcast_timeout_s=10,
            max_frame_len=2048,
            max_file_packet_len=2048,
            upgrade_wait_s=30,
            master_address=self.master_address,
            max_nodes=self.max_nodes,
            current_nodes=len(self.table),
            protocol_date=dt.date(2019, 12, 1),
            record_date=dt.date(2019, 12, 1),
            vendor=q.VendorVersion(self.vendor, self.chip, dt.date(2024, 1, 1), "0101"),
        )

    async def _local(self, frame: q.Frame, unit: Any) -> None:
        key = (frame.afn, frame.fn)
        await self.clock.sleep(self.local_delay_s)
        reply: q.Unit | None = None
        if key == (0x01, 1):
            # hardware init: confirm, then reboot and announce AFN03 F10 (not part of the work set)
            await self._send(q.make_frame(0x00, 1, q.Confirm(0xFFFFFFFF), up=True, seq=frame.seq))
            assert self._tg is not None
            self._tg.create_task(self.restart(), name="sim-cco-hardware-init")
            return
        if key == (0x01, 3):
            pass
        elif key == (0x01, 2):
            self.table.clear()
        elif key == (0x03, 1):
            reply = q.VendorVersion(self.vendor, self.chip, dt.date(2024, 1, 1), "0101")
        elif key == (0x03, 4):
            reply = q.MasterAddress(self.master_address)
        elif key == (0x03, 10):
            reply = self._run_mode()
        elif key == (0x05, 1):
            self.master_address = unit.address
        elif key == (0x05, 2):
            self.reports_enabled = bool(unit.enable)
            (self._enabled.set if unit.enable else self._enabled.clear)()
        elif key == (0x05, 3):
            self.broadcasts.append(unit.frame)
            for node in self.nodes.values():
                if node.powered:
                    node.answer(unit.frame, self.clock.now())
        elif key == (0x10, 1):
            reply = q.NodeCount(len(self.table), self.max_nodes)
        elif key == (0x10, 2):
            items = list(self.table.items())[max(unit.start - 1, 0) : max(unit.start - 1, 0) + unit.count]
            reply = q.NodePage(len(self.table), tuple(q.NodeInfo.of(a, protocol=p) for a, p in items))
        elif key == (0x10, 21):
            rows = self._network_rows()
            page = rows[max(unit.start - 1, 0) : max(unit.start - 1, 0) + unit.count]
            reply = q.Topology(
                len(rows),
                unit.start,
                tuple(q.TopologyNode(a, tei, proxy, info) for a, tei, proxy, info, _ in page),
            )
        elif key == (0x10, 31):
            rows = self._network_rows()
            page = rows[max(unit.start - 1, 0) : max(unit.start - 1, 0) + unit.count]
            reply = q.PhaseInfo(len(rows), unit.start, tuple(node for *_, node in page))
        elif key == (0x11, 1):
            if any(n.address in self.table for n in unit.nodes):
                await self._send(q.make_frame(0x00, 2, q.Deny(6), up=True, seq=frame.seq))
                return
            if len(self.table) + len(unit.nodes) > self.max_nodes:
                await self._send(q.make_frame(0x00, 2, q.Deny(1), up=True, seq=frame.seq))
                return
            for n in unit.nodes:
                self.table[n.address] = n.protocol
        elif key == (0x11, 2):
            if any(a not in self.table for a in unit.addresses):
                await self._send(q.make_frame(0x00, 2, q.Deny(7), up=True, seq=frame.seq))
                return
            for a in unit.addresses:
                del self.table[a]
        else:
            await self._send(q.make_frame(0x00, 2, q.Deny(10), up=True, seq=frame.seq))
            return
        if reply is None:
            await self._send(q.make_frame(0x00, 1, q.Confirm(0xFFFFFFFF), up=True, seq=frame.seq))
        else:
            await self._send(q.make_frame(frame.afn, frame.fn, reply, up=True, seq=frame.seq))

    # ------------------------------------------------------------------ the carrier network

    def _network_rows(self) -> list[tuple[str, int, int, int, q.PhaseNode]]:
        """The network as AFN10 F21/F31 list it: the CCO itself first (TEI 1), then every STA
        that joined -- archived or not (a meter the archive lacks still joins the network of
        the transformer that feeds it) -- with a seeded relay level per node."""
        rows = [(self.master_address, 1, 0, 0x40, q.PhaseNode.of(self.master_address, "ABC"))]
        for k, node in enumerate(n for n in self.nodes.values() if n.powered):
            level = self._levels.setdefault(node.address, int(self._rng.integers(1, 4)))
            proxy = 1 if level == 1 else 2 + int(self._rng.integers(0, max(k, 1)))
            role = 0x10 | level  # STA, relay level in D3..D0
            phases = (
                ""
                if node.phase == 0 and not node.three_phase
                else ("ABC" if node.three_phase else "ABC"[node.phase - 1])
            )
            info = q.PhaseNode.of(node.address, phases, three_phase=node.three_phase)
            rows.append((node.address, k + 2, proxy, role, info))
        return rows

    def _latency(self, node: SimNode | None) -> float:
        spec = node.latency_s if node is not None and node.latency_s is not None else self.latency_s
        if isinstance(spec, tuple):
            return float(self._rng.uniform(*spec))
        return float(spec)

    async def _carry(self, address: str | None, request: bytes) -> tuple[bytes | None, float]:
        """(meter reply or None, seconds it took) for a frame sent to ``address`` through the network."""
        self.counters.reads += 1
        node = self.nodes.get(address or "")
        # the module reaches every STA that joined its network, in its archive or not (a point
        # read of an unlisted node is how a terminal learns what a meter heard on it is)
        if node is None or not node.powered:
            await self.clock.sleep(self.silent_s)
            self.counters.reads_lost += 1
            return None, self.silent_s
        loss = node.loss if node.loss is not None else self.loss
        took = self._latency(node)
        if loss and self._rng.random() < loss:
            await self.clock.sleep(max(took, self.silent_s))
            self.counters.reads_lost += 1
            return None, max(took, self.silent_s)
        await self.clock.sleep(took)
        reply = node.answer(request, self.clock.now()) if node.powered else None
        if reply is None:
            self.counters.reads_lost += 1
        return reply, took

    async def _monitor(self, frame: q.Frame, unit: q.Monitor) -> None:
        if self._busy_monitor or self._in_flight + self._route_in_flight >= self.concurrency:
            if not self._busy_monitor:
                self.counters.busy_denied += 1
            await self._deny(frame, 9)
            return
        self._busy_monitor = True
        self._in_flight += 1
        try:
            reply, took = await self._carry(frame.dst, unit.frame)
        finally:
            self._busy_monitor = False
            self._in_flight = max(0, self._in_flight - 1)
            self._wake_route()
        if reply is None:
            code = 12 if frame.dst not in self.table else 11
            await self._send(q.make_frame(0x00, 2, q.Deny(code), up=True, seq=frame.seq))
            return
        out = q.MonitorReply(int(took), unit.protocol, reply)
        await self._send(q.make_frame(0x13, 1, out, up=True, seq=frame.seq, src=frame.dst, dst=frame.src))

    async def _concurrent(self, frame: q.Frame, unit: q.Concurrent) -> None:
        try:
            reply, _ = await self._carry(frame.dst, unit.frame)
        finally:
            self._in_flight = max(0, self._in_flight - 1)
            self._wake_route()
        out = q.Concurrent(unit.protocol, reply or b"")
        assert frame.dst is not None
        await self._send(
            q.make_frame(0xF1, 1, out, up=True, seq=frame.seq, src=frame.dst, dst="000000000000")
        )

    def _wake_route(self) -> None:
        """A terminal read ended: route workers waiting for carrier capacity may go on."""
        if self._route_task is None:
            return

        async def notify() -> None:
            async with self._carrier:
                self._carrier.notify_all()

        assert self._tg is not None
        self._spawn(self._tg, notify(), "sim-cco-carrier-free")

    # ------------------------------------------------------------------ module-led reading

    def _start_route(self, tg: asyncio.TaskGroup) -> None:
        """AFN12 F1: a new round over the whole table (one under way is abandoned)."""
        self._stop_route()
        self._route_go.set()
        self._route_pending = deque(range(1, len(self.table) + 1))
        self._route_failed = []
        self._route_retried = False
        self.counters.route_rounds += 1
        self._route_task = tg.create_task(self._route(), name="sim-cco-route")

    def _stop_route(self) -> None:
        """The round is abandoned (a restart, the module's own restart): nodes under way go back
        to the front of the round, their work lost."""
        if self._route_task is not None:
            self._route_task.cancel()
            self._route_task = None

    async def _route(self) -> None:
        """One round: ``concurrency`` nodes led at once, in table order; nodes whose meter did
        not answer get one more visit at the end; then AFN06 F3 "reading task finished"."""
        async with asyncio.TaskGroup() as tg:
            for k in range(self.concurrency):
                tg.create_task(self._route_worker(), name=f"sim-cco-route-{k}")
        if not self._route_retried and self._route_failed:
            self._route_retried = True
            self._route_pending.extend(self._route_failed)
            self._route_failed = []
            async with asyncio.TaskGroup() as tg:
                for k in range(self.concurrency):
                    tg.create_task(self._route_worker(), name=f"sim-cco-route-{k}")
        self._route_task = None
        self.counters.route_rounds_finished += 1
        await self._report(q.make_frame(0x06, 3, q.RouteChange(1), up=True, prm=True, seq=self._next_seq()))

    async def _route_worker(self) -> None:
        while self._route_pending:
            await self._route_go.wait()  # paused: no new node
            if not self._route_pending:
                break
            index = self._route_pending.popleft()
            try:
                if not await self._lead(index):
                    self._route_failed.append(index)
            except asyncio.CancelledError:
                self._route_pending.appendleft(index)  # paused: this node is asked again on resume
                raise

    async def _lead(self, index: int) -> bool:
        """Lead one node: ask what to read, carry it, report the reply, ask again -- until the
        terminal says the node is done. False when the meter did not answer (visited again)."""
        items = list(self.table.items())
        if index > len(items):
            return True  # the table shrank under the round
        address, protocol = items[index - 1]
        node = self.nodes.get(address)
        phase = node.phase if node is not None else 0
        for _ in range(MAX_ASKS_PER_VISIT):
            await self._route_go.wait()  # paused mid-visit: this node is asked again on resume
            answer = await self._ask(q.ReadRequest(phase, address, index))
            if answer is None or answer.flag != 2 or not answer.frame:
                return True  # done (or the terminal failed it, or did not answer: its call)
            async with self._carrier:
                await self._carrier.wait_for(self._route_may_carry)
                self._route_in_flight += 1
                self.counters.peak_in_flight = max(
                    self.counters.peak_in_flight, self._in_flight + self._route_in_flight
                )
            try:
                data, took = await self._carry(address, answer.frame)
            finally:
                async with self._carrier:
                    self._route_in_flight -= 1
                    self._carrier.notify_all()
            if data is None:
                self.counters.route_reads_lost += 1
                return False
            self.counters.route_reads += 1
            report = q.ReadData(index, protocol, int(took), data)
            seq = self._next_seq()
            await self._report_and_wait(q.make_frame(0x06, 2, report, up=True, prm=True, seq=seq))
        return True

    def _route_may_carry(self) -> bool:
        """The terminal's own reads go first: the route carries only in what they leave free."""
        return self._in_flight + self._route_in_flight < self.concurrency

    async def _ask(self, request: q.ReadRequest) -> q.ReadReply | None:
        """AFN14 F1 up; the terminal's answer, None if it did not answer within the local wait."""
        seq = self._next_seq()
        waiter: asyncio.Future[q.Frame] = asyncio.get_running_loop().create_future()
        self._route_waiters[seq] = waiter
        self.counters.route_requests += 1
        if not self._route_go.is_set():
            self.counters.route_asks_paused += 1
        try:
            await self._send(q.make_frame(0x14, 1, request, up=True, prm=True, seq=seq))
            async with self.clock.timeout(LOCAL_WAIT_S):
                answer = await waiter
        except TimeoutError:
            return None
        finally:
            self._route_waiters.pop(seq, None)
        try:
            reply = q.parse_unit(answer)
        except ProtocolError:
            return None
        return reply if isinstance(reply, q.ReadReply) else None

    # ------------------------------------------------------------------ reports

    async def _report(self, frame: q.Frame, outage: OutageReport | None = None) -> SentReport:
        record = SentReport(frame, first_sent=float("nan"), sends=0, outage=outage)
        await self._outgoing.put(_Outgoing(frame, record))
        return record

    async def _report_and_wait(self, frame: q.Frame) -> bool:
        """Report ``frame`` and wait until the terminal confirmed it (or the resends ran out)."""
        item = _Outgoing(frame, SentReport(frame, first_sent=float("nan"), sends=0))
        await self._outgoing.put(item)
        await item.done.wait()
        return item.confirmed.is_set()

    def _on_confirm(self, frame: q.Frame) -> None:
        cur = self._current
        if cur is None or cur.frame.seq != frame.seq:
            return
        if self.drop_confirms > 0:
            self.drop_confirms -= 1
            self.counters.confirms_dropped += 1
            return
        cur.record.confirmed_at = self.clock.now()
        self.counters.reports_confirmed += 1
        cur.confirmed.set()

    async def _reporter(self) -> None:
        """One report in flight: send, await AFN00 F1, resend every ``resend_s``, at most ``max_sends``."""
        while True:
            item = await self._outgoing.get()
            self._current = item
            self.sent.append(item.record)
            try:
                for _ in range(self.max_sends):
                    await self._enabled.wait()  # a module reports only once the terminal allowed it
                    if item.record.sends == 0:
                        item.record.first_sent = self.clock.now()
                    item.record.sends += 1
                    self.counters.reports_sent += 1
                    await self._send(item.frame)
                    try:
                        async with self.clock.timeout(self.resend_s):
                            await item.confirmed.wait()
                        break
                    except TimeoutError:
                        continue
            finally:
                self._current = None
                item.done.set()

    async def _outage_clock(self) -> None:
        """Turn the outage model's closed windows into AFN06 F5 reports."""
        while True:
            self._power_changed.clear()
            for report in self.outages.due(self.clock.now()):
                for frame in self._power_frames(report):
                    await self._report(frame, report)
            nxt = self.outages.next_time()
            wait = None if nxt is None else max(0.0, nxt - self.clock.now())
            try:
                async with self.clock.timeout(wait if wait is not None else 3600.0):
                    await self._power_changed.wait()
            except TimeoutError:
                pass

    def _power_frames(self, report: OutageReport) -> list[q.Frame]:
        kind = q.POWER_OFF if report.kind == POWER_OFF else q.POWER_ON
        meters = [a for a in report.addresses if not self.nodes[a].collector]
        collectors = [a for a in report.addresses if self.nodes[a].collector]
        frames = []
        for i in range(0, len(meters), MAX_POWER_ADDRESSES):
            nodes = tuple(q.PowerNode(a) for a in meters[i : i + MAX_POWER_ADDRESSES])
            unit = q.NodeEvent.power_report(q.PowerEvent(kind, nodes), device_type=1)
            frames.append(q.make_frame(0x06, 5, unit, up=True, prm=True, seq=self._next_seq()))
        for i in range(0, len(collectors), MAX_COLLECTOR_ADDRESSES):
            nodes = tuple(
                q.PowerNode(a, report.kind != POWER_OFF) for a in collectors[i : i + MAX_COLLECTOR_ADDRESSES]
            )
            unit = q.NodeEvent.power_report(q.PowerEvent(kind, nodes), device_type=0)
            frames.append(q.make_frame(0x06, 5, unit, up=True, prm=True, seq=self._next_seq()))
        return frames

    async def report_meter_event(
        self, address: str, frame: bytes, *, protocol: int = q.DLT645_2007
    ) -> SentReport:
        """A meter's active report (status-word frame) relayed as AFN06 F5 (PROTOCOLS.md §3.5)."""
        unit = q.NodeEvent(1, protocol, frame)
        return await self._report(q.make_frame(0x06, 5, unit, up=True, prm=True, seq=self._next_seq()))


LOCAL_WAIT_S = 6.0
MAX_ASKS_PER_VISIT = 64  # a terminal that never says "done" cannot hold the route at one node


__all__ = ["MAX_POWER_ADDRESSES", "CcoCounters", "SentReport", "VirtualCco"]
