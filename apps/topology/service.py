"""The topology app on the terminal: keeps the curve window, samples the transformer, orders the
night's signature-current injections, identifies daily, online and on demand, and reports.

Layer: apps (topology). Everything through ``ctx`` (``runtime.api.AppContext``): the bus
(``meter/+/curve`` and ``meter/+/clock`` from acquisition in: points a wrong clock stamped are
dropped, ``clocks``; ``topology/result`` retained and ``topology/change`` out), the scheduler,
the app's store (the curve window, the last result, the injection log, what was proposed), the
uplink (stream ``topology``, command ``topology.run``), the hal (the
metrology unit's per-phase power; the carrier module's network, phases and unlisted nodes;
meters and units for signature current: ``night``) and the station model (read; corrections
proposed with provenance ``identified``: ``proposals``). The identification itself
(``identify``) runs in a worker thread: seconds of numpy must not stall the event loop the
other apps share.

Jobs (local time):

* ``identify`` daily at ``daily_at`` over the last ``window_h`` hours: the full result, uplinked,
  corrections proposed;
* ``check`` every ``check_interval_h``: an incremental identification (it starts from the newest
  full result -- the daily run's, a command's, or a first check's -- instead of from scratch:
  ``identify(previous=...)``), reported only when a meter moved to another phase since the last
  result (``topology/change``) -- a move is noticed within a day. Its per-meter labels stay in
  the app, and no check starts from another check's (a local optimum one check kept must not be
  the next one's start); a move it reports is decided by a full identification. A check with no
  new curve point and an unchanged station model is skipped;
* ``inject`` at the start of the off-peak window (``night``);
* ``save`` hourly: the curve window into the store, so a restart loses no data.

Past points: the window holds in memory only the newest ``HELD_H`` hours of points (where late
points still arrive: a module-led round brings its hour's points an hour later); older blocks go
to the store as they leave memory (``window/block/<n>``, listed in ``window/blocks``) and are read
back for each identification (``_past``: the daily run and the checks read ``window_h``, a
command up to the window's whole reach). At 2,400 meters that is ~1.5 MB in memory instead of
~4.4 MB for a whole day; each run reads ~2 MB of blocks back.

The transformer's per-phase energy (what names the phase clusters) is integrated from the
metrology unit's per-phase power, sampled every ``metrology_period_s`` by the app itself;
without a metrology unit, from acquisition's ``meter/transformer/reading`` snapshots.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import time
from typing import Any

from hal.errors import CapabilityMissing, HalError
from protocols.cloud import paged_lists
from protocols.errors import ProtocolError
from protocols.station import Correction, StationModel
from runtime.api import AppContext
from runtime.bus import Subscription
from runtime.errors import CapabilityError, CommandError
from runtime.scheduler import CatchUp, Daily, Interval, Slot

from . import archive as arch
from . import carrier, injections, proposals
from .clocks import Clocks
from .devices import Devices
from .identify import Settings as MethodSettings
from .identify import identify
from .inputs import Inputs
from .night import Night
from .result import PAGED, Labels, TopologyResult
from .window import BLOCK, STEP_S, TRANSFORMER, Blocks, Window, decode_block, encode_block, merge_block

#: the store's list of the past blocks it holds, and each block's key
BLOCKS_KEY = "window/blocks"
BLOCK_KEY = "window/block/{}"
RESULT_TOPIC = "topology/result"
CHANGE_TOPIC = "topology/change"
STREAM = "topology"
COMMAND = "topology.run"
MIN_POINTS = 8
#: hours of the newest points the window holds in memory (32 points a device: two blocks, the
#: newest one filling; a round's points arriving an hour late still land in memory)
HELD_H = 4.0


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
    metrology_period_s: float = 60.0

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
            metrology_period_s=float(config.get("metrology_period_s", 60)),
        )

    @property
    def policy(self) -> injections.Policy:
        return injections.Policy(self.signature_window, self.signature_slot_s, self.signature_per_day)


class TopologyService:
    def __init__(self, ctx: AppContext, settings: Settings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.log = ctx.log
        self.window = Window(keep_points=int(max(settings.window_h, 24) * 4 * 2) + 8)
        self.window.hold(self._held_points())
        self._flushing = asyncio.Lock()
        self.doubt: dict[str, float] = {}  # per meter from the last result (injections go to doubt first)
        self.devices = Devices(ctx)
        self.night = Night(ctx, self.devices, settings.policy)
        self.ledger = proposals.Ledger()
        #: meters whose points were stamped by a wrong clock (acquisition's clock reads)
        self.clocks = Clocks()
        self.counters = {"identifications": 0, "proposals": 0, "changes": 0, "bad_messages": 0,
                         "metrology_failures": 0, "checks_skipped": 0}  # fmt: skip
        self._lock = asyncio.Lock()
        self._own_metrology = False
        #: the newest full (not incremental) result's labels (``Labels``): where the next
        #: check starts (its evidence, ~1 kB a meter, is in the store's ``last_result``)
        self._newest: Labels | None = None
        #: (newest curve point, station model version) the newest result saw
        self._seen: tuple[float | None, int] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        saved = await self.ctx.store.get("window")
        if isinstance(saved, dict):
            try:
                self.window = Window.from_json(saved)
            except ValueError as err:
                self.log.warning("topology: %s; starting an empty window", err)
            self.window.hold(self._held_points())  # a window saved whole (or holding more) is split
            await self._flush()
        await self.night.load()
        self.ledger = proposals.Ledger.from_json(await self.ctx.store.get("proposed"))
        self.clocks = Clocks.from_json(await self.ctx.store.get("clocks"))
        doubt = await self.ctx.store.get("doubt")
        if isinstance(doubt, dict):
            self.doubt = _shared_values(
                {str(k): float(v) for k, v in doubt.items() if isinstance(v, int | float)}
            )
        s, sched = self.settings, self.ctx.scheduler
        sched.add("identify", Daily(s.daily_at.hour, s.daily_at.minute), self._daily, catch_up=CatchUp.LATEST)
        sched.add("check", Interval(s.check_interval_h * 3600), self._check, catch_up=CatchUp.SKIP)
        if s.signature:
            start = s.signature_window[0]
            sched.add("inject", Daily(start.hour, start.minute), self._night, catch_up=CatchUp.SKIP)
        sched.add("save", Interval(3600), self._save, catch_up=CatchUp.SKIP)
        self.ctx.uplink.register_command(COMMAND, self._cmd_run)

    async def feed(self) -> None:
        """Keep the window fed until cancelled: curves from the bus, the transformer's power from
        the metrology unit (or, without one, from acquisition's snapshots)."""
        curves = self.ctx.bus.subscribe("meter/+/curve", maxsize=100_000)
        trafo = self.ctx.bus.subscribe(f"meter/{TRANSFORMER}/reading", maxsize=10_000)
        clocks = self.ctx.bus.subscribe("meter/+/clock", maxsize=10_000)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._clock_reads(clocks), name="topology-clocks")
            tg.create_task(self._pump(curves, self.window.add_curve), name="topology-curves")
            tg.create_task(self._pump(trafo, self._bus_snapshot), name="topology-transformer")
            tg.create_task(self._sample_metrology(), name="topology-metrology")

    async def _pump(self, sub: Subscription, add: Any) -> None:
        async for message in sub:
            payload = message.payload
            if isinstance(payload, list):
                add(payload)
                if self.window.pending:
                    await self._flush()
            else:
                self.counters["bad_messages"] += 1

    async def _clock_reads(self, sub: Subscription) -> None:
        async for message in sub:
            meter = message.topic.split("/")[1]
            before = dict(self.clocks.wrong_until)
            if not self.clocks.note(meter, message.payload):
                self.counters["bad_messages"] += 1
            elif self.clocks.wrong_until != before:
                self.log.info("topology: meter %s: its points until %s were stamped by a wrong clock",
                              meter, self.clocks.to_json().get(meter))  # fmt: skip
                await self.ctx.store.set("clocks", self.clocks.to_json())

    def _bus_snapshot(self, rows: list[Any]) -> None:
        if not self._own_metrology:
            self.window.add_transformer(rows)

    async def _sample_metrology(self) -> None:
        try:
            unit = self.ctx.hal.metrology()
        except (CapabilityMissing, CapabilityError) as err:
            self.log.info("topology: transformer power from acquisition's snapshots: %s", err)
            return
        clock = self.ctx.clock
        period = self.settings.metrology_period_s
        failing = False
        while True:
            try:
                snap = await unit.snapshot()
            except (HalError, ProtocolError) as err:
                self.counters["metrology_failures"] += 1
                if not failing:
                    self.log.warning("topology: metrology unit: %s", err)
                failing = True
            else:
                if failing:
                    self.log.info("topology: metrology unit answers again")
                failing = False
                self._own_metrology = True
                p, v = snap.active_power_kw, snap.voltage
                self.window.add_snapshot(clock.now(), (p.a, p.b, p.c), (v.a, v.b, v.c))
            now = clock.now()
            await clock.sleep(period - now % period if period > 0 else 60.0)

    # -- jobs -------------------------------------------------------------------------------------
    async def _daily(self, slot: Slot) -> None:
        result = await self.run(reason="daily")
        if result is not None:  # a move the checks missed (or that ran without them) is said daily
            await self._report_changes(result)

    async def _check(self, slot: Slot) -> None:
        result = await self.run(reason="check", report=False)
        if result is not None:
            await self._report_changes(result)

    async def _save(self, slot: Slot) -> None:
        await self._flush()
        await self.ctx.store.set("window", self.window.to_json())

    # -- past points in the store -------------------------------------------------------------------
    @staticmethod
    def _points(hours: float) -> int:
        return int(hours * 3600 // STEP_S) + 1

    def _held_points(self) -> int:
        """Points back from the newest the window holds in memory (the rest: the store)."""
        return self._points(min(self.settings.window_h, HELD_H))

    async def _flush(self) -> None:
        """The window's pending past rows into their stored blocks; blocks past its reach deleted."""
        async with self._flushing:
            pending = self.window.take_pending()
            store = self.ctx.store
            listed = {int(b) for b in await store.get(BLOCKS_KEY, [])}
            stored = set(listed)
            for block, rows in sorted(pending.items()):
                key = BLOCK_KEY.format(block)
                before = decode_block(await store.get(key)) if block in stored else {}
                await store.set(key, encode_block(merge_block(before, rows)))
                stored.add(block)
            oldest = self.window.oldest_kept_block()
            for block in sorted(b for b in stored if b < oldest):
                await store.delete(BLOCK_KEY.format(block))
                stored.discard(block)
            if stored != listed:
                await store.set(BLOCKS_KEY, sorted(stored))

    async def _past(self, first: float) -> Blocks:
        """The stored rows of the blocks from ``first`` that the window no longer holds (and the
        pending ones: points may arrive while the store is read)."""
        past: Blocks = {}
        while (held_from := self.window.oldest_held()) is not None and first // STEP_S < held_from:
            await self._flush()
            past = {}
            start = max(int(first // STEP_S) // BLOCK, self.window.oldest_kept_block())
            for block in range(start, held_from // BLOCK):
                rows = decode_block(await self.ctx.store.get(BLOCK_KEY.format(block)))
                if rows:
                    past[block] = rows
            if self.window.oldest_held() == held_from:
                for block, rows in self.window.pending.items():
                    past[block] = merge_block(past.get(block, {}), rows)
                break
        return past

    async def _night(self, slot: Slot) -> None:
        planned = await self.night.run(self.ctx.station.model, slot.epoch, self.doubt)
        self.log.info("topology: %d signature injections tonight", planned)

    async def _cmd_run(self, args: dict[str, Any]) -> dict[str, Any]:
        hours = args.get("window_h", self.settings.window_h)
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not 2 <= hours <= 24 * 7:
            raise CommandError("bad_args", "window_h must be a number of hours within 2..168")
        result = await self.run(reason="command", window_h=float(hours))
        if result is None:
            return {"status": "no data", "points": 0}
        await self._report_changes(result)
        return {"status": "done", "computed_at": result.computed_at, "summary": result.summary}

    # -- the identification -------------------------------------------------------------------
    async def inputs(self, model: StationModel, *, window_h: float) -> Inputs | None:
        archive = arch.from_model(model)
        latest = self.window.latest()
        if latest is None:
            return None
        points = int(window_h * 3600 // STEP_S) + 1
        first = latest - (points - 1) * STEP_S
        view = await carrier.survey(
            carrier.module_of(self.ctx.hal, self.log),
            set(archive.addresses.values()),
            devices=self.devices,
            window=self.window,
            read_unknown=self.settings.read_unknown_nodes,
            hours=window_h,
            tz=self.ctx.terminal.tz,
            log=self.log,
        )
        extra = [u.device for u in view.unknown if u.device]
        past = await self._past(first)
        energy, volts = self.window.transformer(first, points)
        curves = self.window.curves(arch.devices(archive, extra), first, points, past=past)
        return Inputs(
            meters=arch.with_carrier(archive, view.phases, view.network),
            branches=archive.branches,
            boxes=archive.boxes,
            curves=self.clocks.mask(curves),
            transformer_energy=energy,
            transformer_voltage=volts,
            detections=self.night.recent(first - 86400 * 7),
            unknown_nodes=view.unknown,
            miss_rate=self.settings.miss_rate,
            crosstalk_rate=self.settings.crosstalk_rate,
        )

    async def run(
        self, *, reason: str, window_h: float | None = None, report: bool = True
    ) -> TopologyResult | None:
        async with self._lock:
            model = self.ctx.station.model
            seen = (self.window.latest(), model.version)
            if reason == "check" and self._newest is not None and seen == self._seen:
                self.counters["checks_skipped"] += 1  # nothing new could change the result
                return None
            inputs = await self.inputs(model, window_h=window_h or self.settings.window_h)
            if inputs is None or inputs.points < MIN_POINTS:
                self.log.info("topology %s: not enough curve data yet", reason)
                return None
            settings = MethodSettings(confidence_min=self.settings.confidence_min)
            # the daily run and a command identify from scratch (the check's starting point is
            # renewed every day); a check refines the newest full result
            previous = self._newest if reason == "check" else None
            result = await asyncio.to_thread(
                identify,
                inputs,
                terminal=self.ctx.terminal.id,
                computed_at=self.ctx.clock.now(),
                settings=settings,
                previous=previous,
            )
            self.counters["identifications"] += 1
            summary = {**result.summary, "reason": reason, "model_version": model.version}
            result = replace(result, summary=summary)
            self._seen = seen
            if previous is None:
                self._newest = Labels.of(result)
            if report:
                await self.publish(result, model)
            return result

    async def publish(self, result: TopologyResult, model: StationModel) -> None:
        self.doubt = _doubt(result)
        await self.ctx.store.set("doubt", self.doubt)
        body = result.to_json()
        self.ctx.bus.publish(RESULT_TOPIC, retained_body(body), retain=True)
        await self.ctx.store.set("last_result", body)
        for message in paged_lists(body, PAGED):  # one message unless it is over the uplink's limit
            await self.ctx.uplink.send(STREAM, message)
        if self.settings.propose:
            await self._propose(proposals.corrections(result, model))
            await self._propose(proposals.additions(result, model))

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
            self.log.warning(
                "topology: meter %s moved from phase %s to %s", m.meter_id, moved["from"], moved["to"]
            )
            self.ctx.bus.publish(CHANGE_TOPIC, change)
            await self.ctx.uplink.send(STREAM, {"type": "change", **change})
            if self.settings.propose:
                await self._propose(
                    proposals.corrections(replace(result, meters=(m,), missing=()), self.ctx.station.model)
                )

    async def _propose(self, corrections: list[Correction]) -> None:
        fresh = self.ledger.fresh(corrections)
        if not fresh:
            return
        try:
            outcome = await self.ctx.station.propose(fresh)
        except (CapabilityError, ValueError, TypeError) as err:
            self.log.warning("topology: proposal refused: %s", err)
            return
        self.ledger.remember(fresh)
        await self.ctx.store.set("proposed", self.ledger.to_json())
        self.counters["proposals"] += 1
        self.log.info("topology: proposed %d corrections: %s", len(fresh), outcome.status)


def retained_body(body: dict[str, Any]) -> dict[str, Any]:
    """The retained ``topology/result`` on the bus: the stream's body with a row only for each
    meter not ``confirmed``, without its ``dimensions`` and ``evidence`` -- what a subscriber on
    the terminal reads (line loss: status, phase, branch, box, confidence of the meters found
    foreign or corrected; a confirmed meter is where the station model has it, and the
    ``summary`` counts them). The bus holds it until the next result: the whole body was
    ~1.5 kB a meter, a slim row for every meter ~0.4 kB. ``missing`` and the rest are the body's."""
    keep = ("meter_id", "address", "status", "phase", "branch", "box", "confidence")
    rows = [{k: m[k] for k in keep if k in m} for m in body["meters"] if m.get("status") != "confirmed"]
    return {**body, "meters": rows}


def _doubt(result: TopologyResult) -> dict[str, float]:
    """Per meter, how unsure ``result`` was of its branch and box (0 = sure; foreign: 0, nothing
    to learn from injecting it). A meter without a result counts as unsure (1)."""
    return _shared_values(
        {
            m.meter_id: 0.0 if m.status == "foreign" else 1.0 - min(m.branch.confidence, m.box.confidence)
            for m in result.meters
        }
    )


def _shared_values(doubt: dict[str, float]) -> dict[str, float]:
    """``doubt`` with one float object per value (a few values for thousands of meters: 24 B each)."""
    one: dict[float, float] = {}
    return {m: one.setdefault(v, v) for m, v in doubt.items()}


__all__ = ["CHANGE_TOPIC", "COMMAND", "RESULT_TOPIC", "STREAM", "Settings", "TopologyService"]
