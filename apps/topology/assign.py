"""Label assignment by balances plus per-meter evidence: the engine behind phase, branch and
meter-box identification.

Layer: apps (topology), pure numpy. Must not know what a label means (phase, branch, box),
nor archives, stores or the event loop.

The problem: ``n`` meters each carry one of ``K`` labels. A *balance* is a set of measured
targets that see the meters feeding them: the transformer's per-phase energy sees the
interval energy of the meters on each phase, a branch monitoring unit the energy of the
meters below it, a three-phase unit's per-phase current the currents of the meters on each
of its phases. Targets come in ``G`` groups of ``m`` (one group: the transformer; one group
per branch unit: its three phases); meter ``i`` belongs to group ``g_i`` and feeds only
that group's targets. With meter series ``X`` (T x n) and targets ``Y`` (T x G x m)::

    Y[:, g, j] = sum_{i: g_i = g} X[:, i] * A[label_i, j] + fixed[:, g, j] + loss(t) + noise

``A`` (K x m, 0/1) says which targets a label feeds (a phase its own phase; a branch its own
unit and every unit upstream). A label whose row of ``A`` is zero feeds nothing ("not ours").
A meter with group -1 feeds no target of that balance. Every meter also has a
log-likelihood per label ``L`` (n x K) from what is not a balance: archive prior, voltage
fit, carrier phase report, signature-current detections.

Solution: a convex relaxation (each meter a probability vector over labels; Gaussian misfit
of every balance minus the linear evidence, accelerated projected gradient in a per-meter
metric) gives a start that does not depend on the archive; steepest-descent moves of one
meter (or of two meters whose curves cancel) on the exact discrete objective finish it.
An energy balance's losses follow ``a * Y^2 + b`` (a, b >= 0), first from the energy no meter
explains at a partition of targets (no labelling can bend that), then per target; a current
balance allows a unit a small gain error instead. The score gap to the runner-up label is
the evidence a caller turns into confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .numeric import BArray, FArray, IArray, fista_simplex, robust_std

#: meters considered for pair moves once no single move helps
PAIR_CANDIDATES = 120
RELAX_ITERATIONS = 400
RESIDUAL_MODELS = ("losses", "gain", "none")


@dataclass(frozen=True)
class Balance:
    """One measured balance (see the module docstring for the symbols)."""

    name: str
    series: FArray  # (T, n) what each meter contributes per point (kWh, or A), NaN-free
    targets: FArray  # (T, G, m) what each target measured
    incidence: FArray  # (K, m) 0/1
    groups: IArray | None = None  # (n,) target group of each meter, -1 = none; None = all in 0
    fixed: FArray | None = None  # (T, G, m) known contributions (three-phase meters, ...)
    #: targets whose sum sees every meter once (the three transformer phases): with the
    #: "losses" model their totals fix an assignment-free loss model
    partition: bool = False
    #: the smallest misfit scale worth believing per target: absolute (the resolution of the
    #: measurements) and relative to the target's mean magnitude (its accuracy class)
    sigma_floor: float = 0.01
    relative_floor: float = 0.002
    #: what the targets see besides the meters: "losses" (a * Y^2 + b, a, b >= 0: line
    #: losses, for energy), "gain" (c * Y + b, |c| <= 5 %: a unit's CT error, for currents)
    residual_model: str = "losses"

    def __post_init__(self) -> None:
        if self.residual_model not in RESIDUAL_MODELS:
            raise ValueError(f"balance {self.name}: residual model {self.residual_model!r}")
        t, n = self.series.shape
        if self.targets.ndim != 3 or self.targets.shape[0] != t:
            raise ValueError(f"balance {self.name}: targets {self.targets.shape}, series {self.series.shape}")
        if self.incidence.shape[1] != self.targets.shape[2]:
            raise ValueError(f"balance {self.name}: incidence {self.incidence.shape}, targets {self.targets.shape}")
        if self.groups is not None and self.groups.shape != (n,):
            raise ValueError(f"balance {self.name}: groups {self.groups.shape}, {n} meters")

    @property
    def n_groups(self) -> int:
        return int(self.targets.shape[1])

    def group_of(self) -> IArray:
        n = self.series.shape[1]
        return np.zeros(n, dtype=np.int64) if self.groups is None else self.groups

    def members(self) -> list[IArray]:
        g = self.group_of()
        return [np.nonzero(g == k)[0] for k in range(self.n_groups)]

    def prediction(self, w: FArray, members: Sequence[IArray]) -> FArray:
        """(T, G, m) what the meters with label weights ``w`` (n, K) put on the targets."""
        h = w @ self.incidence  # (n, m)
        pred = np.zeros_like(self.targets)
        for g, idx in enumerate(members):
            if len(idx):
                pred[:, g, :] = self.series[:, idx] @ h[idx]
        return pred if self.fixed is None else pred + self.fixed

    def projections(self, resid_w: FArray, members: Sequence[IArray]) -> FArray:
        """(n, m): each meter's series dotted with its own group's weighted residual."""
        out = np.zeros((self.series.shape[1], self.targets.shape[2]))
        for g, idx in enumerate(members):
            if len(idx):
                out[idx] = self.series[:, idx].T @ resid_w[:, g, :]
        return out

    def own(self, per_group: FArray) -> FArray:
        """(n, ...) the row of ``per_group`` (G, ...) of each meter's group; zeros for -1."""
        g = self.group_of()
        out = np.zeros((len(g), *per_group.shape[1:]))
        ok = g >= 0
        out[ok] = per_group[g[ok]]
        return out


