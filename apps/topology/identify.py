"""One identification: inputs -> phase, branch and box of every meter, foreign and missing meters.

Layer: apps (topology), pure numpy. Must not read the store, the bus or the station model
(``inputs.Inputs`` carries what they hold), and must not decide what to do with the result
(the service proposes corrections and publishes).

Order, each step using what the previous found:

1. **Branch**: energy balance of the meters against every branch monitoring unit (a meter feeds
   its own branch's unit and every unit upstream), signature-current detections by branch units,
   the archive's branch weighted by its provenance.
2. **Phase** (single-phase meters; three-phase meters are recognized by their B/C voltages or
   the archive): energy balance against the transformer's per-phase energy; current balance at
   each branch unit's and box terminal's phases (a meter's current appears on one phase of the
   units on its path, read at the same curve points); voltage correlation with the other
   meters of its branch on each phase after removing the common mode; the carrier module's
   phase report (AFN10 F31); the archive's phase by provenance.
3. **Box**, branch by branch: energy balance against the box terminals, detections by box
   terminals, voltage correlation with the same-phase meters of each box (meters of one box
   share every upstream voltage drop: the voltage-drop hierarchy), the archive by provenance.
4. **Household-transformer relation (户变)**: a meter is foreign when at least two of: its energy
   is better left out of our balances; its voltage follows none of our phases; our carrier
   module does not hear it (HPLC meters). Missing meters: addresses our carrier module hears
   that no archive meter has, and energy at a unit that none of its meters explains.

Every balance also has a label "not ours" (it feeds nothing); a meter ending there is a
foreign candidate, and its energy no longer bends the others.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import assign, changes, evidence, profile, voltage
from .inputs import PHASES, Curves, Inputs, MeterInfo
from .numeric import BArray, FArray, IArray, robust_std, softmax_confidence
from .result import Dimension, Labels, MeterResult, MissingMeter, TopologyResult

NOT_OURS = "~"  # the "not ours" label in every dimension
#: prior log-probability that a listed meter is not ours (archives list few foreign meters)
LOG_FOREIGN_PRIOR = float(np.log(1e-5))
HEARD_NOTE = "heard by our carrier module (AFN10 F21), not in the archive"
UNEXPLAINED_NOTE = (
    "energy at the branch unit that no listed meter explains (an unlisted meter or unmetered load)"
)
#: our carrier module networks nearly every STA of the station area and few of the neighbour's
P_HEARD_IF_OURS = 0.98
P_HEARD_IF_FOREIGN = 0.05


@dataclass(frozen=True)
class Settings:
    #: a dimension whose identified value has less confidence than this stays unresolved
    confidence_min: float = 0.9
    #: curve points a meter needs (voltage and energy) for its own evidence
    min_points: int = 24
    #: foreign: how many robust sigmas (log scale) a meter's unexplained voltage variation must
    #: exceed the others'
    voltage_outlier_z: float = 4.0
    #: foreign: log-likelihood by which the balances must prefer "not ours"
    energy_foreign_margin: float = 10.0
    #: foreign: log-likelihood ratio by which the signature-current detections (no unit on any
    #: path of ours heard the meter's injections) must favour "not ours", after this many. One
    #: night plans one injection per meter; one that neither its box terminal nor its branch unit
    #: heard (both miss: ~1 % at 10 % missed detections) is 4.6 nats, a lone unit's miss (2.3) is
    #: not enough; and "foreign" needs a second, independent test besides
    signature_foreign_llr: float = 3.0
    signature_min_injections: int = 1
    #: online phase change: the first and the last this many points (half the window when it is
    #: shorter, at least twice ``change_min_points``) are identified on their own; a meter surely
    #: on one phase in the first and surely on another in the last moved
    change_window_points: int = 32
    change_min_points: int = 8
    change_llr: float = 25.0
    #: missing: unexplained energy at a unit worth reporting, as a share of its energy and kWh/day
    unexplained_share: float = 0.05
    unexplained_kwh_per_day: float = 2.0
    outer_iterations: int = 2


# -- the prepared frame ---------------------------------------------------------------------------


@dataclass
class Frame:
    """Matrices of the customer meters, in ``inputs.meters`` order."""

    meters: tuple[MeterInfo, ...]
    energy: FArray  # (T-1, n) NaN filled
    voltage: FArray  # (T, n) slot A (single-phase voltage), NaN where missing
    current: FArray  # (T, n) slot A
    three_phase: BArray  # (n,)
    has_data: BArray  # (n,) enough curve points to say anything
    missing_points: IArray  # (n,)
    phase_energy: FArray  # (T-1, n, 3) per-phase energy of three-phase meters (zeros otherwise)
    branch_ids: tuple[str, ...]
    box_ids: tuple[str, ...]
    unit_of_branch: dict[str, str]  # branch -> its monitoring unit's device id (with curve data)
    terminal_of_box: dict[str, str]
    parent: dict[str, str | None]
    box_branch: dict[str, str | None]
    col: dict[str, int]  # device id -> column in the curves
    not_ours: FArray = field(default_factory=lambda: np.zeros(0))  # (n,) log-likelihood of "not ours"
    forced: BArray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (n,) decided not ours

    @property
    def n(self) -> int:
        return len(self.meters)

    def not_ours_column(self, n_real: int) -> FArray:
        """(n, n_real + 1) evidence addition: the "not ours" column, and -inf for every real
        label of a meter already decided not ours."""
        out = np.zeros((self.n, n_real + 1))
        out[:, -1] = self.not_ours
        out[self.forced, :-1] = -1e6
        return out


def _fill(x: FArray) -> tuple[FArray, IArray]:
    """NaN -> the column's median of valid values (0 when none); returns (filled, NaN count)."""
    bad = ~np.isfinite(x)
    count = bad.sum(axis=0).astype(np.int64)
    if not bad.any():
        return x, count
    med = np.zeros(x.shape[1])
    for j in np.nonzero(count)[0]:
        ok = ~bad[:, j]
        med[j] = float(np.median(x[ok, j])) if ok.any() else 0.0
    return np.where(bad, med[None, :], x), count


def prepare(inputs: Inputs, settings: Settings) -> Frame:
    """The archive's meters, then the carrier nodes the archive lacks whose curves were read
    (they take part in every balance like the others: their energy is ours)."""
    c = inputs.curves
    col = c.index()
    meters = inputs.meters + tuple(
        u.as_meter() for u in inputs.unknown_nodes if u.device is not None and u.device in col
    )
    n = len(meters)
    t = len(c.times)
    energy = np.full((max(t - 1, 0), n), np.nan)
    volt = np.full((t, n), np.nan)
    cur = np.full((t, n), np.nan)
    three = np.zeros(n, dtype=bool)
    phase_energy = np.zeros((max(t - 1, 0), n, 3))
    for i, m in enumerate(meters):
        j = col.get(m.id)
        if j is None:
            continue
        energy[:, i] = c.energy[:, j]
        volt[:, i] = c.voltage[:, j, 0]
        cur[:, i] = c.current[:, j, 0]
        bc = np.isfinite(c.voltage[:, j, 1:]).all(axis=1).sum()
        three[i] = m.phase.value == "ABC" or bc * 2 >= max(t, 1)
        if three[i]:
            # split its energy over the phases by each phase's V * I at the curve points
            p = np.nan_to_num(c.voltage[:, j, :] * c.current[:, j, :])
            share = 0.5 * (p[:-1] + p[1:])
            total = share.sum(axis=1, keepdims=True)
            share = np.where(total > 0, share / np.where(total > 0, total, 1.0), 1.0 / 3.0)
            phase_energy[:, i, :] = np.nan_to_num(c.energy[:, j])[:, None] * share
    energy_f, missing = _fill(energy)
    has = (missing <= max(energy.shape[0] - settings.min_points, 0)) & (
        np.isfinite(volt).sum(axis=0) >= settings.min_points
    )
    if energy.shape[0] == 0:
        has[:] = False
    branch_ids = tuple(
        sorted({b.id for b in inputs.branches} | {m.branch.value for m in meters if m.branch.value})
    )
    box_ids = tuple(sorted({x.id for x in inputs.boxes} | {m.box.value for m in meters if m.box.value}))
    unit_of_branch = {b.id: b.monitor for b in inputs.branches if b.monitor and b.monitor in col}
    terminal_of_box = {x.id: x.terminal for x in inputs.boxes if x.terminal and x.terminal in col}
    not_ours = np.full(n, LOG_FOREIGN_PRIOR)
    for i, m in enumerate(meters):
        if m.in_cco_network is True:
            not_ours[i] += float(np.log(P_HEARD_IF_FOREIGN / P_HEARD_IF_OURS))
        elif m.in_cco_network is False:
            not_ours[i] += float(np.log((1 - P_HEARD_IF_FOREIGN) / (1 - P_HEARD_IF_OURS)))
    return Frame(
        meters=meters,
        energy=energy_f,
        voltage=volt,
        current=np.nan_to_num(cur),
        three_phase=three,
        has_data=has,
        missing_points=missing,
        phase_energy=phase_energy,
        branch_ids=branch_ids,
        box_ids=box_ids,
        unit_of_branch=unit_of_branch,
        terminal_of_box=terminal_of_box,
        parent={b.id: b.parent for b in inputs.branches},
        box_branch={x.id: x.branch for x in inputs.boxes},
        col=col,
        not_ours=not_ours,
        forced=np.zeros(n, dtype=bool),
    )


