"""Acquisition app and the HPLC module: node-table sync with the station model (with retries) and
meter events that trigger an event read, in virtual time through ``FakeCarrier``
(tests/apps/_acquisition_rig.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from runtime.container.supervisor import AppState
from tests.apps._acquisition_rig import HPLC, Rig, local, rig

pytestmark = pytest.mark.looptime

BUSES = ("rs485-1", HPLC)
START = local(2026, 1, 10, 10, 2)
CONFIG = {"curve": False, "daily_freeze": False, "event_poll_interval_s": 86400, "hplc_timeout_s": 5.0}


def mixed(bus: str, index: int) -> str:
    return "dlt698" if index % 2 else "dlt645"


def hplc_archive(r: Rig) -> dict[str, str]:
    return {m.meter.address: m.protocol for m in r.station.buses[HPLC]}


async def test_the_module_follows_the_station_models_hplc_meters(tmp_path: Path) -> None:
    async with rig(
        tmp_path, start=START, buses=BUSES, meters_per_bus=4, protocol=mixed, config=CONFIG
    ) as r:  # fmt: skip
        await r.until(local(2026, 1, 10, 10, 3))
        wanted = hplc_archive(r)
        assert r.carrier.syncs == [(tuple(wanted), wanted)]
        assert set(wanted.values()) == {"dlt645", "dlt698"}
        keep = [m.archive_meter(baud=2400) for m in r.station.buses[HPLC][:2]]
        rs485 = [m.archive_meter(baud=2400) for m in r.station.buses["rs485-1"]]
        await r.use_meters(keep + rs485)
        await r.until(local(2026, 1, 10, 10, 4))
        assert r.carrier.syncs[-1] == (tuple(e.address for e in keep), {e.address: e.protocol for e in keep})
        # a change that leaves the HPLC meters as they are does not touch the module
        await r.use_meters(keep + rs485[1:])
        await r.until(local(2026, 1, 10, 10, 4, 30))
        assert len(r.carrier.syncs) == 2
        # no HPLC meters left: the module's table is emptied, not left with the old nodes
        await r.use_meters(rs485)
        await r.until(local(2026, 1, 10, 10, 5))
        assert r.carrier.syncs[-1] == ((), {})
        assert len(r.carrier.syncs) == 3
        assert (await r.stats())["counters"]["hplc_syncs"] == 3


async def test_a_failing_sync_is_logged_once_retried_and_the_app_keeps_reading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with rig(
        tmp_path, start=START, buses=BUSES, meters_per_bus=3, protocol=mixed, config=CONFIG
    ) as r:  # fmt: skip
        await r.until(local(2026, 1, 10, 10, 3))
        r.carrier.sync_failures = 3
        entries = [m.archive_meter(baud=2400) for ms in r.station.buses.values() for m in ms]
        replaced_at = r.clock.now()
        await r.use_meters(entries[:-1])  # one HPLC meter fewer: the module's table must follow
        await r.until(replaced_at + 30 + 60 + 120 + 5)  # backoff 30, 60, 120 s
        assert len(r.carrier.syncs) == 1 + 4
        warned = [rec for rec in caplog.records if "HPLC archive sync failed" in rec.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        assert any("HPLC archive sync works again" in rec.getMessage() for rec in caplog.records)
        counters = (await r.stats())["counters"]
        assert counters["hplc_sync_failures"] == 3 and counters["hplc_syncs"] == 2
        assert r.supervisor.state("acquisition") is AppState.RUNNING
        slot = local(2026, 1, 10, 10, 5)  # the cycles went on meanwhile, on both transports
        for m in r.on(HPLC)[:-1] + r.on("rs485-1"):
            assert len(await r.readings(m, "energy.active.import.total", slot)) == 1, m


async def test_meter_event_triggers_an_event_read_before_the_next_poll(tmp_path: Path) -> None:
    async with rig(
        tmp_path, start=START, buses=BUSES, meters_per_bus=3, protocol=mixed, config=CONFIG
    ) as r:  # fmt: skip
        assert r.bus is not None
        await r.until(local(2026, 1, 10, 10, 3))
        target = r.on(HPLC)[1]  # a DL/T 698.45 meter
        meter = r.meter(target)
        off_at = r.clock.now()
        meter.power_off(off_at)
        await r.until(off_at + 600)
        meter.power_on(r.clock.now())
        # hostile or foreign events: counted, ignored, nothing read
        for payload in ("junk", {"addresses": 5}, {"addresses": []}, {"addresses": ["999999999998"]}):
            r.bus.publish("hplc/event/meter_event", payload)
        await r.until(r.clock.now() + 30)
        assert await r.store.query_events(kind="meter.power_down") == []
        reported = r.clock.now()
        event = {"kind": "meter_event", "addresses": [meter.address.lower()], "ts": reported, "payload": ""}
        r.bus.publish("hplc/event/meter_event", event)
        r.bus.publish("hplc/event/meter_event", event)  # the module's repeat while the read runs
        await r.until(reported + 60)
        events = await r.store.query_events(kind="meter.power_down")
        assert [e.source for e in events] == [target]
        assert abs(events[0].start - off_at) < 1
        up = [b for s, b in r.uplink.sent if s == "events"]
        assert [(b["kind"], b["source"]) for b in up] == [("meter.power_down", target)]
        counters = (await r.stats())["counters"]
        assert counters["carrier_events"] == 6 and counters["carrier_events_ignored"] == 4
        assert counters["carrier_event_reads"] == 1
        assert r.supervisor.state("acquisition") is AppState.RUNNING
