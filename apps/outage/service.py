"""The outage app at run time: collect evidence, judge it, report outages at once.

Layer: apps (outage). Everything comes through ``ctx``: bus subscriptions (carrier power-off/on
lists, acquisition's readings, events, read health, relay state), its own reads of the
metrology unit's phase voltages and of the terminal's supply (``ctx.hal.power()``), the store
(its state survives a restart, e.g. after a station outage took the terminal down) and the
uplink stream ``outage``. One task judges (``Classifier.step``) after each batch of evidence and
at the classifier's wakeups; a report goes to the uplink before anything else is done with it
(the latency goal is hal receipt -> MQTT publish). Must not read meters itself (acquisition
does, on request: ``acquisition/probe``) nor import other apps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hal.errors import CapabilityMissing, HalError
from hal.interfaces import PowerMonitor
from protocols.cloud import paged_lists
from protocols.errors import ProtocolError
from runtime.api import AppContext
from runtime.errors import BusError, CapabilityError

from .classify import ONGOING, Classifier, Outage, Settings, StepResult
from .cloud import REPORT_LISTS
from .collect import Timing, Translator
from .evidence import Evidence, Window
from .members import Members, from_station

STATE_KEY = "state"
ALIVE_KEY = "alive_at"
ALIVE_EVERY_S = 60.0
PROBE_AGAIN_S = 30.0  # a meter is not asked for again sooner
PROBE_TIMEOUT_S = 60.0
PROBE_BACKOFF_S = 300.0  # no prober on the bus: try again this much later
STREAM = "outage"


@dataclass(frozen=True, slots=True)
class AppSettings:
    classifier: Settings
    timing: Timing
    metrology_interval_s: float
    boot_s: float
    probe: bool

    @classmethod
    def from_config(cls, config: dict[str, Any], root: Path) -> AppSettings:
        judgement = float(config["judgement_s"])
        return cls(
            classifier=Settings(
                judgement_s=judgement,
                settle_s=float(config["settle_s"]),
                merge_s=float(config["merge_s"]),
                silence_confirm_s=float(config["silence_confirm_s"]),
                record_settle_s=float(config["record_settle_s"]),
            ),
            timing=Timing(
                judgement_s=judgement,
                hplc_aggregation_s=float(config["hplc_aggregation_s"]),
                hplc_restore_s=float(config["hplc_restore_s"]),
                device_poll_s=float(config["device_poll_s"]),
                voltage_lost_v=float(config["voltage_lost_v"]),
            ),
            metrology_interval_s=float(config["metrology_interval_s"]),
            boot_s=float(config["boot_s"]),
            probe=bool(config["probe"]),
        )


class OutageService:
    """One running outage app."""

    def __init__(self, ctx: AppContext, settings: AppSettings, members: Members) -> None:
        self._ctx = ctx
        self._s = settings
        self._log: logging.Logger = ctx.log
        prefix = f"{ctx.terminal.id}-"
        self.classifier = Classifier(members, settings.classifier, new_id=self._new_id)
        self._prefix = prefix
        self.translator = Translator(members, settings.timing)
        self._inbox: list[Evidence] = []
        self._wake = asyncio.Event()
        self._probed: dict[str, float] = {}
        self._probe_off_until = float("-inf")
        self._probes_running = 0
        self.counters = {"reports": 0, "probes": 0, "probe_failures": 0, "metrology_failures": 0, "steps": 0}

    def _new_id(self) -> str:
        self.classifier._seq += 1
        return f"{self._prefix}{self.classifier._seq:06d}"

    # ------------------------------------------------------------------ start

    async def restore_state(self) -> None:
        saved = await self._ctx.store.get(STATE_KEY)
        if isinstance(saved, dict):
            try:
                self.classifier.load_json(saved)
            except (KeyError, TypeError, ValueError) as err:
                self._log.error("outage state in the store is unreadable (%s): starting afresh", err)

    def feed(self, evidence: list[Evidence]) -> None:
        if evidence:
            self._inbox += evidence
            self._wake.set()

    # ------------------------------------------------------------------ collectors

    async def follow(self, pattern: str, handle: Callable[[str, Any, float], list[Evidence]]) -> None:
        """Translate every message on ``pattern`` (bounded queue: readings come in bursts)."""
        async with self._ctx.bus.subscribe(pattern, maxsize=20_000) as sub:
            async for msg in sub:
                try:
                    self.feed(handle(msg.topic, msg.payload, msg.ts))
                except Exception:  # a bad message must not stop the collector
                    self.translator.rejected += 1
                    self._log.exception("outage: cannot take %s", msg.topic)

    def on_carrier(self, topic: str, payload: Any, ts: float) -> list[Evidence]:
        return self.translator.carrier(topic.rsplit("/", 1)[-1], payload)

    def on_meter(self, topic: str, payload: Any, ts: float) -> list[Evidence]:
        parts = topic.split("/")
        if len(parts) != 3:
            return []
        device, kind = parts[1], parts[2]
        if kind == "reading":
            return self.translator.readings(device, payload, ts)
        if kind == "event":
            return self.translator.meter_event(device, payload, ts)
        if kind == "health":
            return self.translator.health(device, payload, ts)
        if kind == "relay":
            return self.translator.relay(device, payload, ts)
        return []

    async def watch_supply(self, monitor: PowerMonitor, *, booted_after: float | None) -> None:
        """The terminal's own supply: its state now (after an outage that took the terminal down,
        the supply came back about ``boot_s`` before start-up), then every change."""
        clock = self._ctx.clock
        now = clock.now()
        state = monitor.state()
        if state.powered and booted_after is not None:
            back = min(max(now - self._s.boot_s, booted_after), now)
            when = Window.between(booted_after, now, at=back)
            self.feed([self.translator.supply(state, now, when=when)])
        else:
            self.feed([self.translator.supply(state, now)])
        async with monitor.changes() as changes:
            async for s in changes:
                self.feed([self.translator.supply(s, clock.now())])
                if not s.powered:  # last gasp: the state must be on flash before the capacitor runs out
                    await self.save()

    async def poll_metrology(self) -> None:
        try:
            unit = self._ctx.hal.metrology()
        except (CapabilityMissing, CapabilityError) as err:
            self._log.info("phase voltages from acquisition's readings only: %s", err)
            return
        clock = self._ctx.clock
        failing = False
        while True:
            try:
                snap = await unit.snapshot()
                self.feed(self.translator.metrology(snap, clock.now()))
                failing = False
            except (HalError, ProtocolError) as err:
                self.counters["metrology_failures"] += 1
                if not failing:
                    self._log.warning("metrology unit: %s", err)
                failing = True
            await clock.sleep(self._s.metrology_interval_s)

    async def follow_station(self) -> None:
        """A new station model (archive replaced, a correction confirmed): judge by it from now on."""
        async with self._ctx.station.watch() as changes:
            async for change in changes:
                members = from_station(change.model if change.model is not None else self._ctx.station.model)
                self.classifier.use(members)
                self.translator.members = members
                self._wake.set()

    async def heartbeat(self) -> None:
        while True:
            await self._ctx.store.set(ALIVE_KEY, self._ctx.clock.now())
            await self._ctx.clock.sleep(ALIVE_EVERY_S)

    # ------------------------------------------------------------------ judging

    async def judge(self, spawn: Callable[[Awaitable[None], str], None]) -> None:
        clock = self._ctx.clock
        c = self.classifier
        while True:
            if not self._inbox:
                wake_at = c.next_wakeup()
                try:
                    if wake_at is None:
                        await self._wake.wait()
                    else:
                        async with clock.timeout(max(0.0, wake_at - clock.now())):
                            await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            batch, self._inbox = self._inbox, []
            c.observe_all(batch)
            result = c.step(clock.now())
            self.counters["steps"] += 1
            if result.changed:
                await self.publish(result.changed)
            self._ask(result, spawn)
            if result.changed:
                await self.save()
                self._publish_state()

    async def publish(self, changed: list[Outage]) -> None:
        """Uplink first (durable in the outbox, every change of one step in one transaction: the
        last of ten waits for one commit, not ten), then the bus."""
        now = self._ctx.clock.now()
        bodies = [{**o.to_json(), "computed_at": now} for o in changed]
        # a station-wide outage of 2,000 meters is paged over its meter lists
        messages = [m for body in bodies for m in paged_lists(body, REPORT_LISTS)]
        await self._ctx.uplink.send_many(STREAM, messages)
        self.counters["reports"] += len(bodies)
        for o, body in zip(changed, bodies, strict=True):
            self._ctx.bus.publish("outage/report", body)
            self._log.info(
                "outage %s: %s %s %s, %d meters (%s)",
                o.id,
                o.status,
                o.group.level,
                o.group.target,
                len(o.meters),
                ", ".join(o.sources),
            )

    async def save(self) -> None:
        await self._ctx.store.set(STATE_KEY, self.classifier.to_json())

    def _publish_state(self) -> None:
        self._ctx.bus.publish("outage/state", self.status(), retain=True)

    def status(self) -> dict[str, Any]:
        c = self.classifier
        return {
            "open": [o.to_json() for o in c.outages.values() if o.status == ONGOING],
            "comms": sorted(c.comms),
            "relay_suppressed": sorted(c.suppressed_relay),
            "counters": {
                **self.counters,
                "rejected": self.translator.rejected,
                "dips": c.beliefs.counters.dips,
                "evidence": c.beliefs.counters.evidence,
                "comms_retracted": c.comms_retracted,
            },
            "ts": self._ctx.clock.now(),
        }

    # ------------------------------------------------------------------ probes

    def _ask(self, result: StepResult, spawn: Callable[[Awaitable[None], str], None]) -> None:
        if not self._s.probe:
            return
        now = self._ctx.clock.now()
        if now < self._probe_off_until:
            return
        fresh = sorted(m for m in result.probes if now - self._probed.get(m, float("-inf")) >= PROBE_AGAIN_S)
        records = sorted(result.record_probes)
        for m in fresh:
            self._probed[m] = now
        if fresh:
            spawn(self._probe(fresh, records=False), "outage-probe")
        if records:
            spawn(self._probe(records, records=True), "outage-probe-records")

    async def _probe(self, meters: list[str], *, records: bool) -> None:
        self.counters["probes"] += 1
        try:
            reply = await self._ctx.bus.request(
                "acquisition/probe", {"meters": meters, "records": records}, timeout=PROBE_TIMEOUT_S
            )
        except (BusError, CapabilityError) as err:
            self.counters["probe_failures"] += 1
            self._probe_off_until = self._ctx.clock.now() + PROBE_BACKOFF_S
            self._log.debug("probe of %d meters: %s", len(meters), err)
            return
        self.feed(self.translator.probe_reply(reply, self._ctx.clock.now(), records=records))


async def run_outage(ctx: AppContext, config: dict[str, Any]) -> None:
    settings = AppSettings.from_config(config, ctx.terminal.root)
    members = from_station(ctx.station.model)
    service = OutageService(ctx, settings, members)
    await service.restore_state()
    booted_after = await ctx.store.get(ALIVE_KEY)
    ctx.bus.serve("outage/state/get", lambda msg: service.status())
    ctx.log.info(
        "outage: %d meters, %d boxes, %d branches (%s)",
        len(members.meters),
        len(members.box_branch),
        len(members.branch_parent),
        ctx.station.model.id or "no station model yet",
    )
    del members  # this frame lives as long as the app: the service drops it at the next station model
    async with asyncio.TaskGroup() as tg:

        def spawn(work: Awaitable[None], name: str) -> None:
            async def run() -> None:
                await work

            tg.create_task(run(), name=name)

        tg.create_task(service.follow("hplc/event/power_off", service.on_carrier), name="outage-hplc-off")
        tg.create_task(service.follow("hplc/event/power_on", service.on_carrier), name="outage-hplc-on")
        for kind in ("event", "reading", "health", "relay"):
            tg.create_task(service.follow(f"meter/+/{kind}", service.on_meter), name=f"outage-meter-{kind}")
        try:
            monitor: PowerMonitor | None = ctx.hal.power()
        except (CapabilityMissing, CapabilityError) as err:
            ctx.log.info("no power monitor: %s", err)
            monitor = None
        if monitor is not None:
            after = float(booted_after) if isinstance(booted_after, int | float) else None
            tg.create_task(service.watch_supply(monitor, booted_after=after), name="outage-supply")
        if settings.metrology_interval_s > 0:
            tg.create_task(service.poll_metrology(), name="outage-metrology")
        tg.create_task(service.heartbeat(), name="outage-heartbeat")
        tg.create_task(service.follow_station(), name="outage-station")
        tg.create_task(service.judge(spawn), name="outage-judge")
        await ctx.ready()


__all__ = ["AppSettings", "OutageService", "run_outage"]
