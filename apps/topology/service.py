"""The topology app: collects curves, orders signature-current injections at night, identifies
the station's topology daily, online and on demand, and reports.

Layer: apps (topology). Everything through ``ctx``: the bus (``meter/+/curve`` and
``meter/transformer/reading`` from acquisition in; ``topology/result`` retained and
``topology/change`` out), the scheduler, the app's store (the curve window, the last result,
the injection log), the uplink (stream ``topology``, command ``topology.run``), the hal
(carrier module: network, phases, reads of unlisted nodes; meters and units: signature
current) and the station model (read; corrections proposed with provenance ``identified``).
The identification itself (``identify``) runs in a worker thread: seconds of numpy must not
stall the event loop the other apps share.

Jobs (local time):

* ``identify`` daily at ``daily_at`` over the last ``window_h`` hours: the full result, uplinked,
  corrections proposed;
* ``check`` every ``check_interval_h``: the same identification, reported only when a meter
  moved to another phase since the last result (``topology/change``) -- a move is noticed
  within a day;
* ``inject`` at the start of the off-peak window: plans the night's injections (least sure
  first, ``injections.plan``), orders each one ahead of its slot, polls the units during the
  window and ties what they heard to the injections (``injections.attribute``);
* ``save`` hourly: the curve window into the store, so a restart loses no data.
"""

from __future__ import annotations

import asyncio
import tomllib
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hal.errors import CapabilityMissing, HalError
from hal.interfaces import Priority
from hal.meters import CarrierTransport, MeterClient, MeterClients, MeterTransport, Rs485Transport
from protocols.errors import ProtocolError
from protocols.signature import Detection as Heard
from runtime.scheduler import CatchUp, Daily, Interval, Slot

from . import archive as arch
from . import injections
from .identify import Settings as MethodSettings
from .identify import identify
from .inputs import Detection, Inputs, UnknownNode
from .result import MeterResult, TopologyResult
from .window import STEP_S, TRANSFORMER, Window

RESULT_TOPIC = "topology/result"
CHANGE_TOPIC = "topology/change"
STREAM = "topology"
COMMAND = "topology.run"
LEAD_S = 300.0  # orders go out this long before the slot


def _hhmm(text: str, key: str) -> time:
    hh, _, mm = str(text).partition(":")
    if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
        raise ValueError(f"apps.topology.config.{key}: {text!r} is not HH:MM")
    return time(int(hh), int(mm))


@dataclass(frozen=True, slots=True)
class Settings:
    window_h: float = 24.0
    daily_at: time = time(6, 0)
    check_interval_h: float = 2.0
    propose: bool = True
    confidence_min: float = 0.9
    signature: bool = True
    signature_window: tuple[time, time] = (time(1, 0), time(5, 0))
    signature_slot_s: float = 30.0
    signature_per_day: int = 400
    miss_rate: float = 0.1
    crosstalk_rate: float = 0.005
    read_unknown_nodes: bool = True
    archive: str | None = None  # a meter archive file, only while the runtime has no station model

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        window = str(config.get("signature_window", "01:00-05:00"))
        start, _, end = window.partition("-")
        return cls(
            window_h=float(config.get("window_h", 24)),
            daily_at=_hhmm(str(config.get("daily_at", "06:00")), "daily_at"),
            check_interval_h=float(config.get("check_interval_h", 2)),
            propose=bool(config.get("propose", True)),
            confidence_min=float(config.get("confidence_min", 0.9)),
            signature=bool(config.get("signature", True)),
            signature_window=(_hhmm(start, "signature_window"), _hhmm(end, "signature_window")),
            signature_slot_s=float(config.get("signature_slot_s", 30)),
            signature_per_day=int(config.get("signature_per_day", 400)),
            miss_rate=float(config.get("miss_rate", 0.1)),
            crosstalk_rate=float(config.get("crosstalk_rate", 0.005)),
            read_unknown_nodes=bool(config.get("read_unknown_nodes", True)),
            archive=config.get("archive") or None,
        )