def ancestors(branch: str, parent: dict[str, str | None]) -> list[str]:
    """``branch`` and every branch above it, innermost first."""
    out, seen = [], set()
    here: str | None = branch
    while here is not None and here not in seen:
        out.append(here)
        seen.add(here)
        here = parent.get(here)
    return out


# -- dimension results ----------------------------------------------------------------------------


@dataclass
class Decided:
    """One dimension for every meter: labels (index into ``labels``), confidence, evidence parts."""

    labels: tuple[str, ...]  # the label set; the last is NOT_OURS
    chosen: IArray
    confidence: FArray
    parts: dict[str, FArray] = field(default_factory=dict)  # name -> (n, K) log-likelihood part
    solution: assign.Solution | None = None
    problem: assign.Problem | None = None
    _balances: FArray | None = field(default=None, repr=False)  # the balances' scores summed, once
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)  # meter -> evidence beyond the parts

    def value(self, i: int) -> str | None:
        label = self.labels[int(self.chosen[i])]
        return None if label == NOT_OURS else label

    def not_ours_margin(self, i: int) -> float:
        """How much the balances prefer "not ours" for meter i over its best real label."""
        if self.solution is None:
            return 0.0
        if self._balances is None:
            self._balances = sum(self.solution.balance_scores.values(), np.zeros_like(self.solution.score))
        real = self._balances[i, :-1]
        total = self._balances
        return float(total[i, -1] - real.max()) if real.size else 0.0


def _decide(
    labels: tuple[str, ...],
    sol: assign.Solution,
    parts: dict[str, FArray],
    problem: assign.Problem | None = None,
) -> Decided:
    conf = softmax_confidence(sol.score)[np.arange(len(sol.labels)), sol.labels]
    return Decided(labels, sol.labels, conf, {**parts, **sol.balance_scores}, sol, problem)


def _unit_energy(inputs: Inputs, frame: Frame, device: str) -> FArray:
    """A unit's interval energy, NaN where it recorded none (``_balance`` leaves those out)."""
    return np.asarray(inputs.curves.energy[:, frame.col[device]], dtype=np.float64)


def _balance(
    name: str, series: FArray, targets: FArray, incidence: FArray, *, fixed: FArray | None = None, **kw: Any
) -> assign.Balance:
    """An ``assign.Balance`` without the points some target did not record (a unit's gap, the
    window's start before the first curve point): their series, targets and fixed parts are
    zeroed, so no labelling gains or loses there. A missing target read as zero would call
    every meter's energy at that point surplus and push meters out of the balance."""
    gap = np.asarray(~np.isfinite(targets).reshape(len(targets), -1).all(axis=1), dtype=bool)
    if gap.any():
        series = np.where(gap[:, None], 0.0, series)
        fixed = None if fixed is None else np.where(gap[:, None, None], 0.0, fixed)
    targets = np.where(np.isfinite(targets), targets, 0.0)
    return assign.Balance(name, series, targets, incidence, fixed=fixed, **kw)


def identify_branches(
    inputs: Inputs, frame: Frame, previous: Decided | None = None, *, warm: IArray | None = None
) -> Decided:
    """Branch of every meter. ``previous``: this identification's own first pass (the second
    starts there); ``warm`` (n,): label indices an earlier identification found (-1: none), where
    an incremental one starts instead of the relaxation."""
    labels = (*frame.branch_ids, NOT_OURS)
    k = len(labels)
    pos = {b: j for j, b in enumerate(labels)}
    prior = evidence.prior_loglik([m.branch for m in frame.meters], labels[:-1])
    prior = np.concatenate([prior, np.zeros((frame.n, 1))], axis=1) + frame.not_ours_column(k - 1)
    units = sorted(set(frame.unit_of_branch.values()))
    unit_branch = {u: b for b, u in frame.unit_of_branch.items()}
    on_path = np.zeros((k, len(units)))
    for b in frame.branch_ids:
        for a in ancestors(b, frame.parent):
            u = frame.unit_of_branch.get(a)
            if u is not None:
                on_path[pos[b], units.index(u)] = 1.0
    sig, _ = evidence.signature_loglik(
        [m.id for m in frame.meters], inputs.detections, units, on_path,
        miss_rate=inputs.miss_rate, crosstalk_rate=inputs.crosstalk_rate,
    )  # fmt: skip
    parts = {"archive": prior, "signature": sig}
    balances: list[assign.Balance] = []
    if units and frame.energy.shape[0]:
        y = np.stack([_unit_energy(inputs, frame, u) for u in units], axis=1)[:, None, :]
        tops = [b for b in frame.branch_ids if frame.parent.get(b) is None]
        partition = bool(tops) and all(b in frame.unit_of_branch for b in tops)
        top_units = tuple(
            sorted({units.index(frame.unit_of_branch[b]) for b in tops if b in frame.unit_of_branch})
        )
        balances.append(
            _balance(
                "branch_units", np.where(frame.has_data, frame.energy, 0.0), y, on_path, partition=partition,
                partition_of=top_units,
                sigma_floor=0.01, relative_floor=0.005, one_sided=True,
            )
        )  # fmt: skip
        del unit_branch
    total = prior + sig
    start = np.array(
        [
            pos.get(m.branch.value or "", k - 1) if m.branch.known else int(np.argmax(total[i]))
            for i, m in enumerate(frame.meters)
        ]
    )
    if previous is not None:
        start = np.where(frame.forced, k - 1, previous.chosen)
    elif warm is not None:
        start = np.where(warm >= 0, warm, start)
    problem = assign.Problem(tuple(balances), total)
    sol = assign.solve(problem, start=start, use_relaxation=previous is None and warm is None)
    return _decide(labels, sol, parts, problem)


def _voltage_features(frame: Frame) -> tuple[FArray, BArray]:
    single = ~frame.three_phase
    z = np.zeros((0, frame.n))
    usable = np.zeros(frame.n, dtype=bool)
    if frame.voltage.shape[0] >= 8 and single.any():
        feats, ok = voltage.features(np.where(single[None, :], frame.voltage, np.nan))
        z, usable = feats, ok & single & frame.has_data
    return z, usable


def identify_phases(
    inputs: Inputs,
    frame: Frame,
    branches: Decided,
    boxes: Decided,
    settings: Settings,
    previous: Decided | None = None,
    *,
    warm: IArray | None = None,
) -> Decided:
    """Phase of every meter (``previous`` and ``warm`` as in ``identify_branches``)."""
    labels = (*PHASES, NOT_OURS)
    n = frame.n
    facts = [m.phase for m in frame.meters]
    # "not ours" is the branch step's call: a meter of ours takes a phase, one it found not
    # ours takes none (the phase balances alone would push out whatever they cannot place)
    not_ours = np.array([branches.value(i) is None for i in range(n)]) | frame.forced
    prior = np.concatenate([evidence.prior_loglik(facts, PHASES), np.zeros((n, 1))], axis=1)
    prior[~not_ours, 3] = -1e6
    prior[not_ours, :3] = -1e6
    cco = np.concatenate(
        [evidence.cco_phase_loglik([m.cco_phase for m in frame.meters]), np.zeros((n, 1))], axis=1
    )
    single = ~frame.three_phase
    live = frame.has_data & single
    series_e = np.where(live, frame.energy, 0.0)
    inc = np.vstack([np.eye(3), np.zeros((1, 3))])
    balances: list[assign.Balance] = []
    if inputs.transformer_energy is not None and frame.energy.shape[0]:
        fixed = frame.phase_energy[:, frame.three_phase & frame.has_data, :].sum(axis=1)[:, None, :]
        balances.append(
            _balance(
                "transformer", series_e, np.asarray(inputs.transformer_energy)[:, None, :], inc,
                fixed=fixed, partition=True, sigma_floor=0.01, relative_floor=0.002, one_sided=True,
            )
        )  # fmt: skip
    balances += _current_balances(inputs, frame, branches, boxes, live)
    z, usable = _voltage_features(frame)
    branch_of = np.array([branches.labels.index(branches.value(i) or NOT_OURS) for i in range(n)])
    nb = len(branches.labels)
    phase_labels = np.argmax(prior + cco, axis=1)
    start = np.array(
        [
            PHASES.index(m.phase.value) if m.phase.value in PHASES else int(phase_labels[i])
            for i, m in enumerate(frame.meters)
        ]
    )
    if previous is not None:
        start = np.where(frame.forced, 3, previous.chosen)
    elif warm is not None:
        start = np.where(warm >= 0, warm, start)
    volt_ll = np.zeros((n, 4)) if previous is None else previous.parts.get("voltage", np.zeros((n, 4)))
    sol: assign.Solution | None = None
    base = prior + cco
    for _ in range(max(1, settings.outer_iterations)):
        sol = assign.solve(
            assign.Problem(tuple(balances), base + volt_ll), start=start if sol is None else sol.labels,
            use_relaxation=sol is None and previous is None and warm is None,
        )  # fmt: skip
        if not usable.any():
            break
        cur = np.where(sol.labels < 3, sol.labels, -1)
        groups = np.where((cur >= 0) & (branch_of >= 0), branch_of * 3 + cur, -1)
        ll = voltage.loo_loglik(z, usable, groups, nb * 3)
        volt_ll = np.zeros((n, 4))
        rows = np.arange(n)
        for k in range(3):
            volt_ll[:, k] = ll[rows, np.clip(branch_of * 3 + k, 0, nb * 3 - 1)]
        volt_ll[~usable] = 0.0
    assert sol is not None
    # three-phase meters: their label is ABC, decided outside the balances
    decided = _decide(labels, sol, {"archive": prior, "cco": cco, "voltage": volt_ll})
    decided.problem = assign.Problem(tuple(balances), base + volt_ll)
    return decided


