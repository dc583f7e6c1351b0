"""Line loss: detection delay and false positives per kind over several networks and scenarios,
and the CPU time of one day's computation for 2,200 meters.

Runs the line-loss engine straight on the simulator's world (``bench/_lineloss_world.py``: every
meter's own curve and freezes, no wire), so a week of a network costs seconds. Every network
gets the same seeded scenarios, drawn from its own customers (no meter ids tuned by hand):

* clean:   7 days, nothing injected (every report is a false positive)
* theft:   two customers bypass 20-60 % of their load from day 1
* meters:  one register stopped, one slow by 10-30 %
* ct:      the 总表's archive CT ratio one standard step off
* comms:   10 % of curve points and freezes lost (incomputable days must say comms, nothing else)
* archive: one meter left out of the archive, one foreign entry in it; the topology app's view
           given as a perfect one (``perfect_topology``): an abnormal scope it explains is found

Every scenario runs with heavier load and longer lines (``[grid]``), so technical loss is a few
percent, as on a Chinese feeder. Goals (issue 10): theft to its branch in 1 day and to the
customer in 3, stopped 1 day, slow 3 days, CT 1 day, no anomaly on the clean week, CPU <= 2 s.

    .venv/bin/python -P bench/lineloss.py [--quick] [--networks ieee-eu-lv,kerber_dorfnetz]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _lineloss_world as rig
from sim.physics import PowerFlowNotConverged

DAYS = {"clean": 7, "theft": 3, "meters": 3, "ct": 2, "comms": 2, "archive": 2}
#: per network: demand and line-length multipliers that bring technical loss to 2-5 % (measured:
#: ieee-eu-lv 4.5 %, kerber_dorfnetz 2.4 %, kerber_vorstadtnetz_kabel_1 2.6 %, dickert long
#: overhead 2.1 % (it does not converge for every seed at 1.5), kerber_landnetz_freileitung_2
#: 2.7 % of the day's supply)
GRID = {
    "ieee-eu-lv": {"load_scale": 2.0, "line_scale": 2.0},
    "kerber_dorfnetz": {"load_scale": 3.0, "line_scale": 2.0},
    "kerber_vorstadtnetz_kabel_1": {"load_scale": 3.0, "line_scale": 2.0},
    "dickert_long_overhead": {"load_scale": 1.3, "line_scale": 1.3},
    "kerber_landnetz_freileitung_2": {"load_scale": 3.0, "line_scale": 2.0},
}
GOALS = {"theft": 3.0, "theft_branch": 1.0, "stopped": 1.0, "slow": 3.0, "ct_ratio": 1.0}

NETWORKS: dict[str, Callable[[], Any] | None] = {
    "ieee-eu-lv": None,
    "kerber_dorfnetz": lambda: __import__("pandapower.networks").networks.create_kerber_dorfnetz(),
    "kerber_vorstadtnetz_kabel_1": lambda: __import__(
        "pandapower.networks"
    ).networks.create_kerber_vorstadtnetz_kabel_1(),
    "dickert_long_overhead": lambda: __import__("pandapower.networks").networks.create_dickert_lv_network(
        feeders_range="long", linetype="C&OHL", customer="multiple", case="average"
    ),
    "kerber_landnetz_freileitung_2": lambda: __import__(
        "pandapower.networks"
    ).networks.create_kerber_landnetz_freileitung_2(),
}


def network_path(name: str, folder: Path) -> str:
    make = NETWORKS[name]
    if make is None:
        return name
    import pandapower as pp

    path = folder / f"{name}.json"
    if not path.exists():
        pp.to_json(make(), str(path))
    return str(path)


def customers(network: str, seed: int) -> list[str]:
    w = rig.world(rig.scenario("probe", {}), days=1, network=network, seed=seed)
    return sorted(m.id for m in w.customers())


def scenarios(network: str, ids: list[str], seed: int) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng([seed, 0x1055])
    pick = [ids[int(i)] for i in rng.choice(len(ids), size=min(4, len(ids)), replace=False)]
    grid = GRID.get(Path(network).stem, GRID["ieee-eu-lv"])
    base: dict[str, Any] = {"scenario": {"pv_share": 0.2}, "grid": grid}
    thefts = [{"meter": m, "bypass": round(float(rng.uniform(0.2, 0.6)), 2)} for m in pick[:2]]
    slow = round(float(rng.uniform(10.0, 30.0)), 1)
    step = float(rng.choice([0.75, 4 / 3]))
    return {
        "clean": base,
        "theft": {**base, "theft": thefts},
        "meters": {
            **base,
            "meter_fault": [
                {"meter": pick[2 % len(pick)], "kind": "stopped"},
                {"meter": pick[3 % len(pick)], "kind": "slow", "value": slow},
            ],
        },
        "ct": {**base, "transformer": {"ct_ratio_actual": 200.0, "ct_ratio_configured": 200.0 * step}},
        "comms": base,
        "archive": {**base, "archive": {"missing": 1, "foreign": 1}},
    }


def run_one(network: str, kind: str, data: dict[str, Any], seed: int) -> tuple[rig.Score, int]:
    days = DAYS[kind]
    w = rig.world(rig.scenario(kind, data), days=days, network=network, seed=seed)
    topology = rig.perfect_topology(w) if kind == "archive" else None
    results = list(rig.run(w, days=days, drop_rate=0.1 if kind == "comms" else 0.0, topology=topology))
    if kind == "comms":  # 10 % of reads lost: the station cannot be computed, and must say why
        w.faults.append({"kind": "comms", "target": "station", "start": w.start, "end": None})
    return rig.score(w, results), len(w.customers())


def cpu_for(meters: int, seed: int) -> tuple[float, int]:
    """CPU seconds of the engine for one day of ~``meters`` meters (the feeder replicated)."""
    scale = max(1, round(meters / 55))
    w = rig.world(rig.scenario("cpu", {"grid": GRID["ieee-eu-lv"]}), days=2, seed=seed, scale=scale)
    rec = rig.records(w)
    layout = rec.layout()
    reader = rig.Reader(w, [m.id for m in layout.meters])
    from apps.lineloss.engine import Settings, analyse
    from apps.lineloss.window import Day

    window = [Day.of(rig.local_date(w.start + d * rig.DAY_S), reader.day(w.start + d * rig.DAY_S), layout)
              for d in range(2)]  # fmt: skip
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        days = [Day.of(d.date, d.readings, layout) for d in window]
        analyse(rec, layout, days, Settings())
        best = min(best, time.process_time() - t0)
    return best, layout.n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two networks, one seed, no CPU run")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--kinds", default=",".join(DAYS), help="scenarios to run (default: all)")
    args = parser.parse_args()
    names = args.networks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        names, seeds = names[:2], seeds[:1]
    delays: dict[str, list[float | None]] = {}
    fps: dict[str, int] = {}
    runs = 0
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = network_path(name, Path(tmp))
            for seed in seeds:
                ids = customers(path, seed)
                for kind, data in scenarios(path, ids, seed).items():
                    if kind not in args.kinds.split(","):
                        continue
                    try:
                        s, n = run_one(path, kind, data, seed)
                    except PowerFlowNotConverged as err:  # the network cannot carry that load
                        print(f"{name:32s} seed {seed} {kind:7s} skipped: {err}")
                        continue
                    runs += 1
                    for k, v in s.delays.items():
                        delays.setdefault(k, []).extend(v)
                    delays.setdefault("theft_branch", []).extend(s.branch_delays)
                    for k, v in s.false_positives.items():
                        fps[k] = fps.get(k, 0) + v
                    bad = sum(s.false_positives.values())
                    print(
                        f"{name:32s} seed {seed} {kind:7s} customers {n:4d} "
                        f"delays {s.delays} fp {bad}"
                        + (
                            f"  e.g. {[(a.kind, a.target, a.confidence) for a in s.examples[:3]]}"
                            if bad
                            else ""
                        )
                    )
    print(
        f"\n{runs} runs over {len(names)} networks x {len(seeds)} seeds in {time.time() - t_start:.0f} s wall"
    )
    print(f"{'kind':14s} {'faults':>6s} {'found':>6s} {'max delay d':>11s} {'goal d':>7s}")
    for kind in ("theft_branch", "theft", "stopped", "slow", "ct_ratio", "comms", "archive_foreign",
                 "archive_missing"):  # fmt: skip
        got = delays.get(kind, [])
        found = [d for d in got if d is not None]
        worst = f"{max(found):.2f}" if found else "-"
        goal = GOALS.get(kind)
        print(f"{kind:14s} {len(got):6d} {len(found):6d} {worst:>11s} {goal if goal else '-':>7}")
    print("false positives per anomaly kind:", fps or "none")
    if not args.quick:
        cpu, n = cpu_for(2200, 1)
        print(f"CPU of one day's computation, {n} meters: {cpu:.2f} s (goal <= 2 s; ratio {cpu / 2.0:.2f})")


if __name__ == "__main__":
    main()