class TopologyService:
    def __init__(self, ctx: Any, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.log = ctx.log
        self.window = Window(keep_points=int(max(settings.window_h, 24) * 4 * 2) + 8)
        self.last: TopologyResult | None = None
        self.detections: list[Detection] = []  # injections and what was heard, newest night last
        self.sent: dict[str, float] = {}  # meter -> UTC epoch of its last injection
        self.counters = {"identifications": 0, "injections": 0, "orders_failed": 0, "unit_reads_failed": 0,
                         "proposals": 0, "changes": 0, "bad_messages": 0}  # fmt: skip
        self._clients = MeterClients(timeouts={"rs485": 1.0, "hplc": 20.0})
        self._transports: dict[str, MeterTransport] = {}
        self._lock = asyncio.Lock()
        self._tz = ctx.terminal.tz

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        saved = await self.ctx.store.get("window")
        if isinstance(saved, dict):
            try:
                self.window = Window.from_json(saved)
            except ValueError as err:
                self.log.warning("topology: %s; starting an empty window", err)
        detections = await self.ctx.store.get("detections")
        if isinstance(detections, list):
            self.detections = [
                Detection(str(d["source"]), float(d["at"]), tuple(d["heard_by"]), tuple(d["listening"]))
                for d in detections
                if isinstance(d, dict) and {"source", "at", "heard_by", "listening"} <= set(d)
            ]
        sent = await self.ctx.store.get("sent")
        if isinstance(sent, dict):
            self.sent = {str(k): float(v) for k, v in sent.items()}
        s, sched = self.settings, self.ctx.scheduler
        sched.add("identify", Daily(s.daily_at.hour, s.daily_at.minute), self._daily, catch_up=CatchUp.LATEST)
        sched.add("check", Interval(int(s.check_interval_h * 3600)), self._check, catch_up=CatchUp.SKIP)
        if s.signature:
            start = s.signature_window[0]
            sched.add("inject", Daily(start.hour, start.minute), self._night, catch_up=CatchUp.SKIP)
        sched.add("save", Interval(3600), self._save, catch_up=CatchUp.SKIP)
        self.ctx.uplink.register_command(COMMAND, self._cmd_run)

    async def feed(self) -> None:
        """Keep the window fed from the bus until cancelled."""
        curves = self.ctx.bus.subscribe("meter/+/curve", maxsize=100_000)
        trafo = self.ctx.bus.subscribe(f"meter/{TRANSFORMER}/reading", maxsize=10_000)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._pump(curves, self.window.add_curve), name="topology-curves")
            tg.create_task(self._pump(trafo, self.window.add_transformer), name="topology-transformer")

    async def _pump(self, sub: Any, add: Any) -> None:
        async for message in sub:
            payload = message.payload
            if isinstance(payload, list):
                add(payload)
            else:
                self.counters["bad_messages"] += 1

    # -- jobs -------------------------------------------------------------------------------------
    async def _daily(self, slot: Slot) -> None:
        await self.run(reason="daily")

    async def _check(self, slot: Slot) -> None:
        result = await self.run(reason="check", report=False)
        if result is not None:
            await self._report_changes(result)

    async def _save(self, slot: Slot) -> None:
        await self.ctx.store.set("window", self.window.to_json())

    async def _cmd_run(self, args: dict[str, Any]) -> dict[str, Any]:
        hours = args.get("window_h", self.settings.window_h)
        if not isinstance(hours, int | float) or not 1 <= hours <= 24 * 7:
            raise ValueError("window_h must be a number of hours within 1..168")
        result = await self.run(reason="command", window_h=float(hours))
        if result is None:
            return {"status": "no data", "points": 0}
        return {"status": "done", "computed_at": result.computed_at, "summary": result.summary}

    # -- the identification -------------------------------------------------------------------
    def station(self) -> arch.Archive:
        station = getattr(self.ctx, "station", None)
        if station is not None:
            return arch.from_model(station.model)
        return arch.from_model(_archive_file(self.settings.archive, self.ctx.terminal.root))

    async def inputs(self, *, window_h: float) -> Inputs | None:
        archive = self.station()
        latest = self.window.latest()
        if latest is None:
            return None
        points = int(window_h * 3600 // STEP_S) + 1
        first = latest - (points - 1) * STEP_S
        phases, network, unknown = await self._carrier(archive)
        meters = arch.with_carrier(archive, phases, network)
        unknown_nodes = tuple(unknown)
        extra = [u.device for u in unknown_nodes if u.device]
        curves = self.window.curves(arch.devices(archive, extra), first, points)
        energy, volts = self.window.transformer(first, points)
        return Inputs(
            meters=meters,
            branches=archive.branches,
            boxes=archive.boxes,
            curves=curves,
            transformer_energy=energy,
            transformer_voltage=volts,
            detections=tuple(d for d in self.detections if d.at >= first - 86400 * 7),
            unknown_nodes=unknown_nodes,
            miss_rate=self.settings.miss_rate,
            crosstalk_rate=self.settings.crosstalk_rate,
        )

    async def run(
        self, *, reason: str, window_h: float | None = None, report: bool = True
    ) -> TopologyResult | None:
        async with self._lock:
            inputs = await self.inputs(window_h=window_h or self.settings.window_h)
            if inputs is None or inputs.points < 8:
                self.log.info("topology %s: not enough curve data yet", reason)
                return None
            now = self.ctx.clock.now()
            settings = MethodSettings(confidence_min=self.settings.confidence_min)
            result = await asyncio.to_thread(
                identify, inputs, terminal=self.ctx.terminal.id, computed_at=now, settings=settings
            )
            self.counters["identifications"] += 1
            if report:
                await self.publish(result)
            return result

    async def publish(self, result: TopologyResult) -> None:
        self.last = result
        body = result.to_json()
        self.ctx.bus.publish(RESULT_TOPIC, body, retain=True)
        await self.ctx.store.set("last_result", body)
        await self.ctx.uplink.send(STREAM, body)
        if self.settings.propose:
            await self._propose(result)

    async def _report_changes(self, result: TopologyResult) -> None:
        for m in result.meters:
            moved = m.phase.evidence.get("moved")
            if not moved:
                continue
            key = f"moved:{m.meter_id}:{moved['to']}"
            if await self.ctx.store.get(key):
                continue
            await self.ctx.store.set(key, moved["since"])
            change = {
                "meter_id": m.meter_id,
                "address": m.address,
                "from": moved["from"],
                "to": moved["to"],
                "since": moved["since"],
                "confidence": m.phase.confidence,
                "computed_at": result.computed_at,
            }
            self.counters["changes"] += 1
            self.ctx.bus.publish(CHANGE_TOPIC, change)
            await self.ctx.uplink.send(STREAM, {"type": "change", **change})
            if self.settings.propose:
                await self._propose(replace(result, meters=(m,), missing=()))

    async def _propose(self, result: TopologyResult) -> None:
        station = getattr(self.ctx, "station", None)
        if station is None or not hasattr(station, "propose"):
            return
        corrections = list(_corrections(result.meters))
        corrections += list(_additions(result))
        if not corrections:
            return
        try:
            outcome = await station.propose(corrections)
        except (ValueError, TypeError) as err:
            self.log.warning("topology: proposal refused: %s", err)
            return
        self.counters["proposals"] += 1
        self.log.info(
            "topology: proposed %d corrections: %s", len(corrections), getattr(outcome, "status", outcome)
        )

    # -- the carrier module's view ----------------------------------------------------------------
    async def _carrier(
        self, archive: arch.Archive
    ) -> tuple[dict[str, str], set[str] | None, list[UnknownNode]]:
        try:
            module = self.ctx.hal.hplc()
        except (CapabilityMissing, AttributeError):
            return {}, None, []
        try:
            phases = {
                p.address: ("ABC" if p.three_phase else p.phases) for p in await module.phases() if p.phases
            }
            network = {n.address for n in await module.network()}
        except (HalError, ProtocolError) as err:
            self.log.warning("topology: carrier module network/phases: %s", err)
            return {}, None, []
        listed = set(archive.addresses.values())
        unknown = []
        for address in sorted(network - listed):
            device = (
                f"node-{address}"
                if self.settings.read_unknown_nodes and await self._read_node(address)
                else None
            )
            unknown.append(UnknownNode(address, phases.get(address), device))
        return phases, network, unknown

    async def _read_node(self, address: str) -> bool:
        """Read the day of curve of a node the archive lacks into the window (tries DL/T 645,
        then 698.45: the module does not say which the node speaks)."""
        transport = self._transport("hplc")
        if transport is None:
            return False
        latest = self.window.latest()
        if latest is None:
            return False
        since = datetime.fromtimestamp(latest - self.settings.window_h * 3600, self._tz).replace(tzinfo=None)
        count = int(self.settings.window_h * 4) + 1
        for protocol in ("dlt645", "dlt698"):
            client = self._clients.client(transport, protocol, address)
            rows: list[dict[str, Any]] = []
            try:
                batch = client.curve_batch
                at = since
                while len(rows) < count * 8:
                    records = await client.read_curve(at, min(batch, count))
                    if not records:
                        break
                    for rec in records:
                        ts = rec.at.replace(tzinfo=self._tz).timestamp()
                        rows += [
                            {"device": f"node-{address}", "quantity": q, "value": v, "ts": ts}
                            for q, v in rec.values.items()
                        ]
                    at = records[-1].at + timedelta(minutes=15)
                    if at > since + timedelta(hours=self.settings.window_h):
                        break
            except (HalError, ProtocolError):
                continue
            if rows:
                self.window.add_curve(rows)
                return True
        return False

    def _transport(self, port: str) -> MeterTransport | None:
        known = self._transports.get(port)
        if known is not None:
            return known
        try:
            transport: MeterTransport = (
                CarrierTransport(self.ctx.hal.hplc(), clock=self.ctx.clock, concurrency=2)
                if port == "hplc"
                else Rs485Transport(self.ctx.hal.rs485(port))
            )
        except (CapabilityMissing, AttributeError, KeyError):
            return None
        self._transports[port] = transport
        return transport

    def _client(self, archive: arch.Archive, device: str, ports: dict[str, str]) -> MeterClient | None:
        port = ports.get(device) or ("hplc" if archive.channels.get(device) == "hplc" else None)
        transport = self._transport(port) if port else None
        if transport is None:
            return None
        return self._clients.client(
            transport, archive.protocols.get(device, "dlt645"), archive.addresses[device]
        )

    # -- signature current at night -------------------------------------------------------------
    async def _night(self, slot: Slot) -> None:
        archive = self.station()
        ports = _ports(getattr(self.ctx, "station", None), self.settings.archive, self.ctx.terminal.root)
        policy = injections.Policy(
            self.settings.signature_window, self.settings.signature_slot_s, self.settings.signature_per_day
        )
        doubt = _doubt(self.last)
        candidates = [
            injections.Candidate(
                m.id, m.branch.value, doubt.get(m.id, 1.0 if self.last is None else 0.0), self.sent.get(m.id)
            )
            for m in archive.meters
        ]
        local = datetime.fromtimestamp(slot.epoch, self._tz).replace(tzinfo=None)
        offset = self._tz.utcoffset(local) or timedelta(0)
        planned = injections.plan(
            candidates, night=local, now_utc=slot.epoch, policy=policy, utc_offset_s=offset.total_seconds()
        )
        units = [u for u in archive.units if u in archive.addresses]
        if not planned or not units:
            return
        reports: dict[str, list[Heard]] = {u: [] for u in units}
        window_end = injections.window_of(local, policy)[1]
        end_epoch = window_end.replace(tzinfo=self._tz).timestamp()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._order_all(archive, planned, ports), name="topology-orders")
            tg.create_task(
                self._poll_units(archive, units, ports, reports, end_epoch + 120), name="topology-units"
            )
        heard = injections.attribute(
            planned, reports, arch.unit_branches(archive), slot_s=policy.slot_s,
            utc_offset_s=offset.total_seconds(), listening=units,
        )  # fmt: skip
        for d, inj in zip(heard, planned, strict=True):
            self.sent[inj.meter] = d.at
        self.detections = [d for d in self.detections if d.at >= slot.epoch - 7 * 86400] + heard
        saved = [
            {"source": d.source, "at": d.at, "heard_by": list(d.heard_by), "listening": list(d.listening)}
            for d in self.detections
        ]
        await self.ctx.store.set("detections", saved)
        await self.ctx.store.set("sent", self.sent)

    async def _order_all(
        self, archive: arch.Archive, planned: list[injections.Injection], ports: dict[str, str]
    ) -> None:
        for inj in planned:
            due = inj.at.replace(tzinfo=self._tz).timestamp() - LEAD_S
            if due > self.ctx.clock.now():
                await self.ctx.clock.sleep_until(due)
            client = self._client(archive, inj.meter, ports)
            if client is None:
                self.counters["orders_failed"] += 1
                continue
            try:
                await client.start_signature(inj.at, priority=Priority.CONTROL)
                self.counters["injections"] += 1
            except (HalError, ProtocolError) as err:
                self.counters["orders_failed"] += 1
                self.log.debug("topology: signature order to %s: %s", inj.meter, err)

    async def _poll_units(
        self,
        archive: arch.Archive,
        units: list[str],
        ports: dict[str, str],
        reports: dict[str, list[Heard]],
        until: float,
    ) -> None:
        """Read what every unit heard every 5 minutes through the window (a unit keeps only its
        10 most recent result events)."""
        while True:
            last_round = self.ctx.clock.now() >= until
            for unit in units:
                client = self._client(archive, unit, ports)
                if client is None:
                    continue
                try:
                    got = await client.read_signature_results(last=10, priority=Priority.EVENT)
                except (HalError, ProtocolError):
                    self.counters["unit_reads_failed"] += 1
                    continue
                seen = {(d.at, d.phase) for d in reports[unit]}
                reports[unit] += [d for d in got if (d.at, d.phase) not in seen]
            if last_round:
                return
            await self.ctx.clock.sleep(min(300.0, max(until - self.ctx.clock.now(), 1.0)))


