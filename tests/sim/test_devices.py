"""Simulated field devices tied to the physics: a branch breaker opened and closed over Modbus RTU.

The master is the terminal's own ``hal.modbus.ModbusMaster`` on an ``Rs485Port`` over an
in-memory link to ``ModbusLine.serve_link`` (virtual time, looptime). Expectations come
from the world (its horizons, meters and truth files), never from the code under test.
"""

from __future__ import annotations

import asyncio
import csv
import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apps.acquisition.devices import device_records
from hal.clock import LoopClock
from hal.interfaces import SerialSettings
from hal.metrology import DltMetrology, Ratios
from hal.modbus import ModbusMaster
from hal.rs485 import Rs485Port
from hal.sim import memory_link_pair
from protocols import modbus
from protocols.cloud import Reply
from sim.archive import read_station, station_model, write_station
from sim.devices.station import FieldDevices, attach, build_devices
from sim.scenarios import load_scenario
from sim.station import build_station
from sim.truth import iso, write_truth
from sim.world import World, WorldMeter, build_world

pytestmark = pytest.mark.looptime

START = 1717200000.0  # 2024-06-01 00:00 UTC, on a 15-min boundary
BUSES = ["rs485-1", "rs485-2", "rs485-3", "rs485-4"]
PORT = "rs485-4"
BOARD = Path(__file__).resolve().parents[2] / "board.toml"
BREAKER = modbus.builtin_profile("breaker")


