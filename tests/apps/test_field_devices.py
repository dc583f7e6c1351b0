"""apps/acquisition devices.py and metrology.py on their own, against virtual devices, in virtual time.

The terminal side is ``Rs485Port`` / ``DltMetrology`` over in-memory links whose other ends
are served by ``sim.devices`` (``ModbusLine.serve_link``, ``VirtualMetrology.serve_link``);
the scheduler, bus and store are the runtime's own, the uplink a fake that records command
handlers. Expected values come from the virtual devices' register images and their sources,
never from the code under test.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from apps.acquisition.devices import DevicePoller, device_records, polled_points, start_field_devices
from apps.acquisition.metrology import MetrologyReader
from hal.clock import LoopClock
from hal.interfaces import SerialSettings
from hal.metrology import DltMetrology, Ratios
from hal.rs485 import Rs485Port
from hal.sim import memory_link_pair
from protocols import modbus
from protocols.station import FieldDevice, StationError, model_from_doc
from runtime.bus import Bus
from runtime.container import NamespacedStore, TerminalInfo
from runtime.errors import CommandError
from runtime.model import Event, Reading
from runtime.scheduler import Scheduler
from runtime.station import StationService
from runtime.store import Store
from sim.devices.metrology import ConstantSource, TransformerSample, VirtualMetrology
from sim.devices.modbus import ModbusLine, VirtualBreaker, VirtualCapacitor, VirtualEnvironment, VirtualRcd
from tests.apps._acquisition_rig import FakeHal, FakeUplink, acquisition_app

pytestmark = pytest.mark.looptime

TZ = ZoneInfo("Asia/Shanghai")
PORT = "rs485-4"
LINE = SerialSettings(9600, "E")
INTERVAL = 60
START = datetime(2026, 3, 2, 10, 0, 30, tzinfo=TZ).timestamp()
BREAKER = modbus.builtin_profile("breaker")
PRIMARY = TransformerSample(
    voltage_v=(231.4, 229.8, 233.0),
    current_a=(412.0, 388.5, 405.2),
    p_kw=(90.1, 84.3, 88.8),
    q_kvar=(21.0, 19.5, 22.2),
    frequency_hz=49.98,
)


def measure(t: float) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    return (230.1, 229.5, 231.0), (101.25, 98.5, 120.0), 72.5


@dataclass
class Rig:
    clock: LoopClock
    ctx: Any
    line: ModbusLine
    unit: VirtualMetrology
    breaker: VirtualBreaker
    uplink: FakeUplink
    bus: Bus
    readings: list[Reading] = field(default_factory=list)
    #: what ``start_field_devices`` returned
    started: tuple[MetrologyReader, DevicePoller] = field(init=False)
    events: list[Event] = field(default_factory=list)

    async def emit(self, readings: list[Reading]) -> None:
        self.readings.extend(readings)

    async def emit_event(self, event: Event) -> None:
        self.events.append(event)

    def latest(self, device: str, quantity: str) -> Reading:
        return [r for r in self.readings if r.device == device and r.quantity == quantity][-1]

    async def cycle(self, n: int = 1) -> None:
        """Run ``n`` realtime slots, ending a few seconds after the last one."""
        now = self.clock.now()
        await self.clock.sleep_until((now // INTERVAL + n) * INTERVAL + 20)


def field_devices(rows: list[dict[str, Any]]) -> tuple[FieldDevice, ...]:
    """The rows as the station model holds them (``F1`` is a branch of the model)."""
    branches = [{"id": "F1"}] if any(r.get("branch") == "F1" for r in rows) else []
    return model_from_doc({"devices": rows, "branches": branches}).devices


ARCHIVE = [
    {"id": "brk-F1", "profile": "breaker", "port": PORT, "unit_id": 1, "branch": "F1"},
    {"id": "rcd-1", "profile": "rcd", "port": PORT, "unit_id": 201},
    {"id": "env-1", "profile": "environment", "port": PORT, "unit_id": 203},
]


async def serve_devices(
    stack: AsyncExitStack,
    tg: asyncio.TaskGroup,
    clock: LoopClock,
    line: ModbusLine,
    unit: VirtualMetrology | None,
) -> tuple[Rs485Port, DltMetrology | None]:
    """Serve ``line`` on the terminal's ``PORT`` and ``unit`` (if any) on a metrology link."""
    devices_end, terminal_end = memory_link_pair(LINE, names=(f"{PORT}-devices", PORT))
    port = await stack.enter_async_context(Rs485Port(terminal_end, clock=clock, name=PORT))
    serving = tg.create_task(line.serve_link(devices_end), name="test-modbus-line")
    stack.callback(serving.cancel)
    if unit is None:
        return port, None
    unit_end, client_end = memory_link_pair(LINE, names=("metrology-unit", "metrology"))
    metrology = await stack.enter_async_context(DltMetrology(client_end, clock=clock, ratios=Ratios(ct=200)))
    unit_task = tg.create_task(unit.serve_link(unit_end, clock=clock), name="test-metrology")
    stack.callback(unit_task.cancel)
    return port, metrology