@dataclass(frozen=True)
class Problem:
    balances: tuple[Balance, ...]
    evidence: FArray  # (n, K) log-likelihood of each label from everything but the balances

    @property
    def n(self) -> int:
        return int(self.evidence.shape[0])

    @property
    def k(self) -> int:
        return int(self.evidence.shape[1])


@dataclass
class Fit:
    """One balance under a labelling: losses, misfit scale, residual (all per target)."""

    loss: FArray  # (T, G, m)
    sigma: FArray  # (G, m)
    residual: FArray  # (T, G, m) target minus prediction minus loss


@dataclass
class Solution:
    labels: IArray  # (n,) label index per meter
    score: FArray  # (n, K) total log-likelihood of each label for each meter, others fixed
    balance_scores: dict[str, FArray]  # per balance, its part of ``score`` (n, K)
    fits: dict[str, Fit]
    moves: int = 0
    relaxed: FArray = field(default_factory=lambda: np.zeros((0, 0)))  # (n, K) the relaxation

    def margin(self) -> FArray:
        """Score of the chosen label minus the best other label (n,); large = sure."""
        return label_margin(self.score, self.labels)


def label_margin(score: FArray, labels: IArray) -> FArray:
    rows = np.arange(len(labels))
    own = score[rows, labels]
    other = score.copy()
    other[rows, labels] = -np.inf
    best_other = other.max(axis=1) if other.shape[1] > 1 else np.full(len(own), -np.inf)
    return np.asarray(own - best_other, dtype=np.float64)


# -- residual models ------------------------------------------------------------------------------


def fit_quadratic_loss(y: FArray, resid: FArray) -> FArray:
    """Per column of (T, c) arrays, the ``a * y^2 + b`` (a, b >= 0) that best explains ``resid``."""
    y2 = y**2
    out = np.zeros_like(y)
    for j in range(y.shape[1]):
        x = np.stack([y2[:, j], np.ones(len(y))], axis=1)
        a, b = (float(v) for v in np.linalg.lstsq(x, resid[:, j], rcond=None)[0])
        if a < 0 or b < 0:  # the best fit on the boundary of a, b >= 0
            options = [(0.0, max(0.0, float(resid[:, j].mean())))]
            yy = float((y2[:, j] ** 2).sum())
            if yy > 0:
                options.append((max(0.0, float((y2[:, j] * resid[:, j]).sum()) / yy), 0.0))
            a, b = min(options, key=lambda ab: float(((resid[:, j] - ab[0] * y2[:, j] - ab[1]) ** 2).sum()))
        out[:, j] = a * y2[:, j] + b
    return out


