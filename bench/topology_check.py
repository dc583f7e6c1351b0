"""Topology's 2-hourly check: CPU of one check at ~250 and 2,200 meters, against a baseline
revision of the app in the same run, with the results compared.

The check the service runs every ``check_interval_h`` over a full 24-h window, two hours after
the previous result: here the previous result is a full identification of points 0..96 and the
check identifies points 8..104 (``identify(previous=...)``). Printed per size:

* baseline: ``apps/topology`` as of ``--baseline`` (git revision, default b4a0ece: before the
  incremental check), extracted into a temporary package and run on the same inputs -- its check
  was a full identification;
* full: today's full identification (the daily run and ``topology.run``);
* check: today's incremental check;

with CPU (``time.process_time``, one thread for BLAS), the ratio to the baseline, whether the
check's per-meter outcome (status, phase/branch/box values and outcomes, moves) equals the full
identification's and the baseline's, and the errors against the ground truth. Inputs come from
the simulator's physics (``bench/_topology_world.py``: IEEE EU LV feeders replicated under one
transformer, the archive wrong for 10 % of phases and 5 % of branches and boxes, 2 foreign and
2 missing meters, signature detections with 10 % missed).

    OPENBLAS_NUM_THREADS=1 nice -n 19 .venv/bin/python -P bench/topology_check.py \
        [--sizes 250,2200] [--baseline REV] [--no-baseline] [--seed 1]
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # CPU of one thread, as on the terminal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.topology.identify import identify, window  # noqa: E402
from apps.topology.result import DIMENSIONS, TopologyResult, outcomes  # noqa: E402
from apps.topology.synthetic import Truth  # noqa: E402
from bench import _topology_world as rig  # noqa: E402

#: IEEE EU LV has 55 customers: replicas per size
REPLICAS = {250: 4, 2200: 40}
WINDOW = 97  # 24 h of 15-min points
STEP = 8  # the check runs 2 h after the previous result


def baseline_identify(rev: str, folder: Path) -> Callable[..., TopologyResult]:
    """``identify`` of ``apps/topology`` at git revision ``rev``, as a package of its own."""
    name = "topology_baseline"
    package = folder / name
    package.mkdir()
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{rev}:apps/topology"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for file in listing:
        if file.endswith(".py") and file != "__init__.py":
            text = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{rev}:apps/topology/{file}"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            (package / file).write_text(text)
    (package / "__init__.py").write_text("")
    sys.path.insert(0, str(folder))
    module = importlib.import_module(f"{name}.identify")
    return module.identify  # type: ignore[no-any-return]


def errors(result: TopologyResult, truth: Truth) -> str:
    ours = [m for m in result.meters if m.meter_id not in truth.foreign]
    wrong = {d: sum(getattr(m, d).value != getattr(truth, d)[m.meter_id] for m in ours) for d in DIMENSIONS}
    flagged = {m.meter_id for m in result.meters if m.status == "foreign"}
    return (
        " ".join(f"{d} {wrong[d]}" for d in DIMENSIONS)
        + f"  foreign {len(flagged & truth.foreign)}/{len(truth.foreign)} fp {len(flagged - truth.foreign)}"
    )


def timed(run: Callable[..., TopologyResult], *args: Any, **kw: Any) -> tuple[TopologyResult, float]:
    t0 = time.process_time()
    result = run(*args, **kw)
    return result, time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,2200", help="station sizes (250 and/or 2200)")
    parser.add_argument("--baseline", default="b4a0ece", help="git revision of the baseline app")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = None if args.no_baseline else baseline_identify(args.baseline, Path(tmp))
        for size in (int(s) for s in args.sizes.split(",")):
            inputs, truth = rig.station_inputs(
                "ieee-eu-lv", seed=args.seed, days=(WINDOW + STEP) / 96, replicas=REPLICAS[size]
            )
            before, now = window(inputs, 0, WINDOW), window(inputs, STEP, WINDOW + STEP)
            print(f"~{size}: {len(inputs.meters)} listed meters, {now.points} points (24 h)", flush=True)
            previous = identify(before, terminal="bench", computed_at=0.0)
            full, full_s = timed(identify, now, terminal="bench", computed_at=1.0)
            check, check_s = timed(identify, now, terminal="bench", computed_at=1.0, previous=previous)
            rows = []
            if old is not None:
                base, base_s = timed(old, now, terminal="bench", computed_at=1.0)
                rows.append(("baseline (its check = full)", base, base_s))
            rows += [("full (daily, topology.run)", full, full_s), ("check (incremental)", check, check_s)]
            ref = rows[0][2]
            for label, result, cpu in rows:
                ratio = ref / max(cpu, 1e-9)
                print(f"  {label:28s} CPU {cpu:7.2f} s  x{ratio:5.1f}  errors: {errors(result, truth)}")
            same = outcomes(check) == outcomes(full)
            print(f"  check's outcome per meter == full's: {same}", end="")
            if old is not None:
                print(f"; == baseline's: {outcomes(check) == outcomes(rows[0][1])}", end="")
            print(flush=True)


if __name__ == "__main__":
    main()
