"""Topology identification end to end: the simulated station area on virtual time, the terminal's
own reads, the result as the master station stored it, scored against the simulator's truth.

Where ``bench/topology.py`` feeds the engine curves computed straight from the physics, this runs
the whole chain (``sim.harness.run_world``): virtual meters, units and box terminals on RS-485 and
the virtual CCO, acquisition's curve reads, the topology app's own metrology sampling, CCO
network/phase queries, reads of unlisted nodes and the night's signature-current injections, the
daily identification at 23:50 over the day, the uplink, and ``ttu cloud topology --json``'s
object from the cloud stub's database. Scenario ``sim/scenarios/topology.toml`` (10 % wrong
phase, 5 % wrong branch, 5 % wrong box, 2 foreign and 2 missing meters, a phase move, 10 %
missed signature detections) unless ``--scenario`` says otherwise. Nothing is tuned per network.

    .venv/bin/python -P bench/topology_world.py [--networks ieee-eu-lv,kerber_dorfnetz] [--seeds 1,2]
        [--hours 24] [--scenario topology] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._topology_score import DIMENSIONS, WorldScore, score
from bench.topology import NETWORKS, network_path
from protocols.station import loads as load_station
from runtime.cli import main as ttu
from sim.harness import WorldRun, run_world

TERMINAL = "TTU-SIM-0001"


def cloud_result(run: WorldRun, terminal: str = TERMINAL) -> dict[str, Any]:
    """What ``ttu cloud topology --terminal T --json`` prints for the run's cloud database."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ttu(["cloud", "topology", "--terminal", terminal, "--json", "--db", str(run.cloud_db)])
    if code != 0:
        raise RuntimeError(f"ttu cloud topology exited {code}")
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def world_score(run: WorldRun) -> tuple[WorldScore, dict[str, Any]]:
    model = load_station((run.workdir / "station.toml").read_text(encoding="utf-8"))
    units = {m.id for m in model.meters if m.kind not in ("customer", "assessment")}
    result = cloud_result(run)
    return score(result, run.truth("topology.csv"), run.truth("faults.csv"), units=units), result


def run_one(network: str, seed: int, *, hours: float, scenario: str, workdir: Path) -> WorldRun:
    end = hours % 24 or 24.0
    daily = f"{int(end - 1) % 24:02d}:50"  # ten minutes before the run ends
    return run_world(
        workdir,
        hours=hours,
        network=network,
        scenario=scenario,
        seed=seed,
        apps={"topology": {"daily_at": daily, "window_h": min(hours, 24.0)}},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="ieee-eu-lv,kerber_dorfnetz")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--scenario", default="topology")
    parser.add_argument("--keep", default="", help="keep each run's folder under this directory")
    args = parser.parse_args()
    totals: list[WorldScore] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        for name in args.networks.split(","):
            path = network_path(name, base) if name in NETWORKS else name
            if path is None:
                print(f"{name:28s} skipped: simbench not installed")
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.time()
                run = run_one(
                    path, seed, hours=args.hours, scenario=args.scenario, workdir=base / f"{name}-{seed}"
                )
                s, result = world_score(run)
                totals.append(s)
                moved = sum(1 for m in result["meters"] if m.get("status") == "corrected")
                print(
                    f"{Path(name).stem[:28]:28s} s{seed} {s.line()}  corrected {moved}  "
                    f"wall {time.time() - t0:.0f} s (x{run.report.get('achieved_speed', 0):.0f})",
                    flush=True,
                )
                bad = {d: v[:5] for d, v in s.wrong.items() if v}
                if bad or s.absent:
                    print(f"{'':28s}    wrong {bad} absent {s.absent[:5]}")
    if totals:
        n = sum(s.meters for s in totals)
        acc = " ".join(
            f"{d} {100 * sum(s.correct[d] for s in totals) / max(n, 1):6.2f} %" for d in DIMENSIONS
        )
        f = [sum(s.foreign[j] for s in totals) for j in range(3)]
        m = [sum(s.missing[j] for s in totals) for j in range(3)]
        print(f"total {n} meters: {acc}  foreign {f[0]}/{f[1]} fp {f[2]}  missing {m[0]}/{m[1]} fp {m[2]}")


if __name__ == "__main__":
    main()