def _current_balances(
    inputs: Inputs, frame: Frame, branches: Decided, boxes_found: Decided, live: BArray
) -> list[assign.Balance]:
    """Per-phase current balances at the branch units (their sections: measured minus the
    monitored branches right below) and at the box terminals (a box terminal's box)."""
    c = inputs.curves
    out: list[assign.Balance] = []
    inc = np.vstack([np.eye(3), np.zeros((1, 3))])
    series = np.where(live[None, :], frame.current, 0.0)
    # branch units: a meter's group is the nearest monitored branch on its path
    monitored = sorted(frame.unit_of_branch)
    if monitored and c.current.shape[0]:
        gpos = {b: g for g, b in enumerate(monitored)}
        nearest: dict[str, str | None] = {}
        for b in frame.branch_ids:
            nearest[b] = next((a for a in ancestors(b, frame.parent) if a in gpos), None)
        targets = np.stack([c.current[:, frame.col[frame.unit_of_branch[b]], :] for b in monitored], axis=1)
        section = targets.copy()
        reversed_: BArray = np.asarray((targets < 0).any(axis=2))  # (T, G) a unit saw power flow back
        measured = np.abs(targets)  # (T, G, 3) what the units that make up each section measured
        for b in monitored:  # subtract the heads of monitored branches directly below
            up = frame.parent.get(b)
            above = nearest.get(up) if up is not None else None
            if above is not None:
                section[:, gpos[above], :] -= targets[:, gpos[b], :]
                reversed_[:, gpos[above]] |= (targets[:, gpos[b], :] < 0).any(axis=1)
                measured[:, gpos[above], :] += np.abs(targets[:, gpos[b], :])
        groups = np.array(
            [
                gpos[nb]
                if (v := branches.value(i)) is not None and (nb := nearest.get(v)) is not None
                else -1
                for i in range(frame.n)
            ],
            dtype=np.int64,
        )
        fixed = _three_phase_currents(inputs, frame, groups, len(monitored))
        unit_series, section, fixed = _one_way(series, section, fixed, groups, reversed_)
        out.append(
            _balance(
                "unit_currents", unit_series, section, inc, groups=groups, fixed=fixed, residual_model="gain",
                sigma_floor=0.05, relative_floor=0.01, floor_base=_mean_magnitude(measured),
            )
        )  # fmt: skip
    boxes = sorted(frame.terminal_of_box)
    if boxes and c.current.shape[0]:
        xpos = {x: g for g, x in enumerate(boxes)}
        targets = np.stack([c.current[:, frame.col[frame.terminal_of_box[x]], :] for x in boxes], axis=1)
        groups = np.array([xpos.get(boxes_found.value(i) or "", -1) for i in range(frame.n)], dtype=np.int64)
        fixed = _three_phase_currents(inputs, frame, groups, len(boxes))
        out.append(
            _balance(
                "box_currents", series, targets, inc, groups=groups, fixed=fixed, residual_model="gain",
                sigma_floor=0.05, relative_floor=0.01,
            )
        )  # fmt: skip
    return out


def _mean_magnitude(measured: FArray) -> FArray:
    """(G, 3) the mean of (T, G, 3) over the points each target recorded (0 where none)."""
    finite = np.isfinite(measured)
    return np.asarray(np.where(finite, measured, 0.0).sum(axis=0) / np.maximum(finite.sum(axis=0), 1))


def _one_way(
    series: FArray, targets: FArray, fixed: FArray, groups: IArray, reversed_: BArray
) -> tuple[FArray, FArray, FArray]:
    """The current balance where it holds: current magnitudes add up only while every flow in
    a section goes one way. At a point where a unit of the section, or a meter in it, sees power
    flow back (PV export), the section's magnitudes do not add: its target, its members' series
    and its fixed part are dropped there, so no labelling gains or loses at that point."""
    g = np.where(groups >= 0, groups, 0)
    member = groups >= 0
    back = reversed_.copy()
    neg = (series < 0) & member[None, :]
    if neg.any():
        t_idx, i_idx = np.nonzero(neg)
        back[t_idx, g[i_idx]] = True
    drop = back[:, g] & member[None, :]  # (T, n) a member's point in a dropped section
    series = np.where(drop, 0.0, series)
    targets = np.where(back[:, :, None], 0.0, targets)
    fixed = np.where(back[:, :, None], 0.0, fixed)
    return series, targets, fixed


def _three_phase_currents(inputs: Inputs, frame: Frame, groups: IArray, n_groups: int) -> FArray:
    """Per group and phase, the currents of the three-phase meters in it (known, not assigned)."""
    c = inputs.curves
    fixed = np.zeros((c.current.shape[0], n_groups, 3))
    for i in np.nonzero(frame.three_phase & frame.has_data & (groups >= 0))[0]:
        fixed[:, groups[i], :] += np.nan_to_num(c.current[:, frame.col[frame.meters[i].id], :])
    return fixed


def identify_boxes(
    inputs: Inputs, frame: Frame, branches: Decided, previous: Decided | None = None,
    *, warm: IArray | None = None,
) -> Decided:  # fmt: skip
    """Boxes, one branch at a time: a meter's candidates are the boxes of its identified branch
    (and boxes whose branch nobody knows). The voltage evidence compares a meter with
    the meters of each box on its archive phase (phases come after boxes: their current
    balance at the box terminals needs the boxes)."""
    labels = (*frame.box_ids, NOT_OURS)
    k = len(labels)
    n = frame.n
    pos = {x: j for j, x in enumerate(labels)}
    prior = np.concatenate(
        [evidence.prior_loglik([m.box for m in frame.meters], labels[:-1]), np.zeros((n, 1))], axis=1
    )
    terminals = sorted(frame.terminal_of_box.values())
    on_path = np.zeros((k, len(terminals)))
    for x, t in frame.terminal_of_box.items():
        on_path[pos[x], terminals.index(t)] = 1.0
    sig, _ = evidence.signature_loglik(
        [m.id for m in frame.meters], inputs.detections, terminals, on_path,
        miss_rate=inputs.miss_rate, crosstalk_rate=inputs.crosstalk_rate,
    )  # fmt: skip
    z, usable = _voltage_features(frame)
    ph = np.array([PHASES.index(m.phase.value) if m.phase.value in PHASES else -1 for m in frame.meters])
    box = np.array([pos.get(m.box.value or "", -1) for m in frame.meters], dtype=np.int64)
    ours = np.array([branches.value(i) is not None for i in range(n)], dtype=bool)
    groups = reference_groups(box, ph, ours)
    volt_ll = _box_voltage(z, usable, groups, ph, frame, k)
    chosen = np.full(n, k - 1, dtype=np.int64)
    score = np.full((n, k), -1e9)
    by_branch: dict[str | None, list[int]] = {}
    for i in range(n):
        by_branch.setdefault(branches.value(i), []).append(i)
    parts_all = {"archive": prior, "signature": sig, "voltage": volt_ll}
    balance_parts: dict[str, FArray] = {}
    for branch, members in by_branch.items():
        idx = np.array(members, dtype=np.int64)
        # a box of another branch is no candidate: its terminal would see none of its own meters
        # here and pull these in to explain its energy
        cand = sorted(x for x in frame.box_ids if frame.box_branch.get(x) in (branch, None))
        cand_labels = (*cand, NOT_OURS)
        cpos = np.array([pos[x] for x in cand_labels])
        if branch is None:  # not ours by the branch step: no box of ours either
            chosen[idx] = k - 1
            score[idx, k - 1] = 0.0
            continue
        ev = (prior + sig + volt_ll)[np.ix_(idx, cpos)]
        ev[:, -1] += frame.not_ours[idx]
        bal: list[assign.Balance] = []
        terms = [frame.terminal_of_box[x] for x in cand if x in frame.terminal_of_box]
        if terms and frame.energy.shape[0]:
            y = np.stack([_unit_energy(inputs, frame, t) for t in terms], axis=1)[:, None, :]
            inc = np.zeros((len(cand_labels), len(terms)))
            for j, x in enumerate(cand):
                if x in frame.terminal_of_box:
                    inc[j, terms.index(frame.terminal_of_box[x])] = 1.0
            live = frame.has_data[idx]
            bal.append(
                _balance(
                    "box_terminals", np.where(live, frame.energy[:, idx], 0.0), y, inc,
                    residual_model="gain", sigma_floor=0.01, relative_floor=0.005, one_sided=True,
                )
            )  # fmt: skip
        start = np.array(
            [
                cand_labels.index(frame.meters[i].box.value)
                if frame.meters[i].box.value in cand_labels
                else int(np.argmax(ev[r]))
                for r, i in enumerate(members)
            ]
        )
        if previous is not None:
            start = np.array(
                [
                    cand_labels.index(prev)
                    if (prev := previous.value(i)) is not None and prev in cand_labels
                    else len(cand_labels) - 1
                    for i in members
                ]
            )
        elif warm is not None:  # an earlier identification's box, where it is a candidate here
            known = {label: j for j, label in enumerate(cand_labels)}
            start = np.array(
                [known.get(labels[int(warm[i])], start[r]) if warm[i] >= 0 else start[r]
                 for r, i in enumerate(members)]
            )  # fmt: skip
        sol = assign.solve(
            assign.Problem(tuple(bal), ev), start=start, use_relaxation=previous is None and warm is None
        )
        chosen[idx] = cpos[sol.labels]
        score[np.ix_(idx, cpos)] = sol.score
        for name, part in sol.balance_scores.items():
            full = balance_parts.setdefault(name, np.zeros((n, k)))
            full[np.ix_(idx, cpos)] = part
    conf = softmax_confidence(score)[np.arange(n), chosen]
    features = (z, usable, groups, ph)
    notes = _keep_archive_box_against_voltage_alone(chosen, conf, score, volt_ll, box, features, frame)
    return Decided(labels, chosen, conf, {**parts_all, **balance_parts}, None, notes=notes)


