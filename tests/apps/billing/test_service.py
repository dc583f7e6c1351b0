"""The billing app in a real Supervisor next to acquisition, virtual meters on memory-link RS-485
buses (DL/T 645 and 698.45), in virtual time: the prepaid cycle through the real protocol stack.
A curve point is read at hh:15, charged, and the relay acted on before the next point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from hal.interfaces import SerialSettings
from hal.rs485 import Rs485Port
from hal.sim import memory_link_pair
from protocols import billing
from protocols.ledger import Record, audit
from protocols.station import ARCHIVE, PatchOp
from runtime.bus import Bus
from runtime.container import AppContextFactory, NamespacedStore, Supervisor, TerminalInfo
from runtime.container.supervisor import AppState
from runtime.scheduler import Scheduler
from runtime.station import StationService
from runtime.store import Store
from sim.loads import ConstantProfile
from sim.meters import MeterBus
from sim.station import Station, build_station

from .._acquisition_rig import APPS_DIR, BASE_CONFIG, FakeHal, FakeUplink
from .rig import BANK, TERMINAL, UTILITY, local, signed_contract, signed_topup

pytestmark = pytest.mark.looptime

BUS = "rs485-1"


@dataclass
class AppRig:
    clock: LoopClock
    station: Station
    store: Store
    uplink: FakeUplink
    supervisor: Supervisor
    bus: Bus
    model: StationService

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.uplink.commands[name](args))

    def ledger_sent(self) -> list[Record]:
        out = []
        for stream, body in self.uplink.sent:
            if stream == "billing" and body.get("type") == "ledger":
                out.extend(Record.from_json(r) for r in body["records"])
        return out


@asynccontextmanager
async def app_rig(tmp_path: Path, *, start: float) -> AsyncIterator[AppRig]:
    clock = LoopClock(start=start)
    station = build_station(buses=[BUS], meters_per_bus=3, seed=5, start=clock.now())
    station.buses[BUS][1].protocol = "dlt698"
    for m in station.buses[BUS]:
        m.meter.profile = ConstantProfile(16.0)  # 4 kWh per 15 min
    archive = tmp_path / "archive.toml"
    station.write_archive(archive)
    uplink = FakeUplink()
    async with AsyncExitStack() as stack:
        store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
        stack.push_async_callback(store.close)
        bus = Bus(clock=clock)
        scheduler = Scheduler(
            clock=clock, tz=local.__globals__["TZ"], state=NamespacedStore(store, "scheduler")
        )
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        settings = SerialSettings()
        meters_end, terminal_end = memory_link_pair(settings, names=(f"{BUS}-meters", BUS))
        meter_bus = MeterBus(
            [m.meter for m in station.buses[BUS]],
            clock=clock,
            settings=settings,
            protocols=station.protocols(BUS),
        )
        port = await stack.enter_async_context(Rs485Port(terminal_end, clock=clock, name=BUS))
        serving = tg.create_task(meter_bus.serve_link(meters_end), name="test-bus")
        stack.callback(serving.cancel)
        info = TerminalInfo(id=TERMINAL, tz=local.__globals__["TZ"], root=tmp_path, rs485_ports=(BUS,))
        model = StationService(store=store, bus=bus, clock=clock, file=archive, known_ports=(BUS,))
        await model.start()
        factory = AppContextFactory(
            clock=clock,
            bus=bus,
            scheduler=scheduler,
            stores=lambda name: NamespacedStore(store, name),
            uplinks=lambda name: uplink,  # type: ignore[arg-type,return-value]
            hal=FakeHal({BUS: port}),
            terminal=info,
            station=model,
        )
        supervisor = Supervisor(clock=clock, bus=bus, context_factory=factory)
        configs = {
            "acquisition": BASE_CONFIG,
            "billing": {
                "utility_keys": [billing.public_key_text(UTILITY.public_key())],
                "bank_keys": [billing.public_key_text(BANK.public_key())],
                "relay_retry_delay_s": 2.0,
            },
        }
        supervisor.load(APPS_DIR, configs=configs, enabled=["acquisition", "billing"])
        scheduling = tg.create_task(scheduler.run(), name="test-scheduler")
        stack.callback(scheduling.cancel)
        supervising = tg.create_task(supervisor.run(), name="test-supervisor")
        stack.push_async_callback(supervisor.stop)
        async with clock.timeout(60):
            for name in ("acquisition", "billing"):
                state = await supervisor.wait_state(name, AppState.RUNNING, AppState.CRASHED)
                assert state is AppState.RUNNING, supervisor.status()
        try:
            yield AppRig(clock, station, store, uplink, supervisor, bus, model)
        finally:
            assert supervisor.state("billing") is AppState.RUNNING, supervisor.status()
            await supervisor.stop()
            await supervising


async def test_prepaid_cycle_through_the_wire(tmp_path: Path) -> None:
    async with app_rig(tmp_path, start=local(2026, 3, 2, 7, 50)) as r:
        installed = await r.command(
            "billing.contract", {"document": signed_contract(effective_from="2026-01-01T00:00")}
        )
        assert installed["status"] == "installed" and installed["customers"] == 3
        meters = r.station.buses[BUS]
        for i, m in enumerate(meters):
            reply = await r.command(
                "billing.topup", {"document": signed_topup(f"T{i}", m.customer.id, "22.00")}
            )
            assert reply["status"] == "applied"
        first = meters[0]
        # 4 kWh x 0.568 = 2.272 元 per interval from 08:00: 22 - 2.272 k <= -10 first at k = 15 (11:45)
        await r.clock.sleep_until(local(2026, 3, 2, 11, 44))
        assert all(m.meter.relay_closed for m in meters)
        await r.clock.sleep_until(local(2026, 3, 2, 11, 59))
        for m in meters:  # DL/T 645 and 698.45 meters alike: tripped within the 11:45 cycle
            assert not m.meter.relay_closed, m.id
            assert local(2026, 3, 2, 11, 45) <= (m.meter.relay_changed_at or 0) < local(2026, 3, 2, 12, 0)
            assert m.meter.alarm
        registers = first.meter.registers(r.clock.now()).forward[0]
        await r.clock.sleep_until(local(2026, 3, 2, 12, 10))
        assert first.meter.registers(r.clock.now()).forward[0] == registers  # the load is cut
        reply = await r.command("billing.topup", {"document": signed_topup("T9", first.customer.id, "40.00")})
        assert reply["status"] == "applied"
        await r.clock.sleep_until(local(2026, 3, 2, 12, 13))
        first.meter.settle(r.clock.now())
        assert (
            first.meter.relay_closed and not first.meter.alarm
        )  # close allowed, button pressed a minute later
        assert not meters[1].meter.relay_closed  # no top-up, stays off
        await r.clock.sleep_until(local(2026, 3, 2, 12, 31))
        records = await r.store.ledger.records()
        relay = [
            (x.body["customer"], x.body["command"], x.body["result"]) for x in records if x.kind == "relay"
        ]
        c0 = first.customer.id
        assert [c for c in relay if c[0] == c0] == [
            (c0, "alarm", "ok"),
            (c0, "alarm", "ok"),
            (c0, "alarm", "ok"),
            (c0, "trip", "ok"),
            (c0, "alarm_release", "ok"),
            (c0, "close_allowed", "ok"),
            (c0, "observed", "ok"),
        ]
        sent = r.ledger_sent()
        assert [x.seq for x in sent] == list(range(1, len(sent) + 1)) and len(sent) >= len(records) - 2
        assert audit(sent).ok
        # the retained summary on the bus is the status without its row a customer
        retained = r.bus.retained("billing/status")
        status = await r.command("billing.status", {})
        assert retained is not None and set(retained.payload) == set(status) - {"customers"}
        assert retained.payload["ledger"] == status["ledger"] and len(status["customers"]) == len(meters)


async def test_the_customers_follow_the_station_model(tmp_path: Path) -> None:
    """A customer change in the station model (a new customer moves in behind meter 2; meter 3 gets a
    branch-unit role) is billed from then on, without a restart."""
    async with app_rig(tmp_path, start=local(2026, 3, 2, 7, 50)) as r:
        meters = r.station.buses[BUS]
        before = await r.command("billing.status", {})
        assert [c["meter_id"] for c in before["customers"]] == [m.id for m in meters]
        await r.model.patch(
            [
                PatchOp("set", "meter", meters[1].id, "customer", "NEW-1"),
                PatchOp("set", "meter", meters[2].id, "kind", "branch_unit"),
            ],
            provenance=ARCHIVE,
            by="test",
        )
        await r.clock.sleep(1.0)
        after = await r.command("billing.status", {})
        assert [(c["customer_id"], c["meter_id"]) for c in after["customers"]] == [
            (meters[0].customer.id, meters[0].id),
            ("NEW-1", meters[1].id),
        ]
