"""Acquisition app through the real supervisor, against a virtual station in virtual time.

Two buses x 3 DL/T 645 virtual meters (``sim.station``) on the rig of
``tests/apps/_acquisition_rig.py``: ``MeterBus.serve_link`` on in-memory link pairs, the
app in a real ``Supervisor`` with a real ``Store`` and a recording fake uplink. Expected
values come from the virtual meters, never from the code under test.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from protocols.station import PatchOp, StationError
from runtime.model import Quality
from sim.archive import read_station
from sim.meters.model import PowerDown
from tests.apps._acquisition_rig import ENERGY, kwh, local, rig

pytestmark = pytest.mark.looptime

BUSES = ("rs485-1", "rs485-2")  # the rig's default station


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
            # the reverse block too (PV export: line loss counts it into the supply, GRID.md §2)
            (back,) = await r.readings(m.id, "daily.energy.active.export.total", midnight)
            assert back.value == kwh(freeze.registers.reverse[0])
        assert (await r.stats())["station"]["daily_success_rate"] == 1.0


async def test_a_first_start_on_midnight_reads_back_its_opening_point_and_freeze(tmp_path: Path) -> None:
    # a simulated run starts on the midnight: the 00:00 slots are never scheduled (slots come after
    # the start), yet the day's opening register is what line loss and billing start from
    midnight = local(2026, 1, 11, 0, 0)
    async with rig(tmp_path, start=midnight, config={"realtime_items": ["frequency"]}) as r:
        await r.until(midnight + 16 * 60)
        for m in r.station.meters:
            (point,) = await r.readings(m.id, ENERGY, midnight)
            recorded = {p.ts: p for p in m.meter.curve}[midnight]
            assert point.value == kwh(recorded.forward_total) and point.quality is Quality.CATCH_UP
            (frozen,) = await r.readings(m.id, "daily." + ENERGY, midnight)
            assert m.meter.daily_freezes[0].ts == midnight
            assert frozen.value == kwh(m.meter.daily_freezes[0].registers.forward[0])
        counters = (await r.stats())["counters"]
        assert counters["curve_points_caught_up"] == len(r.ids)
        assert counters["freezes_caught_up"] == len(r.ids)


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


async def test_a_replaced_model_is_followed_at_once(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2)) as r:
        keep = [m.archive_meter(baud=2400) for m in r.station.buses["rs485-1"]]
        await r.use_meters(keep)
        slot = local(2026, 1, 10, 10, 10)
        await r.until(slot + 60)
        for m in r.station.meters:
            rows = await r.readings(m.id, ENERGY, slot)
            assert len(rows) == (1 if m.bus == "rs485-1" else 0), m.id
        assert set((await r.stats())["meters"]) == {e.id for e in keep}


async def test_a_meter_added_moved_or_removed_is_read_from_the_next_cycle(tmp_path: Path) -> None:
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2)) as r:
        one, two = r.station.buses["rs485-1"][0], r.station.buses["rs485-2"][0]
        # the archive lists meter `one` on the wrong port and lacks `two`: neither is read
        wrong = dataclasses.replace(one.archive_meter(baud=2400), port="rs485-2")
        others = [m.archive_meter(baud=2400) for m in r.station.meters if m.id not in (one.id, two.id)]
        await r.use_meters([wrong, *others])
        before = local(2026, 1, 10, 10, 5)
        await r.until(before + 60)
        assert await r.readings(one.id, ENERGY, before) == []
        assert await r.readings(two.id, ENERGY, before) == []
        # corrected and added through patches: both are read at the next realtime slot
        await r.patch(
            PatchOp("set", "meter", one.id, "port", "rs485-1"),
            PatchOp(
                "add",
                "meter",
                two.id,
                None,
                {"id": two.id, "address": two.meter.address, "protocol": two.protocol, "port": "rs485-2"},
            ),
            PatchOp("remove", "meter", others[0].id),
        )
        after = local(2026, 1, 10, 10, 10)
        await r.until(after + 60)
        assert len(await r.readings(one.id, ENERGY, after)) == 1
        assert len(await r.readings(two.id, ENERGY, after)) == 1
        assert await r.readings(others[0].id, ENERGY, after) == []
        assert others[0].id not in (await r.stats())["meters"]


def test_bad_station_file_names_file_and_key_path(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text('[[meters]]\nid = "m-1"\naddress = "00000000000X"\nport = "rs485-1"\n')
    with pytest.raises(StationError) as err:
        read_station(path)
    assert err.value.problems == (("meters[0].address", "'00000000000X' is not 12 BCD digits"),)
    assert str(path) in str(err.value)


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


# ---------------------------------------------------------------------------------------- clocks


async def test_each_meters_clock_is_read_before_the_time_sync_and_published(tmp_path: Path) -> None:
    """The daily sync first reads every meter's clock (DL/T 645 and 698.45): how far off it was
    and when the broadcast put it right go out on ``meter/<id>/clock`` for the apps that line
    meters' records up (topology drops the points a wrong clock stamped)."""

    def mixed(bus: str, k: int) -> str:
        return "dlt698" if bus == "rs485-2" else "dlt645"

    config = {"time_sync": True, "time_sync_at": "10:30"}
    async with rig(tmp_path, start=local(2026, 1, 10, 10, 2), protocol=mixed, config=config) as r:
        fast, slow = r.on("rs485-1")[0], r.on("rs485-2")[1]
        r.meter(fast).skew_s = 420.0
        r.meter(slow).skew_s = -200.0
        await r.until(local(2026, 1, 10, 10, 35))
        assert r.bus is not None
        told = {m: r.bus.retained(f"meter/{m}/clock") for m in r.ids}
        assert all(msg is not None for msg in told.values()), told
        body = {m: msg.payload for m, msg in told.items() if msg is not None}
        assert body[fast]["offset_s"] == pytest.approx(420.0, abs=2.0)
        assert body[slow]["offset_s"] == pytest.approx(-200.0, abs=2.0)
        assert all(abs(body[m]["offset_s"]) < 2.0 for m in r.ids if m not in (fast, slow))
        sync = body[fast]["corrected_at"]
        assert local(2026, 1, 10, 10, 30) <= body[fast]["ts"] <= sync < local(2026, 1, 10, 10, 35)
        for m in (fast, slow):  # and the broadcast after the reads did correct them
            assert abs(r.meter(m).meter_time(r.clock.now()) - r.clock.now()) < 2.0
        stats = (await r.stats())["counters"]
        assert stats["clocks_off"] == 1  # 420 s is past the 300 s a meter is logged for
        assert stats["clocks_set"] == 1  # a broadcast corrects at most 5 minutes: 420 s is set point to point