def _box_voltage(z: FArray, usable: BArray, groups: IArray, ph: IArray, frame: Frame, k: int) -> FArray:
    """(n, k) each meter's voltage log-likelihood in each box, on its archive phase there."""
    n = frame.n
    volt_ll = np.zeros((n, k))
    if usable.any() and len(frame.box_ids):
        ll = voltage.loo_loglik(z, usable, groups, len(frame.box_ids) * 3)
        for j in range(len(frame.box_ids)):
            cols = np.clip(j * 3 + ph, 0, len(frame.box_ids) * 3 - 1)
            volt_ll[:, j] = np.where(ph >= 0, ll[np.arange(n), cols], 0.0)
        volt_ll[~usable] = 0.0
        _alone_is_no_evidence(volt_ll, groups, usable, frame)
    return volt_ll


#: a box correction the voltage alone carries must hold in every part of the window, ...
BOX_VOLTAGE_BLOCKS = 4
#: ... with a mean over the parts this many standard errors above zero
BOX_VOLTAGE_T = 3.0
#: the confidence of an archive box kept against voltage evidence that did not hold up
BOX_KEPT_CONFIDENCE = 0.6
#: ... and against voltage evidence that held in every part (the archive's box is in doubt)
BOX_DOUBTED_CONFIDENCE = 0.5


