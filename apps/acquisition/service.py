"""The acquisition service: every reading task of the terminal, over the meters of the archive.

Layer: apps (acquisition). Uses only its context (bus, scheduler, store, uplink, hal).
Tasks and their bus priorities:

* realtime snapshot (REALTIME), aligned to ``realtime_interval_s``: key quantities;
* 15-min curve (CURVE) at :00/:15/:30/:45 from the meter's own curve memory, with
  catch-up reading (补抄) of missed points after comms loss, up to ``catch_up_hours``;
* daily freeze read-back (CURVE) after 00:00 local: the meter's own frozen energy;
  missed days are read back later from the freeze history (050600nn/050601nn);
* event polling (EVENT): power-down count/records, status word 3 (relay state);
* daily broadcast time sync (CONTROL) on every bus.

All meters of a port are queued at once; the port serializes them by priority, so the
bus never idles while a cycle has work. A dead meter costs one short timeout per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from hal.errors import DeviceError, HalError, TransportTimeout
from hal.interfaces import Priority
from hal.meters import Dlt645Master
from protocols import dlt645
from protocols.errors import ProtocolError
from runtime.errors import ConfigError, ConfigErrors
from runtime.model import Event, Quality, Reading
from runtime.scheduler import Aligned, CatchUp, Daily, Interval, Slot

from . import items
from .archive import Archive, MeterRecord, load_archive, parse_archive, save_archive
from .stats import SuccessTracker

T = TypeVar("T")
CURVE_PERIOD_S = 900
UPLINK_CHUNK = 200


class TerminalInfo(Protocol):
    id: str
    tz: ZoneInfo
    root: Path
    rs485_ports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Settings:
    archive: Path
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
        archive = Path(config["archive"])
        return cls(
            archive=archive if archive.is_absolute() else root / archive,
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
        )


class Acquisition:
    """Owns the archive, the per-port masters, the success tracker and the missed-point lists."""

    def __init__(self, ctx: Any, settings: Settings, terminal: TerminalInfo) -> None:
        self._ctx = ctx
        self._settings = settings
        self._terminal = terminal
        self._tz = terminal.tz
        self._log = ctx.log
        self._archive = Archive(())
        self._masters: dict[str, Dlt645Master] = {}
        self.tracker = SuccessTracker([])
        self._missing_curve: dict[str, set[float]] = {}
        self._missing_freeze: dict[str, set[float]] = {}
        self.counters: dict[str, int] = {
            "reads_ok": 0,
            "reads_failed": 0,
            "device_errors": 0,
            "protocol_errors": 0,
            "readings": 0,
            "events": 0,
            "curve_points_caught_up": 0,
            "curve_points_lost": 0,
            "freezes_caught_up": 0,
            "skipped_meters": 0,
        }

    # ------------------------------------------------------------------ setup

    async def start(self) -> None:
        archive = await asyncio.to_thread(
            load_archive, self._settings.archive, known_ports=self._terminal.rs485_ports
        )
        self._use_archive(archive)
        self._missing_curve = {k: set(v) for k, v in (await self._ctx.store.get("missing_curve", {})).items()}
        self._missing_freeze = {
            k: set(v) for k, v in (await self._ctx.store.get("missing_freeze", {})).items()
        }
        scheduler = self._ctx.scheduler
        scheduler.add(
            "realtime", Aligned(self._settings.realtime_interval_s), self._realtime, catch_up=CatchUp.SKIP
        )
        if self._settings.curve:
            scheduler.add("curve", Aligned(CURVE_PERIOD_S), self._curve, catch_up=CatchUp.LATEST)
        if self._settings.daily_freeze:
            scheduler.add("daily_freeze", Daily(0, 0), self._daily_freeze, catch_up=CatchUp.LATEST)
        scheduler.add(
            "events", Interval(self._settings.event_poll_interval_s), self._events, catch_up=CatchUp.SKIP
        )
        if self._settings.time_sync:
            hh, mm = self._settings.time_sync_at
            scheduler.add("time_sync", Daily(hh, mm), self._time_sync, catch_up=CatchUp.LATEST)
        self._ctx.uplink.register_command("archive.replace", self._cmd_archive_replace)
        self._ctx.uplink.register_command("archive.get", self._cmd_archive_get)
        self._ctx.uplink.register_command("acquisition.stats", self._cmd_stats)

    def _use_archive(self, archive: Archive) -> None:
        self._archive = archive
        ports = {m.port for m in archive.meters if m.port != "hplc"}
        for port in ports - set(self._masters):
            self._masters[port] = Dlt645Master(self._ctx.hal.rs485(port), timeout=self._settings.timeout_s)
        hplc = sum(1 for m in archive.meters if m.port == "hplc")
        if hplc:
            self._log.warning("%d HPLC meters in the archive are not read: no carrier driver yet", hplc)
        self.counters["skipped_meters"] = hplc
        self.tracker.reset_meters([m.id for m in archive.meters if m.port != "hplc"])
        self._log.info("archive: %d meters on %d ports", len(archive.meters), len(ports))

    @property
    def archive(self) -> Archive:
        return self._archive

    def _by_port(self) -> dict[str, list[MeterRecord]]:
        return {port: meters for port, meters in self._archive.by_port().items() if port in self._masters}

    # ------------------------------------------------------------------ one read, with retries

    async def _attempt(
        self, meter: MeterRecord, kind: str, call: Callable[[], Awaitable[T]], *, record: bool = True
    ) -> T | None:
        """Run one read with retries and backoff; count it; None when it finally failed."""
        delay = 0.5
        for attempt in range(self._settings.retries + 1):
            try:
                result = await call()
            except DeviceError as err:
                # an abnormal reply is an answer: the meter is there, the item is not
                self.counters["device_errors"] += 1
                self._log.debug("%s: %s", meter.id, err)
                if record:
                    self._record(meter, kind, True)
                return None
            except (TransportTimeout, ProtocolError) as err:
                if isinstance(err, ProtocolError):
                    self.counters["protocol_errors"] += 1
                if (
                    attempt < self._settings.retries
                    and self._masters[meter.port].port.health(meter.address).available
                ):
                    await self._ctx.clock.sleep(delay)
                    delay *= 2
                    continue
                self.counters["reads_failed"] += 1
                if record:
                    self._record(meter, kind, False)
                return None
            except HalError as err:
                self.counters["reads_failed"] += 1
                self._log.warning("%s: %s", meter.id, err)
                if record:
                    self._record(meter, kind, False)
                return None
            self.counters["reads_ok"] += 1
            if record:
                self._record(meter, kind, True)
            return result
        return None

    def _record(self, meter: MeterRecord, kind: str, ok: bool) -> None:
        offline, back = self.tracker.record(meter.id, kind, ok, self._ctx.clock.now())
        if offline:
            self._log.warning("meter %s (%s on %s) is not answering", meter.id, meter.address, meter.port)
        elif back:
            self._log.info("meter %s answers again", meter.id)

    # ------------------------------------------------------------------ output

    async def _emit(self, readings: list[Reading]) -> None:
        if not readings:
            return
        self.counters["readings"] += len(readings)
        await self._ctx.store.write_readings(readings)
        by_device: dict[str, list[dict[str, Any]]] = {}
        for reading in readings:
            by_device.setdefault(reading.device, []).append(reading.to_json())
        for device, rows in by_device.items():
            self._ctx.bus.publish(f"meter/{device}/reading", rows)
        for start in range(0, len(readings), UPLINK_CHUNK):
            chunk = readings[start : start + UPLINK_CHUNK]
            await self._ctx.uplink.send("readings", {"readings": [r.to_json() for r in chunk]})

    async def _emit_event(self, event: Event) -> None:
        self.counters["events"] += 1
        await self._ctx.store.write_event(event)
        self._ctx.bus.publish(f"meter/{event.source}/event", event.to_json())
        await self._ctx.uplink.send("events", event.to_json())

    def summary(self) -> dict[str, Any]:
        return {**self.tracker.summary(), **self.counters, "ts": self._ctx.clock.now()}

    async def _publish_status(self) -> None:
        summary = self.summary()
        self._ctx.bus.publish("acquisition/stats", summary, retain=True)
        await self._ctx.uplink.send("status", {"app": "acquisition", **summary})

    async def _per_port(
        self, work: Callable[[str, list[MeterRecord]], Awaitable[list[Reading]]]
    ) -> list[Reading]:
        results: list[Reading] = []

        async def one(port: str, meters: list[MeterRecord]) -> None:
            results.extend(await work(port, meters))

        async with asyncio.TaskGroup() as tg:
            for port, meters in self._by_port().items():
                tg.create_task(one(port, meters), name=f"acquisition:{port}")
        return results

    # ------------------------------------------------------------------ realtime

    async def _realtime(self, slot: Slot) -> None:
        clock = self._ctx.clock
        started = clock.monotonic()
        for master in self._masters.values():
            master.tally.reset()
        readings = await self._per_port(lambda port, meters: self._realtime_port(port, meters, slot.epoch))
        self.tracker.cycle.started = slot.epoch
        self.tracker.cycle.seconds = clock.monotonic() - started
        self.tracker.cycle.wire_bound_seconds = max(
            (m.tally.bound_seconds(m.port) for m in self._masters.values()), default=0.0
        )
        self.tracker.cycle.reads = sum(m.tally.exchanges for m in self._masters.values())
        await self._emit(readings)
        await self._publish_status()

    async def _realtime_port(self, port: str, meters: list[MeterRecord], ts: float) -> list[Reading]:
        master = self._masters[port]
        out: list[Reading] = []

        async def meter_reads(meter: MeterRecord) -> None:
            got_any = False
            for di in items.realtime_dis(meter, self._settings.realtime_items):
                result = await self._attempt(
                    meter,
                    "realtime",
                    lambda di=di: master.read(meter.address, di, priority=Priority.REALTIME),
                    record=False,
                )
                if result is not None:
                    got_any = True
                    out.extend(items.to_readings(meter, result, ts))
                elif not master.port.health(meter.address).available:
                    break  # the meter is gone: do not spend the bus on its other items
            self._record(meter, "realtime", got_any)

        async with asyncio.TaskGroup() as tg:
            for meter in meters:
                tg.create_task(meter_reads(meter), name=f"realtime:{meter.id}")
        return out

    # ------------------------------------------------------------------ 15-min curve + catch-up

    async def _curve(self, slot: Slot) -> None:
        point = slot.epoch
        readings = await self._per_port(lambda port, meters: self._curve_port(port, meters, point))
        await self._emit(readings)
        await self._catch_up()
        await self._save_missing()

    async def _read_curve(
        self, meter: MeterRecord, start: float, count: int, quality: Quality
    ) -> dict[float, list[Reading]] | None:
        master = self._masters[meter.port]
        local = datetime.fromtimestamp(start, self._tz).replace(tzinfo=None)
        result = await self._attempt(
            meter,
            "curve",
            lambda: master.read_load_curve(meter.address, start=local, count=count, priority=Priority.CURVE),
        )
        if result is None:
            return None
        return items.curve_readings(meter, result, self._tz, quality=quality)

    async def _curve_port(self, port: str, meters: list[MeterRecord], point: float) -> list[Reading]:
        out: list[Reading] = []

        async def one(meter: MeterRecord) -> None:
            points = await self._read_curve(meter, point, 1, Quality.GOOD)
            if points is None or point not in points:
                self._missing_curve.setdefault(meter.id, set()).add(point)
                return
            out.extend(points[point])

        async with asyncio.TaskGroup() as tg:
            for meter in meters:
                tg.create_task(one(meter), name=f"curve:{meter.id}")
        return out

    async def _catch_up(self) -> None:
        """补抄: read missed curve points of meters that answer again from their memory."""
        horizon = self._ctx.clock.now() - self._settings.catch_up_hours * 3600
        meters = {m.id: m for m in self._archive.meters if m.port in self._masters}
        readings: list[Reading] = []
        for meter_id, missing in list(self._missing_curve.items()):
            expired = {t for t in missing if t < horizon}
            if expired:
                self.counters["curve_points_lost"] += len(expired)
                missing -= expired
            meter = meters.get(meter_id)
            if meter is None or not missing:
                self._missing_curve.pop(meter_id, None)
                continue
            if not self._masters[meter.port].port.health(meter.address).available:
                continue
            while missing:
                first = min(missing)
                count = min(dlt645.LOAD_RECORDS_PER_FRAME, int((max(missing) - first) // CURVE_PERIOD_S) + 1)
                points = await self._read_curve(meter, first, count, Quality.CATCH_UP)
                if points is None:
                    break
                found = missing & set(points)
                for ts in found:
                    readings.extend(points[ts])
                self.counters["curve_points_caught_up"] += len(found)
                window = {t for t in missing if t < first + count * CURVE_PERIOD_S}
                missing -= window  # records the meter does not have are not asked for again
                if not found:
                    self.counters["curve_points_lost"] += len(window)
            if not missing:
                self._missing_curve.pop(meter_id, None)
        await self._emit(readings)
        await self._catch_up_freezes()

    async def _save_missing(self) -> None:
        await self._ctx.store.set("missing_curve", {k: sorted(v) for k, v in self._missing_curve.items()})
        await self._ctx.store.set("missing_freeze", {k: sorted(v) for k, v in self._missing_freeze.items()})

    # ------------------------------------------------------------------ daily freeze

    async def _daily_freeze(self, slot: Slot) -> None:
        self.tracker.new_day()
        day = slot.epoch
        readings = await self._per_port(lambda port, meters: self._freeze_port(port, meters, day))
        await self._emit(readings)
        await self._save_missing()

    async def _read_freeze(
        self, meter: MeterRecord, times_ago: int
    ) -> tuple[float, dlt645.ReadResult] | None:
        master = self._masters[meter.port]
        stamp = await self._attempt(
            meter,
            "freeze",
            lambda: master.read(meter.address, items.freeze_time_di(times_ago), priority=Priority.CURVE),
        )
        if stamp is None or not stamp.values or not isinstance(stamp.values[0], str):
            return None
        energy = await self._attempt(
            meter,
            "freeze",
            lambda: master.read(meter.address, items.freeze_energy_di(times_ago), priority=Priority.CURVE),
            record=False,
        )
        if energy is None:
            return None
        return items.meter_time_to_epoch(stamp.values[0], self._tz), energy

    async def _freeze_port(self, port: str, meters: list[MeterRecord], day: float) -> list[Reading]:
        out: list[Reading] = []

        async def one(meter: MeterRecord) -> None:
            got = await self._read_freeze(meter, 1)
            if got is None or abs(got[0] - day) > CURVE_PERIOD_S:
                # not read, or the meter has not frozen today yet (clock skew): read it back later
                self._missing_freeze.setdefault(meter.id, set()).add(day)
                return
            out.extend(items.to_readings(meter, got[1], got[0], prefix=items.DAILY_PREFIX))

        async with asyncio.TaskGroup() as tg:
            for meter in meters:
                tg.create_task(one(meter), name=f"freeze:{meter.id}")
        return out

    async def _catch_up_freezes(self) -> None:
        meters = {m.id: m for m in self._archive.meters if m.port in self._masters}
        now = self._ctx.clock.now()
        readings: list[Reading] = []
        for meter_id, days in list(self._missing_freeze.items()):
            meter = meters.get(meter_id)
            if meter is None or not self._masters[meter.port].port.health(meter.address).available:
                continue
            for day in sorted(days):
                times_ago = int((now - day) // 86400) + 1
                if times_ago > 62:
                    days.discard(day)
                    continue
                for n in (times_ago, times_ago + 1, max(1, times_ago - 1)):
                    got = await self._read_freeze(meter, n)
                    if got is not None and abs(got[0] - day) <= CURVE_PERIOD_S:
                        readings.extend(
                            items.to_readings(
                                meter, got[1], got[0], quality=Quality.CATCH_UP, prefix=items.DAILY_PREFIX
                            )
                        )
                        self.counters["freezes_caught_up"] += 1
                        days.discard(day)
                        break
            if not days:
                self._missing_freeze.pop(meter_id, None)
        await self._emit(readings)

    # ------------------------------------------------------------------ events

    async def _events(self, slot: Slot) -> None:
        await self._per_port(self._events_port)
        await self._publish_status()

    async def _events_port(self, port: str, meters: list[MeterRecord]) -> list[Reading]:
        master = self._masters[port]
        for meter in meters:
            if not master.port.health(meter.address).available:
                continue
            await self._power_down_records(master, meter)
            await self._relay_state(master, meter)
        return []

    async def _power_down_records(self, master: Dlt645Master, meter: MeterRecord) -> None:
        count = await self._attempt(
            meter,
            "event",
            lambda: master.read(meter.address, items.POWER_DOWN_COUNT_DI, priority=Priority.EVENT),
            record=False,
        )
        if count is None or not isinstance(count.values[0], int | float):
            return
        key = f"power_down_count/{meter.id}"
        known = await self._ctx.store.get(key)
        new = int(count.values[0])
        await self._ctx.store.set(key, new)
        if known is None or new <= int(known):
            return  # first sight sets the baseline; old records were reported by whoever read them then
        for times_ago in range(min(new - int(known), 10), 0, -1):
            record = await self._attempt(
                meter,
                "event",
                lambda n=times_ago: master.read(
                    meter.address, items.power_down_record_di(n), priority=Priority.EVENT
                ),
                record=False,
            )
            if record is None or not isinstance(record.values[0], str):
                continue
            start = items.meter_time_to_epoch(record.values[0], self._tz)
            end_text = record.values[1]
            end = items.meter_time_to_epoch(end_text, self._tz) if isinstance(end_text, str) else None
            await self._emit_event(
                Event(
                    "meter.power_down", meter.id, start, end, {"address": meter.address, "port": meter.port}
                )
            )

    async def _relay_state(self, master: Dlt645Master, meter: MeterRecord) -> None:
        word = await self._attempt(
            meter,
            "event",
            lambda: master.read(meter.address, items.STATUS_WORD_3_DI, priority=Priority.EVENT),
            record=False,
        )
        if word is None or not isinstance(word.values[0], int):
            return
        relay_open = bool(word.values[0] >> 4 & 1)
        key = f"relay_open/{meter.id}"
        known = await self._ctx.store.get(key)
        await self._ctx.store.set(key, relay_open)
        if known is not None and bool(known) != relay_open:
            kind = "meter.relay_open" if relay_open else "meter.relay_closed"
            await self._emit_event(
                Event(kind, meter.id, self._ctx.clock.now(), None, {"address": meter.address})
            )

    # ------------------------------------------------------------------ time sync

    async def _time_sync(self, slot: Slot) -> None:
        now = datetime.fromtimestamp(self._ctx.clock.now(), self._tz).replace(tzinfo=None)
        for port, master in self._masters.items():
            try:
                await master.broadcast_time(now + timedelta(seconds=0))
            except HalError as err:
                self._log.warning("time sync on %s failed: %s", port, err)

    # ------------------------------------------------------------------ cloud commands

    async def _cmd_archive_replace(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            archive = parse_archive(args, source="args", known_ports=self._terminal.rs485_ports)
        except ConfigErrors as err:
            raise ValueError("; ".join(str(e) for e in err.errors)) from err
        await asyncio.to_thread(save_archive, archive, self._settings.archive)
        self._use_archive(archive)
        for table in (self._missing_curve, self._missing_freeze):
            for meter_id in set(table) - {m.id for m in archive.meters}:
                table.pop(meter_id)
        await self._save_missing()
        return {"meters": len(archive.meters)}

    async def _cmd_archive_get(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"meters": [m.to_json() for m in self._archive.meters]}

    async def _cmd_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "station": self.tracker.summary(),
            "counters": self.counters,
            "meters": self.tracker.per_meter(),
        }


async def run_acquisition(ctx: Any, config: dict[str, Any], terminal: TerminalInfo) -> None:
    settings = Settings.from_config(config, terminal.root)
    service = Acquisition(ctx, settings, terminal)
    await service.start()
    ctx.bus.serve("acquisition/stats/get", lambda msg: service.summary())
    await ctx.ready()
    await ctx.wait_stop()
