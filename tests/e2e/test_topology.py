"""Topology identification end to end on two networks, the identification ordered by the master
station over the broker: the simulated station area on virtual time (archive errors, foreign
meters of a neighbouring station area, missing meters on our carrier network, a phase move,
signature current with missed detections), the terminal's own reads, the cloud command
``topology.run`` signed by the cloud stub and carried by the embedded broker, and the result as the
master station stored it (``ttu cloud topology --json``), scored against the simulator's truth.

Kept short for CI: the IEEE European LV feeder (55 customers) and Kerber Landnetz Kabel 2 (14
customers on 2 feeders), eight and a half simulated hours from midnight (the night's signature
injections, the morning's load; the window is 8 h, 33 points, a third of the daily one), and only
the apps the identification stands on (acquisition, topology). One world per network, shared by
the module's tests. A day, more networks (Kerber Dorfnetz, Dickert) and several seeds are
``bench/topology_world.py``'s.

Plain (not async) tests: each world has its own virtual-time event loop (``sim.harness``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from apps.topology.cloud import METER_KEYS
from bench._topology_score import DIMENSIONS, WorldScore
from bench.topology import network_path
from bench.topology_world import world_score
from protocols.cloud import Reply
from sim.harness import DEFAULT_START, WorldRun, run_world
from sim.runner import SimRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TERMINAL = "TTU-SIM-0001"
START = DEFAULT_START  # 2024-06-01 00:00 local
HOURS = 8.5
COMMAND_AT = START + 8.25 * 3600  # 08:15: topology.run over the window so far
WINDOW_H = 8.0  # 33 points: a move needs 16 on each side to be told from a meter hard to place
MOVED = "m-0003"  # reconnected to another phase at 04:15 (the archive keeps the old one)

SCENARIO = f"""
[scenario]
description = "topology end to end: every archive error kind, a phase move, signature current"
pv_share = 0.15

[archive]
phase = 15
branch = 10
box = 10
foreign = 2
missing = 2

[[phase_move]]
meter = "{MOVED}"
at = "255m"

[signature]
miss_rate = 0.1
crosstalk_rate = 0.005

[monitoring]
box_terminals = "all"
"""

TOPOLOGY = {
    "daily_at": "23:00",  # not within the run: the result is the command's
    "window_h": WINDOW_H,
    "check_interval_h": 24.0,  # the command reports a move itself: no hourly identifications
}

#: (network, seed, customer meters behind the CCO)
NETWORKS = {
    "ieee-eu-lv": (1, 30),
    "kerber_landnetz_kabel_2": (1, 7),
}


@dataclass(frozen=True)
class Outcome:
    run: WorldRun
    reply: Reply
    score: WorldScore
    result: dict[str, Any]


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    name: str = request.param
    seed, hplc = NETWORKS[name]
    folder = tmp_path_factory.mktemp(name)
    scenario = folder / "topology.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    network = network_path(name, folder)
    assert network is not None
    replies: list[Reply] = []

    async def master_station(run: SimRun) -> None:
        if not replies and run.clock.now() >= COMMAND_AT:
            replies.append(
                await run.cloud.send_command(TERMINAL, "topology.run", {"window_h": WINDOW_H}, timeout=600)
            )

    run = run_world(
        folder / "run",
        hours=HOURS,
        network=network,
        scenario=str(scenario),
        seed=seed,
        start=START,
        hplc_meters=hplc,
        only_apps=("acquisition", "topology"),  # what the identification stands on
        apps={"topology": TOPOLOGY},
        on_tick=master_station,
    )
    assert len(replies) == 1, "the command was never sent"
    score, result = world_score(run)
    return Outcome(run, replies[0], score, result)


def test_the_command_runs_the_identification(world: Outcome) -> None:
    """topology.run over the broker: the terminal identified at once and the master station
    stored that very result (the daily job is not due within the run)."""
    reply = world.reply
    assert reply.ok, (reply.code, reply.message)
    assert reply.result is not None and reply.result["status"] == "done"
    assert reply.result["summary"]["reason"] == "command"
    assert world.result["computed_at"] == reply.result["computed_at"]
    assert COMMAND_AT <= reply.result["computed_at"] < COMMAND_AT + 600
    assert world.result["days"] == pytest.approx(WINDOW_H / 24, abs=0.02)


def test_phase_branch_and_box_against_the_truth(world: Outcome) -> None:
    s, result = world.score, world.result
    assert set(result) == {"terminal", "computed_at", "days", "meters", "missing"}
    assert result["terminal"] == TERMINAL
    assert all(set(m) == set(METER_KEYS) for m in result["meters"])
    assert s.meters >= 12 and not s.absent
    for dim in DIMENSIONS:  # every meter right: these networks leave no room for one error
        assert s.correct[dim] == s.meters, (dim, s.line(), s.wrong)
    fixed, errors = s.errors_fixed
    assert errors >= 4 and fixed == errors, s.line()


def test_foreign_and_missing_meters_found(world: Outcome) -> None:
    s = world.score
    found, present, false = s.foreign
    assert present == 2 and found == present and false == 0, s.line()
    found, present, false = s.missing
    assert present == 2 and found == present and false == 0, s.line()


def test_the_phase_move_is_reported(world: Outcome) -> None:
    """The move at 04:15 reached the master station on stream topology, to the phase it went to."""
    run = world.run
    truth = {r["meter_id"]: r for r in run.truth("topology.csv")}
    moves = [f for f in run.truth("faults.csv") if f["kind"] == "phase_moved"]
    assert [f["target"] for f in moves] == [MOVED]
    with run.cloud() as db:
        stored = [r.body for r in db.results("topology", limit=1000)]
    changes = [b for b in stored if b.get("type") == "change"]
    assert [(c["meter_id"], c["to"]) for c in changes] == [(MOVED, truth[MOVED]["phase"])]
