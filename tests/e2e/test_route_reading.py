"""Module-led reading (路由主动抄表) end to end: the virtual CCO leads, the terminal answers
each ask with the curve block / daily freeze due at that meter, the master station gets them.

Plain (not async) test: the run has its own virtual-time event loop (``sim.harness``).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from tests.simworld import WorldFactory

ENERGY = "energy.active.import.total"
QUARTER = 900


def test_module_led_rounds_bring_every_curve_point_and_the_daily_freeze(sim_world: WorldFactory) -> None:
    config = {"hplc_reading": "module", "route_realtime_every": 1, "route_events_every": 1}
    run = sim_world(hours=2.25, hplc_meters=30, apps={"acquisition": config})
    hplc = {row["meter_id"] for row in run.truth("topology.csv") if row["channel"] == "hplc"}
    assert len(hplc) == 30
    report = run.report
    assert report["readings"]["lost"] == 0
    cco = report["hplc"]
    # hourly rounds at 01:01 and 02:01: each meter answered in curve blocks (+ the freeze once)
    assert cco["route_rounds"] >= 2
    assert cco["route_reads"] >= 2 * len(hplc)
    conn = sqlite3.connect(run.cloud_db)
    try:
        curve = conn.execute(
            "SELECT device, ts, value FROM readings WHERE quantity = ? AND quality = 'good' "
            "AND CAST(ts AS INTEGER) % 900 = 0 ORDER BY ts",  # curve points (not the realtime snapshot)
            (ENERGY,),
        ).fetchall()
        freezes = conn.execute(
            "SELECT DISTINCT device FROM readings WHERE quantity = ?", ("daily." + ENERGY,)
        ).fetchall()
        snapshots = conn.execute(
            "SELECT device, COUNT(DISTINCT ts) FROM readings WHERE quantity = 'voltage.a' GROUP BY device"
        ).fetchall()
    finally:
        conn.close()
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for device, ts, value in curve:
        if device in hplc:
            points[device].append((ts, value))
    # every quarter-hour closed before the last round started (02:00) is at the cloud, for every meter
    wanted = [run.start + QUARTER * k for k in range(1, 9)]
    for meter in sorted(hplc):
        got = sorted(points[meter])
        assert [ts for ts, _ in got if run.start < ts <= wanted[-1]] == wanted, meter
        values = [v for _, v in got]
        assert values == sorted(values), f"{meter}: the energy register went backwards"
    assert {d for (d,) in freezes} >= hplc  # yesterday's freeze, read in the first round
    # each round's visit also took the realtime snapshot and read the meter's events
    rounds = dict(snapshots)
    assert all(rounds.get(m, 0) >= 2 for m in hplc), {m: rounds.get(m) for m in sorted(hplc)}
    assert report["counters"]["route_event_reads"] >= len(hplc)  # the first round's, at least