# -- helpers ------------------------------------------------------------------------------------------


def _doubt(result: TopologyResult | None) -> dict[str, float]:
    if result is None:
        return {}
    return {
        m.meter_id: 1.0 - min(m.branch.confidence, m.box.confidence) if m.status != "foreign" else 0.0
        for m in result.meters
    }


def _corrections(meters: tuple[MeterResult, ...]) -> list[Any]:
    try:
        from protocols.station import Correction  # the station model (issue 12)
    except ImportError:
        return []
    out = []
    for m in meters:
        if m.status == "foreign":
            out.append(
                Correction(
                    "meter", m.meter_id, "flags", ("foreign",), confidence=m.confidence, evidence=m.evidence
                )
            )
            continue
        for name in ("phase", "branch", "box"):
            dim = m.dimension(name)
            if dim.outcome == "corrected" and dim.value is not None:
                out.append(
                    Correction(
                        "meter", m.meter_id, name, dim.value, confidence=dim.confidence, evidence=dim.evidence
                    )
                )
    return out


def _additions(result: TopologyResult) -> list[Any]:
    try:
        from protocols.station import Correction
    except ImportError:
        return []
    out = []
    for miss in result.missing:
        if miss.address is None:
            continue
        record = {"id": f"m-{miss.address}", "address": miss.address, "channel": "hplc", "phase": miss.phase,
                  "branch": miss.branch, "box": miss.box}  # fmt: skip
        out.append(
            Correction(
                "meter",
                f"m-{miss.address}",
                op="add",
                value=record,
                confidence=float(miss.evidence.get("confidence", 0.9)),
                evidence=miss.evidence,
            )
        )
    return out


