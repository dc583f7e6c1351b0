"""Line loss on whole simulated terminals: the accuracy runs too long for the test suite.

Each run is the real thing on virtual time (``sim.harness.run_world``): the physics world, the
virtual meters on their buses and the HPLC carrier, the terminal with its apps reading them, the
uplink, the cloud stub. What the master station stored is scored by ``sim.lineloss_score``:

* figures: the worst |app - independent back office| in percentage points over every scope and
  day (goal 0.01 pp), the clean branches' |app - power flow| (meters' own errors included) and the
  technical loss of the whole station (a few %, GRID.md §2);
* detection: per injected fault the days until the master station had it, to the customer and to
  its branch (goals: theft branch 1 d, customer 3 d; stopped 1 d; slow 3 d; CT 1 d);
* false positives: anomalies that name no injected fault;
* the process CPU the whole run took (world + terminal + broker + cloud in one process).

Runs: the shipped ``lineloss`` scenario on the default feeder with the repository's board (every
app), and on other networks a seeded scenario drawn from their own customers (a theft on one
branch, a stopped and a slow register on another, the 总表's archive CT one standard step off),
51 h from 22:00 the evening before day 1, so two whole days are computed.

    .venv/bin/python -P bench/lineloss_world.py [--quick] [--hours 51] [--seeds 1,2]
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

from sim import lineloss_score as score
from sim.harness import DEFAULT_START, WorldRun, run_world
from sim.physics.network import load_network

TERMINAL = "TTU-SIM-0001"
TZ_S = 8 * 3600  # the repository board's Asia/Shanghai
START = DEFAULT_START - 2 * 3600  # 22:00 the evening before day 1
GOALS = {"theft": 3.0, "theft_branch": 1.0, "stopped": 1.0, "slow": 3.0, "ct_ratio": 1.0}


def _dickert_middle() -> Any:
    import pandapower.networks as pn

    return pn.create_dickert_lv_network(
        feeders_range="middle", linetype="C&OHL", customer="multiple", case="good"
    )


def _kerber_dorfnetz() -> Any:
    import pandapower.networks as pn

    return pn.create_kerber_dorfnetz()


#: network -> (builder of its pandapower net or None for a built-in name, [grid] scales for 2-5 %)
NETWORKS: dict[str, tuple[Callable[[], Any] | None, dict[str, float]]] = {
    "ieee-eu-lv": (None, {"load_scale": 2.0, "line_scale": 2.0}),
    "dickert_middle": (_dickert_middle, {"load_scale": 2.5, "line_scale": 2.5}),
    "kerber_dorfnetz": (_kerber_dorfnetz, {"load_scale": 3.0, "line_scale": 2.0}),
}


def network_path(name: str, folder: Path) -> str:
    make = NETWORKS[name][0]
    if make is None:
        return name
    import pandapower as pp

    path = folder / f"{name}.json"
    if not path.exists():
        pp.to_json(make(), str(path))
    return str(path)


def scenario(name: str, network: str, seed: int) -> str:
    """A scenario drawn from the network's own customers (meters numbered branch by branch, as
    ``sim.world`` numbers them): a theft on the largest branch, a stopped and a slow register on
    the next, the other branches clean; the 总表's archive CT one standard step off."""
    feeder = load_network(network, seed=seed)
    order = sorted(range(feeder.n_customers), key=lambda i: (feeder.customers[i].branch, i))
    ids: dict[str, list[str]] = {}
    for k, i in enumerate(order, start=1):
        ids.setdefault(feeder.customers[i].branch, []).append(f"m-{k:04d}")
    branches = sorted((b for b in ids if b != "F0"), key=lambda b: -len(ids[b]))
    rng = np.random.default_rng([seed, 0x1056])
    thief = str(rng.choice(ids[branches[0]]))
    stopped, slow = (str(m) for m in rng.choice(ids[branches[1 % len(branches)]], size=2, replace=False))
    grid = NETWORKS[name][1]
    bypass = round(float(rng.uniform(0.2, 0.5)), 2)
    slow_pct = round(float(rng.uniform(10.0, 30.0)), 1)
    configured = 200 * float(rng.choice([0.75, 4 / 3]))
    return f"""
[scenario]
description = "bench: theft on {branches[0]}, stopped and slow registers on {branches[1 % len(branches)]}"
pv_share = 0.2
[grid]
load_scale = {grid["load_scale"]}
line_scale = {grid["line_scale"]}
[[theft]]
meter = "{thief}"
bypass = {bypass}
at = "2h"
[[meter_fault]]
meter = "{stopped}"
kind = "stopped"
at = "2h"
[[meter_fault]]
meter = "{slow}"
kind = "slow"
value = {slow_pct}
at = "2h"
[transformer]
ct_ratio_actual = 200
ct_ratio_configured = {configured:g}
"""


