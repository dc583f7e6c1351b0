"""Acquisition app with HPLC meters (DL/T 645 and 698.45) through a fake carrier module, in virtual time.

The station has one RS-485 bus and an ``hplc`` bus whose meters answer through
``FakeCarrier`` (per-node latency, hard concurrency limit; see ``_acquisition_rig``).
Expected values come from the virtual meters and the carrier's own records.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from protocols import dlt645, dlt698
from runtime.model import Quality
from tests.apps._acquisition_rig import ENERGY, HPLC, kwh, local, rig

pytestmark = pytest.mark.looptime

BUSES = ("rs485-1", HPLC)
LIMIT = 3


def mixed(bus: str, index: int) -> str:
    return "dlt698" if index % 2 else "dlt645"


def only_realtime(**extra: object) -> dict[str, object]:
    return {
        "curve": False,
        "daily_freeze": False,
        "event_poll_interval_s": 86400,
        "hplc_timeout_s": 5.0,
        "hplc_concurrency": LIMIT,
        **extra,
    }


async def test_hplc_readings_arrive_with_module_concurrency(tmp_path: Path) -> None:
    async with rig(
        tmp_path, start=local(2026, 1, 10, 10, 2), buses=BUSES, meters_per_bus=5, protocol=mixed,
        config=only_realtime(), hplc_limit=LIMIT,
    ) as r:  # fmt: skip
        slot = local(2026, 1, 10, 10, 5)
        await r.until(slot - 1)
        before = {m: kwh(r.meter(m).registers(r.clock.now()).forward[0]) for m in r.on(HPLC)}
        await r.until(slot + 120)
        for meter_id in r.on(HPLC):
            (energy,) = await r.readings(meter_id, ENERGY, slot)
            assert energy.value >= before[meter_id] and energy.quality is Quality.GOOD
            assert energy.value - before[meter_id] < 0.05, meter_id  # read within the cycle
            (volts,) = await r.readings(meter_id, "voltage.a", slot)
            assert 180.0 < volts.value < 260.0
        carrier = r.carrier
        assert carrier.peak > 1  # the module's parallelism is used ...
        assert carrier.peak <= LIMIT and carrier.violations == 0  # ... and never exceeded
        assert set(carrier.transactions) == {r.station.meter(m).address for m in r.on(HPLC)}
        stats = await r.stats()
        assert stats["station"]["success_rate_by_transport"] == {HPLC: 1.0, "rs485-1": 1.0}
        assert {stats["meters"][m]["transport"] for m in r.on(HPLC)} == {HPLC}


async def test_dead_hplc_node_is_logged_once_each_way_and_counted_by_transport(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with rig(
        tmp_path, start=local(2026, 1, 10, 10, 2), buses=BUSES, meters_per_bus=5, protocol=mixed,
        config=only_realtime(), hplc_limit=LIMIT,
    ) as r:  # fmt: skip
        dead = r.on(HPLC)[2]
        node = r.station.meter(dead).address
        await r.until(local(2026, 1, 10, 10, 7))  # after the 10:05 cycle
        r.meter(dead).faults.miss_rate = 1.0
        await r.until(local(2026, 1, 10, 10, 17))  # the 10:10 and 10:15 cycles fail
        assert (await r.stats())["meters"][dead]["online"] is False
        r.meter(dead).faults.miss_rate = 0.0
        await r.until(local(2026, 1, 10, 10, 32))  # 10:20, 10:25, 10:30 succeed
        for ts in (local(2026, 1, 10, 10, m) for m in (10, 15)):
            assert await r.readings(dead, ENERGY, ts) == []
        (back,) = await r.readings(dead, ENERGY, local(2026, 1, 10, 10, 20))
        assert back.quality is Quality.GOOD

        def lines(text: str) -> list[str]:
            return [rec.getMessage() for rec in caplog.records if text in rec.getMessage()]

        assert len(lines(f"meter {dead} ")) == 2  # once not answering, once answering again
        assert len(lines(f"{dead} (")) == 1 and len(lines(f"meter {dead} answers again")) == 1
        assert len(lines(f"node {node} unavailable")) == 1 and len(lines(f"node {node} recovered")) == 1
        stats = await r.stats()
        cycles, meters = 6, len(r.on(HPLC))  # 10:05 .. 10:30
        rates = stats["station"]["success_rate_by_transport"]
        assert rates[HPLC] == pytest.approx((cycles * meters - 2) / (cycles * meters))
        assert rates["rs485-1"] == 1.0
        assert r.carrier.violations == 0


async def test_time_sync_goes_out_as_carrier_broadcast(tmp_path: Path) -> None:
    config = only_realtime(time_sync=True, time_sync_at="10:30")
    async with rig(
        tmp_path, start=local(2026, 1, 10, 10, 2), buses=BUSES, meters_per_bus=4, protocol=mixed,
        config=config, hplc_limit=LIMIT,
    ) as r:  # fmt: skip
        for m in r.on(HPLC):
            r.meter(m).skew_s = 75.0
        await r.until(local(2026, 1, 10, 10, 31))
        frames = r.carrier.broadcasts
        assert len(frames) == 2  # one per protocol spoken on the carrier
        f645 = [f for f in dlt645.Framer().feed(frames[0] + frames[1]) if isinstance(f, dlt645.Frame)]
        f698 = [f for raw in frames for f in dlt698.Framer().feed(raw) if isinstance(f, dlt698.Frame)]
        assert [f.address for f in f645] == [dlt645.BROADCAST_ADDRESS]
        assert [f.sa_type for f in f698] == [dlt698.AddressType.BROADCAST]
        now = r.clock.now()
        for m in r.on(HPLC):
            assert abs(r.meter(m).meter_time(now) - now) < 2.0, m


async def test_board_without_hplc_reports_hplc_meters_unreachable_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with rig(
        tmp_path, start=local(2026, 1, 10, 10, 2), buses=BUSES, meters_per_bus=3, protocol=mixed,
        config=only_realtime(time_sync=True, time_sync_at="10:20"), hplc_present=False,
    ) as r:  # fmt: skip
        await r.until(local(2026, 1, 10, 10, 31))
        warned = [rec for rec in caplog.records if "HPLC meters are unreachable" in rec.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        stats = await r.stats()
        assert stats["counters"]["unreachable_meters"] == len(r.on(HPLC))
        assert stats["station"]["meters_total"] == 6 and stats["station"]["meters_online"] == 3
        for m in r.on(HPLC):
            assert stats["meters"][m]["online"] is None  # never read
        for m in r.on("rs485-1"):
            assert len(await r.readings(m, ENERGY, local(2026, 1, 10, 10, 30))) == 1
        assert stats["station"]["success_rate_by_transport"]["rs485-1"] == 1.0