def _keep_archive_box_against_voltage_alone(
    chosen: IArray, conf: FArray, score: FArray, volt_ll: FArray, box: IArray,
    features: tuple[FArray, BArray, IArray, IArray], frame: Frame,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Keep the archive's box where only the voltage moved a meter out of it; returns, per meter
    kept so, what the voltage said (``voltage_prefers``, and whether that preference held in
    every part of the window, ``held``).

    The voltage alone corrects no box. Boxes of one branch differ in voltage by very little:
    which of two neighbouring boxes a meter correlates best with flips with the noise of a few
    hours (the default area's 2-day run corrected 9-13 meters to a wrong neighbour box, none
    right), and where a box's meters hang on different buses of the feeder a meter can follow
    the next box's meters better all the time (default seed 11: R2-F2-X03 -> X01, R3-F2-X03 ->
    X01, held in all of 4 and of 8 parts, both false; synthetic areas without box terminals:
    2 true and 5 false voltage-only corrections over 32 box errors). So the window is cut into
    ``BOX_VOLTAGE_BLOCKS`` parts and the voltage's preference of the chosen box over the
    archive's is computed in each, on references of the same size (``_matched_preference``: a
    larger group correlates better whatever the box); held in every part and significant over
    them (``BOX_VOLTAGE_T``), the archive's box is doubted (``BOX_DOUBTED_CONFIDENCE``), else
    kept at a modest confidence (the archive's word, not confirmed): unresolved either way, the
    preferred box named as evidence for an engineer to check. Where the other evidence
    (signature currents, box terminals' balance) already prefers the chosen box, nothing is
    checked: that correction stands."""
    z, usable, groups, ph = features
    moved = [
        i for i in range(frame.n)
        if 0 <= box[i] < len(frame.box_ids) and chosen[i] != box[i] and score[i, box[i]] > -1e8
        and (score[i, chosen[i]] - score[i, box[i]]) - (volt_ll[i, chosen[i]] - volt_ll[i, box[i]]) <= 0.0
    ]  # fmt: skip
    if not moved:
        return {}
    t = z.shape[0]
    size = t // BOX_VOLTAGE_BLOCKS
    parts = np.zeros((len(moved), BOX_VOLTAGE_BLOCKS))
    if size >= 4:
        for b in range(BOX_VOLTAGE_BLOCKS):
            block = z[b * size : (b + 1) * size]
            block = (block - block.mean(axis=0)) / np.maximum(block.std(axis=0), 1e-12)
            for r, i in enumerate(moved):
                if ph[i] >= 0:
                    own, other = groups[i], int(chosen[i]) * 3 + int(ph[i])
                    parts[r, b] = _matched_preference(block, i, own, other, usable, groups)
    mean = parts.mean(axis=1)
    se = parts.std(axis=1, ddof=1) / np.sqrt(BOX_VOLTAGE_BLOCKS)
    held = (parts > 0).all(axis=1) & (mean >= BOX_VOLTAGE_T * np.maximum(se, 1e-9)) & (size >= 4)
    notes: dict[int, dict[str, Any]] = {}
    for r, i in enumerate(moved):
        notes[i] = {"voltage_prefers": frame.box_ids[int(chosen[i])], "held": bool(held[r])}
        chosen[i] = box[i]
        conf[i] = BOX_DOUBTED_CONFIDENCE if held[r] else BOX_KEPT_CONFIDENCE
    return notes


#: most equal-size references drawn from one group for ``_matched_preference``
MATCHED_SUBSETS = 20


def _matched_preference(block: FArray, i: int, own: int, other: int, usable: BArray, groups: IArray) -> float:
    """Meter ``i``'s voltage log-likelihood for group ``other`` minus for ``own`` (its archive
    box's), each against references of the same number of members: the mean of more meters
    averages their noise away and correlates better whatever the box, so the larger group's
    members are taken ``m`` at a time (``m`` the smaller group's size, up to ``MATCHED_SUBSETS``
    subsets, averaged). 0 (no preference) when either group has no other member."""
    ids = np.arange(len(groups))
    a = [int(j) for j in ids[usable & (groups == own)] if j != i]
    c = [int(j) for j in ids[usable & (groups == other)] if j != i]
    m = min(len(a), len(c))
    if m == 0:
        return 0.0
    x = block[:, i]
    t = block.shape[0]

    def loglik(members: list[int]) -> float:
        out = []
        for subset in itertools.islice(itertools.combinations(members, m), MATCHED_SUBSETS):
            ref = block[:, list(subset)].mean(axis=1)
            nrm = float(np.sqrt((ref * ref).mean()))
            r = float((x * ref).mean() / nrm) if nrm > 1e-9 else 0.0
            out.append(float(voltage.correlation_loglik(r, t)))
        return float(np.mean(out))

    return loglik(c) - loglik(a)


def reference_groups(box: IArray, phase: IArray, ours: BArray) -> IArray:
    """(n,) each meter's voltage reference group, box x 3 + phase, from its archive box and
    identified phase; -1 without either, and for a meter the branch step found not ours: a
    neighbouring area's meter listed in a box of ours is no reference for that box (its voltage
    follows another transformer, and a meter of ours sharing the group with it alone would look
    out of place)."""
    return np.where((box >= 0) & (phase >= 0) & ours, box * 3 + phase, -1)


def _alone_is_no_evidence(volt_ll: FArray, groups: IArray, usable: BArray, frame: Frame) -> None:
    """A meter alone on its phase in its archive box has nothing to be compared with there: the
    leave-one-out likelihood of its own box is 0 (no reference), while every other box of its
    branch with meters on that phase correlates well (one feeder's voltage), so the voltage alone
    would take it out of its box. Its own box gets the best value of its branch's boxes: the
    voltage neither keeps nor moves it (the archive, signatures and box terminals decide)."""
    members = np.bincount(groups[usable & (groups >= 0)], minlength=len(frame.box_ids) * 3)
    for i in np.nonzero(usable & (groups >= 0))[0]:
        if members[groups[i]] > 1:
            continue
        own = int(groups[i]) // 3
        branch = frame.box_branch.get(frame.box_ids[own])
        same = [j for j, x in enumerate(frame.box_ids) if frame.box_branch.get(x) == branch]
        volt_ll[i, own] = volt_ll[i, same].max()


# -- 户变: foreign and missing ----------------------------------------------------------------------


def voltage_fit(frame: Frame, branches: Decided, phases: Decided) -> tuple[FArray, FArray]:
    """Per meter (NaN without usable voltage): its best correlation with the other meters of
    any (branch, phase) group of ours, and the rms of its own voltage variation that this best
    group leaves unexplained [V]. A meter of ours follows one of the groups, up to its
    measurement noise; a meter fed by another transformer follows none, and its own network's
    drops stay unexplained."""
    single = ~frame.three_phase
    out = np.full(frame.n, np.nan)
    left = np.full(frame.n, np.nan)
    if frame.voltage.shape[0] < 8 or not single.any():
        return out, left
    z, ok, scale = voltage.features_scaled(np.where(single[None, :], frame.voltage, np.nan))
    usable = ok & single & frame.has_data
    if not usable.any():
        return out, left
    nb = len(branches.labels)
    branch_of = np.array([branches.labels.index(branches.value(i) or NOT_OURS) for i in range(frame.n)])
    ph = np.where(phases.chosen < 3, phases.chosen, -1)
    ours = (ph >= 0) & (branch_of < nb - 1) & ~frame.forced
    groups = np.where(ours, branch_of * 3 + ph, -1)
    sums, counts = voltage.group_references(z, np.where(usable, groups, -1), nb * 3)
    t = z.shape[0]
    norms = np.sqrt((sums * sums).mean(axis=0))
    cross = (z.T @ sums) / t  # (n, G)
    own = np.where(usable & (groups >= 0), groups, -1)
    for i in np.nonzero(usable)[0]:
        c, nrm = cross[i].copy(), norms.copy()
        if own[i] >= 0:  # leave the meter out of its own group
            g = own[i]
            c[g] -= 1.0
            nrm[g] = np.sqrt(max(nrm[g] ** 2 - 2.0 * cross[i, g] + 1.0, 0.0))
        valid = (nrm > 1e-9) & (counts - (np.arange(len(counts)) == own[i]) >= 1)
        if valid.any():
            out[i] = float(np.max(c[valid] / nrm[valid]))
            left[i] = float(scale[i] * np.sqrt(max(1.0 - max(out[i], 0.0) ** 2, 0.0)))
    return out, left


def _signature_places(inputs: Inputs, frame: Frame) -> tuple[FArray, FArray]:
    """(n, P + 1) signature-current log-likelihood of every place of ours -- a box with its
    terminal and the branch units above it, or a branch without boxes -- and of "not ours"
    (last column), over every unit; and the injections per meter. Joint over branch units and
    box terminals: a meter of ours is missed by all units on its path at once only rarely."""
    units = sorted({*frame.unit_of_branch.values(), *frame.terminal_of_box.values()})
    upos = {u: j for j, u in enumerate(units)}
    paths: list[set[int]] = []
    boxed: set[str] = set()
    for x in frame.box_ids:
        b = frame.box_branch.get(x)
        path = {upos[frame.terminal_of_box[x]]} if x in frame.terminal_of_box else set()
        if b is not None:
            boxed.add(b)
            path |= {
                upos[frame.unit_of_branch[a]] for a in ancestors(b, frame.parent) if a in frame.unit_of_branch
            }
        paths.append(path)
    for b in frame.branch_ids:
        if b not in boxed:
            paths.append(
                {
                    upos[frame.unit_of_branch[a]]
                    for a in ancestors(b, frame.parent)
                    if a in frame.unit_of_branch
                }
            )
    on_path = np.zeros((len(paths) + 1, len(units)))
    for r, path in enumerate(paths):
        on_path[r, sorted(path)] = 1.0
    return evidence.signature_loglik(
        [m.id for m in frame.meters], inputs.detections, units, on_path,
        miss_rate=inputs.miss_rate, crosstalk_rate=inputs.crosstalk_rate,
    )  # fmt: skip


def _voltage_outliers(frame: Frame, branches: Decided, phases: Decided) -> tuple[FArray, FArray, FArray]:
    """``voltage_fit``'s (best fit, unexplained V) per meter and the robust z-score of the
    unexplained V (log scale) against the others' (0 where unknown or too few meters)."""
    fit, left = voltage_fit(frame, branches, phases)
    ok = np.isfinite(fit) & np.isfinite(left)
    zscore = np.zeros(frame.n)
    if ok.sum() >= 8:
        # the unexplained variation of a meter of ours is its measurement noise, alike for all;
        # compare on a log scale, robustly
        lg = np.log(np.maximum(left, 1e-3))
        med = float(np.median(lg[ok]))
        spread = max(float(robust_std(lg[ok])), 0.05)
        zscore = np.where(ok, (lg - med) / spread, 0.0)
    return fit, left, zscore


def unmetered_branches(frame: Frame) -> frozenset[str]:
    """Branches with no monitoring unit at them or above them: the board's own outlets (the
    simulator's ``F0``) and unmonitored feeders. No energy balance sees a meter there -- placing
    one there and calling it not ours are alike to every unit -- so a place on them rests on the
    other evidence (``_board_support``)."""
    return frozenset(
        b for b in frame.branch_ids if not any(a in frame.unit_of_branch for a in ancestors(b, frame.parent))
    )


def _outside_metered(branches: Decided, i: int, unmetered: frozenset[str]) -> float:
    """How much the branch units' balance prefers meter i off every metered branch (on an
    unmetered one, or not ours) over its best metered branch [nats]; 0 without that balance."""
    part = branches.parts.get("branch_units")
    if part is None:
        return 0.0
    metered = [j for j, b in enumerate(branches.labels[:-1]) if b not in unmetered]
    if not metered:
        return 0.0
    return float(part[i, -1] - part[i, metered].max())


#: nats by which the phase balances (the transformer's per-phase energy) must want a meter on
#: a phase of ours before a correction onto an unmetered branch is made: more than the foreign
#: test's margin, since that balance sums every meter of the area and a neighbour's meter with
#: the habits of a deficit on one phase fills it by some tens of nats (synthetic areas: 20-90)
BOARD_ENERGY_NATS = 30.0


def _board_support(
    frame: Frame, branches: Decided, phases: Decided, i: int, tests: dict[str, Any], zscore: FArray,
    settings: Settings,
) -> dict[str, Any]:  # fmt: skip
    """The evidence that meter i, which the branch step put where no unit's balance sees it, is
    there and ours. The metered balances can only say it is on no metered branch
    (``outside_metered_nats``): on the board's unmetered outlets and not ours are alike to every
    unit. What tells them apart: the transformer's per-phase energy balance wants it on a phase
    of ours (``ours_nats``), our carrier module hears it, and its voltage follows our busbar and
    feeders (its unexplained variation is no outlier); no foreign test fired. ``ours_log_odds``
    sums them (prior even: a meter the archive put on a metered branch and the balances put on
    none is as likely the neighbour's as ours). ``supported``: enough for a correction onto the
    unmetered branch -- the metered balances reject it, the transformer's balance wants it by
    ``BOARD_ENERGY_NATS``, its voltage follows ours, and our carrier does not miss it."""
    m = frame.meters[i]
    nats = -phases.not_ours_margin(i) if frame.has_data[i] else 0.0
    outside = _outside_metered(branches, i, unmetered_branches(frame)) if frame.has_data[i] else 0.0
    out: dict[str, Any] = {"outside_metered_nats": round(outside, 1), "ours_nats": round(nats, 1)}
    log_odds = min(nats, 30.0)
    if m.in_cco_network is not None:
        out["heard"] = bool(m.in_cco_network)
        log_odds += float(
            np.log(P_HEARD_IF_OURS / P_HEARD_IF_FOREIGN)
            if m.in_cco_network
            else np.log((1 - P_HEARD_IF_OURS) / (1 - P_HEARD_IF_FOREIGN))
        )
    voltage_ok = bool(frame.has_data[i] and zscore[i] != 0.0 and zscore[i] <= settings.voltage_outlier_z / 2)
    out["voltage_follows_ours"] = voltage_ok
    out["voltage_z"] = round(float(zscore[i]), 2)
    out["ours_log_odds"] = round(log_odds, 1)
    out["supported"] = bool(
        not tests and outside >= settings.energy_foreign_margin and nats >= BOARD_ENERGY_NATS and voltage_ok
        and out.get("heard") is not False
    )  # fmt: skip
    return out


def _not_ours(tests: dict[str, Any]) -> bool:
    """A meter is the neighbouring area's when at least two independent tests say so."""
    return len(tests) >= 2


def foreign_tests(
    inputs: Inputs, frame: Frame, phases: Decided, branches: Decided, settings: Settings
) -> dict[int, dict[str, Any]]:
    """Per meter, the independent tests of "fed by another transformer" that fired."""
    out: dict[int, dict[str, Any]] = {}
    fit, left, zscore = _voltage_outliers(frame, branches, phases)
    ok = np.isfinite(fit) & np.isfinite(left)
    sig, shots_n = _signature_places(inputs, frame)
    shots = {m.id: int(shots_n[i]) for i, m in enumerate(frame.meters)}
    for i, m in enumerate(frame.meters):
        tests: dict[str, Any] = {}
        if m.in_cco_network is False:
            tests["carrier"] = "not in our carrier network (AFN10 F21)"
        if sig.shape[1] > 1 and shots.get(m.id, 0) >= settings.signature_min_injections:
            llr = float(sig[i, -1] - sig[i, :-1].max())
            if llr > settings.signature_foreign_llr:
                tests["signature"] = {"injections": shots[m.id], "not_ours_llr": round(llr, 1)}
        if frame.has_data[i]:
            margin = max(phases.not_ours_margin(i), branches.not_ours_margin(i))
            if margin > settings.energy_foreign_margin:
                tests["energy"] = {"not_ours_margin": round(margin, 1)}
            if ok[i] and zscore[i] > settings.voltage_outlier_z:
                tests["voltage"] = {
                    "best_fit": round(float(fit[i]), 3),
                    "unexplained_v": round(float(left[i]), 3),
                    "z": round(float(zscore[i]), 1),
                }
        if tests:
            out[i] = tests
    return out


def unexplained_energy(
    inputs: Inputs, frame: Frame, branches: Decided, settings: Settings
) -> list[MissingMeter]:
    """Energy at a branch unit that none of its meters (nor its loss model) explains. Not said of
    a unit with a meter below it that has too few curve points (``Frame.has_data``): the
    balance counts such a meter's energy as zero, so the unit's energy may well be its (the
    first identification after a start, six hours of a 24-h window read, flagged every unit)."""
    sol = branches.solution
    if sol is None or "branch_units" not in sol.fits:
        return []
    fit = sol.fits["branch_units"]
    units = sorted(set(frame.unit_of_branch.values()))
    unit_branch = {u: b for b, u in frame.unit_of_branch.items()}
    unread: set[str] = set()  # branches with an unread meter below them
    for i in np.nonzero(~frame.has_data)[0]:
        value = branches.value(int(i))
        if value is not None:
            unread.update(ancestors(value, frame.parent))
    days = max(inputs.days, 1e-9)
    out = []
    for j, u in enumerate(units):
        if unit_branch[u] in unread:
            continue
        resid = fit.residual[:, 0, j]
        total = float(np.nansum(np.abs(_unit_energy(inputs, frame, u))))
        extra = float(resid.sum())
        if total <= 0:
            continue
        # only a unit whose own section is off: its downstream units are balanced
        share = extra / total
        if share > settings.unexplained_share and extra / days > settings.unexplained_kwh_per_day:
            out.append(
                MissingMeter(
                    None,
                    {"unexplained_kwh_per_day": round(extra / days, 2), "share": round(share, 3), "unit": u,
                     "note": UNEXPLAINED_NOTE},
                    branch=unit_branch[u],
                )
            )  # fmt: skip
    # report only the innermost unit of a chain of flagged units (the parent sees the child's gap)
    flagged = {m.branch for m in out}
    return [
        m for m in out if not any(frame.parent.get(b or "") == m.branch for b in flagged if b != m.branch)
    ]


# -- online phase changes -------------------------------------------------------------------------


def window(inputs: Inputs, first: int, last: int) -> Inputs:
    """``inputs`` restricted to curve points ``first .. last - 1`` (and the intervals between)."""
    c = inputs.curves
    curves = Curves(
        c.times[first:last],
        c.devices,
        c.voltage[first:last],
        c.current[first:last],
        c.energy[first : last - 1],
    )
    te = None if inputs.transformer_energy is None else inputs.transformer_energy[first : last - 1]
    tv = None if inputs.transformer_voltage is None else inputs.transformer_voltage[first:last]
    return replace(inputs, curves=curves, transformer_energy=te, transformer_voltage=tv)


def move_candidates(
    inputs: Inputs, frame: Frame, branches: Decided, boxes: Decided, settings: Settings
) -> list[tuple[int, int, int]]:
    """(meter, phase in the first part, phase in the last part) of every meter surely on one
    phase in the window's first ``change_window_points`` (or half the window) and surely on
    another in its last, each part identified on its own, from scratch (see ``phase_changes``).

    "Surely" twice over: by the label margin (the others held) and by the profile margin (the
    others free to follow, the residual model refitted: ``profile.margin``). A part whose
    profile margin falls short may be mixed -- the move happened inside it -- so its outer half
    (the first half of the first part, the last half of the last) is identified and asked
    the same, when that half still has ``2 * change_min_points`` points."""
    points = inputs.points
    part = min(settings.change_window_points, points // 2)
    if part < 2 * settings.change_min_points:
        return []
    parts = _Parts(inputs, frame, branches, boxes, settings, part)
    early, late = parts.get(0, part), parts.get(points - part, points)
    ok = frame.has_data & ~frame.three_phase & ~frame.forced
    sure = settings.change_llr / 2
    out = []
    for i in np.nonzero(ok)[0]:
        a, b = int(early.chosen[i]), int(late.chosen[i])
        if a == b or a >= 3 or b >= 3:
            continue
        if min(label_margin_at(early, int(i)), label_margin_at(late, int(i))) < sure:
            continue
        half = part // 2
        sides = (((0, part), (0, half), a, b), ((points - part, points), (points - half, points), b, a))
        if all(parts.sure(int(i), label, other, whole, outer) for whole, outer, label, other in sides):
            out.append((int(i), a, b))
    return out


class _Parts:
    """Short parts of a window, each identified on its own once, and how sure they are of a
    meter's label (see ``move_candidates``)."""

    def __init__(
        self, inputs: Inputs, frame: Frame, branches: Decided, boxes: Decided, settings: Settings, part: int
    ) -> None:
        self.inputs, self.frame, self.branches, self.boxes = inputs, frame, branches, boxes
        self.settings = settings
        # a part of a short window is shorter than a meter's usual minimum of points: each part
        # only shortlists candidates (the whole window's split decides), so half the part is
        # enough there
        self.sub_settings = replace(settings, min_points=min(settings.min_points, part // 2))
        self._decided: dict[tuple[int, int], Decided] = {}
        self._free: dict[tuple[int, int], IArray] = {}

    def get(self, first: int, last: int) -> Decided:
        key = (first, last)
        if key not in self._decided:
            sub = window(self.inputs, first, last)
            sub_frame = prepare(sub, self.sub_settings)
            sub_frame.forced = self.frame.forced.copy()
            self._decided[key] = identify_phases(sub, sub_frame, self.branches, self.boxes, self.settings)
        return self._decided[key]

    def sure(self, i: int, label: int, other: int, whole: tuple[int, int], outer: tuple[int, int]) -> bool:
        """Meter ``i`` surely on ``label`` rather than ``other`` in the part ``whole``, or else in
        its ``outer`` half (by label and profile margin both)."""
        need = self.settings.change_llr / 2
        if self.profile(whole, i, other) >= need:
            return True
        if outer[1] - outer[0] < 2 * self.settings.change_min_points:
            return False
        half = self.get(*outer)
        if int(half.chosen[i]) != label or label_margin_at(half, i) < need:
            return False
        return self.profile(outer, i, other) >= need

    def profile(self, key: tuple[int, int], i: int, other: int) -> float:
        decided = self.get(*key)
        if key not in self._free and decided.problem is not None and decided.solution is not None:
            self._free[key] = profile.resolve(decided.problem, decided.solution.labels)
        if decided.problem is None or decided.solution is None:
            return 0.0
        return profile.margin(decided.problem, decided.solution, i, other, free=self._free.get(key))


def phase_changes(
    inputs: Inputs, frame: Frame, branches: Decided, boxes: Decided, phases: Decided, settings: Settings,
    candidates: list[tuple[int, int, int]] | None = None,
) -> dict[int, changes.Change]:  # fmt: skip
    """Meters that moved to another phase during the window. The first and the last
    ``change_window_points`` (or half the window) are identified on their own (each part solved
    alone, so a moved meter is modelled where it is in that part); a meter surely on one phase
    in the first and surely on another in the last is a candidate, and it moved when its own
    point-by-point evidence in the whole window's solution also splits into a prefix for the one
    phase and a suffix for the other, both strong (``changes.detect``): two views must agree,
    because a meter that is merely hard to place, or the residual another error leaves, can fool
    one. The parts are always solved from scratch (the relaxation), also in an incremental
    identification: started from the whole window's phases, a part keeps a moved meter where the
    window had it whenever a look-alike on the other phase can take its place (a local optimum
    the relaxation does not fall into). ``candidates``: ``move_candidates``' answer, if known."""
    points = inputs.points
    problem, sol = phases.problem, phases.solution
    if problem is None or sol is None:
        return {}
    if candidates is None:
        candidates = move_candidates(inputs, frame, branches, boxes, settings)
    found: dict[int, changes.Change] = {}
    for i, a, b in candidates:
        split = changes.detect(
            problem, sol, points, candidates=np.array([i], dtype=np.int64), labels=3,
            min_points=settings.change_min_points, min_llr=settings.change_llr,
        )  # fmt: skip
        if split and (split[0].before, split[0].after) == (a, b):
            found[int(i)] = split[0]
        elif int(sol.labels[i]) in (a, b):  # the whole window took one side: split on the other
            other = b if int(sol.labels[i]) == a else a
            ev = changes.point_evidence(problem, sol, int(i), other, points)
            if other == a:
                ev = -ev
            before = np.concatenate([[0.0], np.cumsum(ev)])[:-1]  # evidence for b before each point
            after = ev.sum() - before  # evidence for b from each point on
            # a move: the points before the split favour a, those after b -- not merely b more
            # after than before (a meter surely on b all along is no move from a)
            half = settings.change_llr / 2
            gain = np.where((before < -half) & (after > half), after - before, -np.inf)
            lo, hi = settings.change_min_points, points - settings.change_min_points
            if hi > lo:
                since = lo + int(np.argmax(gain[lo:hi]))
                llr = float(gain[since])
                if llr >= settings.change_llr:
                    found[int(i)] = changes.Change(int(i), a, b, since, llr)
    # the balances alone do not make a move: energy or current no meter reads (a thief's bypass)
    # sits on one phase of its branch, and a meter of similar habits is "moved" there to explain
    # it (default area seed 11: m-0004 in the thief's box A->B; the neighbour's m-9101 A->B,
    # whose voltage follows none of our phases). A meter moved onto another phase's wire
    # follows that wire's voltage from then on
    for i, change in list(found.items()):
        support = voltage_after(frame, branches, phases, i, change.before, change.after, change.since)
        if support is not None and support < MOVE_VOLTAGE_NATS:
            del found[i]
    return found


#: a move needs the meter's voltage after it to favour the new phase over the old by this many
#: nats (a meter moved to another phase's wire follows that wire's voltage). Small: a few hours
#: of voltage say little (true moves: 0.65-7.4 in the synthetic areas, 3.6 in the simulator's
#: topology scenario), but a tie -- both 0, a voltage that follows neither phase, as a
#: neighbour's does -- or a preference for the old phase is no move
MOVE_VOLTAGE_NATS = 0.25


def voltage_after(frame: Frame, branches: Decided, phases: Decided, i: int, before: int, after: int,
                  since: int) -> float | None:  # fmt: skip
    """Meter i's voltage log-likelihood on phase ``after`` minus on ``before`` of its branch, over
    the points from ``since`` on, against the other meters of each (branch, phase) group as the
    whole window placed them. None without usable voltage there (or no branch of ours)."""
    bi = branches.labels.index(branches.value(i) or NOT_OURS)
    if bi == len(branches.labels) - 1 or frame.voltage.shape[0] - since < 8 or frame.three_phase[i]:
        return None
    single = ~frame.three_phase
    z, ok = voltage.features(np.where(single[None, :], frame.voltage[since:], np.nan))
    usable = ok & single & frame.has_data
    if not usable[i]:
        return None
    nb = len(branches.labels)
    branch_of = np.array([branches.labels.index(branches.value(j) or NOT_OURS) for j in range(frame.n)])
    ph = np.where(phases.chosen < 3, phases.chosen, -1)
    groups = np.where((ph >= 0) & (branch_of < nb - 1) & ~frame.forced, branch_of * 3 + ph, -1)
    groups[i] = -1  # the meter itself is no reference on either phase
    ll = voltage.loo_loglik(z, usable, groups, nb * 3)
    return float(ll[i, bi * 3 + after] - ll[i, bi * 3 + before])


#: an independent part of the evidence favouring the archive's branch by this much contests a
#: branch correction (nats)
CONTESTED_NATS = 10.0
#: the confidence of an archive value kept against a contested correction
CONTESTED_CONFIDENCE = 0.5


def _contradicted(
    decided: Decided, i: int, archive: str | None, dim: Dimension, *, nats: dict[str, float] | None = None
) -> dict[str, float] | None:
    """The parts of the evidence (other than the archive itself) that favour the archive's label
    over a correction by ``CONTESTED_NATS`` or more, or None. A branch correction several kinds of
    evidence agree on is a finding; one that a single model of the energy balance makes against
    what the branch units heard of the meter's own signature current is not: the balance is
    fooled by energy no meter reads (a thief's bypass on the branch the meter is "moved" to: the
    default area's m-0077 was put on F2, where m-0020 steals, against F2's and R2-F2's units'
    signature detections). So is a phase correction the balances make against the meter's own
    voltage (seed 11's m-0007, C -> B beside the thief m-0020 on B, against 33 nats of voltage).
    ``nats``: a part's own threshold where it is not ``CONTESTED_NATS``."""
    if dim.outcome != "corrected" or archive is None or archive not in decided.labels:
        return None
    a, c = decided.labels.index(archive), int(decided.chosen[i])
    limits = nats or {}
    against = {
        name: round(float(part[i, a] - part[i, c]), 1)
        for name, part in decided.parts.items()
        if name != "archive" and part.shape[1] > max(a, c)
        and part[i, a] - part[i, c] >= limits.get(name, CONTESTED_NATS)
    }  # fmt: skip
    return against or None


#: a branch or box correction is contested by the signature detections favouring the archive's
#: place by this much: the chosen place's unit missed the meter's injected current twice (ln 0.1
#: each at a 10 % miss rate) -- the injected current flows through the CT of every unit on the
#: meter's path. An energy balance is fooled by energy its meters do not read (seed 11: m-0030's
#: slow register in F2-X01 pulled m-0008 in from X03; default seed 1: the thief m-0020's bypass
#: on F2 pulled m-0077 from R2-F2 against 7.5 nats of F2's unit not hearing it)
SIGNATURE_CONTEST_NATS = 4.0
BRANCH_CONTEST = {"signature": SIGNATURE_CONTEST_NATS}
#: the voltage contests no box (it corrects none either: ``_keep_archive_box_against_voltage_alone``;
#: topology scenario seed 3: it was against two true box corrections by 19 and 33 nats)
BOX_CONTEST = {"signature": SIGNATURE_CONTEST_NATS, "voltage": float("inf")}


def _kept(dim: Dimension, against: dict[str, float], *, unmetered: dict[str, Any] | None = None) -> Dimension:
    """``dim`` back to the archive's value, unresolved, where it differs from it (found under the
    contested branch, or under an unmetered branch nothing showed the meter on: ``unmetered``,
    the ``_board_support`` it lacked)."""
    if dim.value == dim.archive or dim.archive is None:
        return dim
    if unmetered is not None:
        evidence = {**dim.evidence, "unmetered": {"identified": dim.value, **unmetered}}
    else:
        evidence = {**dim.evidence, "contested": {"identified": dim.value, "against": against}}
    return Dimension(dim.archive, CONTESTED_CONFIDENCE, dim.archive, "unresolved", evidence)


def _capped(dim: Dimension, most: float, settings: Settings) -> Dimension:
    """``dim`` with its confidence at most ``most``; below the bar it is unresolved."""
    if dim.confidence <= most:
        return dim
    outcome = dim.outcome if most >= settings.confidence_min else "unresolved"
    return replace(dim, confidence=min(most, 0.9999), outcome=outcome)


def label_margin_at(decided: Decided, i: int) -> float:
    return float(decided.solution.margin()[i]) if decided.solution is not None else 0.0


# -- composing the result -------------------------------------------------------------------------


def _dimension(
    decided: Decided, i: int, archive: str | None, settings: Settings, *, observed: bool
) -> Dimension:
    """One dimension's outcome: unresolved without observations of the meter's own (the
    archive alone confirms nothing) or below the confidence bar."""
    v = decided.value(i)
    c = float(decided.confidence[i])
    if v is None or c < settings.confidence_min or not observed:
        outcome = "unresolved"
    elif archive == v:
        outcome = "confirmed"
    else:
        outcome = "corrected"
    ev: dict[str, Any] = {
        name: round(float(part[i, decided.chosen[i]] - np.delete(part[i], decided.chosen[i]).max()), 1)
        for name, part in decided.parts.items() if part.shape[1] > 1 and np.any(part[i])
    }  # fmt: skip
    ev.update(decided.notes.get(i, {}))
    return Dimension(v, min(c, 0.9999), archive, outcome, ev)


def warm_labels(previous: Labels, frame: Frame, dimension: str, labels: tuple[str, ...]) -> IArray:
    """(n,) for each meter of ``frame``, the index in ``labels`` of its value in ``dimension``
    (phase, branch, box) in ``previous`` -- a listed meter by id, an unlisted carrier node by
    address -- or -1 where ``previous`` has none (a new meter, a label gone, a three-phase meter's
    ``ABC``). A foreign meter and a value of None are "not ours" (the last label)."""
    pos = {label: j for j, label in enumerate(labels)}
    values = previous.meters(dimension)
    nodes = previous.nodes(dimension)
    out = np.full(frame.n, -1, dtype=np.int64)
    for i, meter in enumerate(frame.meters):
        if meter.id in values:
            value = values[meter.id]
        elif meter.address in nodes and meter.id.startswith("node-"):
            value = nodes[meter.address]
        else:
            continue
        out[i] = pos.get(NOT_OURS if value is None else value, -1)
    return out


def identify(
    inputs: Inputs,
    *,
    terminal: str,
    computed_at: float,
    settings: Settings | None = None,
    previous: TopologyResult | Labels | None = None,
) -> TopologyResult:
    """Identify every dimension over ``inputs``' window.

    With ``previous`` (an earlier result for this station area, e.g. the daily run's, or just
    its ``Labels``) the
    identification is incremental: every dimension starts from the labels ``previous`` found
    and is refined from there (moves, swaps, kicks along the evidence, with losses and weights
    refitted to the new window) instead of from the convex relaxation, which is most of a full
    identification's cost. The same local search that finishes a full identification decides,
    so a meter whose evidence changed moves; what it cannot do is escape a wrong labelling that
    ``previous`` made and the window still supports -- the daily full identification does.
    The move detector's two short parts (``move_candidates``) are solved from scratch either way,
    and when they name a candidate the check is a full identification: what a check reports (a
    move) is decided as the full identification decides it.
    """
    labels = Labels.of(previous) if isinstance(previous, TopologyResult) else previous
    return _identify(inputs, terminal, computed_at, settings or Settings(), labels, {})


def _identify(
    inputs: Inputs, terminal: str, computed_at: float, settings: Settings, previous: Labels | None,
    known: dict[bytes, list[tuple[int, int, int]]],
) -> TopologyResult:  # fmt: skip
    """``identify``; ``known``: move candidates already worked out, by the branch and box labels
    and the meters decided not ours they depend on (a check that turns into a full
    identification does not solve the same two parts again)."""
    frame = prepare(inputs, settings)
    warm: dict[str, IArray | None] = dict.fromkeys(("phase", "branch", "box"))
    if previous is not None:
        warm["branch"] = warm_labels(previous, frame, "branch", (*frame.branch_ids, NOT_OURS))
        warm["box"] = warm_labels(previous, frame, "box", (*frame.box_ids, NOT_OURS))
        warm["phase"] = warm_labels(previous, frame, "phase", (*PHASES, NOT_OURS))
    branches = identify_branches(inputs, frame, warm=warm["branch"])
    boxes = identify_boxes(inputs, frame, branches, warm=warm["box"])
    phases = identify_phases(inputs, frame, branches, boxes, settings, warm=warm["phase"])
    foreign = foreign_tests(inputs, frame, phases, branches, settings)
    decided = np.array([_not_ours(foreign.get(i, {})) for i in range(frame.n)], dtype=bool)
    decided[len(inputs.meters) :] = False
    if (decided & ~frame.forced).any():  # again, now that foreign meters bend the others no more
        frame.forced = decided | frame.forced
        branches = identify_branches(inputs, frame, branches)
        boxes = identify_boxes(inputs, frame, branches, boxes)
        phases = identify_phases(inputs, frame, branches, boxes, settings, phases)
        foreign = foreign_tests(inputs, frame, phases, branches, settings)
    key = branches.chosen.tobytes() + boxes.chosen.tobytes() + frame.forced.tobytes()
    if key not in known:
        known[key] = move_candidates(inputs, frame, branches, boxes, settings)
    candidates = known[key]
    if previous is not None and candidates:
        # a move is in question: the whole window's solution confirms or refutes it, and that
        # must be the one a full identification finds (started from ``previous`` the window may
        # keep a moved meter and a look-alike where they were). Moves are rare; so is this
        return _identify(inputs, terminal, computed_at, settings, None, known)
    moved = phase_changes(inputs, frame, branches, boxes, phases, settings, candidates)
    injected = {d.source for d in inputs.detections if d.listening}
    unmetered = unmetered_branches(frame)
    zscore: FArray | None = None
    results = []
    missing: list[MissingMeter] = []
    listed = len(inputs.meters)
    for i, m in enumerate(frame.meters):
        if frame.three_phase[i]:
            outcome = "confirmed" if m.phase.value == "ABC" else "corrected"
            phase = Dimension(
                "ABC", 0.9999, m.phase.value, outcome, {"three_phase": "B and C voltages recorded"}
            )
        elif i in moved and not _not_ours(foreign.get(i, {})):  # moved in the window: where it is now
            # (a meter not ours -- the neighbouring area's -- has no phase of ours to move on)
            c = moved[i]
            now = PHASES[c.after]
            phase = Dimension(
                now, 0.9999 if c.llr > 2 * settings.change_llr else 0.95, m.phase.value,
                "confirmed" if m.phase.value == now else "corrected",
                {"moved": {"from": PHASES[c.before], "to": now, "llr": round(c.llr, 1),
                           "since": float(inputs.curves.times[c.since])}},
            )  # fmt: skip
        else:
            phase = _dimension(
                phases,
                i,
                m.phase.value,
                settings,
                observed=bool(frame.has_data[i]) or m.cco_phase is not None,
            )
        heard = m.id in injected
        branch = _dimension(branches, i, m.branch.value, settings, observed=bool(frame.has_data[i]) or heard)
        box = _dimension(boxes, i, m.box.value, settings, observed=bool(frame.has_data[i]) or heard)
        if (
            i < listed and "moved" not in phase.evidence
            and (against := _contradicted(phases, i, m.phase.value, phase)) is not None
        ):  # fmt: skip
            # the phase correction is contested (the balances filling energy no meter reads --
            # a thief's bypass on the phase -- against the meter's own voltage): the archive's
            # phase stands, unresolved
            phase = _kept(phase, against)
        branch_against = _contradicted(branches, i, m.branch.value, branch, nats=BRANCH_CONTEST)
        if i < listed and branch_against is not None:
            # the branch correction is contested: the archive's places stand, unresolved
            branch, box, phase = (_kept(d, branch_against) for d in (branch, box, phase))
        elif (
            i < listed and branch.value == m.branch.value
            and (against := _contradicted(boxes, i, m.box.value, box, nats=BOX_CONTEST)) is not None
        ):  # fmt: skip
            box = _kept(box, against)  # the box correction is contested: the archive's box stands
        if i < listed and branch.value in unmetered and not _not_ours(foreign.get(i, {})):
            if zscore is None:
                zscore = _voltage_outliers(frame, branches, phases)[2]
            support = _board_support(frame, branches, phases, i, foreign.get(i, {}), zscore, settings)
            if branch.value != m.branch.value and not support["supported"]:
                # onto an outlet no unit sees, on no evidence that it is ours: the archive stands
                branch, box, phase = (_kept(d, {}, unmetered=support) for d in (branch, box, phase))
            else:
                # its confidence: the odds that it is ours (the archive's word counts where it
                # lists the meter there), not the balances', which cannot see it
                listed_there = branch.value == m.branch.value
                odds = support["ours_log_odds"] - (LOG_FOREIGN_PRIOR if listed_there else 0.0)
                branch = replace(branch, evidence={**branch.evidence, "unmetered": support})
                branch = _capped(branch, float(1.0 / (1.0 + np.exp(-odds))), settings)
        box = _capped(box, branch.confidence, settings)  # a box of a branch is no surer than the branch
        if i >= listed:  # a carrier node the archive lacks: where it hangs
            missing.append(
                MissingMeter(
                    m.address,
                    {"carrier": HEARD_NOTE, "cco_phase": m.cco_phase,
                     "confidence": round(min(phase.confidence, branch.confidence, box.confidence), 4)},
                    phase=phase.value, branch=branch.value, box=box.value,
                )
            )  # fmt: skip
            continue
        tests = foreign.get(i, {})
        meter_ev: dict[str, Any] = {"missing_points": int(frame.missing_points[i])}
        if tests:
            meter_ev["foreign_tests"] = tests
        if not frame.has_data[i]:
            meter_ev["data"] = "too few curve points"
        if _not_ours(tests):
            status = "foreign"
        elif "corrected" in (phase.outcome, branch.outcome, box.outcome):
            status = "corrected"
        elif "unresolved" in (phase.outcome, branch.outcome, box.outcome):
            status = "unresolved"
        else:
            status = "confirmed"
        results.append(MeterResult(m.id, m.address, status, phase, branch, box, meter_ev))
    read = {m.address for m in frame.meters[listed:]}
    missing += [
        MissingMeter(u.address, {"carrier": HEARD_NOTE + "; curves not read"}, phase=u.cco_phase)
        for u in inputs.unknown_nodes
        if u.address not in read
    ]  # fmt: skip
    missing += unexplained_energy(inputs, frame, branches, settings)
    t = inputs.curves.times
    window = (float(t[0]), float(t[-1])) if len(t) else (computed_at, computed_at)
    result = TopologyResult(terminal, computed_at, inputs.days, window, tuple(results), tuple(missing))
    return TopologyResult(
        terminal, computed_at, inputs.days, window, tuple(results), tuple(missing),
        summary={
            "counts": result.counts(),
            "meters": len(results),
            "missing": len(missing),
            "points": inputs.points,
        },
    )  # fmt: skip


__all__ = ["NOT_OURS", "Decided", "Frame", "Settings", "ancestors", "identify", "prepare", "warm_labels"]
