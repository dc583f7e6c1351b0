"""Topology inputs from the simulator's physics: any pandapower LV network solved for a day,
measured as meters measure, with archive errors, a neighbour's meters and unlisted meters.

Bench helper (not a test, not the simulator's world): ``sim.physics`` solves the network with
real household load (UCI) and an MV supply that moves; this module adds per-device accuracy
noise (voltage N(0, (class/3 V)^2) rounded to 0.1 V, currents to 1 mA, energy registers with a
gain error truncated to 0.01 kWh), the units (a branch unit at every branch head, a box terminal
in every box), signature detections along the true path with miss and cross-talk rates, and the
archive's errors. Foreign meters are customers of a second network (the neighbour) solved on
the same MV supply; missing meters are ours, left out of the archive but heard by the carrier
module with their curves read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apps.topology.inputs import BoxInfo, BranchInfo, Curves, Detection, Fact, Inputs, MeterInfo, UnknownNode
from apps.topology.synthetic import Truth
from sim.physics import build_profiles, load_network, solve

START = 1_717_171_200.0  # 2024-06-01 00:00 Asia/Shanghai
PHASES = "ABC"


@dataclass(frozen=True)
class Errors:
    phase: float = 0.1
    branch: float = 0.05
    box: float = 0.05
    foreign: int = 2
    missing: int = 2
    miss_rate: float = 0.1
    crosstalk_rate: float = 0.005
    injections: int = 3  # per meter: three nights of the service's plan (it keeps 7 days of them)
    accuracy_pct: float = 0.5


def station_inputs(
    source: str,
    *,
    seed: int = 1,
    errors: Errors = Errors(),
    days: float = 1.0,
    replicas: int = 1,
) -> tuple[Inputs, Truth]:
    """Inputs and ground truth for ``days`` of ``source`` (``replicas`` copies of its feeders in
    parallel below its one transformer: one electrical network)."""
    rng = np.random.default_rng([seed, 0x70B0])
    steps = round(days * 96)
    nw = load_network(source, seed=seed).replicate(replicas)
    prof = build_profiles(nw, start=START, steps=steps + 1, seed=seed, pv_share=0.15)
    hz = solve(nw, prof)
    n = nw.n_customers
    t = START + 900.0 * np.arange(steps + 1)
    sigma = errors.accuracy_pct / 100.0 / 3.0
    # the neighbour: another network on the same MV supply
    nb = load_network("ieee-eu-lv", seed=seed + 7)
    nb_prof = build_profiles(nb, start=START, steps=steps + 1, seed=seed + 7, pv_share=0.0)
    nb_prof = type(nb_prof)(
        nb_prof.start,
        nb_prof.step_s,
        nb_prof.p_kw,
        nb_prof.q_kvar,
        prof.mv_pu[: nb_prof.steps],
        nb_prof.load_kw,
        nb_prof.pv_kw,
        nb_prof.prosumer,
    )
    nb_hz = solve(nb, nb_prof)

    devices: list[str] = []
    vol: list[np.ndarray] = []
    cur: list[np.ndarray] = []
    en: list[np.ndarray] = []

    def measure(dev: str, v3: np.ndarray, i3: np.ndarray, kw: np.ndarray) -> None:
        gain = 1.0 + rng.normal(0, sigma)
        vm = np.round(v3 * (1.0 + rng.normal(0, sigma, v3.shape)), 1)
        im = np.round(i3 * (1.0 + rng.normal(0, sigma, i3.shape)), 3)
        kwh = 0.5 * (kw[:-1] + kw[1:]) * 0.25
        fwd = np.concatenate([[0.0], np.cumsum(np.clip(kwh, 0, None))]) * gain + rng.uniform(100, 3000)
        rev = np.concatenate([[0.0], np.cumsum(np.clip(-kwh, 0, None))]) * gain
        devices.append(dev)
        vol.append(vm)
        cur.append(im)
        en.append(np.diff(np.floor(fwd * 100) / 100 - np.floor(rev * 100) / 100))

    ph = nw.phase_index()
    volts = hz.voltage_v[: steps + 1]
    kw = hz.p_kw[: steps + 1]
    amps = np.divide(kw * 1000.0, np.maximum(volts, 1.0) * 0.95)
    ids = [f"m-{i + 1:04d}" for i in range(n)]
    for i in range(n):
        v3 = np.full((steps + 1, 3), np.nan)
        i3 = np.full((steps + 1, 3), np.nan)
        v3[:, 0] = volts[:, i]
        i3[:, 0] = amps[:, i]
        measure(ids[i], v3, i3, kw[:, i])
    branches = list(nw.branches)
    parent = {b: (branches[h[3]] if h[3] >= 0 else None) for b, h in zip(branches, nw.heads, strict=True)}
    cust_branch = [c.branch for c in nw.customers]
    cust_box = [c.box for c in nw.customers]

    def below(b: str) -> set[str]:
        out = {b}
        changed = True
        while changed:
            changed = False
            for x, p in parent.items():
                if p in out and x not in out:
                    out.add(x)
                    changed = True
        return out

    units: dict[str, str] = {}
    for b in branches:
        members = [i for i in range(n) if cust_branch[i] in below(b)]
        if not members:
            continue
        i3 = np.zeros((steps + 1, 3))
        for i in members:
            i3[:, ph[i]] += amps[:, i]
        bi = branches.index(b)
        sections = [bi] + [j for j in range(len(branches)) if branches[j] in below(b) and j != bi]
        head_kw = hz.branch_p[: steps + 1][:, sections].sum(axis=1)
        v3 = np.repeat(volts[:, members].mean(axis=1, keepdims=True), 3, axis=1)
        units[b] = f"bu-{b}"
        measure(units[b], v3, i3, head_kw)
    terminals: dict[str, str] = {}
    for box in sorted(set(cust_box)):
        members = [i for i in range(n) if cust_box[i] == box]
        i3 = np.zeros((steps + 1, 3))
        v3 = np.full((steps + 1, 3), np.nan)
        for i in members:
            i3[:, ph[i]] += amps[:, i]
            v3[:, ph[i]] = volts[:, i]
        v3 = np.where(np.isnan(v3), np.nanmean(v3, axis=1, keepdims=True), v3)
        terminals[box] = f"bt-{box}"
        measure(terminals[box], v3, i3, kw[:, members].sum(axis=1))
    # foreign meters: customers of the neighbour, listed in our archive on some branch/box
    foreign_ids = []
    nb_v, nb_kw = nb_hz.voltage_v[: steps + 1], nb_hz.p_kw[: steps + 1]
    for j, k in enumerate(rng.choice(nb.n_customers, size=errors.foreign, replace=False)):
        fid = f"m-{9001 + j}"
        v3 = np.full((steps + 1, 3), np.nan)
        i3 = np.full((steps + 1, 3), np.nan)
        v3[:, 0] = nb_v[:, k]
        i3[:, 0] = nb_kw[:, k] * 1000.0 / np.maximum(nb_v[:, k], 1.0) / 0.95
        measure(fid, v3, i3, nb_kw[:, k])
        foreign_ids.append(fid)
    curves = Curves(t, tuple(devices), np.stack(vol, axis=1), np.stack(cur, axis=1), np.stack(en, axis=1))
    trafo = hz.trafo_p[: steps + 1]
    trafo_e = 0.5 * (trafo[:-1] + trafo[1:]) * 0.25 * (1.0 + rng.normal(0, 0.002 / 3, 3))

    # the archive, with errors
    missing = set(rng.choice(n, size=errors.missing, replace=False).tolist())
    hplc = rng.random(n) < 0.3
    listed = [i for i in range(n) if i not in missing]

    def pick(rate: float) -> set[int]:
        k = round(rate * len(listed))
        return set(rng.choice(listed, size=k, replace=False).tolist()) if k else set()

    bad_ph, bad_br, bad_bx = pick(errors.phase), pick(errors.branch), pick(errors.box)
    boxes_of = {b: sorted({cust_box[i] for i in range(n) if cust_branch[i] == b}) for b in branches}
    meters = []
    wrong: dict[str, list[str]] = {}
    for i in listed:
        p_true, b_true, x_true = PHASES[ph[i]], cust_branch[i], cust_box[i]
        p, b, x = p_true, b_true, x_true
        if i in bad_ph:
            p = PHASES[(ph[i] + int(rng.integers(1, 3))) % 3]
            wrong.setdefault(ids[i], []).append("phase")
        if i in bad_br and len(branches) > 1:
            b = str(rng.choice([c for c in branches if c != b_true and boxes_of.get(c)]))
            x = str(rng.choice(boxes_of[b]))
            wrong.setdefault(ids[i], []).append("branch")
        elif i in bad_bx and len(boxes_of[b_true]) > 1:
            x = str(rng.choice([c for c in boxes_of[b_true] if c != x_true]))
            wrong.setdefault(ids[i], []).append("box")
        meters.append(
            MeterInfo(
                ids[i],
                f"01{i + 1:010d}",
                "hplc" if hplc[i] else "rs485",
                Fact(p),
                Fact(b),
                Fact(x),
                cco_phase=p_true if hplc[i] else None,
                in_cco_network=True if hplc[i] else None,
            )
        )
    for j, fid in enumerate(foreign_ids):
        b = str(rng.choice([c for c in branches if boxes_of.get(c)]))
        meters.append(
            MeterInfo(
                fid,
                f"88{j + 1:010d}",
                "rs485",
                Fact(PHASES[j % 3]),
                Fact(b),
                Fact(str(rng.choice(boxes_of[b]))),
            )
        )
    unknown = tuple(UnknownNode(f"01{i + 1:010d}", PHASES[ph[i]], ids[i]) for i in sorted(missing))
    # signature current along the true path
    unit_ids = list(units.values()) + list(terminals.values())
    detections = []
    for i in listed:
        path = {units[a] for a in ancestors(cust_branch[i], parent) if a in units} | {terminals[cust_box[i]]}
        for shot in range(errors.injections):
            heard = tuple(
                u
                for u in unit_ids
                if rng.random() < ((1 - errors.miss_rate) if u in path else errors.crosstalk_rate)
            )
            detections.append(Detection(ids[i], START + 3600 * (1 + shot), heard, tuple(unit_ids)))
    for fid in foreign_ids:
        for shot in range(errors.injections):
            heard = tuple(u for u in unit_ids if rng.random() < errors.crosstalk_rate)
            detections.append(Detection(fid, START + 3600 * (1 + shot), heard, tuple(unit_ids)))
    inputs = Inputs(
        meters=tuple(meters),
        branches=tuple(BranchInfo(b, parent[b], units.get(b)) for b in branches),
        boxes=tuple(
            BoxInfo(x, next(cust_branch[i] for i in range(n) if cust_box[i] == x), terminals.get(x))
            for x in sorted(set(cust_box))
        ),
        curves=curves,
        transformer_energy=trafo_e,
        transformer_voltage=hz.trafo_v[: steps + 1],
        detections=tuple(detections),
        unknown_nodes=unknown,
        miss_rate=errors.miss_rate,
        crosstalk_rate=errors.crosstalk_rate,
    )
    truth = Truth(
        phase={ids[i]: PHASES[ph[i]] for i in range(n)},
        branch={ids[i]: cust_branch[i] for i in range(n)},
        box={ids[i]: cust_box[i] for i in range(n)},
        foreign=frozenset(foreign_ids),
        missing=frozenset(f"01{i + 1:010d}" for i in missing),
        archive_errors={k: tuple(v) for k, v in wrong.items()},
    )
    return inputs, truth


def ancestors(branch: str, parent: dict[str, str | None]) -> list[str]:
    out: list[str] = []
    here: str | None = branch
    while here is not None and here not in out:
        out.append(here)
        here = parent.get(here)
    return out


__all__ = ["Errors", "station_inputs"]
