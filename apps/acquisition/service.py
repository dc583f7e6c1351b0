"""The acquisition service: wires the reading tasks over the meters of the archive.

Layer: apps (acquisition). Uses only its context (bus, scheduler, store, uplink, hal). One
module per task, all reading through one ``reader.MeterReader`` (retries, success rate) over
one ``plan.Plan`` (transports and meter clients from ``hal.meters.MeterClients``), all output
through ``output.Output``. Tasks and their transport priorities:

* ``realtime`` (REALTIME), aligned to ``realtime_interval_s``: key quantities;
* ``curve`` (CURVE) at :00/:15/:30/:45 from the meter's own curve memory, with catch-up
  reading (补抄) of missed points and missed daily freezes after comms loss;
* ``freeze`` (CURVE) after 00:00 local: the meter's own frozen energy;
* ``events`` (EVENT): power-down records, status word 3 (relay state); also at once on a
  carrier meter event (``carrier.CarrierLink``);
* ``timesync`` (CONTROL), daily: every meter's clock read (``meter/<id>/clock``), then the
  broadcast on every transport, per protocol on it;
* ``route``: module-led reading (路由主动抄表) of the HPLC meters -- when ``hplc_reading`` is
  ``module``, or ``auto`` with at least ``ROUTE_AUTO_METERS`` of them -- every ``route_round_s``:
  the carrier module leads, the curve blocks and daily freezes due at each node are the answers,
  with each meter's realtime snapshot every ``route_realtime_every`` rounds and its event read
  every ``route_events_every`` rounds, the meters taking turns (``route.RouteTask``); the tasks
  above then leave the ``hplc`` port out.

The meters and field devices are those of the station model (``ctx.station``, owned by the
runtime: archive file, cloud patches, apps' corrections); every change of the model re-plans at
once -- a meter added is read from the next cycle, one removed is not read again, one moved to
another port is read there. Transformer readings and Modbus field devices are ``metrology`` /
``devices``. This module must not read meters itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hal.errors import CapabilityMissing
from hal.meters import MeterClients
from protocols.station import Meter, StationModel
from runtime.api import AppContext, TerminalInfo
from runtime.errors import ConfigError
from runtime.scheduler import Aligned, CatchUp, Daily, Interval, Slot

from . import items
from .carrier import HPLC, CarrierLink
from .curve import CURVE_PERIOD_S, CurveTask
from .devices import follow_devices, start_field_devices
from .events import EventTask
from .freeze import FreezeTask
from .output import Output
from .plan import Plan
from .probe import ProbeTask
from .reader import MeterReader
from .realtime import RealtimeTask
from .route import RouteTask
from .stats import SuccessTracker, stats_parts
from .timesync import TimeSyncTask


@dataclass(frozen=True, slots=True)
class Settings:
    realtime_interval_s: int
    realtime_items: tuple[str, ...]
    curve: bool
    catch_up_hours: int
    daily_freeze: bool
    event_poll_interval_s: int
    time_sync: bool
    time_sync_at: tuple[int, int]
    retries: int
    timeout_s: float
    hplc_timeout_s: float = 20.0
    hplc_concurrency: int = 4
    hplc_reading: str = "auto"
    route_round_s: int = 3600
    route_realtime_every: int = 4
    route_events_every: int = 4

    @classmethod
    def from_config(cls, config: dict[str, Any], root: Path) -> Settings:
        unknown = [i for i in config["realtime_items"] if i not in items.REALTIME_ITEMS]
        if unknown:
            raise ConfigError(
                "apps.acquisition.config.realtime_items",
                f"unknown items {unknown}; known: {', '.join(items.REALTIME_ITEMS)}",
            )
        hh, _, mm = str(config["time_sync_at"]).partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ConfigError(
                "apps.acquisition.config.time_sync_at", f"{config['time_sync_at']!r} is not HH:MM"
            )
        reading = str(config.get("hplc_reading", "auto"))
        if reading not in HPLC_READING:
            raise ConfigError(
                "apps.acquisition.config.hplc_reading", f"{reading!r}: one of {', '.join(HPLC_READING)}"
            )
        round_s = int(config.get("route_round_s", 3600))
        if round_s < CURVE_PERIOD_S or 86400 % round_s:
            raise ConfigError(
                "apps.acquisition.config.route_round_s",
                f"{round_s}: a multiple of {CURVE_PERIOD_S} s that divides a day",
            )
        return cls(
            realtime_interval_s=int(config["realtime_interval_s"]),
            realtime_items=tuple(config["realtime_items"]),
            curve=bool(config["curve"]),
            catch_up_hours=int(config["catch_up_hours"]),
            daily_freeze=bool(config["daily_freeze"]),
            event_poll_interval_s=int(config["event_poll_interval_s"]),
            time_sync=bool(config["time_sync"]),
            time_sync_at=(int(hh), int(mm)),
            retries=int(config["retries"]),
            timeout_s=float(config["timeout_s"]),
            hplc_timeout_s=float(config.get("hplc_timeout_s", 20.0)),
            hplc_concurrency=int(config.get("hplc_concurrency", 4)),
            hplc_reading=reading,
            route_round_s=round_s,
            route_realtime_every=int(config.get("route_realtime_every", 4)),
            route_events_every=int(config.get("route_events_every", 4)),
        )


HPLC_READING = ("auto", "terminal", "module")
ROUTE_AUTO_METERS = 100  # ``auto``: the module leads from this many carrier meters on


class Acquisition:
    """The tasks of the app and what they share: the plan, the reader, the output, the counters."""

    def __init__(self, ctx: AppContext, settings: Settings, terminal: TerminalInfo) -> None:
        self._ctx = ctx
        self._settings = settings
        self._terminal = terminal
        tz = terminal.tz
        self.counters: dict[str, int] = {"unreachable_meters": 0}
        self.clients = MeterClients(timeouts={"rs485": settings.timeout_s, "hplc": settings.hplc_timeout_s})
        # HPLC: the module's node table follows the archive; meter events trigger event reads
        self.carrier = CarrierLink(ctx, event_read=self._event_read, counters=self.counters)
        self.plan = Plan(
            ctx, clients=self.clients, hplc_concurrency=settings.hplc_concurrency, before_port=self._settle
        )
        self.reader = MeterReader(ctx, self.plan, retries=settings.retries, counters=self.counters)
        self.output = Output(ctx, self.counters)
        self.realtime = RealtimeTask(ctx, self.plan, self.reader, self.output, items=settings.realtime_items)
        self.curve = CurveTask(
            ctx, self.plan, self.reader, self.output, tz=tz, catch_up_hours=settings.catch_up_hours
        )
        self.freeze = FreezeTask(ctx, self.plan, self.reader, self.output, tz=tz)
        self.events = EventTask(ctx, self.plan, self.reader, self.output, tz=tz)
        self.timesync = TimeSyncTask(ctx, self.plan, self.clients, tz=tz, counters=self.counters)
        self.probe = ProbeTask(ctx, self.plan, self.reader, self.events)
        self.route = RouteTask(
            ctx, self.reader, self.output, self.clients, tz=tz, catch_up_hours=settings.catch_up_hours,
            round_s=settings.route_round_s, daily_freeze=settings.daily_freeze,
            realtime_items=settings.realtime_items, realtime_every=settings.route_realtime_every,
            events=self.events, events_every=settings.route_events_every,
        )  # fmt: skip

    @property
    def tracker(self) -> SuccessTracker:
        return self.reader.tracker

    @property
    def model(self) -> StationModel:
        return self.plan.model

    # ------------------------------------------------------------------ setup

    async def start(self) -> None:
        model = self._ctx.station.model
        self._use(model)
        await self.events.note_first_seen(model.meters)
        await self.curve.load()
        await self.freeze.load()
        await self.route.load()
        s = self._settings
        scheduler = self._ctx.scheduler
        scheduler.add("realtime", Aligned(s.realtime_interval_s), self._realtime, catch_up=CatchUp.SKIP)
        if s.curve:
            scheduler.add("curve", Aligned(CURVE_PERIOD_S), self._curve, catch_up=CatchUp.LATEST)
        if s.daily_freeze:
            scheduler.add("daily_freeze", Daily(0, 0), self._daily_freeze, catch_up=CatchUp.LATEST)
        scheduler.add("events", Interval(s.event_poll_interval_s), self._events, catch_up=CatchUp.SKIP)
        scheduler.add("route", Aligned(s.route_round_s), self._route, catch_up=CatchUp.LATEST)
        if s.time_sync:
            hh, mm = s.time_sync_at
            scheduler.add("time_sync", Daily(hh, mm), self.timesync.run, catch_up=CatchUp.LATEST)
        self._ctx.uplink.register_command("acquisition.stats", self._cmd_stats)
        self._ctx.bus.serve("acquisition/probe", self.probe.handle)
        # transformer readings and the Modbus devices of the station model
        self.field_devices = await start_field_devices(
            self._ctx,
            devices=model.devices,
            ports=self._terminal.rs485_ports,
            interval_s=s.realtime_interval_s,
            emit=self.output.readings,
            emit_event=self.output.event,
        )

    def _use(self, model: StationModel) -> None:
        self.plan.use(model)
        self.counters["unreachable_meters"] = self.plan.unreachable
        self.carrier.model_changed(model)
        self.reader.follow()
        self._lead_or_not(model)
        self.route.use(model)

    def _lead_or_not(self, model: StationModel) -> None:
        """Module-led reading of the HPLC meters, or terminal-led (``hplc_reading``)."""
        count = sum(1 for m in model.meters if m.transport == HPLC)
        mode = self._settings.hplc_reading
        want = count > 0 and (mode == "module" or (mode == "auto" and count >= ROUTE_AUTO_METERS))
        if want == (HPLC in self.plan.led):
            return
        if not want:
            self.route.detach()
            self.plan.led.discard(HPLC)
            self._ctx.log.info("HPLC meters: terminal-led reading (%d meters)", count)
            return
        try:
            module = self._ctx.hal.hplc()
        except CapabilityMissing:
            return  # the plan has said so once already
        if self.route.attach(module):
            self.plan.led.add(HPLC)
            self._ctx.log.info("HPLC meters: module-led reading (%d meters, a round every %d s)",
                           count, self._settings.route_round_s)  # fmt: skip

    async def follow_model(self) -> None:
        """Re-plan at once on every change of the station model, until cancelled."""
        async with self._ctx.station.watch() as changes:
            async for change in changes:
                model = change.model
                if model is None or model.version == self.plan.model.version:
                    continue
                gone = {m.id for m in self.plan.model.meters} - {m.id for m in model.meters}
                self._use(model)
                _, poller = self.field_devices
                follow_devices(self._ctx, poller, model.devices, ports=self._terminal.rs485_ports)
                await self.events.note_first_seen(model.meters)
                self.curve.forget(gone)
                self.freeze.forget(gone)
                await self._save_missing()

    async def _settle(self, port: str) -> None:
        if port == HPLC:
            await self.carrier.settled()  # nodes the module does not know yet would time out

    async def _event_read(self, meter: Meter) -> None:
        await self.events.read(meter)

    # ------------------------------------------------------------------ the scheduled jobs

    async def _realtime(self, slot: Slot) -> None:
        await self.realtime.run(slot)
        await self._publish_status()

    async def _curve(self, slot: Slot) -> None:
        await self.curve.run(slot)
        await self.freeze.catch_up()
        await self._save_missing()

    async def _daily_freeze(self, slot: Slot) -> None:
        await self.freeze.run(slot)
        await self._save_missing()

    async def _events(self, slot: Slot) -> None:
        await self.events.run(slot)
        await self._publish_status()

    async def _route(self, slot: Slot) -> None:
        await self.route.run(slot)

    async def stop(self) -> None:
        """The app stops: the module no longer asks this app; what was read is kept."""
        self.route.detach()
        await self.route.flush()

    async def _save_missing(self) -> None:
        await self.curve.save()
        await self.freeze.save()

    # ------------------------------------------------------------------ status

    def summary(self) -> dict[str, Any]:
        return {**self.reader.tracker.summary(), **self.counters, "ts": self._ctx.clock.now()}

    async def _publish_status(self) -> None:
        summary = self.summary()
        self._ctx.bus.publish("acquisition/stats", summary, retain=True)
        await self._ctx.uplink.send("status", {"app": "acquisition", **summary})

    # ------------------------------------------------------------------ cloud commands

    async def _cmd_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{"part": i}`` (default 0): the station summary, counters and module-led reading
        figures, with one part of the per-meter rows (``meters``); the reply says how many
        ``parts`` there are (a 2,000-meter area does not fit one reply; ``ttu cloud acquisition
        stats`` asks for every part and joins them)."""
        part = args.get("part", 0)
        head = {
            "station": self.reader.tracker.summary(),
            "counters": self.counters,
            "route": self.route.statistics() if HPLC in self.plan.led else None,
        }
        replies = stats_parts(head, self.reader.tracker.per_meter())
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < len(replies):
            raise ValueError(f"part {part!r}: the stats have parts 0..{len(replies) - 1}")
        return replies[part]


async def run_acquisition(ctx: AppContext, config: dict[str, Any], terminal: TerminalInfo) -> None:
    settings = Settings.from_config(config, terminal.root)
    service = Acquisition(ctx, settings, terminal)
    await service.start()
    ctx.bus.serve("acquisition/stats/get", lambda msg: service.summary())
    async with asyncio.TaskGroup() as tg:
        carrier = tg.create_task(service.carrier.run(), name="acquisition:carrier")
        following = tg.create_task(service.follow_model(), name="acquisition:station-model")
        await ctx.ready()
        await ctx.wait_stop()
        carrier.cancel()
        following.cancel()
        await service.stop()
