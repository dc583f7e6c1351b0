"""Topology identification: accuracy per dimension and network, CPU and memory, and a plain
correlation baseline side by side.

Runs the identification engine (``apps.topology.identify``) straight on curves the simulator's
physics computes (``bench/_topology_world.py``: real household load on each network, an MV
supply that moves, every device's accuracy-class noise and register resolution, a branch unit
at every branch head and a terminal in every box, a neighbouring station's meters listed in our
archive, our meters left out of it, signature-current detections along the true path with
10 % missed detections and 0.5 % cross-talk). The archive is wrong for 10 % of phases, 5 % of
branches and 5 % of boxes; 30 % of the meters are on HPLC (their CCO phase report is used).
No parameter is tuned per network: every network and seed runs the same settings.

The baseline is what a plain correlation method does with the same devices: a meter's raw
voltage curve against the busbar's phase voltages (phase), the branch units' voltages
(branch) and the box terminals' voltage on that phase (box), the best Pearson correlation
winning; it says nothing about foreign or missing meters.

Goals (issue 13): phase >= 99.5 %, branch and box >= 99 % (>= 98 % with 10 % missed
detections), every foreign and missing meter found with no false positive; 250 meters in
<= 5 s CPU and <= 30 MB, 2,200 in <= 60 s.

    .venv/bin/python -P bench/topology.py [--quick] [--networks ieee-eu-lv,kerber_dorfnetz]
        [--seeds 1,2] [--days 1,3] [--no-scale]
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.topology.identify import identify
from apps.topology.inputs import PHASES, Inputs
from apps.topology.result import TopologyResult
from apps.topology.synthetic import Truth
from bench import _topology_world as rig


def _pn() -> Any:
    import pandapower.networks as pn

    return pn


def _simbench(code: str) -> Callable[[], Any]:
    def make() -> Any:
        import simbench  # optional: pip install simbench (not a project dependency)

        net = simbench.get_simbench_net(code)
        # PV comes from the simulator's own profiles; the static generators would double it
        net.sgen.drop(net.sgen.index, inplace=True)
        return net

    return make


NETWORKS: dict[str, Callable[[], Any] | None] = {
    "ieee-eu-lv": None,
    "kerber_dorfnetz": lambda: _pn().create_kerber_dorfnetz(),
    "kerber_vorstadtnetz_kabel_1": lambda: _pn().create_kerber_vorstadtnetz_kabel_1(),
    "kerber_landnetz_freileitung_2": lambda: _pn().create_kerber_landnetz_freileitung_2(),
    "dickert_long_cable": lambda: _pn().create_dickert_lv_network(
        feeders_range="long", linetype="cable", customer="multiple", case="average"
    ),
    "kerber_landnetz_kabel_2": lambda: _pn().create_kerber_landnetz_kabel_2(),
    "dickert_middle_ohl_good": lambda: _pn().create_dickert_lv_network(
        feeders_range="middle", linetype="C&OHL", customer="multiple", case="good"
    ),
    "simbench_1-LV-rural2--0-sw": _simbench("1-LV-rural2--0-sw"),
    "simbench_1-LV-semiurb4--0-sw": _simbench("1-LV-semiurb4--0-sw"),
    "simbench_1-LV-urban6--0-sw": _simbench("1-LV-urban6--0-sw"),
}
DIMENSIONS = ("phase", "branch", "box")
GOALS = {"phase": 0.995, "branch": 0.99, "box": 0.99}


def network_path(name: str, folder: Path) -> str | None:
    """The network as the simulator loads it (a name or a pandapower JSON file), or None when
    it cannot be made here (SimBench not installed)."""
    make = NETWORKS[name]
    if make is None:
        return name
    import pandapower as pp

    path = folder / f"{name}.json"
    if not path.exists():
        try:
            net = make()
        except ImportError:
            return None
        pp.to_json(net, str(path))
    return str(path)


# -- scoring --------------------------------------------------------------------------------------


@dataclass
class Score:
    meters: int
    correct: dict[str, int]
    unresolved: dict[str, int]
    wrong: dict[str, list[str]]
    foreign: tuple[int, int, int]  # found, present, false positives
    missing: tuple[int, int, int]
    baseline: dict[str, int]
    cpu_s: float
    peak_mb: float

    def rate(self, dim: str) -> float:
        return self.correct[dim] / max(self.meters, 1)

    def base_rate(self, dim: str) -> float:
        return self.baseline[dim] / max(self.meters, 1)


def score(inputs: Inputs, truth: Truth, res: TopologyResult, *, cpu_s: float, peak_mb: float) -> Score:
    ours = [m for m in res.meters if m.meter_id not in truth.foreign]
    correct = dict.fromkeys(DIMENSIONS, 0)
    unresolved = dict.fromkeys(DIMENSIONS, 0)
    wrong: dict[str, list[str]] = {d: [] for d in DIMENSIONS}
    for m in ours:
        for d in DIMENSIONS:
            got = getattr(m, d).value
            if got == getattr(truth, d)[m.meter_id]:
                correct[d] += 1
            elif got is None:
                unresolved[d] += 1
            else:
                wrong[d].append(m.meter_id)
    flagged = {m.meter_id for m in res.meters if m.status == "foreign"}
    found = {m.address for m in res.missing if m.address}
    base = baseline(inputs)
    hits = {
        d: sum(1 for m in ours if base[m.meter_id][d] == getattr(truth, d)[m.meter_id]) for d in DIMENSIONS
    }
    return Score(
        meters=len(ours),
        correct=correct,
        unresolved=unresolved,
        wrong=wrong,
        foreign=(len(flagged & truth.foreign), len(truth.foreign), len(flagged - truth.foreign)),
        missing=(len(found & truth.missing), len(truth.missing), len(found - truth.missing)),
        baseline=hits,
        cpu_s=cpu_s,
        peak_mb=peak_mb,
    )


def _corr(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pearson correlation of x (T,) with every column of ys (T, c), over the points all have."""
    out = np.full(ys.shape[1], -np.inf)
    for j in range(ys.shape[1]):
        ok = np.isfinite(x) & np.isfinite(ys[:, j])
        if ok.sum() > 3 and np.std(x[ok]) > 0 and np.std(ys[ok, j]) > 0:
            out[j] = float(np.corrcoef(x[ok], ys[ok, j])[0, 1])
    return out


