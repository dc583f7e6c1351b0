"""The outage app in a real Supervisor, store and bus, on virtual time.

Its evidence arrives the way it does on a terminal: carrier lists on ``hplc/event/<kind>``
(published as the runtime does), acquisition's read health and events, its own reads of the
metrology unit and the power monitor (a ``SimPowerMonitor`` the test switches). What it sends
is what the uplink got (a recording uplink). The station model is a TOML file as the simulator
writes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hal.clock import LoopClock
from hal.errors import CapabilityMissing
from hal.interfaces import MetrologySnapshot, PhaseValues
from hal.sim import SimPowerMonitor
from protocols.station import Branch, Meter, MeterBox
from runtime.bus import Bus
from runtime.container import AppContextFactory, NamespacedStore, Supervisor, TerminalInfo
from runtime.container.supervisor import AppState
from runtime.scheduler import Scheduler
from runtime.station import StationService
from runtime.store import Store
from tests.apps._acquisition_rig import APPS_DIR, FakeUplink

pytestmark = pytest.mark.looptime
TZ = ZoneInfo("Asia/Shanghai")
START = 1_717_200_000.0

STATION = """
[station]
id = "TA-T"
name = "test area"

[[branches]]
id = "F1"
breaker = "brk-F1"

[[branches]]
id = "F2"

[[devices]]
id = "brk-F1"
profile = "breaker"
port = "rs485-1"
unit_id = 1
branch = "F1"

[[boxes]]
id = "F1-X1"
branch = "F1"

[[boxes]]
id = "F1-X2"
branch = "F1"

[[boxes]]
id = "F2-X1"
branch = "F2"

[[meters]]
id = "m1"
address = "000000000001"
channel = "hplc"
phase = "A"
branch = "F1"
box = "F1-X1"

[[meters]]
id = "m2"
address = "000000000002"
port = "rs485-1"
phase = "B"
branch = "F1"
box = "F1-X1"

[[meters]]
id = "m3"
address = "000000000003"
port = "rs485-1"
phase = "A"
branch = "F2"
box = "F2-X1"

[[meters]]
id = "m5"
address = "000000000005"
port = "rs485-1"
phase = "C"
branch = "F1"
box = "F1-X2"

