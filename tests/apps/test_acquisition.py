"""Acquisition app through the real supervisor, against a virtual station in virtual time.

Two buses x 3 virtual meters (``sim.station``) are served by ``MeterBus.serve_link`` on
in-memory link pairs; the terminal side is ``Rs485Port`` on the other ends. The app runs
in a ``Supervisor`` with a real ``Store``; the uplink is a fake that records what is sent
and the command handlers. Expected values come from the virtual meters, never from the
code under test.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from apps.acquisition.archive import load_archive
from hal.errors import CapabilityMissing
from hal.interfaces import SerialSettings
from hal.rs485 import Rs485Port
from hal.sim import memory_link_pair
from runtime.bus import Bus
from runtime.clock import LoopClock
from runtime.container import AppContextFactory, NamespacedStore, Supervisor, TerminalInfo
from runtime.container.supervisor import AppState
from runtime.errors import ConfigError, ConfigErrors
from runtime.model import Quality, Reading
from runtime.scheduler import Scheduler
from runtime.store import Store
from sim.meters import MeterBus, VirtualMeter
from sim.meters.model import PowerDown
from sim.station import Station, build_station

pytestmark = pytest.mark.looptime

TZ = ZoneInfo("Asia/Shanghai")
APPS_DIR = Path(__file__).resolve().parents[2] / "apps"
BUSES = ("rs485-1", "rs485-2")
ENERGY = "energy.active.import.total"


def local(*args: int) -> float:
    return datetime(*args, tzinfo=TZ).timestamp()  # type: ignore[misc]


def kwh(x: float) -> float:
    """What a meter displays: truncated hundredths."""
    return math.floor(x * 100 + 1e-6) / 100


class FakeUplink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.commands: dict[str, Callable[[dict[str, Any]], Any]] = {}

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        self.sent.append((stream, body))
        return f"k{len(self.sent)}"

    def register_command(self, name: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        self.commands[name] = handler


class FakeHal:
    def __init__(self, ports: dict[str, Rs485Port]) -> None:
        self.ports = ports

    def rs485(self, name: str) -> Rs485Port:
        try:
            return self.ports[name]
        except KeyError:
            raise CapabilityMissing(f"no RS-485 port {name!r}") from None

    def hplc(self) -> Any:
        raise CapabilityMissing("no hplc")

    def metrology(self) -> Any:
        raise CapabilityMissing("no metrology")

    def slot(self, name: str) -> Any:
        raise CapabilityMissing(f"no slot {name!r}")

    def watchdog(self) -> Any:
        raise CapabilityMissing("no watchdog")


@dataclass
class Rig:
    clock: LoopClock
    station: Station
    store: Store
    uplink: FakeUplink
    supervisor: Supervisor
    archive: Path
    buses: dict[str, MeterBus] = field(default_factory=dict)

    def meter(self, meter_id: str) -> VirtualMeter:
        return self.station.meter(meter_id)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.station.meters]

    async def until(self, epoch: float) -> None:
        await self.clock.sleep_until(epoch)

    async def stats(self) -> dict[str, Any]:
        return dict(await self.uplink.commands["acquisition.stats"]({}))

    async def readings(self, device: str, quantity: str, ts: float) -> list[Reading]:
        return await self.store.query_readings(device=device, quantity=quantity, since=ts, until=ts + 1e-3)


CONFIG: dict[str, Any] = {
    "realtime_interval_s": 300,
    "event_poll_interval_s": 600,
    "retries": 1,
    "timeout_s": 1.0,  # a 4-5 record catch-up reply is ~0.85 s on the wire at 2400 baud
    "time_sync": False,
}


@asynccontextmanager
async def rig(
    tmp_path: Path, *, start: float, config: dict[str, Any] | None = None, meters_per_bus: int = 3
) -> AsyncIterator[Rig]:
    clock = LoopClock(start=start)
    station = build_station(buses=list(BUSES), meters_per_bus=meters_per_bus, seed=11, start=clock.now())
    archive = tmp_path / "archive.toml"
    station.write_archive(archive)
    settings = SerialSettings()
    uplink = FakeUplink()
    async with AsyncExitStack() as stack:
        store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
        stack.push_async_callback(store.close)
        bus = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz=TZ, state=NamespacedStore(store, "scheduler"))
        ports: dict[str, Rs485Port] = {}
        meter_buses: dict[str, MeterBus] = {}
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        for i, name in enumerate(BUSES):
            meters_end, terminal_end = memory_link_pair(settings, names=(f"{name}-meters", name))
            meter_bus = MeterBus(
                [m.meter for m in station.buses[name]],
                clock=clock,
                settings=settings,
                seed=i,
                protocols=station.protocols(name),
            )
            meter_buses[name] = meter_bus
            ports[name] = await stack.enter_async_context(Rs485Port(terminal_end, clock=clock, name=name))
            serving = tg.create_task(meter_bus.serve_link(meters_end), name=f"test-bus-{name}")
            stack.callback(serving.cancel)  # before the port closes: a hang-up ends serve_link with an error
        info = TerminalInfo(id="TTU-T", tz=TZ, root=tmp_path, rs485_ports=BUSES)
        factory = AppContextFactory(
            clock=clock,
            bus=bus,
            scheduler=scheduler,
            stores=lambda name: NamespacedStore(store, name),
            uplinks=lambda name: uplink,  # type: ignore[arg-type,return-value]
            hal=FakeHal(ports),
            terminal=info,
        )
        supervisor = Supervisor(clock=clock, bus=bus, context_factory=factory)
        supervisor.load(
            APPS_DIR,
            configs={"acquisition": {**CONFIG, "archive": str(archive), **(config or {})}},
            enabled=["acquisition"],
        )
        scheduling = tg.create_task(scheduler.run(), name="test-scheduler")
        stack.callback(scheduling.cancel)
        supervising = tg.create_task(supervisor.run(), name="test-supervisor")
        stack.push_async_callback(supervisor.stop)
        async with clock.timeout(30):
            state = await supervisor.wait_state("acquisition", AppState.RUNNING, AppState.CRASHED)
        assert state is AppState.RUNNING, supervisor.status()
        try:
            yield Rig(clock, station, store, uplink, supervisor, archive, meter_buses)
        finally:
            assert supervisor.state("acquisition") is AppState.RUNNING, supervisor.status()
            await supervisor.stop()
            await supervising


# ---------------------------------------------------------------------------------------- realtime


async def test_realtime_snapshot_matches_every_meter(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2)) as r:
        slot = local(2026, 1, 10, 10, 5)
        await r.until(slot - 1)
        before = {m.id: kwh(m.meter.registers(r.clock.now()).forward[0]) for m in r.station.meters}
        await r.until(slot + 60)
        after = {m.id: kwh(m.meter.registers(r.clock.now()).forward[0]) for m in r.station.meters}
        for meter_id in r.ids:
            (energy,) = await r.readings(meter_id, ENERGY, slot)
            assert before[meter_id] <= energy.value <= after[meter_id], meter_id
            assert round(energy.value * 100) == pytest.approx(energy.value * 100, abs=1e-6)  # 0.01 kWh
            assert energy.unit == "kWh" and energy.quality is Quality.GOOD
            (volts,) = await r.readings(meter_id, "voltage.a", slot)
            assert 180.0 < volts.value < 260.0
            assert len(await r.readings(meter_id, "current.a", slot)) == 1
        stats = await r.stats()
        assert stats["station"]["success_rate"] == 1.0
        assert stats["station"]["meters_online"] == stats["station"]["meters_total"] == 6
        assert all(m["success_rate"] == 1.0 for m in stats["meters"].values())
        sent = [b for s, b in r.uplink.sent if s == "readings"]
        assert {row["device"] for body in sent for row in body["readings"]} == set(r.ids)


# ---------------------------------------------------------------------------------------- curve


async def test_curve_points_land_in_store_with_meter_values(tmp_path: Path) -> None:
    # realtime reads only frequency, so curve energy/voltage rows are the curve's own
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2), config={"realtime_items": ["frequency"]}) as r:
        await r.until(local(2026, 1, 10, 11, 2))
        points = [local(2026, 1, 10, 10, m) for m in (15, 30, 45)] + [local(2026, 1, 10, 11, 0)]
        for meter_id in r.ids:
            recorded = {p.ts: p for p in r.meter(meter_id).curve}
            for ts in points:
                expected = recorded[ts]
                (energy,) = await r.readings(meter_id, ENERGY, ts)
                assert energy.value == kwh(expected.forward_total)
                assert energy.quality is Quality.GOOD
                (volts,) = await r.readings(meter_id, "voltage.a", ts)
                assert volts.value == round(expected.instant.voltage[0] or 0.0, 1)
                (power,) = await r.readings(meter_id, "power.active.total", ts)
                assert power.value == round(expected.instant.total_power_kw, 4)


async def test_comms_loss_is_caught_up_from_meter_memory(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2), config={"realtime_items": ["frequency"]}) as r:
        lost = r.ids[1]
        await r.until(local(2026, 1, 10, 10, 7))
        r.meter(lost).faults.miss_rate = 1.0
        await r.until(local(2026, 1, 10, 11, 7))
        missed = [local(2026, 1, 10, 10, m) for m in (15, 30, 45)] + [local(2026, 1, 10, 11, 0)]
        for ts in missed:
            assert await r.readings(lost, ENERGY, ts) == []
        during = await r.stats()
        assert during["meters"][lost]["online"] is False
        r.meter(lost).faults.miss_rate = 0.0
        await r.until(local(2026, 1, 10, 11, 17))
        recorded = {p.ts: p for p in r.meter(lost).curve}
        for ts in missed:
            (energy,) = await r.readings(lost, ENERGY, ts)
            assert energy.quality is Quality.CATCH_UP, ts
            assert energy.value == kwh(recorded[ts].forward_total)
        stats = await r.stats()
        assert stats["counters"]["curve_points_caught_up"] == len(missed)
        assert stats["meters"][lost]["online"] is True
        assert stats["meters"][lost]["success_rate"] < 1.0
        assert all(stats["meters"][m]["success_rate"] == 1.0 for m in r.ids if m != lost)
        assert stats["station"]["success_rate"] < 1.0


# ---------------------------------------------------------------------------------------- freeze


async def test_daily_freeze_read_back_equals_meter_freeze(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 23, 50)) as r:
        midnight = local(2026, 1, 11, 0, 0)
        await r.until(midnight + 20 * 60)
        for m in r.station.meters:
            freeze = m.meter.daily_freezes[0]
            assert freeze.ts == midnight
            (frozen,) = await r.readings(m.id, "daily." + ENERGY, midnight)
            assert frozen.value == kwh(freeze.registers.forward[0])
            assert frozen.quality is Quality.GOOD
            tariffs = [
                await r.readings(m.id, f"daily.energy.active.import.t{k}", midnight) for k in (1, 2, 3, 4)
            ]
            assert [t[0].value for t in tariffs] == [kwh(x) for x in freeze.registers.forward[1:]]
        assert (await r.stats())["station"]["daily_success_rate"] == 1.0


# ---------------------------------------------------------------------------------------- events


async def test_power_down_and_relay_trip_become_events(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2)) as r:
        off_id, trip_id = r.ids[0], r.ids[4]
        await r.until(local(2026, 1, 10, 10, 20))  # first event poll sets the baselines
        off_at = r.clock.now()
        r.meter(off_id).power_off(off_at)
        await r.until(local(2026, 1, 10, 10, 40))
        on_at = r.clock.now()
        r.meter(off_id).power_on(on_at)
        r.meter(trip_id).trip(on_at)
        await r.until(local(2026, 1, 10, 11, 10))
        record = r.meter(off_id).power_downs[0]
        assert record.end is not None
        events = await r.store.query_events(kind="meter.power_down")
        assert [(e.source, e.start, e.end) for e in events] == [
            (off_id, float(math.floor(record.start)), float(math.floor(record.end)))
        ]
        assert abs(events[0].start - off_at) < 1 and abs((events[0].end or 0) - on_at) < 1
        relay = await r.store.query_events(kind="meter.relay_open")
        assert [e.source for e in relay] == [trip_id]
        assert on_at <= relay[0].start <= on_at + 1800
        up = [b for s, b in r.uplink.sent if s == "events"]
        assert {(b["kind"], b["source"]) for b in up} == {
            ("meter.power_down", off_id),
            ("meter.relay_open", trip_id),
        }


async def test_outage_before_the_first_event_poll_is_reported_but_not_older_records(tmp_path: Path) -> None:
    start = local(2026, 1, 10, 10, 2)
    async with rig(tmp_path, start=start) as r:
        old_id, early_id = r.ids[1], r.ids[2]
        old = r.meter(old_id)  # a record from before this terminal read the meter: not ours to report
        old.power_down_count += 1
        old.power_downs.appendleft(PowerDown(start=start - 86400.0, end=start - 86000.0))
        await r.until(local(2026, 1, 10, 10, 3))
        off_at = r.clock.now()
        r.meter(early_id).power_off(off_at)  # before the first event poll (10:12)
        await r.until(local(2026, 1, 10, 10, 6))
        r.meter(early_id).power_on(r.clock.now())
        await r.until(local(2026, 1, 10, 10, 40))
        events = await r.store.query_events(kind="meter.power_down")
        assert [e.source for e in events] == [early_id]
        assert abs(events[0].start - off_at) < 1
        await r.until(local(2026, 1, 10, 11, 10))  # later polls: no duplicate
        assert len(await r.store.query_events(kind="meter.power_down")) == 1


# ---------------------------------------------------------------------------------------- archive


async def test_archive_replace_command(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2)) as r:
        replace = r.uplink.commands["archive.replace"]
        keep = [m.archive_entry(baud=2400) for m in r.station.buses["rs485-1"]]
        meters = [
            {"id": e.id, "address": e.address, "protocol": "dlt645", "port": e.port, "phase": e.phase}
            for e in keep
        ]
        original = r.archive.read_text()
        bad = [
            {**meters[0], "address": "12345"},
            {**meters[1], "port": "rs485-9"},
        ]
        with pytest.raises(ValueError) as err:
            await replace({"meters": bad})
        assert "meters[0].address" in str(err.value) and "meters[1].port" in str(err.value)
        assert r.archive.read_text() == original
        got = await r.uplink.commands["archive.get"]({})
        assert len(got["meters"]) == 6

        assert await replace({"meters": meters}) == {"meters": 3}
        on_file = load_archive(r.archive, known_ports=BUSES)
        assert [m.id for m in on_file.meters] == [e.id for e in keep]
        got = await r.uplink.commands["archive.get"]({})
        assert [m["id"] for m in got["meters"]] == [e.id for e in keep]
        slot = local(2026, 1, 10, 10, 10)
        await r.until(slot + 60)
        for m in r.station.meters:
            rows = await r.readings(m.id, ENERGY, slot)
            assert len(rows) == (1 if m.bus == "rs485-1" else 0), m.id
        assert set((await r.stats())["meters"]) == {e.id for e in keep}


def test_bad_archive_file_names_file_and_key_path(tmp_path: Path) -> None:
    path = tmp_path / "archive.toml"
    path.write_text('[[meters]]\nid = "m-1"\naddress = "00000000000X"\nport = "rs485-1"\n')
    with pytest.raises(ConfigErrors) as err:
        load_archive(path, known_ports=BUSES)
    (error,) = err.value.errors
    assert isinstance(error, ConfigError)
    assert error.source == str(path) and error.path == "meters[0].address"
    assert str(path) in str(err.value) and "meters[0].address" in str(err.value)
    path.write_text("[[meters]\n")
    with pytest.raises(ConfigError) as broken:
        load_archive(path)
    assert str(path) in str(broken.value)


# ---------------------------------------------------------------------------------------- dead meter


async def test_dead_meter_does_not_stall_the_others(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2)) as r:
        dead = r.ids[0]
        r.meter(dead).faults.miss_rate = 1.0
        await r.until(local(2026, 1, 10, 10, 31))
        slots = [local(2026, 1, 10, 10, m) for m in (5, 10, 15, 20, 25, 30)]
        for meter_id in r.ids:
            for ts in slots:
                rows = await r.readings(meter_id, "voltage.a", ts)
                assert len(rows) == (0 if meter_id == dead else 1), (meter_id, ts)
        stats = await r.stats()
        assert stats["meters"][dead]["online"] is False and stats["meters"][dead]["success_rate"] == 0.0
        assert all(stats["meters"][m]["success_rate"] == 1.0 for m in r.ids if m != dead)
        # 3 meters x 4 items on each bus; the dead one costs a short timeout, not a stall
        assert 0 < stats["station"]["cycle_seconds"] < 6.0
        assert stats["station"]["cycle_seconds"] < stats["station"]["wire_bound_seconds"] + 3.0