def baseline(inputs: Inputs) -> dict[str, dict[str, str | None]]:
    """The plain correlation method (see the module docstring)."""
    c = inputs.curves
    col = {d: j for j, d in enumerate(c.devices)}
    units = [(b.id, b.monitor) for b in inputs.branches if b.monitor in col]
    unit_v = np.stack([np.nanmean(c.voltage[:, col[u]], axis=1) for _, u in units], axis=1) if units else None
    terms = [(x.id, x.terminal) for x in inputs.boxes if x.terminal in col]
    out: dict[str, dict[str, str | None]] = {}
    for m in inputs.meters:
        guess: dict[str, str | None] = {"phase": m.phase.value, "branch": m.branch.value, "box": m.box.value}
        if m.id in col:
            v = c.voltage[:, col[m.id], 0]
            p = int(np.argmax(_corr(v, inputs.transformer_voltage)))
            guess["phase"] = PHASES[p]
            if unit_v is not None:
                guess["branch"] = units[int(np.argmax(_corr(v, unit_v)))][0]
            if terms:
                tv = np.stack([c.voltage[:, col[t], p] for _, t in terms], axis=1)
                guess["box"] = terms[int(np.argmax(_corr(v, tv)))][0]
        out[m.id] = guess
    return out


# -- runs -----------------------------------------------------------------------------------------


def run_one(inputs: Inputs, truth: Truth, *, memory: bool = False) -> Score:
    """Identify once for the CPU time and, with ``memory``, once more under tracemalloc for the
    peak of what the identification allocates (tracing slows it several times)."""
    gc.collect()
    t0 = time.process_time()
    res = identify(inputs, terminal="bench", computed_at=0.0)
    cpu = time.process_time() - t0
    peak = float("nan")
    if memory:
        del res
        gc.collect()
        tracemalloc.start()
        res = identify(inputs, terminal="bench", computed_at=0.0)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return score(inputs, truth, res, cpu_s=cpu, peak_mb=peak)


