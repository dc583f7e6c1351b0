"""The terminal's own HPLC reads during a module-led round, end to end: meters report events
through the virtual CCO while it leads the acquisition app's round; the app reads each of
them at once (terminal-led, through hal's CCO driver), which pauses the route (AFN12 F2),
reads, and resumes it (AFN12 F3); the round still finishes and every curve point reaches the
master station.

Plain (not async) test: the run has its own virtual-time event loop (``sim.harness``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from protocols import dlt645
from sim.cli import render_summary
from sim.runner import SimRun
from tests.simworld import WorldFactory

ENERGY = "energy.active.import.total"
QUARTER = 900
EVENT_METERS = 4


def test_event_reads_in_a_round_pause_it_and_every_curve_point_still_arrives(sim_world: WorldFactory) -> None:
    reported: list[str] = []
    live: list[str] = []

    async def meters_report_events(run: SimRun) -> None:
        cco = run.hplc
        assert cco is not None
        if reported and cco.counters.route_pauses and not live:
            live.append(render_summary(await run.summary(), run))  # what ttu sim --live shows
        if reported or not cco.leading or cco.counters.route_reads < 20:
            return  # once, well into the round (01:01): the module holds every slot
        for address in list(cco.table)[-EVENT_METERS:]:  # the last nodes of the round
            status = dlt645.encode(dlt645.read_response(address, 0x04001501, bytes(12)))
            await cco.report_meter_event(address, status)
            reported.append(address)

    # visits with the realtime snapshot and the event read: a round of 45 meters takes minutes
    config = {"hplc_reading": "module", "route_realtime_every": 1, "route_events_every": 1}
    run = sim_world(
        hours=1.5, hplc_meters=45, apps={"acquisition": config}, only_apps={"acquisition"},
        on_tick=meters_report_events,
    )  # fmt: skip
    assert len(reported) == EVENT_METERS, "the round was never caught under way"
    report: dict[str, Any] = run.report
    assert report["failures"] == [] and report["readings"]["lost"] == 0
    hplc = report["hplc"]
    terminal = hplc["terminal"]
    # the event reads went out at once, each pausing the round or going in its pause
    assert report["counters"]["carrier_event_reads"] >= EVENT_METERS
    assert terminal["point_reads_in_round"] >= EVENT_METERS
    assert terminal["route_pauses"] >= 1 and hplc["route_pauses"] == terminal["route_pauses"]
    assert terminal["route_resumes"] == terminal["route_pauses"] == hplc["route_resumes"]
    # each exchange: the pause, the route's frames under way back (<= 3 s carrier latency and their
    # reports), its own carry (<= 3 s); sharing the module instead took 9.4 s here
    assert terminal["point_read_max_s"] < 7.0
    assert terminal["concurrency_denials"] == 0 and hplc["busy_denied"] == 0
    assert hplc["route_asks_paused"] == 0
    assert "pauses for the terminal's own reads: 1" in live[0]
    # the round went on: it finished, and every meter's quarter-hours up to its start are at the cloud
    assert hplc["route_rounds"] == 1 and hplc["route_rounds_finished"] == 1
    hplc_meters = {row["meter_id"] for row in run.truth("topology.csv") if row["channel"] == "hplc"}
    assert len(hplc_meters) == 45
    conn = sqlite3.connect(run.cloud_db)
    try:
        rows = conn.execute(
            "SELECT device, ts FROM readings WHERE quantity = ? AND quality = 'good' "
            "AND CAST(ts AS INTEGER) % 900 = 0 AND ts > ? AND ts <= ?",
            (ENERGY, run.start, run.start + 3600),
        ).fetchall()
    finally:
        conn.close()
    wanted = {run.start + QUARTER * k for k in range(1, 5)}
    got: dict[str, set[float]] = {}
    for device, ts in rows:
        got.setdefault(device, set()).add(ts)
    assert all(got.get(m) == wanted for m in hplc_meters), sorted(
        m for m in hplc_meters if got.get(m) != wanted
    )