def fit_gain(y: FArray, resid: FArray, *, limit: float = 0.05) -> FArray:
    """Per column of (T, c) arrays, ``c * y + b`` with |c| <= ``limit`` that best explains ``resid``."""
    out = np.zeros_like(y)
    for j in range(y.shape[1]):
        x = np.stack([y[:, j], np.ones(len(y))], axis=1)
        c = float(np.clip(np.linalg.lstsq(x, resid[:, j], rcond=None)[0][0], -limit, limit))
        out[:, j] = c * y[:, j] + float((resid[:, j] - c * y[:, j]).mean())
    return out


def _flat(a: FArray) -> FArray:
    return a.reshape(a.shape[0], -1)


def _floor(b: Balance) -> FArray:
    scale = b.relative_floor * np.abs(b.targets).mean(axis=0)
    return np.asarray(np.maximum(scale, b.sigma_floor), dtype=np.float64)


def _sigma(b: Balance, resid: FArray) -> FArray:
    return np.asarray(np.maximum(robust_std(resid, axis=0), _floor(b)), dtype=np.float64)


def initial_fit(b: Balance) -> Fit:
    """Losses and misfit scale before any labelling is trusted. An energy balance with a
    partition takes both from the partition's totals (energy no labelling can move); any
    other starts from its measurements' own accuracy (the floor): a scale taken from a
    doubtful labelling would be inflated by its very errors and excuse them."""
    zero = np.zeros_like(b.targets)
    if not b.partition or b.residual_model != "losses":
        return Fit(zero, _floor(b), zero)
    y = _flat(b.targets)
    fixed = 0.0 if b.fixed is None else _flat(b.fixed).sum(axis=1)
    fed = b.group_of() >= 0
    unexplained = y.sum(axis=1) - b.series[:, fed].sum(axis=1) - fixed
    sq = (y**2).sum(axis=1)
    total = fit_quadratic_loss(sq[:, None], unexplained[:, None])[:, 0]
    coef = np.linalg.lstsq(np.stack([sq, np.ones(len(sq))], axis=1), total, rcond=None)[0]
    count = float(y.shape[1])
    loss = np.asarray(max(float(coef[0]), 0.0) * b.targets**2 + max(float(coef[1]), 0.0) / count)
    scale = float(robust_std(unexplained - _flat(loss).sum(axis=1))) / np.sqrt(count)
    return Fit(loss, np.asarray(np.maximum(_floor(b), scale), dtype=np.float64), zero)


def refit(b: Balance, labels: IArray, k: int, previous: Fit) -> Fit:
    """Losses per target (blended with the assignment-free ones) and scales for ``labels``."""
    pred = b.prediction(np.eye(k)[labels], b.members())
    loss = previous.loss
    if b.residual_model == "losses":
        fitted = fit_quadratic_loss(_flat(b.targets), _flat(b.targets - pred)).reshape(b.targets.shape)
        loss = 0.5 * previous.loss + 0.5 * fitted if b.partition else fitted
    elif b.residual_model == "gain":
        loss = fit_gain(_flat(b.targets), _flat(b.targets - pred)).reshape(b.targets.shape)
    resid = b.targets - loss - pred
    return Fit(loss, _sigma(b, resid), resid)


# -- the relaxation -------------------------------------------------------------------------------


def relax(p: Problem, fits: Sequence[Fit], *, iterations: int = RELAX_ITERATIONS) -> FArray:
    """The convex relaxation: probability vectors (n, K) minimising the weighted misfit of
    every balance minus the linear evidence."""
    members = [b.members() for b in p.balances]
    ys = [b.targets - f.loss for b, f in zip(p.balances, fits, strict=True)]
    invs = [1.0 / f.sigma**2 for f in fits]
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e3)
    # each meter's own block of the Hessian, bounded by |x_i|^2 * the largest weighted target
    # sum a label of it feeds
    curvature = np.zeros(p.n)
    for b, inv in zip(p.balances, invs, strict=True):
        per_label = b.own(inv @ b.incidence.T)  # (n, K): sum_j A_kj / s_gj^2 of the meter's group
        curvature += (b.series**2).sum(axis=0) * per_label.max(axis=1, initial=0.0)

    def value(w: FArray) -> float:
        total = -float((ev * w).sum())
        for b, y, inv, mem in zip(p.balances, ys, invs, members, strict=True):
            r = y - b.prediction(w, mem)
            total += 0.5 * float((r * r * inv).sum())
        return total

    def value_grad(w: FArray) -> tuple[float, FArray]:
        total = -float((ev * w).sum())
        g = -ev
        for b, y, inv, mem in zip(p.balances, ys, invs, members, strict=True):
            r = y - b.prediction(w, mem)
            total += 0.5 * float((r * r * inv).sum())
            g = g - b.projections(r * inv, mem) @ b.incidence.T
        return total, np.asarray(g, dtype=np.float64)

    w0 = np.full((p.n, p.k), 1.0 / p.k)
    return fista_simplex(value_grad, value, w0, curvature=curvature, iterations=iterations)


