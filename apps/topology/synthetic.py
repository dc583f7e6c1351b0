"""A synthetic station area for the topology methods: a radial LV network with a linear voltage
model, households with realistic daily load, measured the way meters measure.

Layer: apps (topology), pure numpy. For the unit tests and ``bench/topology.py`` (the
simulator's pandapower physics is the real test; this is a fast, dependency-free stand-in that
still has the structure that makes topology identification hard). Must not import sim.

Physics (per 15-minute point, resistive approximation of a 4-wire network):

* the MV supply ``E(t)`` wanders by ~1 % (common mode for every meter);
* branch ``b`` is a chain of cable segments from the board; boxes hang at segment ends and
  neighbouring boxes along the chain are filled in order, so neighbours share a box;
* the phase-to-neutral drop over a segment is ``R I_p + R_n (I_p - (I_q + I_r) / 2)`` (the
  neutral carries the unbalance), summed along the path, plus the transformer's own drop;
* losses ``R I^2`` of every segment and the transformer add to the unit and transformer energy.

Measurement: voltage with accuracy-class noise ``N(0, (class/3 * V)^2)`` rounded to 0.1 V,
current to 0.001 A, energy registers with a per-meter gain error truncated to 0.01 kWh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .inputs import BoxInfo, BranchInfo, Curves, Detection, Fact, Inputs, MeterInfo, UnknownNode
from .numeric import FArray

STEP_S = 900.0
V_NOMINAL = 230.0


@dataclass(frozen=True)
class Truth:
    phase: dict[str, str]  # meter id -> A | B | C | ABC
    branch: dict[str, str]
    box: dict[str, str]
    foreign: frozenset[str] = frozenset()  # listed meters fed by another transformer
    moved: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # meter -> (from, to, at)
    missing: frozenset[str] = frozenset()  # addresses of our meters the archive lacks
    archive_errors: dict[str, tuple[str, ...]] = field(default_factory=dict)  # meter -> wrong dims


@dataclass(frozen=True)
class Spec:
    branches: int = 5
    boxes_per_branch: tuple[int, int] = (3, 8)
    meters_per_box: tuple[int, int] = (4, 9)
    days: float = 1.0
    accuracy_pct: float = 0.5
    three_phase_share: float = 0.03
    pv_share: float = 0.15
    hplc_share: float = 0.3
    wrong_phase: float = 0.1
    wrong_branch: float = 0.05
    wrong_box: float = 0.05
    foreign: int = 0
    missing: int = 0
    units: bool = True
    box_terminals: bool = True
    injections: int = 2  # signature-current injections per meter
    moves: int = 0  # meters moved to another phase in the last half of the window
    read_unknown: bool = True  # the terminal read the curves of the nodes the archive lacks
    miss_rate: float = 0.1
    crosstalk_rate: float = 0.005
    segment_ohm: tuple[float, float] = (0.003, 0.012)
    transformer_ohm: float = 0.004
    start: float = 1_717_200_000.0  # 2024-06-01 00:00 UTC


@dataclass
class _Meter:
    id: str
    address: str
    branch: int
    box: int
    node: int  # segment index along its branch
    phase: int  # 0..2, or 3 = three-phase
    load: FArray  # (T,) kW
    ours: bool = True
    listed: bool = True
    hplc: bool = False
    moved_to: int | None = None  # a phase it is moved to at point ``move_at``
    move_at: int = 0

    def phase_at(self, n_t: int) -> np.ndarray:
        """(T,) its phase at every point."""
        ph = np.full(n_t, self.phase, dtype=np.int64)
        if self.moved_to is not None:
            ph[self.move_at :] = self.moved_to
        return ph


def _daily_load(rng: np.random.Generator, t: FArray, *, pv: bool) -> FArray:
    hours = (t / 3600.0 + 8.0) % 24.0  # local time, UTC+8
    base = rng.uniform(0.08, 0.3)
    morning = rng.uniform(0.2, 1.0) * np.exp(-0.5 * ((hours - rng.uniform(6.5, 8.5)) / 0.8) ** 2)
    evening = rng.uniform(0.5, 2.5) * np.exp(-0.5 * ((hours - rng.uniform(18.0, 21.0)) / 1.5) ** 2)
    events = np.zeros_like(t)
    for _ in range(rng.poisson(6 * max(len(t) / 96, 1))):
        k = rng.integers(len(t))
        width = rng.integers(1, 6)
        events[k : k + width] += rng.gamma(2.0, 0.6)
    load = base + morning + evening + events + rng.normal(0, 0.05, len(t)).clip(-0.05, None)
    if pv:
        sun = np.clip(np.sin(np.pi * (hours - 6.0) / 12.0), 0.0, None) * rng.uniform(2.0, 5.0)
        load = load - sun * rng.uniform(0.7, 1.0)
    return np.asarray(load, dtype=np.float64)


def _addresses(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add(prefix + f"{int(rng.integers(0, 10 ** (12 - len(prefix)))):0{12 - len(prefix)}d}")
    return sorted(out)


def station(spec: Spec = Spec(), *, seed: int = 0) -> tuple[Inputs, Truth]:
    rng = np.random.default_rng([seed, 0x7070])
    points = round(spec.days * 96) + 1
    t = np.asarray(spec.start + STEP_S * np.arange(points), dtype=np.float64)
    meters: list[_Meter] = []
    seg_r: list[FArray] = []
    box_of: list[tuple[int, int]] = []  # box index -> (branch, node)
    k = 0
    for b in range(spec.branches):
        n_boxes = int(rng.integers(spec.boxes_per_branch[0], spec.boxes_per_branch[1] + 1))
        seg_r.append(rng.uniform(*spec.segment_ohm, size=n_boxes))
        for node in range(n_boxes):
            box = len(box_of)
            box_of.append((b, node))
            for _ in range(int(rng.integers(spec.meters_per_box[0], spec.meters_per_box[1] + 1))):
                k += 1
                three = rng.random() < spec.three_phase_share
                pv = rng.random() < spec.pv_share
                load = _daily_load(rng, t, pv=pv) * (3.0 if three else 1.0)
                meters.append(
                    _Meter(f"m-{k:04d}", "", b, box, node, 3 if three else int(rng.integers(3)), load)
                )
    addr = _addresses(rng, len(meters), "01")
    for m, a in zip(meters, addr, strict=True):
        m.address = a
        m.hplc = rng.random() < spec.hplc_share
    # missing meters: ours, not listed (and in our carrier network: HPLC)
    for j in rng.choice(len(meters), size=min(spec.missing, len(meters)), replace=False):
        meters[j].listed = False
        meters[j].hplc = True
    single = [m for m in meters if m.phase < 3 and m.listed]
    for j in rng.choice(len(single), size=min(spec.moves, len(single)), replace=False):
        single[j].moved_to = (single[j].phase + int(rng.integers(1, 3))) % 3
        single[j].move_at = int(rng.integers(points // 2, points - 16))
    # foreign meters: listed, fed by the neighbour (own load, own network)
    foreign: list[_Meter] = []
    for j, a in enumerate(_addresses(rng, spec.foreign, "88")):
        b = int(rng.integers(spec.branches))
        box = int(rng.choice([x for x, (bb, _) in enumerate(box_of) if bb == b]))
        load = _daily_load(rng, t, pv=False)
        phase = int(rng.integers(3))
        hplc = bool(rng.random() < 0.5)
        foreign.append(_Meter(f"m-{9001 + j}", a, b, box, box_of[box][1], phase, load, ours=False, hplc=hplc))

    # -- physics --------------------------------------------------------------------------------
    mv = V_NOMINAL * (
        1.0 + 0.01 * np.cumsum(rng.normal(0, 0.15, points)) / np.sqrt(points) * 4 + 0.004 * np.sin(t / 7000.0)
    )
    ours = [m for m in meters if m.ours]
    # per branch, per node, per phase: current flowing through the segment into that node
    n_t = points
    amps = {}  # meter id -> (T, 3) current per phase (A)
    for m in ours:
        cur = np.zeros((n_t, 3))
        if m.phase == 3:
            cur += (m.load * 1000.0 / (3 * V_NOMINAL))[:, None]
        else:
            cur[np.arange(n_t), m.phase_at(n_t)] = m.load * 1000.0 / V_NOMINAL
        amps[m.id] = cur
    volt_node: dict[tuple[int, int], FArray] = {}
    seg_current: dict[tuple[int, int], FArray] = {}
    trafo_i = np.zeros((n_t, 3))
    for b in range(spec.branches):
        nodes = len(seg_r[b])
        down = [np.zeros((n_t, 3)) for _ in range(nodes)]
        for m in ours:
            if m.branch == b:
                down[m.node] += amps[m.id]
        for node in range(nodes - 1, 0, -1):
            down[node - 1] = down[node - 1] + down[node]
        for node in range(nodes):
            seg_current[(b, node)] = down[node]
        trafo_i += down[0]

    def drop(i3: FArray, r: float) -> FArray:
        i_n = i3 - 0.5 * (np.roll(i3, 1, axis=1) + np.roll(i3, 2, axis=1))
        return r * i3 + r * i_n

    board = mv[:, None] - drop(trafo_i, spec.transformer_ohm)
    for b in range(spec.branches):
        v = board.copy()
        for node in range(len(seg_r[b])):
            v = v - drop(seg_current[(b, node)], float(seg_r[b][node]))
            volt_node[(b, node)] = v.copy()
    # the neighbour: same MV, its own load-driven drops (a daily swing and fast appliance steps)
    own_load = np.stack([_daily_load(rng, t, pv=False) * rng.uniform(15, 40) for _ in range(3)], axis=1)
    neighbour = mv[:, None] - own_load * rng.uniform(0.03, 0.08, 3)[None, :] - rng.uniform(0.5, 3, 3)

    # -- measurement ----------------------------------------------------------------------------
    devices: list[str] = []
    vol: list[FArray] = []
    cur_l: list[FArray] = []
    en: list[FArray] = []
    sigma = spec.accuracy_pct / 100.0 / 3.0

    def measure(dev: str, v3: FArray, i3: FArray, kwh: FArray, phases: list[np.ndarray]) -> None:
        gain = 1.0 + rng.normal(0, sigma)
        vm = np.full((n_t, 3), np.nan)
        im = np.full((n_t, 3), np.nan)
        rows = np.arange(n_t)
        for slot, ph in enumerate(phases):
            vm[:, slot] = np.round(v3[rows, ph] * (1.0 + rng.normal(0, sigma, n_t)), 1)
            im[:, slot] = np.round(i3[rows, ph] * (1.0 + rng.normal(0, sigma, n_t)), 3)
        fwd = np.concatenate([[0.0], np.cumsum(np.clip(kwh, 0, None))]) * gain + rng.uniform(100, 3000)
        rev = np.concatenate([[0.0], np.cumsum(np.clip(-kwh, 0, None))]) * gain
        reg = np.floor(fwd * 100) / 100 - np.floor(rev * 100) / 100
        devices.append(dev)
        vol.append(vm)
        cur_l.append(im)
        en.append(np.diff(reg))

    def interval(x: FArray) -> FArray:  # kW at points -> kWh per interval (trapezoid)
        return np.asarray(0.5 * (x[:-1] + x[1:]) * STEP_S / 3600.0)

    for m in meters + foreign:
        if m.ours:
            v3 = volt_node[(m.branch, m.node)]
            i3 = amps[m.id]
        else:
            v3 = neighbour
            i3 = np.zeros((n_t, 3))
            i3[:, m.phase] = m.load * 1000.0 / V_NOMINAL
        phases = [np.full(n_t, k) for k in range(3)] if m.phase == 3 else [m.phase_at(n_t)]
        measure(m.id, v3, i3, interval(m.load), phases)
    losses = np.zeros((n_t, 3))
    unit_ids: dict[int, str] = {}
    for b in range(spec.branches):
        branch_loss = np.zeros((n_t, 3))
        for node in range(len(seg_r[b])):
            branch_loss += seg_current[(b, node)] ** 2 * float(seg_r[b][node]) * 2.0 / 1000.0
        losses += branch_loss
        if spec.units:
            head = seg_current[(b, 0)]
            power = sum(m.load for m in ours if m.branch == b) + branch_loss.sum(axis=1)
            uid = f"bu-F{b + 1}"
            unit_ids[b] = uid
            measure(uid, volt_node[(b, 0)], head, interval(power), [np.full(n_t, k) for k in range(3)])
    term_ids: dict[int, str] = {}
    if spec.box_terminals:
        for x, (b, node) in enumerate(box_of):
            inside = [m for m in ours if m.box == x]
            if not inside:
                continue
            i3 = sum((amps[m.id] for m in inside), np.zeros((n_t, 3)))
            tid = f"bt-{x + 1:03d}"
            term_ids[x] = tid
            measure(
                tid,
                volt_node[(b, node)],
                i3,
                interval(np.sum([m.load for m in inside], axis=0)),
                [np.full(n_t, k) for k in range(3)],
            )
    trafo_kw = np.zeros((n_t, 3))
    for m in ours:
        if m.phase == 3:
            trafo_kw += (m.load / 3.0)[:, None]
        else:
            trafo_kw[np.arange(n_t), m.phase_at(n_t)] += m.load
    trafo_kw = trafo_kw + losses + trafo_i**2 * spec.transformer_ohm / 1000.0
    trafo_e = np.stack([interval(trafo_kw[:, ph]) for ph in range(3)], axis=1) * (
        1.0 + rng.normal(0, 0.002 / 3, 3)
    )
    curves = Curves(t, tuple(devices), np.stack(vol, axis=1), np.stack(cur_l, axis=1), np.stack(en, axis=1))

    # -- the archive, with errors ---------------------------------------------------------------
    branch_name = [f"F{b + 1}" for b in range(spec.branches)]
    box_name = [f"F{b + 1}-X{node + 1:02d}" for b, node in box_of]
    listed = [m for m in meters if m.listed] + foreign
    errors: dict[str, list[str]] = {}

    def wrong(rate: float) -> set[str]:
        ids = [m.id for m in listed if m.ours]
        count = round(rate * len(ids))
        return set(rng.choice(ids, size=count, replace=False).tolist()) if count else set()

    bad_phase, bad_branch, bad_box = wrong(spec.wrong_phase), wrong(spec.wrong_branch), wrong(spec.wrong_box)
    infos = []
    for m in listed:
        ph = "ABC" if m.phase == 3 else "ABC"[m.phase]
        br, bx = branch_name[m.branch], box_name[m.box]
        if m.id in bad_phase and m.phase != 3:
            ph = "ABC"[(m.phase + int(rng.integers(1, 3))) % 3]
            errors.setdefault(m.id, []).append("phase")
        if m.id in bad_branch and spec.branches > 1:
            b2 = (m.branch + int(rng.integers(1, spec.branches))) % spec.branches
            br = branch_name[b2]
            bx = box_name[int(rng.choice([x for x, (bb, _) in enumerate(box_of) if bb == b2]))]
            errors.setdefault(m.id, []).append("branch")
        elif m.id in bad_box:
            others = [x for x, (bb, _) in enumerate(box_of) if bb == m.branch and x != m.box]
            if others:
                bx = box_name[int(rng.choice(others))]
                errors.setdefault(m.id, []).append("box")
        cco = None
        if m.hplc and m.ours:
            cco = "ABC" if m.phase == 3 else "ABC"[m.phase if m.moved_to is None else m.moved_to]
        infos.append(
            MeterInfo(
                m.id,
                m.address,
                "hplc" if m.hplc else "rs485",
                Fact(ph),
                Fact(br),
                Fact(bx),
                cco_phase=cco,
                in_cco_network=(m.ours if m.hplc else None),
            )
        )
    branches = tuple(BranchInfo(branch_name[b], None, unit_ids.get(b)) for b in range(spec.branches))
    boxes = tuple(BoxInfo(box_name[x], branch_name[b], term_ids.get(x)) for x, (b, _) in enumerate(box_of))
    detections = []
    units = list(unit_ids.values()) + list(term_ids.values())
    for m in [m for m in meters if m.listed] + foreign:
        on_path = {unit_ids.get(m.branch), term_ids.get(m.box)} - {None} if m.ours else set()
        for shot in range(spec.injections):
            heard = tuple(
                u
                for u in units
                if rng.random() < ((1 - spec.miss_rate) if u in on_path else spec.crosstalk_rate)
            )
            detections.append(Detection(m.id, float(t[0] + 3600 * (shot + 1)), heard, tuple(units)))
    unknown = tuple(
        UnknownNode(m.address, "ABC"[m.phase] if m.phase < 3 else "ABC", m.id if spec.read_unknown else None)
        for m in meters if not m.listed and m.hplc
    )  # fmt: skip
    inputs = Inputs(
        meters=tuple(infos), branches=branches, boxes=boxes, curves=curves, transformer_energy=trafo_e,
        transformer_voltage=board, detections=tuple(detections), unknown_nodes=unknown,
        miss_rate=spec.miss_rate, crosstalk_rate=spec.crosstalk_rate,
    )  # fmt: skip
    truth = Truth(
        phase={
            m.id: ("ABC" if m.phase == 3 else "ABC"[m.phase if m.moved_to is None else m.moved_to])
            for m in meters + foreign
        },
        branch={m.id: branch_name[m.branch] for m in meters + foreign},
        box={m.id: box_name[m.box] for m in meters + foreign},
        foreign=frozenset(m.id for m in foreign),
        missing=frozenset(m.address for m in meters if not m.listed),
        archive_errors={k: tuple(v) for k, v in errors.items()},
        moved={
            m.id: ("ABC"[m.phase], "ABC"[m.moved_to], float(t[m.move_at]))
            for m in meters
            if m.moved_to is not None
        },
    )
    return inputs, truth


__all__ = ["Spec", "Truth", "station"]
