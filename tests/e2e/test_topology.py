"""Topology identification end to end on two networks: the simulated station area on virtual time
(archive errors, foreign meters of a neighbouring station area, missing meters on our carrier
network, a phase move, signature current with missed detections), the terminal's own reads, the
daily result as the master station stored it (``ttu cloud topology --json``), scored against the
simulator's truth.

Plain (not async) tests: each run has its own virtual-time event loop (``sim.harness``). A day is
simulated (the identification runs at 23:50 over it); ``bench/topology_world.py`` runs the same
on more networks and seeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.topology.cloud import METER_KEYS
from bench._topology_score import DIMENSIONS
from bench.topology_world import run_one, world_score
from sim.cloud.db import CloudDb
from sim.harness import WorldRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

#: per dimension: the issue's goals are 99.5 % (phase) and 99 %; a network of ~55 meters has
#: no room for one error under 98.1 %, so one wrong or unresolved meter is allowed here and the
#: figures over many runs are the bench's
MIN_RATE = 0.98


def _check(run: WorldRun) -> None:
    s, result = world_score(run)
    assert set(result) == {"terminal", "computed_at", "days", "meters", "missing"}
    assert all(set(m) == set(METER_KEYS) for m in result["meters"])
    assert result["days"] >= 0.95
    assert s.meters >= 40 and not s.absent
    for dim in DIMENSIONS:
        assert s.rate(dim) >= MIN_RATE, (dim, s.line(), s.wrong)
    found, present, false = s.foreign
    assert present == 2 and found == present and false == 0, s.line()
    found, present, false = s.missing
    assert present == 2 and found == present and false == 0, s.line()
    fixed, errors = s.errors_fixed
    assert errors >= 5 and fixed >= errors - 1, s.line()
    # the phase move (m-0012, at 14:00) was reported on the stream, to the phase it went to
    truth = {r["meter_id"]: r for r in run.truth("topology.csv")}
    moves = [f for f in run.truth("faults.csv") if f["kind"] == "phase_moved"]
    assert moves
    db = CloudDb(run.cloud_db, readonly=True)
    try:
        stored = [r.body for r in db.results("topology", limit=1000)]
    finally:
        db.close()
    changes = [b for b in stored if b.get("type") == "change"]
    for f in moves:
        assert any(c["meter_id"] == f["target"] and c["to"] == truth[f["target"]]["phase"] for c in changes)


def test_ieee_european_lv_feeder(tmp_path: Path) -> None:
    run = run_one("ieee-eu-lv", 1, hours=24, scenario="topology", workdir=tmp_path / "ieee")
    _check(run)


def test_kerber_dorfnetz(tmp_path: Path) -> None:
    import pandapower as pp
    import pandapower.networks as pn

    network = tmp_path / "kerber_dorfnetz.json"
    pp.to_json(pn.create_kerber_dorfnetz(), str(network))
    run = run_one(str(network), 2, hours=24, scenario="topology", workdir=tmp_path / "kerber")
    _check(run)
