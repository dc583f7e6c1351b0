"""One scored outage run: a random scenario on a network, the whole terminal on virtual time, the
reports as ``ttu cloud outages --json`` prints them, scored against ``events.csv``.

Layer: sim (a harness for end-to-end tests and ``bench/outage.py``). Goes through
``sim.harness.run_world`` like any end-to-end test and through the real CLI for the reports
(a subprocess of the ``ttu`` next to this interpreter), so what is scored is what a master
station operator would see. Must not import the terminal or the apps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.cloud import joined_rows
from sim.archive import read_station, station_model
from sim.harness import DEFAULT_START, WorldRun, run_world
from sim.outage_score import Groups, Score, false_for, score
from sim.scenarios import parse_scenario
from sim.scenarios.random_outages import Knobs, random_outage_scenario
from sim.world import World, build_world, hplc_that_fit

REPORT_LISTS = ("meters", "lit", "still_dark")  # the outage report's lists, paged when too big

TTU = Path(sys.executable).with_name("ttu")
BUSES = ["rs485-1", "rs485-2", "rs485-3", "rs485-4"]  # the repository board's
FILTERED = ("dip", "relay_trip", "comms_loss")  # truth events that must never become an outage


@dataclass(slots=True)
class OutageRun:
    run: WorldRun
    scenario: Path
    reports: list[dict[str, Any]]
    bodies: list[dict[str, Any]]  # every outage message the cloud stored (all revisions)
    score: Score
    false_on_dips_and_trips: list[str]  # reports on a dip, a prepaid relay trip or a comms loss
    retracted: list[str]  # outages reported, then withdrawn (not in the list: they were shown once)


def scenario_for(
    workdir: Path,
    *,
    network: str,
    seed: int,
    knobs: Knobs,
    hplc_meters: int = 30,
    station_id: str = "4401-0001",
) -> Path:
    """Write a random outage scenario fitting the station area ``run_world`` will build."""
    probe = _probe_world(network, seed=seed, hplc_meters=hplc_meters, station_id=station_id)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"scenario-{seed}.toml"
    model = station_model(probe.station, world=probe, station_id=station_id)
    path.write_text(random_outage_scenario(model, seed=seed, knobs=knobs), encoding="utf-8")
    return path


def _probe_world(network: str, *, seed: int, hplc_meters: int, station_id: str) -> World:
    quiet = parse_scenario({"scenario": {}}, name="probe", source="probe")
    return build_world(
        buses=BUSES, scenario=quiet, seed=seed, start=DEFAULT_START, duration_s=900.0, network=network,
        hplc_meters=hplc_meters, station_id=station_id,
    )  # fmt: skip


def fit_hplc(network: str, hplc_meters: int, *, seed: int = 1) -> int:
    """``hplc_meters``, or half the customers of a station area that has fewer (a rural feeder)."""
    customers = len(_probe_world(network, seed=seed, hplc_meters=0, station_id="probe").customers())
    return hplc_that_fit(hplc_meters, customers)


def cloud_outages(db: Path, terminal: str | None = None) -> list[dict[str, Any]]:
    """``ttu cloud outages --json`` on the run's cloud database."""
    cmd = [str(TTU), "cloud", "outages", "--db", str(db), "--json"]
    if terminal is not None:
        cmd += ["--terminal", terminal]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    out: list[dict[str, Any]] = json.loads(done.stdout)
    return out


def scored_run(
    workdir: Path,
    *,
    network: str = "ieee-eu-lv",
    seed: int = 1,
    knobs: Knobs | None = None,
    hplc_meters: int = 30,
    profile: str = "standard",
    outage_config: dict[str, Any] | None = None,
) -> OutageRun:
    knobs = knobs or Knobs()
    hplc_meters = fit_hplc(network, hplc_meters, seed=seed)
    scenario = scenario_for(
        workdir / "scenarios", network=network, seed=seed, knobs=knobs, hplc_meters=hplc_meters
    )
    run = run_world(
        workdir / f"world-{seed}", hours=knobs.hours, network=network, scenario=str(scenario), seed=seed,
        hplc_meters=hplc_meters, profile=profile, apps={"outage": dict(outage_config or {})},
    )  # fmt: skip
    reports = cloud_outages(run.cloud_db)
    model = read_station(run.workdir / "station.toml")
    events = run.truth("events.csv")
    with run.cloud() as db:
        bodies = [dict(r.body) for r in joined_rows(db.results("outage"), REPORT_LISTS)]
    s = score(events, reports, Groups.from_model(model))
    false = false_for(events, reports, FILTERED)
    retracted = sorted({f"{b.get('level')} {b.get('target')} ({b.get('id')})" for b in bodies
                        if b.get("status") == "retracted"})  # fmt: skip
    return OutageRun(run, scenario, reports, bodies, s, false, retracted)


__all__ = ["FILTERED", "OutageRun", "cloud_outages", "fit_hplc", "scenario_for", "scored_run"]
