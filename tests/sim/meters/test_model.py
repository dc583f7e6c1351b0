"""VirtualMeter: energy integration, tariffs, curve, freezes, power-down, relay, faults."""

from __future__ import annotations

import calendar
import tracemalloc
from collections import deque

import numpy as np
import pytest
from scipy import integrate

from sim.loads import ConstantProfile, HouseholdProfile
from sim.meters.model import (
    DEFAULT_TOU,
    FLAT,
    PEAK,
    REPORT_BIT_POWER_DOWN,
    SHARP,
    SW3_RELAY_OPEN,
    VALLEY,
    CurveMemory,
    CurvePoint,
    Instant,
    RelayRefused,
    VirtualMeter,
)

# 2024-03-04 00:00 local (UTC+8) is a Monday; as UTC epoch:
MIDNIGHT = calendar.timegm((2024, 3, 3, 16, 0, 0)) * 1.0
ADDR = "000000000001"


def test_energy_matches_integral_of_profile() -> None:
    profile = HouseholdProfile.for_customer(7, 3)
    t0 = MIDNIGHT + 1234.5  # off-grid start on purpose
    t1 = t0 + 2 * 86400 + 777.0
    meter = VirtualMeter(ADDR, profile=profile, start=t0)
    got = meter.registers(t1).forward[0]
    grid = np.linspace(t0, t1, 400_001)
    want = float(integrate.trapezoid(profile.power_kw_array(grid), grid)) / 3600.0
    assert got == pytest.approx(want, rel=1e-3)
    assert got > 5.0  # a household uses several kWh in two days


def test_lazy_advance_is_path_independent() -> None:
    profile = HouseholdProfile.for_customer(7, 4)
    a = VirtualMeter(ADDR, profile=profile, start=MIDNIGHT)
    b = VirtualMeter(ADDR, profile=profile, start=MIDNIGHT)
    for k in range(1, 200):
        b.advance(MIDNIGHT + k * 431.7)
    end = MIDNIGHT + 200 * 431.7
    assert a.registers(end).forward == pytest.approx(
        b.registers(end).forward, rel=1e-6
    )  # midpoint rule on split steps
    assert [p.ts for p in a.curve] == [p.ts for p in b.curve]


def test_tariffs_split_by_local_hour() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT)
    reg = meter.registers(MIDNIGHT + 86400)
    hours = {tariff: DEFAULT_TOU.count(tariff) for tariff in (SHARP, PEAK, FLAT, VALLEY)}
    assert reg.forward[1:] == pytest.approx([hours[SHARP], hours[PEAK], hours[FLAT], hours[VALLEY]])
    assert reg.forward[0] == pytest.approx(24.0)
    # 06:30-07:30 local is half valley, half flat
    m2 = VirtualMeter(ADDR, profile=ConstantProfile(kw=2.0), start=MIDNIGHT + 6.5 * 3600)
    r2 = m2.registers(MIDNIGHT + 7.5 * 3600)
    assert r2.forward[VALLEY] == pytest.approx(1.0)
    assert r2.forward[FLAT] == pytest.approx(1.0)


def test_tariff_follows_the_meters_own_clock() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT + 6 * 3600, skew_s=3600)
    reg = meter.registers(MIDNIGHT + 7 * 3600)  # true 06-07 is 07-08 on the meter: flat, not valley
    assert reg.forward[FLAT] == pytest.approx(1.0)
    assert reg.forward[VALLEY] == pytest.approx(0.0)


def test_curve_points_and_daily_freezes_on_boundaries() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=4.0), start=MIDNIGHT - 100)
    meter.advance(MIDNIGHT + 2 * 86400 + 10)
    ts = [p.ts for p in meter.curve]
    assert ts[0] == MIDNIGHT and ts[-1] == MIDNIGHT + 2 * 86400
    assert np.all(np.diff(ts) == 900)
    assert len(ts) == 2 * 96 + 1
    assert meter.curve[4].forward_total == pytest.approx(4.0 * (100 / 3600 + 1.0))
    assert [f.ts for f in meter.daily_freezes] == [MIDNIGHT + 2 * 86400, MIDNIGHT + 86400, MIDNIGHT]
    newest = meter.daily_freezes[0]
    assert newest.registers.forward[0] == pytest.approx(4.0 * (2 * 24 + 100 / 3600))


def test_curve_memory_is_bounded_to_ten_days_and_freezes_to_62() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT)
    meter.advance(MIDNIGHT + 70 * 86400)
    assert len(meter.curve) == 960
    assert len(meter.daily_freezes) == 62
    assert meter.daily_freezes[0].ts == MIDNIGHT + 70 * 86400


