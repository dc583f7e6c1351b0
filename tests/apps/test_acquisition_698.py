"""Acquisition app with DL/T 698.45 meters on RS-485, through the real supervisor, in virtual time.

The same assertions as the DL/T 645 tests of ``test_acquisition.py`` (realtime snapshot,
15-min curve with catch-up after comms loss, daily freeze read-back, power-down and relay
events), with every meter of the two buses speaking DL/T 698.45; the meters fragment
replies longer than their declared APDU size, which the terminal reassembles. Expected
values come from the virtual meters, never from the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from runtime.model import Quality
from tests.apps._acquisition_rig import ENERGY, kwh, local, rig

pytestmark = pytest.mark.looptime


def all_698(bus: str, index: int) -> str:
    return "dlt698"


async def test_realtime_snapshot_of_698_meters_matches_every_meter(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2), protocol=all_698) as r:
        slot = local(2026, 1, 10, 10, 5)
        await r.until(slot - 1)
        before = {m.id: kwh(m.meter.registers(r.clock.now()).forward[0]) for m in r.station.meters}
        await r.until(slot + 60)
        after = {m.id: kwh(m.meter.registers(r.clock.now()).forward[0]) for m in r.station.meters}
        for meter_id in r.ids:
            (energy,) = await r.readings(meter_id, ENERGY, slot)
            assert before[meter_id] <= energy.value <= after[meter_id], meter_id
            assert energy.unit == "kWh" and energy.quality is Quality.GOOD
            (volts,) = await r.readings(meter_id, "voltage.a", slot)
            assert 180.0 < volts.value < 260.0
            assert len(await r.readings(meter_id, "current.a", slot)) == 1
        stats = await r.stats()
        assert stats["station"]["success_rate"] == 1.0
        assert stats["station"]["meters_online"] == stats["station"]["meters_total"] == 6
        # NormalList: one exchange per meter for all realtime items (645 needs one per item)
        assert stats["station"]["cycle_reads"] == 6


async def test_curve_of_698_meters_lands_in_store_with_meter_values(tmp_path: Path) -> None:
    config = {"realtime_items": ["frequency"]}
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2), protocol=all_698, config=config) as r:
        await r.until(local(2026, 1, 10, 11, 2))
        points = [local(2026, 1, 10, 10, m) for m in (15, 30, 45)] + [local(2026, 1, 10, 11, 0)]
        for meter_id in r.ids:
            recorded = {p.ts: p for p in r.meter(meter_id).curve}
            for ts in points:
                expected = recorded[ts]
                (energy,) = await r.readings(meter_id, ENERGY, ts)
                assert energy.value == kwh(expected.forward_total) and energy.quality is Quality.GOOD
                (volts,) = await r.readings(meter_id, "voltage.a", ts)
                assert volts.value == round(expected.instant.voltage[0] or 0.0, 1)
                (power,) = await r.readings(meter_id, "power.active.total", ts)
                assert power.value == round(expected.instant.total_power_kw, 4)


async def test_comms_loss_of_698_meter_is_caught_up_in_one_fragmented_read(tmp_path: Path) -> None:
    config = {"realtime_items": ["frequency"]}
    async with rig(
        tmp_path, start=local(2026, 1, 10, 10, 2), protocol=all_698, config=config, max_apdu_698=120
    ) as r:
        lost = r.ids[1]
        bus = r.buses[r.station.buses["rs485-1"][1].bus]
        responder = bus.responders698[r.station.buses["rs485-1"][1].meter.address]
        await r.until(local(2026, 1, 10, 10, 7))
        r.meter(lost).faults.miss_rate = 1.0
        await r.until(local(2026, 1, 10, 11, 7))
        missed = [local(2026, 1, 10, 10, m) for m in (15, 30, 45)] + [local(2026, 1, 10, 11, 0)]
        for ts in missed:
            assert await r.readings(lost, ENERGY, ts) == []
        assert (await r.stats())["meters"][lost]["online"] is False
        r.meter(lost).faults.miss_rate = 0.0
        transfers = responder.transfers
        await r.until(local(2026, 1, 10, 11, 17))
        recorded = {p.ts: p for p in r.meter(lost).curve}
        for ts in missed:
            (energy,) = await r.readings(lost, ENERGY, ts)
            assert energy.quality is Quality.CATCH_UP, ts
            assert energy.value == kwh(recorded[ts].forward_total)
        # the 4 missed points came back in one request, as one fragmented reply
        assert responder.transfers == transfers + 1 and responder.fragments_sent >= 2
        stats = await r.stats()
        assert stats["counters"]["curve_points_caught_up"] == len(missed)
        assert stats["meters"][lost]["online"] is True
        assert all(stats["meters"][m]["success_rate"] == 1.0 for m in r.ids if m != lost)


async def test_lost_fragment_is_retried_by_the_app(tmp_path: Path) -> None:
    config = {"realtime_items": ["frequency"]}
    async with rig(
        tmp_path, start=local(2026, 1, 10, 10, 2), protocol=all_698, config=config, max_apdu_698=120
    ) as r:
        member = r.station.buses["rs485-2"][0]
        responder = r.buses["rs485-2"].responders698[member.meter.address]
        await r.until(local(2026, 1, 10, 10, 7))
        member.meter.faults.miss_rate = 1.0
        await r.until(local(2026, 1, 10, 10, 52))
        member.meter.faults.miss_rate = 0.0
        responder.lose_fragment(1)  # the catch-up reply loses its second piece once
        await r.until(local(2026, 1, 10, 11, 2))
        assert responder.fragments_lost == 1
        recorded = {p.ts: p for p in member.meter.curve}
        for ts in [local(2026, 1, 10, 10, m) for m in (15, 30, 45)]:
            (energy,) = await r.readings(member.id, ENERGY, ts)
            assert energy.quality is Quality.CATCH_UP and energy.value == kwh(recorded[ts].forward_total)
        stats = await r.stats()
        assert stats["counters"]["protocol_errors"] >= 1  # the FragmentError, counted
        assert (
            stats["counters"]["curve_points_caught_up"] == 3 and stats["counters"]["curve_points_lost"] == 0
        )


async def test_daily_freeze_of_698_meters_equals_meter_freeze(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 23, 50), protocol=all_698) as r:
        midnight = local(2026, 1, 11, 0, 0)
        await r.until(midnight + 20 * 60)
        for m in r.station.meters:
            freeze = m.meter.daily_freezes[0]
            assert freeze.ts == midnight
            (frozen,) = await r.readings(m.id, "daily." + ENERGY, midnight)
            assert frozen.value == kwh(freeze.registers.forward[0]) and frozen.quality is Quality.GOOD
            tariffs = [
                await r.readings(m.id, f"daily.energy.active.import.t{k}", midnight) for k in (1, 2, 3, 4)
            ]
            assert [t[0].value for t in tariffs] == [kwh(x) for x in freeze.registers.forward[1:]]
        assert (await r.stats())["station"]["daily_success_rate"] == 1.0


async def test_power_down_and_relay_trip_of_698_meters_become_events(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2), protocol=all_698) as r:
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
        relay = await r.store.query_events(kind="meter.relay_open")
        assert [e.source for e in relay] == [trip_id]
        assert on_at <= relay[0].start <= on_at + 1800
        r.meter(trip_id).close(r.clock.now())
        await r.until(local(2026, 1, 10, 11, 40))
        closed = await r.store.query_events(kind="meter.relay_closed")
        assert [e.source for e in closed] == [trip_id]
        up = [b for s, b in r.uplink.sent if s == "events"]
        assert {(b["kind"], b["source"]) for b in up} == {
            ("meter.power_down", off_id),
            ("meter.relay_open", trip_id),
            ("meter.relay_closed", trip_id),
        }