def figures(run: WorldRun) -> dict[str, Any]:
    """Everything the bench prints for one run."""
    from apps.lineloss.report import summary

    with run.cloud() as db:
        bodies = [r.body for r in db.results("lineloss", terminal=TERMINAL, limit=100_000)]
    out = summary(TERMINAL, bodies)
    dates = sorted({d["date"] for d in out["days"]})
    worst_office = 0.0
    for date in dates:
        got = {d["scope"]: d for d in out["days"] if d["date"] == date}
        for scope, (supply, sales) in score.back_office(run, date, TZ_S).items():
            rate = (supply - sales) / supply * 100.0
            worst_office = max(worst_office, abs(float(got[scope]["loss_rate"]) - rate))
    faults = run.truth("faults.csv")
    faulty = {
        r["branch"] for r in run.truth("topology.csv") if r["meter_id"] in {f["target"] for f in faults}
    }
    truth = score.physics(run, TZ_S)
    clean = []
    for d in out["days"]:
        key = (d["date"], d["scope"])
        if (
            key in truth
            and d["scope"] not in faulty
            and d["scope"] != "station"
            and d["loss_rate"] is not None
        ):
            supply, loss = truth[key]
            clean.append(abs(float(d["loss_rate"]) - loss / supply * 100.0))
    technical = [truth[(date, "ALL")][1] / truth[(date, "ALL")][0] * 100.0 for date in dates]
    false = sorted(score.unexplained(run, out["anomalies"]))
    return {
        "days": dates,
        "office_pp": worst_office,
        "clean_branch_pp": max(clean) if clean else None,
        "technical_pct": technical,
        "delays": score.delays(run, TERMINAL, score.midnight(dates[0], TZ_S)) if dates else [],
        "false": false,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run: dickert_middle, seed 1, 27 h")
    parser.add_argument("--hours", type=float, default=51.0)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--networks", default="dickert_middle,kerber_dorfnetz")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: list[tuple[str, int, str | None]] = [("ieee-eu-lv", 1, None)]  # the shipped scenario
    runs += [(n, s, "drawn") for n in args.networks.split(",") for s in seeds]
    hours = args.hours
    if args.quick:
        runs, hours = [("dickert_middle", 1, "drawn")], 27.0
    worst: dict[str, float | None] = {}
    counts: dict[str, list[int]] = {}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, (name, seed, drawn) in enumerate(runs):
            network = network_path(name, folder)
            scen = "lineloss"
            if drawn:
                scen = str(folder / f"{name}-{seed}.toml")
                Path(scen).write_text(scenario(name, network, seed), encoding="utf-8")
            t0, w0 = time.process_time(), time.time()
            run = run_world(folder / f"run-{k}", hours=hours, start=START, network=network, scenario=scen,
                            seed=seed, hplc_meters=6)  # fmt: skip
            cpu, wall = time.process_time() - t0, time.time() - w0
            f = figures(run)
            for d in f["delays"]:
                for kind, days in (
                    (d.kind, d.days),
                    *((("theft_branch", d.branch_days),) if d.kind == "theft" else ()),
                ):
                    c = counts.setdefault(kind, [0, 0])
                    c[0] += 1
                    if days is not None:
                        c[1] += 1
                        worst[kind] = max(worst.get(kind) or 0.0, days)
            shown = ", ".join(
                f"{d.kind} {d.target}@{d.branch or '-'} "
                + (f"{d.days:.2f} d" if d.days is not None else "MISSED")
                + (
                    f" (branch {d.branch_days:.2f} d)"
                    if d.kind == "theft" and d.branch_days is not None
                    else ""
                )
                for d in f["delays"]
            )
            clean = f"{f['clean_branch_pp']:.2f}" if f["clean_branch_pp"] is not None else "-"
            line = (
                f"{name:16s} seed {seed} {'drawn' if drawn else 'lineloss'}: days {len(f['days'])}, "
                f"|app - back office| {f['office_pp']:.4f} pp, clean branches |app - physics| {clean} pp, "
                f"technical {', '.join(f'{t:.1f}' for t in f['technical_pct'])} %, "
                f"false {f['false'] or 'none'}, "
                f"CPU {cpu:.0f} s, wall {wall:.0f} s\n    {shown}"
            )
            print(line, flush=True)
            lines.append(line)
    print(f"\n{len(runs)} whole-terminal runs of {hours:g} h")
    print(f"{'kind':14s} {'faults':>6s} {'found':>6s} {'max delay d':>11s} {'goal d':>7s}")
    for kind in ("theft_branch", "theft", "stopped", "slow", "ct_ratio"):
        n, found = counts.get(kind, [0, 0])
        w = worst.get(kind)
        print(f"{kind:14s} {n:6d} {found:6d} {(f'{w:.2f}' if w is not None else '-'):>11s} {GOALS[kind]:>7}")


if __name__ == "__main__":
    main()