# -- the discrete objective -----------------------------------------------------------------------


class _State:
    """One balance's running state during refinement: residual, and each meter's projection
    on its group's weighted residual (kept up to date move by move)."""

    def __init__(self, b: Balance, fit: Fit, labels: IArray, k: int) -> None:
        self.b = b
        self.members = b.members()
        self.group = b.group_of()
        self.inv = 1.0 / fit.sigma**2  # (G, m)
        self.resid = b.targets - fit.loss - b.prediction(np.eye(k)[labels], self.members)
        self.proj = b.projections(self.resid * self.inv, self.members)  # (n, m)
        self.norm = (b.series**2).sum(axis=0)  # (n,)
        self.inv_own = b.own(self.inv)  # (n, m)

    def scores(self, labels: IArray) -> FArray:
        """Log-likelihood change of moving each meter to each label, all others fixed (n, K).

        Moving meter i from label a to c changes its group's prediction by ``x_i (A_c - A_a)``;
        the change of ``-1/2 sum (r / s)^2`` follows in closed form."""
        a = self.b.incidence
        n = len(labels)
        ga = self.proj @ a.T  # (n, K)
        cur = a[labels]  # (n, m)
        rw = self.inv_own
        # sum_j d_j^2 / s_j^2 with d = A_c - A_a (0/1 rows): S_c + S_a - 2 O_(a, c)
        quad = rw @ a.T + (rw * cur).sum(axis=1)[:, None] - 2.0 * ((rw * cur) @ a.T)
        lin = ga - ga[np.arange(n), labels][:, None]
        out = -(0.5 * self.norm[:, None] * quad - lin)
        out[self.group < 0] = 0.0
        return np.asarray(out, dtype=np.float64)

    def move(self, i: int, d: FArray) -> None:
        """Meter i's contribution to its group changes by ``x_i * d`` (d over the m targets)."""
        g = int(self.group[i])
        if g < 0 or not d.any():
            return
        x = self.b.series[:, i]
        self.resid[:, g, :] -= np.outer(x, d)
        idx = self.members[g]
        self.proj[idx] -= np.outer(self.b.series[:, idx].T @ x, d * self.inv[g])

    def pair_cross(self, cand: IArray, d: FArray) -> FArray:
        """(c, c): (x_i . x_j) * sum_m d_i d_j / s^2 for candidates in the same group."""
        g = self.group[cand]
        x = self.b.series[:, cand]
        same = (g[:, None] == g[None, :]) & (g[:, None] >= 0)
        dw = d * self.inv_own[cand]
        return np.asarray((x.T @ x) * (dw @ d.T) * same, dtype=np.float64)