@asynccontextmanager
async def rig(
    tmp_path: Path, *, rows: list[dict[str, Any]] | None = None, metrology: bool = True
) -> AsyncIterator[Rig]:
    clock = LoopClock(start=START)
    breaker = VirtualBreaker(BREAKER, 1, name="brk-F1", measure=measure)
    line = ModbusLine(
        [
            breaker,
            VirtualRcd(modbus.builtin_profile("rcd"), 201, name="rcd-1"),
            VirtualEnvironment(modbus.builtin_profile("environment"), 203, name="env-1"),
        ],
        clock=clock,
        settings=LINE,
    )
    unit = VirtualMetrology(ConstantSource(PRIMARY), ct_ratio=200, energy_import_kwh=5000.0)
    uplink = FakeUplink()
    async with AsyncExitStack() as stack:
        store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
        stack.push_async_callback(store.close)
        bus = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz=TZ, state=NamespacedStore(store, "scheduler"))
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        port, meter_unit = await serve_devices(stack, tg, clock, line, unit if metrology else None)
        ctx = SimpleNamespace(
            clock=clock,
            hal=FakeHal({PORT: port}, metrology=meter_unit),
            bus=bus,
            scheduler=scheduler,
            store=NamespacedStore(store, "acquisition"),
            uplink=uplink,
            log=logging.getLogger("ttu.app.acquisition"),
        )
        r = Rig(clock, ctx, line, unit, breaker, uplink, bus)
        scheduling = tg.create_task(scheduler.run(), name="test-scheduler")
        stack.callback(scheduling.cancel)
        r.started = await start_field_devices(
            ctx,
            devices=field_devices(ARCHIVE if rows is None else rows),
            ports=[PORT, "rs485-1"],
            interval_s=INTERVAL,
            emit=r.emit,
            emit_event=r.emit_event,
        )
        yield r


# --------------------------------------------------------------------------------- archive


def test_the_station_model_checks_the_device_archive_with_key_paths() -> None:
    rows: list[Any] = [
        {"id": "brk-1", "profile": "breaker", "port": PORT, "unit_id": 1},
        {"id": "brk-1", "profile": "breaker", "port": PORT, "unit_id": 2},  # duplicate id
        {"id": "a/b", "profile": "toaster", "port": PORT, "unit_id": 0, "colour": "red"},
        {"id": "brk-3", "profile": "breaker", "port": PORT, "unit_id": 1},  # unit taken
        {"id": "brk-4", "profile": "breaker", "port": PORT, "unit_id": True, "branch": ""},
        "not a table",
    ]
    with pytest.raises(StationError) as info:
        model_from_doc({"devices": rows}, source="var/station.toml")
    assert {p for p, _ in info.value.problems} == {
        "devices[2].id",
        "devices[2].unit_id",
        "devices[2].colour",
        "devices[4].unit_id",
        "devices[4].branch",
        "devices[5]",
    }
    with pytest.raises(StationError) as dup:
        model_from_doc({"devices": [rows[0], rows[1], rows[3]]}, source="var/station.toml")
    text = str(dup.value)
    assert "var/station.toml: devices[1].id: 'brk-1' already used by devices[0]" in text
    assert "devices[2].unit_id: unit 1 already used on rs485-4" in text