def world(scenario: str = "quiet") -> World:
    return build_world(
        buses=BUSES,
        scenario=load_scenario(scenario),
        seed=3,
        start=START,
        duration_s=7200.0,
        customers_scale=1,
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass
class Rig:
    clock: LoopClock
    world: World
    devices: FieldDevices
    master: ModbusMaster

    def unit(self, device_id: str) -> int:
        return next(e.unit_id for e in self.devices.entries if e.id == device_id)

    def kwh(self, m: WorldMeter, t: float) -> float:
        return m.meter.registers(t).forward[0]


@asynccontextmanager
async def rig(w: World) -> AsyncIterator[Rig]:
    clock = LoopClock(start=START)
    devices = build_devices(station=w.station, world=w, port=PORT, ct_ratio=200)
    attach(devices, w.station, clock)
    assert devices.line is not None
    async with AsyncExitStack() as stack:
        line_end, terminal_end = memory_link_pair(SerialSettings(), names=(f"{PORT}-line", PORT))
        port = await stack.enter_async_context(Rs485Port(terminal_end, clock=clock, name=PORT))
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        serving = tg.create_task(devices.line.serve_link(line_end), name="test-modbus-line")
        stack.callback(serving.cancel)
        running = tg.create_task(w.run(clock), name="test-world")  # as ttu sim runs it
        stack.callback(running.cancel)
        yield Rig(clock, w, devices, ModbusMaster(port, timeout=1.0))


def scope(w: World, branches: set[str]) -> tuple[list[WorldMeter], list[WorldMeter]]:
    """Customer meters on ``branches``, and all the other customer meters."""
    inside = [m for m in w.customers() if m.branch in branches]
    return inside, [m for m in w.customers() if m.branch not in branches]


async def test_opening_a_branch_breaker_takes_its_meters_out_and_closing_restores(tmp_path: Path) -> None:
    w = world()
    # F2 feeds the sub-branches F3, F4, F5 (the feeder's topology): all of them lose supply
    inside, outside = scope(w, {"F2", "F3", "F4", "F5"})
    units_down = [m for m in w.branch_units() if m.branch in {"F3", "F4", "F5"}]
    units_up = [m for m in w.branch_units() if m.branch in {"F1", "F2"}]
    assert inside and outside and len(units_down) == 3 and len(units_up) == 2
    async with rig(w) as r:
        unit = r.unit("brk-F2")
        await r.clock.sleep_until(START + 900)
        before = await r.master.read(unit, BREAKER)
        assert before["switch_closed"] is True and before["current_a"] + before["current_b"] > 0
        sent = r.clock.now()
        assert await r.master.command(unit, BREAKER, "open") is False
        (event,) = w.events  # the world's own record of when the branch lost supply
        opened = event.start
        assert sent <= opened < r.clock.now() and event.end is None
        after = await r.master.read(unit, BREAKER)
        assert after["current_a"] == after["current_b"] == after["current_c"] == after["active_power"] == 0
        assert BREAKER.register("trip_cause").meaning(after["trip_cause"]) == "remote open"
        assert after["trip_count"] == before["trip_count"] + 1

        await r.clock.sleep_until(START + 2700)
        at_close = {m.id: r.kwh(m, r.clock.now()) for m in inside + outside}
        for m in inside:
            assert not m.meter.on and m.meter.power_down_count == 1, m.id
            assert m.meter.power_downs[0].start == m.meter.meter_time(opened)
            assert m.meter.power_downs[0].end is None
            # the physics is step-averaged (15 min): the steps wholly inside the open interval are empty
            hz = m.replica.horizon
            assert hz.customer_energy_kwh(m.customer, START + 1800, START + 2700) == 0.0, m.id
            assert r.kwh(m, opened) == pytest.approx(at_close[m.id], abs=1e-9), m.id  # zero consumption
        for m in units_down:
            assert not m.meter.on and m.meter.power_down_count == 1, m.id
        for m in outside + units_up:
            assert m.meter.on and m.meter.power_down_count == 0, m.id

        sent = r.clock.now()
        assert await r.master.command(unit, BREAKER, "close") is True
        closed = w.events[0].end
        assert closed is not None and sent <= closed < r.clock.now()
        await r.clock.sleep_until(START + 5400)
        for m in inside + units_down:
            assert m.meter.on, m.id
            assert m.meter.power_downs[0].end == m.meter.meter_time(closed), m.id
        grew = [m for m in inside if r.kwh(m, r.clock.now()) > at_close[m.id]]
        truth_grew = [
            m for m in inside if m.replica.horizon.customer_energy_kwh(m.customer, closed, r.clock.now()) > 0
        ]
        assert grew and {m.id for m in grew} == {m.id for m in truth_grew}
        now = r.clock.now()
    write_truth(w, tmp_path, end=START + 7200)
    outages = [
        {k: v for k, v in e.items() if k != "meters"}
        for e in rows(tmp_path / "events.csv")
        if e["kind"] == "outage"
    ]
    assert outages == [
        {"kind": "outage", "scope": "branch", "target": "F2", "start": iso(opened), "end": iso(closed)}
    ]
    assert w.events[0].meters == tuple(m.id for m in inside + units_down)
    # the physics: what the transformer delivered while F2 was out is only F1's load and losses
    hz = w.replicas[0].horizon
    f1 = [m for m in outside if m.branch == "F1"]
    supplied = float(hz.trafo_energy_kwh(START + 900, START + 2700).sum())
    f1_energy = sum(hz.customer_energy_kwh(m.customer, START + 900, START + 2700) for m in f1)
    assert f1_energy <= supplied < f1_energy * 1.1 + 0.5
    assert now >= START + 5400


async def test_a_breaker_left_open_keeps_its_branch_out_beyond_the_first_solved_hour() -> None:
    w = build_world(
        buses=BUSES, scenario=load_scenario("quiet"), seed=3, start=START, duration_s=None, customers_scale=1
    )  # a live run: the horizon is a week long
    inside, outside = scope(w, {"F4"})
    async with rig(w) as r:
        await r.clock.sleep_until(START + 900)
        assert await r.master.command(r.unit("brk-F4"), BREAKER, "open") is False
        await r.clock.sleep_until(START + 5 * 3600 + 60)
        hz = w.replicas[0].horizon
        for m in inside:
            assert hz.customer_energy_kwh(m.customer, START + 1800, START + 5 * 3600) == 0.0, m.id
            assert not m.meter.on
        assert sum(hz.customer_energy_kwh(m.customer, START + 1800, START + 5 * 3600) for m in outside) > 0
        sent = r.clock.now()
        assert await r.master.command(r.unit("brk-F4"), BREAKER, "close") is True
        (outage,) = w.events
        closed = outage.end
        assert closed is not None and sent <= closed < r.clock.now()
        await r.clock.sleep_until(START + 9 * 3600)
        hz = w.replicas[0].horizon
        after = sum(hz.customer_energy_kwh(m.customer, closed + 900, START + 9 * 3600) for m in inside)
        assert after > 0 and all(m.meter.on for m in inside)
    assert [(e.kind, e.target) for e in w.events] == [("outage", "F4")]


async def test_a_closed_breaker_written_closed_changes_nothing(tmp_path: Path) -> None:
    w = world()
    async with rig(w) as r:
        unit = r.unit("brk-F1")
        assert await r.master.command(unit, BREAKER, "close") is True
        assert w.events == [] and all(m.meter.power_down_count == 0 for m in w.meters.values())
        assert (await r.master.read(unit, BREAKER, ["trip_count"]))["trip_count"] == 0


def test_archive_of_the_physics_station_loads_in_the_acquisition_app(tmp_path: Path) -> None:
    w = world()
    devices = build_devices(station=w.station, world=w, port=PORT)
    write_station(tmp_path / "station.toml", station_model(w.station, world=w, devices=devices.archive()))
    model = read_station(tmp_path / "station.toml")
    records, problems = device_records(model.devices, known_ports=BUSES)
    branches = list(w.replicas[0].network.branches)
    assert problems == []
    assert [d.branch for d in records if d.profile.kind == "breaker"] == branches
    assert {d.id for d in records} == {e.id for e in devices.entries}
    assert {d.profile.kind for d in records} == {"breaker", "rcd", "capacitor", "environment"}
    assert {d.port for d in records} == {PORT}
    # the branches know their breaker and monitoring unit; every customer its branch and box
    assert [(b.id, b.breaker, b.monitor) for b in model.branches] == [
        (b, f"brk-{b}", f"bu-{b}") for b in branches
    ]
    for m in model.customers():
        truth = w.meters[m.id]
        assert (m.branch, m.box) == (truth.branch, truth.box), m.id
        box = model.box(truth.box)
        assert box is not None and box.branch == truth.branch


def test_synthetic_station_gets_a_main_breaker_and_no_branches(tmp_path: Path) -> None:
    station = build_station(buses=BUSES, meters_per_bus=2, seed=1, start=START)
    devices = build_devices(station=station, world=None, port=PORT)
    assert list(devices.breakers) == ["brk-main"]
    model = station_model(station, devices=devices.archive())
    records, _ = device_records(model.devices, known_ports=BUSES)
    assert (records[0].id, records[0].unit_id, records[0].branch) == ("brk-main", 1, None)
    none = build_devices(station=station, world=None, port=None)
    assert none.line is None and none.entries == [] and none.metrology is not None
    status = devices.status(START)
    assert status["devices"] == 4 and status["devices_online"] == 0 and status["metrology_readings"] == 0


async def test_wrong_ct_is_the_assessment_meters_and_the_metrology_unit_stays_right() -> None:
    """GRID.md §2: the 总表's archive ratio is wrong; the terminal's own metrology unit measures
    the transformer with its right CT, so the two disagree by recorded/fitted."""
    w = world("default")
    tr = w.scenario.transformer
    assert tr.ct_ratio_actual is not None and tr.ct_ratio_configured is not None
    assert w.assessment is not None and w.assessment_ct == (tr.ct_ratio_actual, tr.ct_ratio_configured)
    fault = next(f for f in w.faults if f["kind"] == "ct_ratio")
    assert fault["target"] == w.assessment.id
    assert fault["value"] == pytest.approx(tr.ct_ratio_configured / tr.ct_ratio_actual)
    board_ct = 200.0
    devices = build_devices(station=w.station, world=w, port=None, ct_ratio=board_ct)
    assert devices.metrology is not None
    clock = LoopClock(start=START + 1800)
    unit_end, client_end = memory_link_pair(SerialSettings(9600, "E"), names=("unit", "metrology"))
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(devices.metrology.serve_link(unit_end, clock=clock), name="test-metrology")
        async with DltMetrology(client_end, clock=clock, ratios=Ratios(ct=board_ct)) as client:
            snap = await client.snapshot()
        task.cancel()
    true = devices.metrology.source.sample(clock.now())
    assert snap.current.a == pytest.approx(true.current_a[0], rel=2e-3, abs=0.3)
    # the 总表 registers secondary energy: x its archive ratio, the supply comes out x recorded/fitted
    t0, t1 = START + 900, START + 4500
    meter = w.assessment.meter
    first = meter.registers(t0).forward[0]  # registers advance lazily: read in time order
    secondary = meter.registers(t1).forward[0] - first
    primary = sum(float(r.horizon.trafo_energy_kwh(t0, t1).sum()) for r in w.replicas)
    recorded = tr.ct_ratio_configured
    assert secondary * recorded == pytest.approx(primary * float(str(fault["value"])), rel=1e-3, abs=0.05)


def test_head_breakers_carry_the_transformer_current() -> None:
    """F1 and F2 leave the busbar (F3-F5 hang off F2): their currents add up to the transformer's."""
    w = world()
    devices = build_devices(station=w.station, world=w, port=PORT)
    assert devices.metrology is not None
    t = START + 10 * 3600 + 100  # mid-morning load
    trafo = devices.metrology.source.sample(t)
    heads = [devices.breakers["brk-F1"], devices.breakers["brk-F2"]]
    for b in heads:
        b.refresh(t)
    for ph, amps in zip("abc", trafo.current_a, strict=True):
        assert amps > 10
        assert sum(float(b.get(f"current_{ph}")) for b in heads) == pytest.approx(amps, rel=0.05), ph
    assert sum(float(b.get("active_power")) for b in heads) == pytest.approx(sum(trafo.p_kw), rel=0.05)


# Real broker sockets and ptys: the sim's own 10x clock, not fast-forward. 10x rather than 30x
# leaves the 1 s reply timeout 100 ms of wall time on a loaded machine.
@pytest.mark.looptime(False)
def test_cloud_opens_a_branch_breaker_through_the_terminal(tmp_path: Path) -> None:
    """End to end under ``ttu sim``: a signed ``breaker.control`` from the cloud stub goes over MQTT to
    the terminal, whose acquisition app writes the breaker over Modbus on rs485-4 (shared with that
    bus's DL/T 645 meters); the branch goes dark in the physics, the trip reaches the cloud as events,
    and a bad command is refused with a reply, not a crash. On virtual time (``--speed max``)."""
    from runtime.config import load_board
    from sim.runner import SimOptions, simulate
    from sim.vloop import run_virtual

    board = load_board(BOARD)
    options = SimOptions(
        board=board, workdir=tmp_path / "run", speed=math.inf, meters_per_bus=1, seed=2, start=START,
        duration_s=600.0, network="ieee-eu-lv", scenario="quiet", truth_dir=tmp_path / "truth",
    )  # fmt: skip

    async def main() -> dict[str, Any]:
        async with simulate(options) as run:

            async def control(device: str, action: str) -> Reply:
                return await run.cloud.send_command(
                    board.terminal.id, "breaker.control", {"device": device, "action": action}
                )

            assert run.devices is not None and run.world is not None
            f4 = [m for m in run.world.customers() if m.branch == "F4"]
            for _ in range(60):  # until a first device poll has learnt the breakers' state
                if (await run.summary())["devices"]["terminal_devices"] is not None:
                    break
                await run.clock.sleep(5.0)
            bad = await control("brk-F4", "flip")
            assert not bad.ok and "not 'open' or 'close'" in (bad.message or "")
            reply = await control("brk-F4", "open")
            assert reply.ok and reply.result is not None and reply.result["closed"] is False, reply
            assert not run.devices.breakers["brk-F4"].closed
            assert f4 and all(not m.meter.on for m in f4)
            events: list[str] = []
            for _ in range(40):
                events = sorted({e.kind for e in await run.cloud.events(limit=50) if e.source == "brk-F4"})
                if {"breaker.open", "breaker.trip"} <= set(events):
                    break
                await run.clock.sleep(5.0)
            assert {"breaker.open", "breaker.trip"} <= set(events), events
            reply = await control("brk-F4", "close")
            assert reply.ok and reply.result is not None and reply.result["closed"] is True
            assert all(m.meter.on for m in f4)
            return await run.summary()

    summary = run_virtual(main)
    assert summary["devices"]["devices_online"] == summary["devices"]["devices"]
    assert summary["devices"]["metrology_readings"] >= 1
    outages = [e for e in rows(tmp_path / "truth" / "events.csv") if e["kind"] == "outage"]
    assert [(e["scope"], e["target"]) for e in outages] == [("branch", "F4")] and outages[0]["end"]