def refine(
    p: Problem, labels: IArray, fits: Sequence[Fit], *, max_moves: int | None = None,
    pair_candidates: int = PAIR_CANDIDATES,
) -> tuple[IArray, int]:  # fmt: skip
    """Steepest descent on the discrete objective: apply the best single-meter move while one
    improves the total log-likelihood; when none does, the best pair of moves among the
    ``pair_candidates`` meters closest to moving (two meters with similar curves on each
    other's label cancel in the balance, so neither moves alone)."""
    labels = labels.copy()
    states = [_State(b, f, labels, p.k) for b, f in zip(p.balances, fits, strict=True)]
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e9)
    limit = max_moves if max_moves is not None else 4 * p.n + 10
    rows = np.arange(p.n)
    moves = 0

    def move(i: int, c: int) -> None:
        for s in states:
            s.move(i, s.b.incidence[c] - s.b.incidence[labels[i]])
        labels[i] = c

    while moves < limit:
        total = ev - ev[rows, labels][:, None]
        for s in states:
            total = total + s.scores(labels)
        total[rows, labels] = -np.inf
        best = np.argmax(total, axis=1)
        gain = total[rows, best]
        i = int(np.argmax(gain))
        if gain[i] > 1e-9:
            move(i, int(best[i]))
            moves += 1
            continue
        if pair_candidates < 2 or p.n < 2 or p.k < 2:
            break
        cand = np.argsort(-gain)[: min(pair_candidates, p.n)]
        cand = cand[np.isfinite(gain[cand])]
        # moving i by d_i and j by d_j: gain_i + gain_j - (x_i . x_j) * sum d_i d_j / s^2
        pair = gain[cand][:, None] + gain[cand][None, :]
        for s in states:
            a = s.b.incidence
            pair = pair - s.pair_cross(cand, a[best[cand]] - a[labels[cand]])
        np.fill_diagonal(pair, -np.inf)
        a_i, c_i = np.unravel_index(int(np.argmax(pair)), pair.shape)
        if pair[a_i, c_i] <= 1e-9:
            break
        move(int(cand[a_i]), int(best[cand[a_i]]))
        move(int(cand[c_i]), int(best[cand[c_i]]))
        moves += 2
    return labels, moves


def objective(p: Problem, labels: IArray, fits: Sequence[Fit]) -> float:
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e9)
    value = float(ev[np.arange(p.n), labels].sum())
    for b, f in zip(p.balances, fits, strict=True):
        resid = b.targets - f.loss - b.prediction(np.eye(p.k)[labels], b.members())
        value -= 0.5 * float(((resid / f.sigma) ** 2).sum())
    return value


def solve(p: Problem, *, start: IArray | None = None, relax_iterations: int = RELAX_ITERATIONS) -> Solution:
    """Two rounds of relax, round, refine: the first with the measurements' own accuracy, the
    second with losses and scales refitted to the first round's labelling; then a last
    refit and refinement.

    ``start`` (optional) is a labelling to refine as well (e.g. the archive's); the better
    refinement wins in each round.
    """
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e9)
    labels = np.argmax(ev, axis=1).astype(np.int64) if start is None else start.copy()
    fits = [initial_fit(b) for b in p.balances]
    relaxed = np.exp(ev - ev.max(axis=1, keepdims=True))
    moves = 0
    for round_ in range(2 if p.balances else 1):
        candidates = [labels] if start is None or round_ else [labels, start]
        if p.balances:
            relaxed = relax(p, fits, iterations=relax_iterations)
            candidates.insert(0, np.argmax(relaxed, axis=1).astype(np.int64))
        best: tuple[float, IArray, int] | None = None
        for cand in candidates:
            refined, m = refine(p, cand, fits)
            value = objective(p, refined, fits)
            if best is None or value > best[0]:
                best = (value, refined, m)
        assert best is not None
        _, labels, m = best
        moves += m
        fits = [refit(b, labels, p.k, f) for b, f in zip(p.balances, fits, strict=True)]
    labels, more = refine(p, labels, fits)
    fits = [refit(b, labels, p.k, f) for b, f in zip(p.balances, fits, strict=True)]
    parts = {
        b.name: _State(b, f, labels, p.k).scores(labels) for b, f in zip(p.balances, fits, strict=True)
    }
    score = ev + sum(parts.values(), np.zeros_like(ev))
    return Solution(
        labels=labels,
        score=np.asarray(score, dtype=np.float64),
        balance_scores=parts,
        fits={b.name: f for b, f in zip(p.balances, fits, strict=True)},
        moves=moves + more,
        relaxed=relaxed,
    )


__all__ = [
    "RESIDUAL_MODELS",
    "Balance",
    "Fit",
    "Problem",
    "Solution",
    "fit_gain",
    "fit_quadratic_loss",
    "label_margin",
    "objective",
    "refine",
    "relax",
    "solve",
]