def _three_phase_meter_a_day_on() -> VirtualMeter:
    meter = VirtualMeter(ADDR, profile=HouseholdProfile.for_customer(7, 3), start=MIDNIGHT, phase="ABC")
    meter.advance(MIDNIGHT + 86400)  # the meter's own arrays and caches are made
    return meter


def _held_while_advancing(meter: VirtualMeter, until: float) -> int:
    """Bytes the meter holds more after advancing to ``until`` (tracemalloc)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        meter.advance(until)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_ten_days_of_curve_memory_are_small() -> None:
    # ten days of a 2,400-meter area are 2.3 million records: as CurvePoint objects (~700 B with
    # their Instant) that was 1.6 GB of the simulator; a bytes object per record ~200 B; in one
    # ring of bytes 136 B (128 + its time): ~165 with the ten days' freezes and the ring's slack
    meter = _three_phase_meter_a_day_on()
    held = _held_while_advancing(meter, MIDNIGHT + 11 * 86400)
    assert len(meter.curve) == 960
    assert held < 180 * 960, f"{held / 960:.0f} B per curve record"  # (the meter's freezes too)


def test_reserved_curve_memory_takes_no_more_memory_as_it_fills() -> None:
    # a week's run reserves its records at the start: RSS flat over the week, not +3 MB a day
    meter = _three_phase_meter_a_day_on()
    meter.curve.reserve(3 * 96 + 1)
    held = _held_while_advancing(meter, MIDNIGHT + 3 * 86400)
    assert len(meter.curve) == 3 * 96 + 1
    assert held < 40 * 2 * 96, f"{held / (2 * 96):.0f} B per curve record"  # (the day's freezes)


def test_curve_memory_gives_back_what_it_was_given() -> None:
    memory = CurveMemory(3)
    single = Instant(
        (229.87, None, None), (1.234, None, None), (0.2834, None, None), 0.2834, -0.01, 0.999, 49.98
    )
    three = Instant((230.1, 231.2, 0.0), (0.0, 2.5, -0.0), (1.0, -2.0, 0.5), -0.5, 0.25, 0.875, 50.01)
    points = [CurvePoint(900.0 * k, single if k % 2 else three, 1e6 + k / 3, k / 7) for k in range(5)]
    for p in points:
        memory.append(p)
    assert list(memory) == points[2:] and memory[0] == points[2] and memory[-1] == points[4]
    assert len(memory) == 3 and memory.maxlen == 3
    assert memory.since(2700.0, 5) == points[3:] and memory.since(0.0, 1) == points[2:3]
    assert memory.since(0.0, 0) == [] and memory.between(1800.0, 3600.0) == points[2:4]


@pytest.mark.parametrize("reserved", [0, 3, 7, 30])
def test_curve_memory_is_a_ring_that_reads_like_a_bounded_deque(reserved: int) -> None:
    memory, plain = CurveMemory(7), deque[CurvePoint](maxlen=7)
    memory.reserve(reserved)  # room made ahead (none, some, all, more than it keeps) reads the same
    assert len(memory) == 0 and list(memory) == []
    instant = Instant((230.0, None, None), (1.0, None, None), (0.23, None, None), 0.23, 0.0, 1.0, 50.0)
    for k in range(23):
        point = CurvePoint(900.0 * k, instant, 100.0 + k, 0.0)
        memory.append(point)
        plain.append(point)
        assert list(memory) == list(plain) and len(memory) == len(plain)
        assert (
            memory[0] == plain[0]
            and memory[-1] == plain[-1]
            and memory[len(plain) // 2] == plain[len(plain) // 2]
        )
        assert memory.since(900.0 * (k - 3), 2) == [p for p in plain if p.ts >= 900.0 * (k - 3)][:2]
        assert memory.between(900.0 * (k - 5), 900.0 * k) == [
            p for p in plain if 900.0 * (k - 5) <= p.ts < 900.0 * k
        ]
    with pytest.raises(IndexError):
        memory[7]
    with pytest.raises(IndexError):
        memory[-8]
    empty = CurveMemory(0)
    empty.append(CurvePoint(0.0, instant, 1.0, 0.0))
    assert len(empty) == 0 and list(empty) == []


def test_daily_freeze_at_meter_local_midnight_with_skew() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT - 3600, skew_s=-600)
    meter.advance(MIDNIGHT + 3600)
    assert [f.ts for f in meter.daily_freezes] == [MIDNIGHT]  # by the meter's clock
    # meter midnight is true MIDNIGHT + 600 s: 4200 s of 1 kW since the start
    assert meter.daily_freezes[0].registers.forward[0] == pytest.approx(4200 / 3600)


def test_power_down_records_and_report_bit() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT)
    meter.power_off(MIDNIGHT + 3600)
    assert not meter.on
    assert meter.power_down_count == 1
    meter.power_on(MIDNIGHT + 2 * 3600)
    rec = meter.power_downs[0]
    assert (rec.start, rec.end) == (MIDNIGHT + 3600, MIDNIGHT + 2 * 3600)
    assert meter.report_status >> REPORT_BIT_POWER_DOWN & 1
    # no energy and no curve points while off
    assert meter.registers(MIDNIGHT + 3 * 3600).forward[0] == pytest.approx(2.0)
    assert not [p for p in meter.curve if MIDNIGHT + 3600 < p.ts < MIDNIGHT + 2 * 3600]
    for k in range(11):
        meter.power_off(MIDNIGHT + 4 * 3600 + k * 100)
        meter.power_on(MIDNIGHT + 4 * 3600 + k * 100 + 50)
    assert meter.power_down_count == 12
    assert len(meter.power_downs) == 10
    meter.clear_report(~(1 << REPORT_BIT_POWER_DOWN))
    assert meter.report_status == 0


def test_relay_trip_zeroes_power_and_energy() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0, kvar=0.3), start=MIDNIGHT)
    assert meter.instant(MIDNIGHT + 10).total_power_kw == pytest.approx(1.0)
    meter.trip(MIDNIGHT + 3600)
    inst = meter.instant(MIDNIGHT + 3700)
    assert inst.total_power_kw == 0.0 and inst.current[0] == 0.0
    assert meter.status_word3() & SW3_RELAY_OPEN
    assert meter.registers(MIDNIGHT + 7200).forward[0] == pytest.approx(1.0)
    meter.close(MIDNIGHT + 7200)
    assert not meter.status_word3() & SW3_RELAY_OPEN
    assert meter.registers(MIDNIGHT + 3 * 3600).forward[0] == pytest.approx(2.0)
    meter.set_keep_power(True, MIDNIGHT + 3 * 3600)
    with pytest.raises(RelayRefused):
        meter.trip(MIDNIGHT + 3 * 3600)


def test_faults_stopped_and_slow() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT)
    meter.faults.slow_pct = 30.0
    assert meter.registers(MIDNIGHT + 3600).forward[0] == pytest.approx(0.7)
    meter.faults.stopped = True
    assert meter.registers(MIDNIGHT + 7200).forward[0] == pytest.approx(0.7)
    # the register is faulty, the metrology front end is not: V x I x PF still shows the load
    inst = meter.instant(MIDNIGHT + 7200)
    assert inst.total_power_kw == pytest.approx(1.0)
    assert inst.voltage[0] is not None and inst.current[0] is not None
    assert inst.voltage[0] * inst.current[0] * inst.power_factor / 1000 == pytest.approx(1.0)


def test_single_phase_meter_reports_only_the_a_slot() -> None:
    meter = VirtualMeter(
        ADDR, profile=ConstantProfile(kw=2.2, kvar=0.0, volts=220.0), start=MIDNIGHT, phase="B"
    )
    inst = meter.instant(MIDNIGHT)
    assert inst.voltage == (220.0, None, None)
    assert inst.current[0] == pytest.approx(10.0)
    three = VirtualMeter(ADDR, profile=ConstantProfile(kw=3.0), start=MIDNIGHT, phase="ABC")
    inst3 = three.instant(MIDNIGHT)
    assert all(v is not None for v in inst3.voltage)
    assert sum(p for p in inst3.power_kw if p is not None) == pytest.approx(3.0)


def test_broadcast_sync_limited_to_five_minutes() -> None:
    meter = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT, skew_s=120)
    assert meter.broadcast_sync(MIDNIGHT + 100, MIDNIGHT + 100)
    assert meter.skew_s == 0
    meter.skew_s = 900
    assert not meter.broadcast_sync(MIDNIGHT + 200, MIDNIGHT + 200)
    assert meter.skew_s == 900


def test_missed_reads_are_seeded() -> None:
    def draws(seed: int) -> list[bool]:
        m = VirtualMeter(ADDR, profile=ConstantProfile(kw=1.0), start=MIDNIGHT, seed=seed)
        m.faults.miss_rate = 0.3
        return [m.misses() for _ in range(200)]

    assert draws(1) == draws(1)
    assert 30 < sum(draws(1)) < 90
