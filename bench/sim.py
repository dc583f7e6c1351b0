"""Benchmark: vectorized horizon solve vs pandapower runpp_3ph, IEEE European LV feeder.

Not a test: prints timings and the ratio. Usage: .venv/bin/python bench/sim.py [--pp-steps N]
(pandapower runs N steps, extrapolated to 672; --pp-steps 672 runs the full loop).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

# this file is named sim.py: drop its own folder from the path so `sim` is the package
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import numpy as np  # noqa: E402
import pandapower as pp  # noqa: E402

from sim.physics import build_profiles, load_network, solve  # noqa: E402

STEPS = 672
START = 1717200000.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pp-steps", type=int, default=24)
    args = ap.parse_args()
    t = time.perf_counter()
    nw = load_network("ieee-eu-lv", seed=1)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    prof = build_profiles(nw, start=START, steps=STEPS, seed=1, pv_share=0.2)
    t_prof = time.perf_counter() - t
    t = time.perf_counter()
    hz = solve(nw, prof)
    t_solve = time.perf_counter() - t

    net = copy.deepcopy(nw.net)
    ph = nw.phase_index()
    p_cols = ["p_a_mw", "p_b_mw", "p_c_mw"]
    q_cols = ["q_a_mvar", "q_b_mvar", "q_c_mvar"]
    rows = [c.load_index for c in nw.customers]
    n = min(args.pp_steps, STEPS)
    dv = 0.0
    t = time.perf_counter()
    for k in range(n):
        for j in range(3):
            net.asymmetric_load.loc[rows, p_cols[j]] = np.where(ph == j, prof.p_kw[k] / 1000.0, 0.0)
            net.asymmetric_load.loc[rows, q_cols[j]] = np.where(ph == j, prof.q_kvar[k] / 1000.0, 0.0)
        net.ext_grid.vm_pu = prof.mv_pu[k]
        pp.runpp_3ph(net, numba=False)
        vm = net.res_bus_3ph[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
        v = vm[[c.bus for c in nw.customers], ph] * nw.vn_lv_kv * 1000.0 / np.sqrt(3.0)
        dv = max(dv, float(np.abs(v - hz.voltage_v[k]).max()))
    t_pp = (time.perf_counter() - t) * STEPS / n

    print(f"network load + model build   : {t_load:6.2f} s")
    print(f"profiles ({STEPS} steps)       : {t_prof:6.2f} s (UCI CSV cached)")
    print(f"vectorized solve ({STEPS} steps): {t_solve:6.2f} s")
    how = "measured" if n == STEPS else f"{n} steps extrapolated"
    print(f"pandapower runpp_3ph loop    : {t_pp:6.2f} s ({how})")
    print(f"speed-up                     : {t_pp / t_solve:6.1f} x")
    print(f"max |dV| vs pandapower       : {dv * 1000:.2f} mV over {n} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