def _archive_file(path: str | None, root: Path) -> Any:
    """A station model read from an acquisition archive file (meters, their phase): used only
    while the runtime offers no station model."""
    if path is None:
        return SimpleNamespace(meters=(), branches=(), boxes=(), version=0)
    file = Path(path) if Path(path).is_absolute() else root / path
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return SimpleNamespace(meters=(), branches=(), boxes=(), version=0)
    meters = []
    for raw in data.get("meters", []):
        if not isinstance(raw, dict) or "id" not in raw or "address" not in raw:
            continue
        port = str(raw.get("port", "rs485-1"))
        meters.append(SimpleNamespace(
            id=str(raw["id"]), address=str(raw["address"]), protocol=str(raw.get("protocol", "dlt645")),
            channel="hplc" if port == "hplc" else "rs485", port=None if port == "hplc" else port,
            kind="customer", phase=raw.get("phase"), branch=raw.get("branch"), box=raw.get("box"),
        ))  # fmt: skip
    return SimpleNamespace(meters=tuple(meters), branches=(), boxes=(), version=0)


def _ports(station: Any, path: str | None, root: Path) -> dict[str, str]:
    model = station.model if station is not None else _archive_file(path, root)
    return {m.id: m.port for m in getattr(model, "meters", ()) if getattr(m, "port", None)}


__all__ = ["CHANGE_TOPIC", "COMMAND", "RESULT_TOPIC", "STREAM", "Settings", "TopologyService"]