def numpy_rss_mb() -> float:
    """Resident memory numpy's import adds to a fresh interpreter (MB)."""
    code = (
        "import resource,sys;a=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;import numpy;"
        "b=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;print((b-a)/1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}"


def line(name: str, days: float, seed: int, variant: str, s: Score) -> str:
    acc = " ".join(_pct(s.rate(d)) for d in DIMENSIONS)
    base = " ".join(_pct(s.base_rate(d)) for d in DIMENSIONS)
    unres = sum(s.unresolved.values())
    f, m = s.foreign, s.missing
    return (
        f"{name[:30]:30s} {variant:9s} {days:3.0f}d s{seed} {s.meters:5d}  {acc}  unres {unres:2d}  "
        f"foreign {f[0]}/{f[1]} fp {f[2]}  missing {m[0]}/{m[1]} fp {m[2]}  "
        f"cpu {s.cpu_s:5.1f}s | baseline {base}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two networks, one seed, one day, no scale run")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--days", default="1,3")
    parser.add_argument("--no-scale", action="store_true", help="skip the 250 and 2,200 meter runs")
    args = parser.parse_args()
    names = args.networks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    days_list = [float(d) for d in args.days.split(",")]
    if args.quick:
        names, seeds, days_list = names[:2], seeds[:1], days_list[:1]
    variants = {
        "default": rig.Errors(),
        "no-signal": replace(rig.Errors(), injections=0),
    }
    totals: dict[tuple[str, float], list[Score]] = {}
    t_start = time.time()
    print(
        f"{'network':30s} {'variant':9s} days seed  mtrs   phase branch    box"
        "                                                                    baseline phase branch box"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = network_path(name, Path(tmp))
            if path is None:
                print(f"{name:30s} skipped: simbench not installed")
                continue
            for days in days_list:
                for seed in seeds:
                    for variant, errors in variants.items():
                        inputs, truth = rig.station_inputs(path, seed=seed, errors=errors, days=days)
                        s = run_one(inputs, truth)
                        totals.setdefault((variant, days), []).append(s)
                        print(line(name, days, seed, variant, s), flush=True)
                        bad = {d: v[:4] for d, v in s.wrong.items() if v}
                        if bad:
                            print(f"{'':30s}   wrong: {bad}")
        print(f"\n{time.time() - t_start:.0f} s wall. Totals (all networks and seeds):")
        for (variant, days), runs in sorted(totals.items()):
            n = sum(s.meters for s in runs)
            acc = {d: sum(s.correct[d] for s in runs) / n for d in DIMENSIONS}
            base = {d: sum(s.baseline[d] for s in runs) / n for d in DIMENSIONS}
            f = [sum(s.foreign[j] for s in runs) for j in range(3)]
            m = [sum(s.missing[j] for s in runs) for j in range(3)]
            print(
                f"  {variant:9s} {days:3.0f}d {n:6d} meters: "
                + " ".join(f"{d} {_pct(acc[d])} %" for d in DIMENSIONS)
                + f"  foreign {f[0]}/{f[1]} fp {f[2]}  missing {m[0]}/{m[1]} fp {m[2]}"
                + "  | baseline "
                + " ".join(f"{d} {_pct(base[d])} %" for d in DIMENSIONS)
            )
        print("  goals: " + " ".join(f"{d} >= {100 * g:.1f} %" for d, g in GOALS.items()))
        if not (args.quick or args.no_scale):
            print(f"\nnumpy import: +{numpy_rss_mb():.1f} MB resident")
            for target, replicas in ((250, 5), (2200, 40)):
                for days in days_list:
                    inputs, truth = rig.station_inputs("ieee-eu-lv", seed=1, days=days, replicas=replicas)
                    s = run_one(inputs, truth, memory=True)
                    goal = (5.0, 30.0) if target == 250 else (60.0, None)
                    print(
                        f"scale ~{target}: {len(inputs.meters)} meters {days:.0f}d: CPU {s.cpu_s:.1f} s "
                        f"(goal {goal[0]:.0f}), peak {s.peak_mb:.1f} MB"
                        + (f" (goal {goal[1]:.0f})" if goal[1] else "")
                        + "  accuracy "
                        + " ".join(f"{d} {_pct(s.rate(d))}" for d in DIMENSIONS)
                    )


if __name__ == "__main__":
    main()