[[meters]]
id = "m4"
address = "000000000004"
channel = "hplc"
phase = "C"
branch = "F2"
box = "F2-X1"
"""


class FakeMetrology:
    def __init__(self, clock: LoopClock) -> None:
        self.clock = clock
        self.volts = {"a": 230.0, "b": 231.0, "c": 229.0}
        self.reads = 0

    async def snapshot(self) -> MetrologySnapshot:
        self.reads += 1
        v = PhaseValues(self.volts["a"], self.volts["b"], self.volts["c"])
        z = PhaseValues(0.0, 0.0, 0.0)
        return MetrologySnapshot(self.clock.now(), v, z, z, z, z, 50.0, 0.0, 0.0)


class FakeHal:
    def __init__(self, power: SimPowerMonitor, metrology: FakeMetrology) -> None:
        self._power = power
        self._metrology = metrology

    def power(self) -> SimPowerMonitor:
        return self._power

    def metrology(self) -> FakeMetrology:
        return self._metrology

    def rs485(self, name: str) -> Any:
        raise CapabilityMissing(name)

    def hplc(self) -> Any:
        raise CapabilityMissing("hplc")

    def slot(self, name: str) -> Any:
        raise CapabilityMissing(name)

    def watchdog(self) -> Any:
        raise CapabilityMissing("watchdog")


@dataclass
class Rig:
    clock: LoopClock
    bus: Bus
    store: Store
    uplink: FakeUplink
    supervisor: Supervisor
    power: SimPowerMonitor
    metrology: FakeMetrology
    station: StationService

    def reports(self) -> list[dict[str, Any]]:
        return [b for s, b in self.uplink.sent if s == "outage"]

    def latest(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for b in self.reports():
            out[b["id"]] = b
        return out

    def carrier(self, kind: str, *addresses: str) -> float:
        ts = self.clock.now()
        self.bus.publish(
            f"hplc/event/{kind}",
            {"kind": kind, "addresses": list(addresses), "ts": ts, "payload": "", "extra": {}},
        )
        return ts

    def health(self, meter: str, online: bool) -> None:
        self.bus.publish(
            f"meter/{meter}/health", {"online": online, "at": self.clock.now(), "port": "rs485-1"}
        )

    async def until(self, t: float) -> None:
        await self.clock.sleep(max(0.0, START + t - self.clock.now()))

    async def restart(self) -> None:
        await self.supervisor.stop_app("outage")
        self.supervisor.start_app("outage")
        async with self.clock.timeout(30):
            await self.supervisor.wait_state("outage", AppState.RUNNING)


@asynccontextmanager
async def rig(tmp_path: Path, config: dict[str, Any] | None = None) -> AsyncIterator[Rig]:
    (tmp_path / "station.toml").write_text(STATION, encoding="utf-8")
    clock = LoopClock(start=START)
    power = SimPowerMonitor(holdup_s=20.0, since=START)
    metrology = FakeMetrology(clock)
    async with AsyncExitStack() as stack:
        store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
        stack.push_async_callback(store.close)
        bus = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz=TZ, state=NamespacedStore(store, "scheduler"))
        uplink = FakeUplink()
        station = StationService(
            store=store, bus=bus, clock=clock, file=tmp_path / "station.toml", send=uplink.send
        )
        await station.start()
        factory = AppContextFactory(
            clock=clock,
            bus=bus,
            scheduler=scheduler,
            stores=lambda name: NamespacedStore(store, name),
            uplinks=lambda name: uplink,  # type: ignore[arg-type,return-value]
            hal=FakeHal(power, metrology),  # type: ignore[arg-type]
            terminal=TerminalInfo(id="TTU-T", tz=TZ, root=tmp_path),
            station=station,
        )
        supervisor = Supervisor(clock=clock, bus=bus, context_factory=factory)
        cfg = {
            "probe": False,
            "settle_s": 30.0,
            "metrology_interval_s": 1.0,
            **(config or {}),
        }
        supervisor.load(APPS_DIR, configs={"outage": cfg}, enabled=["outage"])
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        running = tg.create_task(supervisor.run(), name="test-supervisor")
        stack.push_async_callback(supervisor.stop)
        async with clock.timeout(30):
            assert (
                await supervisor.wait_state("outage", AppState.RUNNING, AppState.CRASHED) is AppState.RUNNING
            )
        try:
            yield Rig(clock, bus, store, uplink, supervisor, power, metrology, station)
        finally:
            assert supervisor.state("outage") is AppState.RUNNING, supervisor.status()
            await supervisor.stop()
            await running


async def test_last_gasp_box_report_goes_to_the_uplink_at_once_with_its_hal_receipt(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.until(10)
        r.health("m3", True)
        await r.until(98)
        r.health("m2", False)  # F1-X1's RS-485 meter stops answering; the others answer (after
        r.health("m3", True)  # the outage began: at most 3 s before the last gasp arrives)
        r.health("m5", True)
        await r.until(100)
        received = r.carrier("power_off", "000000000001")
        await r.clock.sleep(0.01)
        (report,) = r.reports()
        assert (report["level"], report["target"], report["status"]) == ("box", "F1-X1", "ongoing")
        assert report["meters"] == ["m1", "m2"] and report["id"].startswith("TTU-T-")
        assert report["evidence_received_at"] == received
        assert report["computed_at"] - received < 0.01  # judged and queued at once
        assert abs(report["start"] - (received - 63.0)) < 0.5
        async with r.clock.timeout(10):  # published once the state is saved (a store write)
            while (state := r.bus.retained("outage/state")) is None:
                await r.clock.sleep(0.01)
        assert state.payload["open"][0]["id"] == report["id"]


async def test_station_outage_is_a_last_gasp_within_the_hold_up_and_survives_the_restart(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        await r.until(100)
        lost_at = r.clock.now()
        r.power.set_supply(False, lost_at)
        r.metrology.volts = {"a": 0.0, "b": 0.0, "c": 0.0}
        await r.until(102.5)
        assert not r.reports()  # inside the judgement delay
        await r.until(103.2)
        first = r.reports()[0]
        (gasp,) = r.latest().values()  # one outage; the metrology unit's view joins its sources
        assert first["computed_at"] - lost_at <= 3.2 < r.power.holdup_s  # the last gasp, in time
        assert (gasp["level"], gasp["target"]) == ("station", "TA-T")
        assert gasp["meters"] == ["m1", "m2", "m3", "m4", "m5"] and gasp["start"] == lost_at
        assert gasp["sources"] == ["metrology", "power_monitor"]
        # the capacitor runs out: the app (the terminal) stops; mains comes back, it boots
        await r.until(120)
        await r.supervisor.stop_app("outage")
        await r.until(900)
        r.power.set_supply(True, r.clock.now())
        r.metrology.volts = {"a": 230.0, "b": 230.0, "c": 230.0}
        await r.until(930)
        r.supervisor.start_app("outage")
        async with r.clock.timeout(30):
            await r.supervisor.wait_state("outage", AppState.RUNNING)
        await r.until(935)
        last = r.latest()[gasp["id"]]
        assert last["status"] == "restored" and last["end"] is not None
        assert 120 - 60 <= last["end"] - START <= 930  # between the last heartbeat and the start-up
        assert len(r.latest()) == 1


async def test_phase_lost_at_the_transformer_is_a_phase_outage(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.until(50)
        r.metrology.volts["a"] = 0.0
        await r.until(52)
        assert not r.reports()
        await r.until(55)
        (rep,) = r.latest().values()
        assert (rep["level"], rep["target"], rep["meters"]) == ("phase", "A", ["m1", "m3"])
        r.metrology.volts["a"] = 228.0
        await r.until(60)
        assert r.latest()[rep["id"]]["status"] == "restored"


async def test_a_two_second_dip_of_the_terminal_supply_is_no_report(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.until(100)
        r.power.set_supply(False, r.clock.now())
        await r.until(102)
        r.power.set_supply(True, r.clock.now())
        await r.until(400)
        assert not r.reports()


async def test_hostile_messages_are_counted_not_fatal(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        for payload in (None, "x", {"kind": 3}, {"kind": "meter.power_down", "start": "yesterday"}, [1, 2]):
            r.bus.publish("meter/m1/event", payload)
        r.bus.publish("hplc/event/power_off", {"addresses": "000000000001", "ts": r.clock.now()})
        r.bus.publish("meter/m2/health", {"online": "maybe"})
        r.bus.publish("meter/m2/reading", [{"quantity": "voltage.a", "value": "high", "ts": None}])
        await r.until(20)
        reply = await r.bus.request("outage/state/get", None, timeout=5)
        assert reply["counters"]["rejected"] >= 8 and not r.reports()


async def test_members_not_heard_from_are_probed_through_acquisition(tmp_path: Path) -> None:
    async with rig(tmp_path, {"probe": True}) as r:
        asked: list[dict[str, Any]] = []

        def probe(payload: dict[str, Any]) -> dict[str, Any]:
            asked.append(payload)
            meters = payload["meters"]
            silent = [m for m in meters if m == "m2"]
            return {"at": r.clock.now(), "answered": [m for m in meters if m not in silent], "silent": silent}

        r.bus.serve("acquisition/probe", probe)
        await r.until(100)
        r.carrier("power_off", "000000000001")  # nothing heard from the others since the outage began
        await r.until(101)
        assert asked and set(asked[0]["meters"]) == {
            "m2",
            "m5",
        }  # the box and branch: phases are known and asked[0]["records"] is False
        (report,) = r.latest().values()
        assert (report["level"], report["target"], report["meters"]) == ("box", "F1-X1", ["m1", "m2"])


async def test_a_new_station_model_is_followed_at_once(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.until(50)
        model = r.station.model
        box = MeterBox("F3-X1", branch="F3")
        added = Meter("m9", "000000000009", channel="hplc", phase="B", branch="F3", box="F3-X1")
        new = dataclasses.replace(model, branches=(*model.branches, Branch("F3")), boxes=(*model.boxes, box),
                                  meters=(*model.meters, added))  # fmt: skip
        await r.station.replace(new, by="cloud")
        await r.until(100)
        r.carrier("power_off", "000000000009")  # a meter the terminal did not know at start-up
        await r.until(101)
        (rep,) = r.latest().values()
        assert (rep["level"], rep["target"], rep["meters"]) == ("branch", "F3", ["m9"])
