"""The acquisition service: every reading task of the terminal, over the meters of the archive.

Layer: apps (acquisition). Uses only its context (bus, scheduler, store, uplink, hal).
Tasks and their bus priorities:

* realtime snapshot (REALTIME), aligned to ``realtime_interval_s``: key quantities;
* 15-min curve (CURVE) at :00/:15/:30/:45 from the meter's own curve memory, with
  catch-up reading (补抄) of missed points after comms loss, up to ``catch_up_hours``;
* daily freeze read-back (CURVE) after 00:00 local: the meter's own frozen energy;
  missed days are read back later from the freeze history (050600nn/050601nn);
* event polling (EVENT): power-down count/records, status word 3 (relay state);
* daily broadcast time sync (CONTROL) on every bus, per protocol on it; HPLC meters
  through the carrier module's broadcast.

Every meter is read through one ``hal.meters.MeterClient``, whatever its protocol
(``dlt645`` / ``dlt698``) and transport (an RS-485 port, or ``hplc``). All meters of a
transport are queued at once: an RS-485 port serializes them by priority (one transaction
at a time), the carrier transport lets ``hplc_concurrency`` run at once, so neither idles
while a cycle has work. A dead meter costs one short timeout per read. A board without an
HPLC module makes the archive's HPLC meters unreachable: logged once, counted, not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from hal.errors import CapabilityMissing, DeviceError, HalError, TransportTimeout
from hal.interfaces import Priority
from hal.meters import (
    CarrierTransport,
    Dlt645Client,
    Dlt645Master,
    Dlt698Client,
    Dlt698Master,
    MeterClient,
    MeterTransport,
    Rs485Transport,
)
from protocols.errors import ProtocolError
from runtime.errors import ConfigError, ConfigErrors
from runtime.model import Event, Quality, Reading
from runtime.scheduler import Aligned, CatchUp, Daily, Interval, Slot

from . import items
from .archive import Archive, MeterRecord, load_archive, parse_archive, save_archive
from .carrier import CarrierLink
from .devices import start_field_devices
from .stats import SuccessTracker

T = TypeVar("T")
CURVE_PERIOD_S = 900
UPLINK_CHUNK = 200
POWER_DOWN_RECORDS = 10  # a meter keeps its 10 most recent power-down records (03110001..0A)


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
    hplc_timeout_s: float = 20.0
    hplc_concurrency: int = 4

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
            hplc_timeout_s=float(config.get("hplc_timeout_s", 20.0)),
            hplc_concurrency=int(config.get("hplc_concurrency", 4)),
        )


class Acquisition:
    """Owns the archive, the transports and meter clients, the success tracker and the missed points."""

    def __init__(self, ctx: Any, settings: Settings, terminal: TerminalInfo) -> None:
        self._ctx = ctx
        self._settings = settings
        self._terminal = terminal
        self._tz = terminal.tz
        self._log = ctx.log
        self._archive = Archive(())
        self._transports: dict[str, MeterTransport] = {}
        self._masters645: dict[str, Dlt645Master] = {}
        self._masters698: dict[str, Dlt698Master] = {}
        self._clients: dict[str, MeterClient] = {}
        self._hplc_missing = False
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
            "unreachable_meters": 0,
        }
        # HPLC: the module's node table follows the archive; meter events trigger event reads
        self.carrier = CarrierLink(ctx, event_read=self._event_read, counters=self.counters)
        self._event_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ setup

    async def start(self) -> None:
        archive = await asyncio.to_thread(
            load_archive, self._settings.archive, known_ports=self._terminal.rs485_ports
        )
        self._use_archive(archive)
        await self._note_first_seen(archive)
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
        # transformer readings and the Modbus devices of devices.toml (next to the archive)
        self.field_devices = await start_field_devices(
            self._ctx,
            archive=self._settings.archive,
            ports=self._terminal.rs485_ports,
            interval_s=self._settings.realtime_interval_s,
            emit=self._emit,
            emit_event=self._emit_event,
        )

    def _transport(self, port: str) -> MeterTransport | None:
        """The transport named by an archive ``port``; None when the board has no carrier module."""
        known = self._transports.get(port)
        if known is not None:
            return known
        transport: MeterTransport
        if port == "hplc":
            try:
                module = self._ctx.hal.hplc()
            except CapabilityMissing as err:
                if not self._hplc_missing:  # edge-triggered: once per archive that needs it
                    self._hplc_missing = True
                    self._log.warning("HPLC meters are unreachable: %s", err)
                return None
            transport = CarrierTransport(
                module, clock=self._ctx.clock, concurrency=self._settings.hplc_concurrency
            )
        else:
            transport = Rs485Transport(self._ctx.hal.rs485(port))
        self._transports[port] = transport
        return transport

    def _client(self, meter: MeterRecord, transport: MeterTransport) -> MeterClient:
        port = meter.port
        timeout = self._settings.hplc_timeout_s if transport.kind == "hplc" else self._settings.timeout_s
        if meter.protocol == "dlt698":
            m698 = self._masters698.get(port)
            if m698 is None:
                m698 = self._masters698[port] = Dlt698Master(transport, timeout=timeout)
            return Dlt698Client(m698, meter.address, three_phase=meter.three_phase)
        m645 = self._masters645.get(port)
        if m645 is None:
            m645 = self._masters645[port] = Dlt645Master(transport, timeout=timeout)
        return Dlt645Client(m645, meter.address, three_phase=meter.three_phase)

    def _use_archive(self, archive: Archive) -> None:
        self._archive = archive
        self._hplc_missing = False
        clients: dict[str, MeterClient] = {}
        unreachable = 0
        for meter in archive.meters:
            transport = self._transport(meter.port)
            if transport is None:
                unreachable += 1
                continue
            clients[meter.id] = self._client(meter, transport)
        self._clients = clients
        self.counters["unreachable_meters"] = unreachable
        self.carrier.archive_changed(archive)
        # unreachable meters stay in the tracker: they count against the success rate
        self.tracker.reset_meters([m.id for m in archive.meters], {m.id: m.port for m in archive.meters})
        self._log.info(
            "archive: %d meters on %d transports (%d unreachable)",
            len(archive.meters),
            len({m.port for m in archive.meters}),
            unreachable,
        )

    async def _note_first_seen(self, archive: Archive) -> None:
        """Remember when each meter joined the archive: power-downs after that are ours to report."""
        now = self._ctx.clock.now()
        for meter in archive.meters:
            key = f"first_seen/{meter.id}"
            if await self._ctx.store.get(key) is None:
                await self._ctx.store.set(key, now)

    @property
    def archive(self) -> Archive:
        return self._archive

    def client(self, meter_id: str) -> MeterClient:
        return self._clients[meter_id]

    def _by_port(self) -> dict[str, list[MeterRecord]]:
        return {
            port: [m for m in meters if m.id in self._clients]
            for port, meters in self._archive.by_port().items()
            if any(m.id in self._clients for m in meters)
        }

    def _rs485(self) -> list[Rs485Transport]:
        return [t for t in self._transports.values() if isinstance(t, Rs485Transport)]

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
                if attempt < self._settings.retries and self._clients[meter.id].available():
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
            if port == "hplc":
                await self.carrier.settled()  # nodes the module does not know yet would time out
            results.extend(await work(port, meters))

        async with asyncio.TaskGroup() as tg:
            for port, meters in self._by_port().items():
                tg.create_task(one(port, meters), name=f"acquisition:{port}")
        return results

    # ------------------------------------------------------------------ realtime

    async def _realtime(self, slot: Slot) -> None:
        clock = self._ctx.clock
        started = clock.monotonic()
        for transport in self._rs485():
            transport.tally.reset()
        readings = await self._per_port(lambda port, meters: self._realtime_port(port, meters, slot.epoch))
        self.tracker.cycle.started = slot.epoch
        self.tracker.cycle.seconds = clock.monotonic() - started
        self.tracker.cycle.wire_bound_seconds = max((t.bound_seconds() for t in self._rs485()), default=0.0)
        self.tracker.cycle.reads = sum(t.tally.exchanges for t in self._rs485())
        await self._emit(readings)
        await self._publish_status()

    async def _realtime_port(self, port: str, meters: list[MeterRecord], ts: float) -> list[Reading]:
        out: list[Reading] = []

        async def meter_reads(meter: MeterRecord) -> None:
            client = self._clients[meter.id]
            got_any = False
            for batch in client.realtime_batches(self._settings.realtime_items):

                def read(batch: tuple[str, ...] = batch) -> Awaitable[dict[str, float]]:
                    return client.read_realtime(batch, priority=Priority.REALTIME)

                values = await self._attempt(meter, "realtime", read, record=False)
                if values is not None:
                    got_any = True
                    out.extend(items.to_readings(meter, values, ts))
                elif not client.available():
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
        client = self._clients[meter.id]
        local = datetime.fromtimestamp(start, self._tz).replace(tzinfo=None)
        records = await self._attempt(meter, "curve", lambda: client.read_curve(local, count))
        if records is None:
            return None
        return items.records_to_points(meter, records, self._tz, quality=quality)

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
        meters = {m.id: m for m in self._archive.meters if m.id in self._clients}
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
            client = self._clients[meter.id]
            if not client.available():
                continue
            while missing:
                first = min(missing)
                count = min(client.curve_batch, int((max(missing) - first) // CURVE_PERIOD_S) + 1)
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

    async def _read_freeze(self, meter: MeterRecord, times_ago: int) -> tuple[float, dict[str, float]] | None:
        client = self._clients[meter.id]
        record = await self._attempt(meter, "freeze", lambda: client.read_daily_freeze(times_ago))
        if record is None:
            return None
        return items.local_to_epoch(record.at, self._tz), record.values

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
        meters = {m.id: m for m in self._archive.meters if m.id in self._clients}
        now = self._ctx.clock.now()
        readings: list[Reading] = []
        for meter_id, days in list(self._missing_freeze.items()):
            meter = meters.get(meter_id)
            if meter is None or not self._clients[meter.id].available():
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
        async def one(meter: MeterRecord) -> None:
            if self._clients[meter.id].available():
                await self._event_read(meter)

        async with asyncio.TaskGroup() as tg:
            for meter in meters:
                tg.create_task(one(meter), name=f"events:{meter.id}")
        return []

    async def _event_read(self, meter: MeterRecord) -> None:
        """Power-down records and relay state of one meter: the poll, or a carrier meter event."""
        client = self._clients.get(meter.id)
        if client is None:
            return  # not reachable (no module), or no longer in the archive
        # one event read per meter at a time: a poll and an event read must not both emit records
        async with self._event_locks.setdefault(meter.id, asyncio.Lock()):
            await self._power_down_records(client, meter)
            await self._relay_state(client, meter)

    async def _power_down_records(self, client: MeterClient, meter: MeterRecord) -> None:
        new = await self._attempt(meter, "event", client.read_power_down_count, record=False)
        if new is None:
            return
        key = f"power_down_count/{meter.id}"
        known = await self._ctx.store.get(key)
        if known is not None and new <= int(known):
            await self._ctx.store.set(key, new)  # a meter clear lowers the count
            return
        # On first sight only records that start after the meter joined this archive are ours (older
        # ones were reported by whoever read the meter then), so an outage before the first poll
        # is still reported. Without that time (state of an older version) the count is a baseline.
        since = None if known is not None else await self._ctx.store.get(f"first_seen/{meter.id}")
        if known is None and (since is None or new == 0):
            await self._ctx.store.set(key, new)
            return
        wanted = new - int(known) if known is not None else new
        records = await self._attempt(
            meter,
            "event",
            lambda: client.read_power_down_records(min(wanted, POWER_DOWN_RECORDS)),
            record=False,
        )
        if records is None:
            return  # the count stays: the records are read again at the next poll, not lost
        await self._ctx.store.set(key, new)
        for record in reversed(records):  # oldest first
            start = items.local_to_epoch(record.start, self._tz)
            if since is not None and start < float(since):
                continue
            end = None if record.end is None else items.local_to_epoch(record.end, self._tz)
            await self._emit_event(
                Event(
                    "meter.power_down", meter.id, start, end, {"address": meter.address, "port": meter.port}
                )
            )

    async def _relay_state(self, client: MeterClient, meter: MeterRecord) -> None:
        relay_open = await self._attempt(meter, "event", client.read_relay_state, record=False)
        if relay_open is None:
            return
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
        used = {(m.port, m.protocol) for m in self._archive.meters if m.id in self._clients}
        masters: list[tuple[str, Dlt645Master | Dlt698Master]] = [
            *((p, m) for p, m in self._masters645.items() if (p, "dlt645") in used),
            *((p, m) for p, m in self._masters698.items() if (p, "dlt698") in used),
        ]
        for port, master in masters:
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
        await self._note_first_seen(archive)
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
    async with asyncio.TaskGroup() as tg:
        carrier = tg.create_task(service.carrier.run(), name="acquisition:carrier")
        await ctx.ready()
        await ctx.wait_stop()
        carrier.cancel()