def test_devices_the_app_cannot_poll_are_named() -> None:
    devices = field_devices(
        [
            {"id": "brk-F1", "profile": "breaker", "port": PORT, "unit_id": 1, "branch": "F1"},
            {"id": "toast-1", "profile": "toaster", "port": PORT, "unit_id": 2},
            {"id": "rcd-9", "profile": "rcd", "port": "rs485-9", "unit_id": 3},
        ]
    )
    usable, problems = device_records(devices, known_ports=[PORT])
    assert [d.id for d in usable] == ["brk-F1"]
    assert usable[0].branch == "F1" and usable[0].profile.kind == "breaker"
    assert usable[0].to_json() == ARCHIVE[0]
    assert problems == [
        "devices[1] toast-1: 'toaster' is not a profile; known: " + ", ".join(modbus.builtin_names()),
        "devices[2] rcd-9: 'rs485-9' is not an RS-485 port of this board (rs485-4)",
    ]


# --------------------------------------------------------------------------------- readings


async def test_readings_are_normalized_from_the_register_images(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.cycle()
        slot = (r.clock.now() // INTERVAL) * INTERVAL
        reader, poller = r.started
        assert poller.counters["device_reads_ok"] == 3 and poller.counters["device_reads_failed"] == 0
        env = r.line.device(203)
        assert env is not None
        for reg in BREAKER.readings:
            if reg.name == "residual_current":
                continue  # leakage noise, drawn afresh on every block read
            reading = r.latest("brk-F1", reg.quantity or "")
            assert reading.value == pytest.approx(float(r.breaker.get(reg.name)))
            assert reading.unit == reg.unit and reading.ts == slot
        assert r.latest("brk-F1", "current.a").value == pytest.approx(101.25)
        assert r.latest("brk-F1", "breaker.closed").value == 1.0
        assert 3 <= r.latest("brk-F1", "current.residual").value <= 25
        assert r.latest("env-1", "temperature.dew_point").value == pytest.approx(
            env.get("dew_point"), rel=1e-6
        )
        assert r.latest("env-1", "door.open").value == 0.0
        assert r.latest("rcd-1", "current.residual").unit == "mA"
        # one poll reads the reading and event points only, not the settings
        profiles = [modbus.builtin_profile(row["profile"]) for row in ARCHIVE]
        blocks = [modbus.plan_blocks([p.register(n) for n in polled_points(p)]) for p in profiles]
        assert r.line.requests == sum(len(b) for b in blocks)
        assert not any(b.table == "holding" for b in blocks[0])  # breaker settings Ir, IΔn
        # points without a quantity (trip record time, settings) are not readings
        assert not [x for x in r.readings if x.device == "brk-F1" and x.quantity == "last_trip_time"]
        # the transformer, CT 200 applied by the hal: the source's primary values come back
        assert reader.counters["metrology_reads_ok"] == 1
        assert r.latest("transformer", "current.a").value == pytest.approx(412.0, abs=0.101)
        assert r.latest("transformer", "voltage.c").value == pytest.approx(233.0, abs=0.05)
        assert r.latest("transformer", "power.active.total").value == pytest.approx(
            sum(PRIMARY.p_kw), abs=0.05
        )
        assert r.latest("transformer", "frequency").unit == "Hz"
        assert r.latest("transformer", "energy.active.import.total").value == pytest.approx(5000.0, rel=1e-4)


async def test_board_without_metrology_is_logged_once_and_devices_still_polled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ttu.app.acquisition")
    async with rig(tmp_path, metrology=False) as r:
        await r.cycle(2)
        assert not [x for x in r.readings if x.device == "transformer"]
        assert r.started[1].counters["device_reads_ok"] == 6
    assert [m for m in caplog.messages if "transformer readings off" in m] == [
        "transformer readings off: metrology unit: not enabled on this board"
    ]


async def test_silent_metrology_unit_counted_and_logged_on_edges(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ttu.app.acquisition")
    async with rig(tmp_path) as r:
        reader: MetrologyReader = r.started[0]
        await r.cycle()
        r.unit.silent = True
        await r.cycle(3)
        assert reader.counters == {"metrology_reads_ok": 1, "metrology_reads_failed": 3}
        stats = r.bus.retained("acquisition/metrology/stats")
        assert stats is not None and stats.payload["online"] is False
        r.unit.silent = False
        await r.cycle(2)
        assert reader.counters["metrology_reads_ok"] == 3
        stats = r.bus.retained("acquisition/metrology/stats")
        assert stats is not None and stats.payload == {**reader.counters, "online": True}
    unit_logs = [m for m in caplog.messages if m.startswith("metrology unit")]
    assert len(unit_logs) == 2 and "answers again" in unit_logs[1]


# --------------------------------------------------------------------------------- breaker


async def test_breaker_trip_event_carries_cause_and_branch(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.cycle()
        assert r.events == []  # the first poll only learns the counters
        trip_t = r.clock.now()
        r.breaker.switch(False, trip_t, cause=4)  # residual current trip in the field
        await r.cycle()
        kinds = {e.kind: e for e in r.events}
        assert set(kinds) == {"breaker.trip", "breaker.open"}
        trip = kinds["breaker.trip"]
        assert trip.source == "brk-F1" and trip.start == int(trip_t)
        assert trip.data["cause"] == BREAKER.register("trip_cause").enum[4] == "residual current"
        assert trip.data["trips"] == 1 and trip.data["branch"] == "F1"
        assert r.latest("brk-F1", "breaker.closed").value == 0.0
        assert r.latest("brk-F1", "current.a").value == 0.0
        await r.cycle()
        assert len(r.events) == 2  # no repeat while nothing changes


async def test_breaker_control_open_close_with_read_back(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.cycle()
        control = r.uplink.commands["breaker.control"]
        reply = await control({"device": "brk-F1", "action": "open"})
        assert reply == {"device": "brk-F1", "closed": False, "priority": "CONTROL"}
        assert r.breaker.closed is False and r.breaker.get("trip_cause") == 8  # remote open
        await r.cycle()
        assert [e.kind for e in r.events] == ["breaker.trip", "breaker.open"]
        assert r.events[0].data["cause"] == "remote open"
        # the same over the bus
        reply = await r.bus.request(
            "acquisition/breaker/control", {"device": "brk-F1", "action": "close"}, timeout=5.0
        )
        assert reply["closed"] is True and r.breaker.closed is True
        await r.cycle()
        assert r.events[-1].kind == "breaker.closed"
        assert r.started[1].counters["device_commands"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("open", "must be an object"),
        ({"device": "rcd-1", "action": "open"}, "no breaker 'rcd-1'; breakers: ['brk-F1']"),
        ({"device": "brk-9", "action": "open"}, "no breaker 'brk-9'"),
        ({"device": "brk-F1", "action": "toggle"}, "action 'toggle' is not 'open' or 'close'"),
    ],
)
async def test_bad_breaker_commands_are_refused_clearly(tmp_path: Path, args: Any, message: str) -> None:
    async with rig(tmp_path) as r:
        with pytest.raises(CommandError, match=re.escape(message)) as info:
            await r.uplink.commands["breaker.control"](args)
        assert info.value.code == "bad_args"
        assert r.breaker.closed is True and r.breaker.writes == 0


async def test_breaker_that_does_not_follow_is_reported_not_verified(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        # a welded contact: the command is acknowledged but the switch never moves
        r.breaker.written = lambda point, value, t: None  # type: ignore[method-assign]
        with pytest.raises(
            CommandError, match=r"breaker.control: brk-F1: .*switch_closed.*reads back True"
        ) as info:
            await r.uplink.commands["breaker.control"]({"device": "brk-F1", "action": "open"})
        assert info.value.code == "device_failed"
        assert r.started[1].counters["device_commands_failed"] == 1


# --------------------------------------------------------------------------------- health


async def test_dead_device_counted_every_time_logged_once_each_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ttu.app.acquisition")
    rows = [*ARCHIVE, {"id": "cap-1", "profile": "capacitor", "port": PORT, "unit_id": 202}]
    async with rig(tmp_path, rows=rows) as r:
        poller: DevicePoller = r.started[1]
        await r.cycle(3)
        assert poller.counters["device_reads_failed"] == 3
        assert poller.counters["device_reads_ok"] == 9
        assert not [x for x in r.readings if x.device == "cap-1"]
        stats = r.bus.retained("acquisition/devices/stats")
        assert stats is not None and stats.payload["online"] == 3 and stats.payload["failing"] == ["cap-1"]
        r.line.devices.append(VirtualCapacitor(modbus.builtin_profile("capacitor"), 202, name="cap-1"))
        await r.cycle(2)
        assert poller.counters["device_reads_failed"] == 3
        assert r.latest("cap-1", "capacitor.steps_total").value == 8
        stats = r.bus.retained("acquisition/devices/stats")
        assert stats is not None and stats.payload["online"] == 4 and stats.payload["failing"] == []
    dead = [m for m in caplog.messages if m.startswith("device cap-1")]
    assert len(dead) == 2, dead
    assert "unit 202 on rs485-4" in dead[0] and "did not answer within 1 s" in dead[0]
    assert dead[1] == "device cap-1 answers again"


# --------------------------------------------------------------------------------- in the app


async def test_acquisition_app_polls_the_devices_and_the_metrology_unit(tmp_path: Path) -> None:
    """The hook in ``service.py``: the real app under the real supervisor polls the station
    model's devices (no meters), publishes device and transformer readings, answers
    ``breaker.control``."""
    clock = LoopClock(start=START)
    breaker = VirtualBreaker(BREAKER, 1, name="brk-F1", measure=measure)
    line = ModbusLine([breaker], clock=clock, settings=LINE)
    unit = VirtualMetrology(ConstantSource(PRIMARY), ct_ratio=200)
    uplink = FakeUplink()
    async with AsyncExitStack() as stack:
        store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
        stack.push_async_callback(store.close)
        bus = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz=TZ, state=NamespacedStore(store, "scheduler"))
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        port, metrology = await serve_devices(stack, tg, clock, line, unit)
        config = {"realtime_interval_s": INTERVAL, "time_sync": False}
        model = StationService(store=store, bus=bus, clock=clock, file=tmp_path / "station.toml")
        await model.start()
        await model.replace(model_from_doc({"branches": [{"id": "F1"}], "devices": ARCHIVE[:1]}), by="test")
        app = acquisition_app(
            stack,
            tg,
            clock=clock,
            bus=bus,
            scheduler=scheduler,
            store=store,
            uplink=uplink,
            hal=FakeHal({PORT: port}, metrology=metrology),
            terminal=TerminalInfo(id="TTU-T", tz=TZ, root=tmp_path, rs485_ports=(PORT,)),
            config=config,
            station=model,
        )
        async with app:
            await clock.sleep_until((clock.now() // INTERVAL + 1) * INTERVAL + 20)
            slot = (clock.now() // INTERVAL) * INTERVAL
            (amps,) = await store.query_readings(
                device="brk-F1", quantity="current.a", since=slot, until=slot + 1
            )
            assert amps.value == pytest.approx(101.25)
            (trafo,) = await store.query_readings(
                device="transformer", quantity="current.a", since=slot, until=slot + 1
            )
            assert trafo.value == pytest.approx(412.0, abs=0.101)
            reply = await uplink.commands["breaker.control"]({"device": "brk-F1", "action": "open"})
            assert reply["closed"] is False and breaker.closed is False
            await clock.sleep_until(slot + INTERVAL + 20)
            events = [b for s, b in uplink.sent if s == "events"]
            assert {e["kind"] for e in events} == {"breaker.trip", "breaker.open"}
            assert any(
                s == "readings" and any(r["device"] == "transformer" for r in b["readings"])
                for s, b in uplink.sent
            )


async def test_breaker_exception_reply_is_a_device_refusal(tmp_path: Path) -> None:
    from pymodbus.constants import ExcCodes

    async with rig(tmp_path) as r:
        # e.g. a breaker in local (manual) mode answers SERVER DEVICE FAILURE to remote writes
        r.breaker.write = lambda table, address, values, t: ExcCodes.DEVICE_FAILURE  # type: ignore[method-assign]
        with pytest.raises(CommandError, match=r"brk-F1 refused: .*server device failure") as info:
            await r.uplink.commands["breaker.control"]({"device": "brk-F1", "action": "open"})
        assert info.value.code == "device_refused" and r.breaker.closed is True
