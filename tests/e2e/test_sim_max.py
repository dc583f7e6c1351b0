"""``ttu sim --speed max``: the whole station area on virtual time, deterministic, the wire exact.

Plain (not async) tests: each run has its own virtual-time event loop (``sim.harness``).
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from pathlib import Path

import pytest

from protocols.errors import ConfigError
from runtime.config import load_board
from sim.cli import parse_speed
from sim.harness import DEFAULT_START, REPO
from sim.runner import SimOptions, run_for
from sim.truth import TRUTH_FILES
from sim.vloop import run_virtual
from tests.simworld import WorldFactory


def _cloud_rows(db: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        readings = conn.execute(
            "SELECT terminal, device, quantity, ts, value, unit, quality, obis FROM readings "
            "ORDER BY terminal, device, quantity, ts, value, quality"
        ).fetchall()
        events = conn.execute(
            'SELECT terminal, kind, source, start, "end", data FROM events ORDER BY kind, source, start'
        ).fetchall()
    finally:
        conn.close()
    return readings, events


def test_a_virtual_run_delivers_every_reading(sim_world: WorldFactory) -> None:
    run = sim_world(hours=2, scenario="default")
    report = run.report
    assert report["mode"] == "virtual" and report["speed"] is None
    assert report["achieved_speed"] > 10  # 2 simulated hours in well under 12 wall minutes
    assert report["simulated_seconds"] >= 2 * 3600
    readings = report["readings"]
    assert readings["sent"] > 0
    assert readings == {"sent": readings["sent"], "delivered": readings["sent"], "queued": 0, "lost": 0}
    assert report["truth_dir"] == str(run.truth_dir)
    # the uplink and the cloud stub send small messages at once (Nagle off): the loop does not
    # sit waiting for held-back loopback segments (thousands of waits over 2 h with Nagle on)
    assert report["virtual_loop"]["delivery_waits"] <= 20, report["virtual_loop"]
    assert any("do not fsync" in note for note in report["notes"])  # the one departure on disk
    assert all((run.truth_dir / name).is_file() for name in TRUTH_FILES)
    with run.cloud() as db:
        assert db.readings(quantity="voltage.a", limit=1)  # the realtime snapshot
        assert any(r.quality == "good" for r in db.readings(limit=1000))
    topology = run.truth("topology.csv")
    assert {row["channel"] for row in topology} >= {"hplc", "rs485-1"}


@pytest.mark.timeout(600)  # three whole-area runs (2 h, 2 h, 0.5 h): minutes on a loaded 2-core machine
def test_same_inputs_give_byte_identical_results(sim_world: WorldFactory) -> None:
    first = sim_world(hours=2, scenario="default", seed=5)
    second = sim_world(hours=2, scenario="default", seed=5)
    rows_a, events_a = _cloud_rows(first.cloud_db)
    rows_b, events_b = _cloud_rows(second.cloud_db)
    assert len(rows_a) > 1000
    assert rows_a == rows_b
    assert events_a == events_b
    for name in TRUTH_FILES:
        assert (first.truth_dir / name).read_bytes() == (second.truth_dir / name).read_bytes(), name
    other = sim_world(hours=0.5, scenario="default", seed=6)  # and the seed does matter
    assert _cloud_rows(other.cloud_db)[0][:500] != rows_a[:500]


def test_the_cycle_is_the_wire_time_exactly(tmp_path: Path) -> None:
    """On virtual time a realtime cycle costs exactly its exchanges on the wire: bytes x 11 bits /
    2400 baud + the meter's 20 ms response delay, plus the port's one-character turnaround
    between exchanges -- no event-loop overhead, the ratio a 1x run on a real line shows."""
    board = load_board(REPO / "board.toml")
    # meters only on the buses (no Modbus breakers sharing the last one), as in bench/acquisition.py
    buses = tuple(dataclasses.replace(p, roles=("meters",)) for p in board.rs485)
    board = dataclasses.replace(board, rs485=buses)
    options = SimOptions(
        board=board, workdir=tmp_path / "run", speed=math.inf, meters_per_bus=5, seed=2,
        start=DEFAULT_START + 30.0, duration_s=300.0, response_delay_s=(0.02, 0.02), hplc_meters=0,
    )  # fmt: skip
    report = run_virtual(lambda: run_for(options))
    cycle, bound = report["cycle_seconds"], report["wire_bound_seconds"]
    reads = report["counters"]["cycle_reads"]
    assert reads > 0 and bound > 0
    per_bus = reads / len([p for p in board.rs485 if p.enabled])
    turnaround = 11 / 2400  # one character time between two exchanges on a bus
    assert cycle == pytest.approx(bound + (per_bus - 1) * turnaround, abs=0.02)
    assert 1.0 < cycle / bound < 1.10


def test_speed_max_is_parsed_and_refuses_an_external_broker(tmp_path: Path) -> None:
    assert math.isinf(parse_speed("max")) and math.isinf(parse_speed(" MAX "))
    assert parse_speed("60") == 60.0
    for bad in ("0", "-3", "fast", "inf", "nan"):
        with pytest.raises(ConfigError, match="--speed"):
            parse_speed(bad)
    options = SimOptions(
        board=load_board(REPO / "board.toml"), workdir=tmp_path / "run", speed=math.inf, meters_per_bus=1,
        seed=1, duration_s=60.0, broker_url="mqtt://127.0.0.1:1883",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--broker"):
        run_virtual(lambda: run_for(options))


@pytest.mark.parametrize(
    ("argv", "profile", "realtime_s"),
    [
        (["--speed", "max"], "analytics", 900),  # days of data: 15-min snapshots unless told otherwise
        (["--speed", "max", "--profile", "standard"], "standard", None),  # the board's own settings
        (["--speed", "10"], "standard", None),
    ],
)
def test_virtual_time_defaults_to_the_analytics_profile(
    argv: list[str], profile: str, realtime_s: int | None, tmp_path: Path
) -> None:
    import argparse

    from sim.cli import _options, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    options = _options(parser.parse_args(["sim", *argv, "--workdir", str(tmp_path / "run")]))
    assert options.profile == profile
    assert options.app_config.get("acquisition", {}).get("realtime_interval_s") == realtime_s
