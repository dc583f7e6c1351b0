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
from functools import cached_property

import numpy as np

from .numeric import FArray, IArray, fista_simplex, robust_std

#: meters considered for pair moves once no single move helps
PAIR_CANDIDATES = 60
#: meters per (label, other label) considered for swaps
SWAP_BUCKET = 60
RELAX_ITERATIONS = 400
#: above this many labels the relaxation costs more than it helps (labels there are branches
#: or boxes, whose errors are single meters that moves fix); refinement starts from the evidence
RELAX_MAX_LABELS = 12
RESIDUAL_MODELS = ("losses", "gain", "none")
#: residuals beyond this many sigmas count linearly (Huber): one odd target cannot dictate
HUBER = 2.0
#: a loss model is this uncertain (relative), point by point
LOSS_UNCERTAINTY = 0.5
#: polishing: meters whose own evidence prefers another label by this many nats are kicked there
POLISH_MARGIN = 5.0
#: and tried one at a time (strongest disagreement first) when kicking them together does not pay
POLISH_SINGLES = 12


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
    #: which targets (flat indices into the G * m targets) form that partition; None = all.
    #: Nested targets (a branch unit below another) are not part of it: they count twice
    partition_of: tuple[int, ...] | None = None
    #: the smallest misfit scale worth believing per target: absolute (the resolution of the
    #: measurements) and relative to the target's mean magnitude (its accuracy class)
    sigma_floor: float = 0.01
    relative_floor: float = 0.002
    #: (G, m) what the relative floor is relative to; None = each target's mean magnitude. A
    #: target that is one measurement minus others (a branch section below monitored branches)
    #: carries all their errors: its base is what they measured together
    floor_base: FArray | None = None
    #: what the targets see besides the meters: "losses" (a * Y^2 + b, a, b >= 0: line
    #: losses, for energy), "gain" (c * Y + b, |c| <= 5 %: a unit's CT error, for currents)
    residual_model: str = "losses"
    #: the misfit is Huber-robust beyond ``HUBER`` sigmas; ``one_sided`` keeps it quadratic for
    #: negative residuals (energy conservation: metered energy cannot exceed what a target
    #: measured; a surplus is unmetered load -- a missing meter, theft -- and pulls softly)
    one_sided: bool = False

    def __post_init__(self) -> None:
        if self.residual_model not in RESIDUAL_MODELS:
            raise ValueError(f"balance {self.name}: residual model {self.residual_model!r}")
        t, n = self.series.shape
        if self.targets.ndim != 3 or self.targets.shape[0] != t:
            raise ValueError(f"balance {self.name}: targets {self.targets.shape}, series {self.series.shape}")
        if self.incidence.shape[1] != self.targets.shape[2]:
            raise ValueError(
                f"balance {self.name}: incidence {self.incidence.shape}, targets {self.targets.shape}"
            )
        if self.groups is not None and self.groups.shape != (n,):
            raise ValueError(f"balance {self.name}: groups {self.groups.shape}, {n} meters")

    @property
    def n_groups(self) -> int:
        return int(self.targets.shape[1])

    def group_of(self) -> IArray:
        """(n,) each meter's target group (read-only: shared by every caller)."""
        return self._groups

    def members(self) -> list[IArray]:
        return self._members

    @cached_property
    def _groups(self) -> IArray:
        n = self.series.shape[1]
        g = np.zeros(n, dtype=np.int64) if self.groups is None else np.asarray(self.groups, dtype=np.int64)
        g.setflags(write=False)
        return g

    @cached_property
    def _members(self) -> list[IArray]:
        order, starts, present = self._segments
        ends = np.append(starts[1:], len(order))
        out = [np.zeros(0, dtype=np.int64) for _ in range(self.n_groups)]
        for g, a, b in zip(present.tolist(), starts.tolist(), ends.tolist(), strict=True):
            out[g] = np.sort(order[a:b])
        return out

    def prediction(self, w: FArray, members: Sequence[IArray]) -> FArray:
        """(T, G, m) what the meters with label weights ``w`` (n, K) put on the targets."""
        h = w @ self.incidence  # (n, m)
        if self.n_groups == 1 and self.groups is None:
            pred = (self.series @ h)[:, None, :]
        else:
            pred = np.zeros_like(self.targets)
            order, starts, present = self._segments
            if len(order):
                contrib = self._sorted_series[:, :, None] * h[order][None, :, :]  # (T, n', m)
                pred[:, present, :] = np.add.reduceat(contrib, starts, axis=1)
        return pred if self.fixed is None else pred + self.fixed

    @cached_property
    def _segments(self) -> tuple[IArray, IArray, IArray]:
        """Meters sorted by group (those in a group), where each group starts, which groups."""
        g = self._groups
        order = np.argsort(g, kind="stable")
        order = order[g[order] >= 0]
        if not len(order):
            return order, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        sorted_g = g[order]
        starts = np.concatenate([[0], np.nonzero(np.diff(sorted_g))[0] + 1]).astype(np.int64)
        return order, starts, sorted_g[starts]

    @cached_property
    def squared(self) -> FArray:
        """(T, n) every meter's series squared."""
        return np.asarray(self.series * self.series, dtype=np.float64)

    @cached_property
    def _sorted_series(self) -> FArray:
        """The series of the meters in a group, in ``_segments`` order (T, n')."""
        return np.ascontiguousarray(self.series[:, self._segments[0]])

    def projections(self, per_point: FArray, members: Sequence[IArray], *, squared: bool = False) -> FArray:
        """(n, m): each meter's series (squared: its square) dotted with its own group's
        ``per_point`` values (T, G, m); zeros for meters in no group."""
        x = self.series * self.series if squared else self.series
        if self.n_groups == 1 and self.groups is None:
            return np.asarray(x.T @ per_point[:, 0, :], dtype=np.float64)
        g = self.group_of()
        ok = g >= 0
        out = np.zeros((x.shape[1], self.targets.shape[2]))
        out[ok] = np.einsum("tn,tnm->nm", x[:, ok], per_point[:, g[ok], :])
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
    """One balance under a labelling: losses, misfit scale, residual, and the weights of the
    residual's points (1 / sigma^2, lowered where the robust misfit grows only linearly)."""

    loss: FArray  # (T, G, m)
    sigma: FArray  # (G, m)
    residual: FArray  # (T, G, m) target minus prediction minus loss
    weight: FArray  # (T, G, m)


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
    """Per column of (T, c) arrays, ``c * y + b`` with |c| <= ``limit`` that best explains ``resid``
    (least squares per column in closed form; a column with no variation takes the minimum-norm
    solution, as ``lstsq`` would)."""
    t = max(len(y), 1)
    y_mean, r_mean = y.mean(axis=0), resid.mean(axis=0)
    yc = y - y_mean
    var = (yc * yc).sum(axis=0)
    cov = (yc * (resid - r_mean)).sum(axis=0)
    flat = var <= (np.finfo(np.float64).eps * t) ** 2 * np.maximum((y * y).sum(axis=0), 1e-300)
    slope = np.where(flat, y_mean * r_mean / (y_mean * y_mean + 1.0), cov / np.where(flat, 1.0, var))
    c = np.clip(slope, -limit, limit)
    return np.asarray(c * y + (r_mean - c * y_mean), dtype=np.float64)


def _flat(a: FArray) -> FArray:
    return a.reshape(a.shape[0], -1)


def _floor(b: Balance) -> FArray:
    base = np.abs(b.targets).mean(axis=0) if b.floor_base is None else b.floor_base
    scale = b.relative_floor * base
    return np.asarray(np.maximum(scale, b.sigma_floor), dtype=np.float64)


def _sigma(b: Balance, resid: FArray) -> FArray:
    """The misfit scale of every target: the median over targets of their robust residual
    spread (pooled: a target whose residual a wrong labelling inflates must not excuse its
    own error), never under the target's measurement floor."""
    spread = robust_std(resid, axis=0)  # (G, m)
    pooled = float(np.median(spread)) if spread.size else 0.0
    return np.asarray(np.maximum(_floor(b), pooled), dtype=np.float64)


def point_scale(sigma: FArray, loss: FArray) -> FArray:
    """(T, G, m) misfit scale of every point: the target's scale, widened by the uncertainty of
    its loss model (losses differ from branch to branch by more than a shared model knows)."""
    return np.asarray(np.sqrt(sigma[None, :, :] ** 2 + (LOSS_UNCERTAINTY * loss) ** 2), dtype=np.float64)


def robust_weight(b: Balance, resid: FArray, scale: FArray) -> FArray:
    """IRLS weights of the Huber misfit: ``1 / s^2`` within ``HUBER`` scales (and for every
    negative residual of a one-sided balance), ``HUBER s / |r| / s^2`` beyond."""
    limit = HUBER * scale
    big = np.abs(resid) > limit
    if b.one_sided:
        big &= resid > 0
    w = np.where(big, limit / np.maximum(np.abs(resid), 1e-12), 1.0)
    return np.asarray(w / scale**2, dtype=np.float64)


def misfit(b: Balance, resid: FArray, scale: FArray) -> float:
    """The robust misfit (the negative log-likelihood) of a residual, ``scale`` per point."""
    u = np.abs(resid) / scale
    quad = u <= HUBER
    if b.one_sided:
        quad |= resid <= 0
    return float(np.where(quad, 0.5 * u * u, HUBER * u - 0.5 * HUBER * HUBER).sum())


def shared_loss(b: Balance, labels: IArray, k: int) -> FArray:
    """(T, G, m) losses ``a * Y^2 + c`` with ONE (a, c >= 0) for every target, fitted robustly
    (Huber IRLS) to what ``labels`` leaves unexplained. Two numbers cannot absorb a wrong label
    or a foreign meter; a target they spoil falls outside the Huber band and counts little."""
    pred = b.prediction(np.eye(k)[labels], b.members())
    y2 = _flat(b.targets).ravel() ** 2
    r = _flat(b.targets - pred).ravel()
    x = np.stack([y2, np.ones_like(y2)], axis=1)
    w = np.ones_like(r)
    coef: FArray = np.zeros(2)
    for _ in range(12):
        sw = np.sqrt(w)
        coef = np.asarray(np.linalg.lstsq(x * sw[:, None], r * sw, rcond=None)[0], dtype=np.float64)
        if coef[0] < 0 or coef[1] < 0:  # on the boundary: each alone, non-negative
            options = []
            for j in (0, 1):
                den = float((w * x[:, j] ** 2).sum())
                c = np.zeros(2)
                c[j] = max(0.0, float((w * x[:, j] * r).sum()) / den) if den > 0 else 0.0
                options.append(c)
            coef = min(options, key=lambda c: float((w * (r - x @ c) ** 2).sum()))
        res = r - x @ coef
        scale = max(float(robust_std(res)), 1e-9)
        w = np.minimum(1.0, HUBER * scale / np.maximum(np.abs(res), 1e-12))
    return np.asarray(float(coef[0]) * b.targets**2 + float(coef[1]), dtype=np.float64)


def initial_fit(b: Balance, start: IArray | None = None, k: int = 0) -> Fit:
    """Losses and misfit scale before any labelling is trusted. An energy balance with a
    partition takes both from the partition's totals (energy no labelling can move); any
    other starts from its measurements' own accuracy (the floor): a scale taken from a
    doubtful labelling would be inflated by its very errors and excuse them."""
    zero = np.zeros_like(b.targets)
    if not b.partition or b.residual_model != "losses":
        sigma = _floor(b)
        return Fit(zero, sigma, zero, 1.0 / point_scale(sigma, zero) ** 2)
    if start is not None and b.n_groups * b.targets.shape[2] > 3:
        # many targets: the archive's labelling, robustly, says more than the partition's totals
        # (which a foreign or an unlisted meter bends by its whole curve)
        loss = shared_loss(b, start, k)
        resid = b.targets - loss - b.prediction(np.eye(k)[start], b.members())
        sigma = _sigma(b, resid)
        return Fit(loss, sigma, zero, 1.0 / point_scale(sigma, loss) ** 2)
    cols = list(range(_flat(b.targets).shape[1])) if b.partition_of is None else list(b.partition_of)
    y = _flat(b.targets)[:, cols]
    fixed = 0.0 if b.fixed is None else _flat(b.fixed)[:, cols].sum(axis=1)
    fed = b.group_of() >= 0
    unexplained = y.sum(axis=1) - b.series[:, fed].sum(axis=1) - fixed
    sq = (y**2).sum(axis=1)
    total = fit_quadratic_loss(sq[:, None], unexplained[:, None])[:, 0]
    coef = np.linalg.lstsq(np.stack([sq, np.ones(len(sq))], axis=1), total, rcond=None)[0]
    count = float(y.shape[1])
    loss = np.asarray(max(float(coef[0]), 0.0) * b.targets**2 + max(float(coef[1]), 0.0) / count)
    scale = float(robust_std(unexplained - _flat(loss).sum(axis=1))) / np.sqrt(count)
    sigma = np.asarray(np.maximum(_floor(b), scale), dtype=np.float64)
    return Fit(loss, sigma, zero, 1.0 / point_scale(sigma, loss) ** 2)


def refit(b: Balance, labels: IArray, k: int, previous: Fit) -> Fit:
    """Losses, scales and robust weights for ``labels``.

    A balance with a partition keeps its assignment-free losses and never shrinks its scale
    below the assignment-free one: per-target losses fitted to a labelling would absorb the
    labelling's own errors (a misplaced meter's load looks like loss). Without a partition the
    losses (or a unit's gain error) are fitted to the labelling."""
    pred = b.prediction(np.eye(k)[labels], b.members())
    loss = previous.loss
    if b.partition and b.residual_model == "losses" and b.n_groups * b.targets.shape[2] > 3:
        loss = shared_loss(b, labels, k)
    elif not b.partition:
        if b.residual_model == "losses":
            loss = fit_quadratic_loss(_flat(b.targets), _flat(b.targets - pred)).reshape(b.targets.shape)
        elif b.residual_model == "gain":
            loss = fit_gain(_flat(b.targets), _flat(b.targets - pred)).reshape(b.targets.shape)
    resid = b.targets - loss - pred
    sigma = _sigma(b, resid)
    if b.partition:
        sigma = np.maximum(sigma, previous.sigma)
    return Fit(loss, sigma, resid, robust_weight(b, resid, point_scale(sigma, loss)))


# -- the relaxation -------------------------------------------------------------------------------


def relax(p: Problem, fits: Sequence[Fit], *, iterations: int = RELAX_ITERATIONS) -> FArray:
    """The convex relaxation: probability vectors (n, K) minimising the weighted misfit of
    every balance (the fits' point weights held fixed) minus the linear evidence."""
    members = [b.members() for b in p.balances]
    ys = [b.targets - f.loss for b, f in zip(p.balances, fits, strict=True)]
    ws = [f.weight for f in fits]
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e3)
    # each meter's own block of the Hessian, bounded by the largest weighted target sum a label
    # of it feeds
    curvature = np.zeros(p.n)
    for b, w, mem in zip(p.balances, ws, members, strict=True):
        q = b.projections(w, mem, squared=True)  # (n, m): sum_t x_it^2 w_tj
        curvature += (q @ b.incidence.T).max(axis=1, initial=0.0)

    def value(w_: FArray) -> float:
        total = -float((ev * w_).sum())
        for b, y, w, mem in zip(p.balances, ys, ws, members, strict=True):
            r = y - b.prediction(w_, mem)
            total += 0.5 * float((r * r * w).sum())
        return total

    def value_grad(w_: FArray) -> tuple[float, FArray]:
        total = -float((ev * w_).sum())
        g = -ev
        for b, y, w, mem in zip(p.balances, ys, ws, members, strict=True):
            r = y - b.prediction(w_, mem)
            total += 0.5 * float((r * r * w).sum())
            g = g - b.projections(r * w, mem) @ b.incidence.T
        return total, np.asarray(g, dtype=np.float64)

    w0 = np.full((p.n, p.k), 1.0 / p.k)
    return fista_simplex(value_grad, value, w0, curvature=curvature, iterations=iterations)


# -- the discrete objective -----------------------------------------------------------------------


class _State:
    """One balance's running state during refinement, kept up to date move by move: the
    residual, the Huber point weights at that residual, and from them the linear (``ga``) and
    quadratic (``quad``) parts of every meter's score for every label.

    The weights follow the residual (they are recomputed on the targets a move touches), so a
    score is the gain on the quadratic that majorises the Huber misfit at the current labelling:
    a move that gains on it gains on the objective too (majorise-minimise). Weights held from an
    earlier labelling would down-weight exactly the points a wrong labelling spoils."""

    def __init__(self, b: Balance, fit: Fit, labels: IArray, k: int) -> None:
        self.b = b
        self.members = b.members()
        self.group = b.group_of()
        self.scale = point_scale(fit.sigma, fit.loss)  # (T, G, m)
        self.resid = b.targets - fit.loss - b.prediction(np.eye(k)[labels], self.members)
        self.w = robust_weight(b, self.resid, self.scale)  # (T, G, m)
        self.labels = labels.copy()
        self.q = b.projections(self.w, self.members, squared=True)  # (n, m): sum_t x_it^2 w_tj
        # ga[i, c] = sum_t x_it r_tj w_tj A_cj: the linear part, before subtracting the own label
        self.ga = b.projections(self.resid * self.w, self.members) @ b.incidence.T  # (n, K)
        a = b.incidence
        # sum_j q_ij d_j^2 with d = A_c - A_a (0/1 rows): S_c + S_a - 2 O_(a, c)
        cur = a[labels]
        self.quad = self.q @ a.T + (self.q * cur).sum(axis=1)[:, None] - 2.0 * ((self.q * cur) @ a.T)

    def _quad_row(self, i: int, label: int) -> None:
        a = self.b.incidence
        q = self.q[i]
        cur = a[label]
        self.quad[i] = q @ a.T + float((q * cur).sum()) - 2.0 * ((q * cur) @ a.T)

    def scores(self, labels: IArray) -> FArray:
        """Log-likelihood change of moving each meter to each label, all others fixed (n, K).

        Moving meter i from label a to c changes its group's prediction by ``x_i (A_c - A_a)``;
        the change of ``-1/2 sum w r^2`` follows in closed form."""
        n = len(labels)
        lin = self.ga - self.ga[np.arange(n), labels][:, None]
        out = lin - 0.5 * self.quad
        out[self.group < 0] = 0.0
        return np.asarray(out, dtype=np.float64)

    def move(self, i: int, old: int, new: int) -> None:
        """Meter i moves from label ``old`` to ``new``."""
        a = self.b.incidence
        self.labels[i] = new
        self._quad_row(i, new)
        g = int(self.group[i])
        d = a[new] - a[old]
        if g < 0 or not d.any():
            return
        cols = np.nonzero(d)[0]
        x = self.b.series[:, i]
        old_rw = self.resid[:, g, cols] * self.w[:, g, cols]
        old_w = self.w[:, g, cols].copy()
        self.resid[:, g, cols] -= np.outer(x, d[cols])
        self.w[:, g, cols] = robust_weight(self.b, self.resid[:, g, cols], self.scale[:, g, cols])
        # every meter is in the one group of a balance without groups: no copy of its series
        whole = self.b.n_groups == 1 and self.b.groups is None
        idx: IArray | slice = slice(None) if whole else self.members[g]
        xs = self.b.series if whole else self.b.series[:, idx]
        xs2 = self.b.squared if whole else self.b.squared[:, idx]
        # linear parts: sum_t x_it (r w)_tj changed on the touched targets only
        delta_rw = self.resid[:, g, cols] * self.w[:, g, cols] - old_rw  # (T, |cols|)
        self.ga[idx] += (xs.T @ delta_rw) @ a[:, cols].T
        # quadratic parts: q_ij = sum_t x_it^2 w_tj on the touched targets, and quad from them
        dq = xs2.T @ (self.w[:, g, cols] - old_w)  # (n_g, |cols|)
        if np.any(dq):
            if whole:
                self.q[:, cols] += dq
            else:
                self.q[np.ix_(self.members[g], cols)] += dq
            own = a[self.labels[idx]][:, cols]  # (n_g, |cols|)
            # sum_c dq_c (A_kc - own_c)^2 with 0/1 entries: dq (1 - 2 own) . A_k + dq . own
            self.quad[idx] += (dq * (1.0 - 2.0 * own)) @ a[:, cols].T + (dq * own).sum(axis=1)[:, None]

    def pair_cross(self, cand: IArray, d: FArray) -> FArray:
        """(c, c): sum_j d_ij d_kj sum_t x_it x_kt w_tj for candidates in the same group."""
        g = self.group[cand]
        same = (g[:, None] == g[None, :]) & (g[:, None] >= 0)
        x = self.b.series[:, cand]  # (T, c)
        own = np.maximum(g, 0)
        out = np.zeros((len(cand), len(cand)))
        for j in np.nonzero(np.any(d != 0, axis=0))[0]:  # each candidate's own group's weights
            out += ((x * self.w[:, own, j]).T @ x) * np.outer(d[:, j], d[:, j])
        return np.asarray(out * same, dtype=np.float64)

    def swap_cross(self, rows: IArray, cols: IArray, d: FArray) -> FArray:
        """(r, c): sum_j d_j^2 sum_t x_it x_kt w_tj for meters ``rows`` x ``cols`` of one group
        (the residual both moves of a swap share), zero across groups."""
        gi, gk = self.group[rows], self.group[cols]
        same = (gi[:, None] == gk[None, :]) & (gi[:, None] >= 0)
        if not same.any():
            return np.zeros((len(rows), len(cols)))
        xi, xk = self.b.series[:, rows], self.b.series[:, cols]
        own = np.maximum(gi, 0)
        out = np.zeros((len(rows), len(cols)))
        for j in np.nonzero(d)[0]:  # only the touched targets' weights, each row's own group's
            out += float(d[j] ** 2) * ((xi * self.w[:, own, j]).T @ xk)
        return np.asarray(out * same, dtype=np.float64)


def _swap_entries(
    states: Sequence[_State], total: FArray, labels: IArray, alternatives: int, favoured: IArray | None
) -> tuple[IArray, IArray, IArray]:
    """Who may swap: (meter, from label, to label) entries, in the order buckets are filled.
    A meter enters the bucket (its label, b) for each of its ``alternatives`` best labels b."""
    n, k = total.shape
    if k > alternatives:  # the best few per row, in order: O(n K), not a sort of every row
        top = np.argpartition(-total, alternatives - 1, axis=1)[:, :alternatives]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(total, top, axis=1), axis=1), axis=1)
    else:
        top = np.argsort(-total, axis=1)
    ii = np.repeat(np.arange(n), top.shape[1])
    bb = top.ravel()
    ok = np.isfinite(total[ii, bb])
    meter, dest = [ii[ok]], [bb[ok]]
    # a meter in a label that feeds no target (a sink: "not ours") may have been pushed there by
    # a look-alike on its real label, which then fits it worst of all: it also swaps with every
    # meter on the labels its own evidence favours most
    fed = np.zeros(k, dtype=bool)
    for st in states:
        fed |= st.b.incidence.any(axis=1)
    in_top = np.zeros((n, k), dtype=bool)
    in_top[ii, bb] = True
    for sink in (int(x) for x in np.nonzero(~fed)[0]):
        sunk = np.nonzero(labels == sink)[0]
        if not len(sunk) or favoured is None:
            continue
        fi = np.repeat(sunk, favoured.shape[1])
        fb = favoured[sunk].ravel()
        keep = (fb != sink) & np.isfinite(total[fi, fb]) & ~in_top[fi, fb]
        meter.append(fi[keep])
        dest.append(fb[keep])
        wanted = np.unique(fb[keep])
        others = np.nonzero(np.isin(labels, wanted))[0]
        others = others[np.isfinite(total[others, sink]) & ~in_top[others, sink]]
        meter.append(others)
        dest.append(np.full(len(others), sink, dtype=np.int64))
    m = np.concatenate(meter).astype(np.int64)
    return m, labels[m].astype(np.int64), np.concatenate(dest).astype(np.int64)


def _best_swap(
    states: Sequence[_State],
    total: FArray,
    labels: IArray,
    *,
    alternatives: int = 3,
    bucket: int = 200,
    favoured: IArray | None = None,
    floor: float = -np.inf,
) -> tuple[float, int, int]:
    """The best swap of two meters' labels (i on a to b, k on b to a) that gains more than
    ``floor``: each move alone may break a balance that the other mends. Only meters for which
    the other's label is among their ``alternatives`` best are paired, at most ``bucket`` per
    (label, label), the likeliest first. Returns (gain, i, k), or (-inf, -1, -1).

    Bucket pairs are examined best bound first and the search stops when no bound can beat the
    best swap found: a swap gains ``total[i, b] + total[k, a] + cross`` with
    ``cross <= sqrt(Q_i Q_k) <= (Q_i + Q_k) / 2`` per balance (Cauchy-Schwarz, Q = ``quad``),
    so both bounds split into a part per meter. Work per call: O(n log n) plus the few buckets
    examined, not O(n) Python steps."""
    k = total.shape[1]
    meter, src, dst = _swap_entries(states, total, labels, alternatives, favoured)
    none = (-np.inf, -1, -1)
    if not len(meter):
        return none
    key = src * k + dst
    tot = total[meter, dst]
    quads = [np.maximum(st.quad[meter, dst], 0.0) for st in states]
    half = tot + 0.5 * sum(quads, np.zeros(len(meter)))
    # buckets: entries grouped by key, the likeliest first, ties in the order they entered
    order = np.lexsort((np.arange(len(meter)), -tot, key))
    key_s = key[order]
    starts = np.concatenate([[0], np.nonzero(np.diff(key_s))[0] + 1])
    ends = np.append(starts[1:], len(order))
    keys = key_s[starts]
    first = np.minimum.reduceat(order, starts)  # when each bucket was opened (ties: earliest wins)
    top_tot = np.maximum.reduceat(tot[order], starts)
    top_half = np.maximum.reduceat(half[order], starts)
    top_quad = [np.maximum.reduceat(q[order], starts) for q in quads]
    a_of, b_of = keys // k, keys % k
    partner = np.searchsorted(keys, b_of * k + a_of)
    partner = np.minimum(partner, len(keys) - 1)
    paired = (a_of < b_of) & (keys[partner] == b_of * k + a_of)
    lo = np.nonzero(paired)[0]
    if not len(lo):
        return none
    hi = partner[lo]
    cauchy = top_tot[lo] + top_tot[hi] + sum((np.sqrt(q[lo] * q[hi]) for q in top_quad), np.zeros(len(lo)))
    bound = np.minimum(cauchy, top_half[lo] + top_half[hi])
    best_gain, best_first, best_pair = float(floor), np.inf, (-1, -1)
    for j in np.argsort(-bound, kind="stable"):
        limit = float(bound[j])
        if limit + 1e-9 * (1.0 + abs(limit)) < best_gain:
            break
        x, y = int(lo[j]), int(hi[j])
        a, b = int(a_of[x]), int(b_of[x])
        rows = meter[order[starts[x] : min(ends[x], starts[x] + bucket)]]
        cols = meter[order[starts[y] : min(ends[y], starts[y] + bucket)]]
        gain = total[rows, b][:, None] + total[cols, a][None, :]
        for st in states:
            d = st.b.incidence[b] - st.b.incidence[a]
            if d.any():
                gain = gain + st.swap_cross(rows, cols, d)
        r, c = np.unravel_index(int(np.argmax(gain)), gain.shape)
        value = float(gain[r, c])
        opened = float(first[x])
        if value > best_gain or (value == best_gain and best_pair[0] >= 0 and opened < best_first):
            best_gain, best_first, best_pair = value, opened, (int(rows[r]), int(cols[c]))
    if best_pair[0] < 0:
        return none
    return best_gain, best_pair[0], best_pair[1]


def refine(
    p: Problem, labels: IArray, fits: Sequence[Fit], *, max_moves: int | None = None,
    pair_candidates: int = PAIR_CANDIDATES,
) -> tuple[IArray, int]:  # fmt: skip
    """Steepest descent on the discrete objective: apply the best single-meter move while one
    improves the total log-likelihood, unless the best swap of two meters' labels gains more
    (two meters with similar curves on each other's label cancel in the balance, so neither
    moves alone, and a greedy single move would bury the swap); when neither improves, the
    best pair of moves among the ``pair_candidates`` meters closest to moving."""
    labels = labels.copy()
    states = [_State(b, f, labels, p.k) for b, f in zip(p.balances, fits, strict=True)]
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e9)
    limit = max_moves if max_moves is not None else 4 * p.n + 10
    rows = np.arange(p.n)
    moves = 0
    favoured = np.argsort(-ev, axis=1)[:, :2]  # the labels each meter's own evidence prefers

    def move(i: int, c: int) -> None:
        for s in states:
            s.move(i, int(labels[i]), c)
        labels[i] = c

    while moves < limit:
        total = ev - ev[rows, labels][:, None]
        for s in states:
            total = total + s.scores(labels)
        total[rows, labels] = -np.inf
        best = np.argmax(total, axis=1)
        gain = total[rows, best]
        i = int(np.argmax(gain))
        swap_gain, si, sk = (
            _best_swap(states, total, labels, bucket=SWAP_BUCKET, favoured=favoured, floor=max(gain[i], 1e-9))
            if p.k > 1
            else (-np.inf, -1, -1)
        )
        if swap_gain > max(gain[i], 1e-9):
            # a swap that beats every single move: two meters on each other's label
            a_label, b_label = int(labels[si]), int(labels[sk])
            move(si, b_label)
            move(sk, a_label)
            moves += 2
            continue
        if gain[i] > 1e-9:
            move(i, int(best[i]))
            moves += 1
            continue
        if p.n < 2 or p.k < 2:
            break
        if pair_candidates < 2:
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


def point_gains(b: Balance, fit: Fit, labels: IArray, i: int, c: int) -> FArray:
    """(T,) the log-likelihood change, point by point, of moving meter ``i`` to label ``c``
    with every other meter where ``labels`` has it (the terms ``scores`` sums over time)."""
    g = int(b.group_of()[i])
    t = b.targets.shape[0]
    if g < 0:
        return np.zeros(t)
    d = b.incidence[c] - b.incidence[int(labels[i])]
    x = b.series[:, i][:, None]
    r = fit.residual[:, g, :]
    w = fit.weight[:, g, :]
    return np.asarray(
        (w * (x * d[None, :] * r - 0.5 * x * x * (d * d)[None, :])).sum(axis=1), dtype=np.float64
    )


def polish(p: Problem, labels: IArray, fits: Sequence[Fit], *, pair_candidates: int) -> tuple[IArray, int]:
    """Iterated local search from a refined labelling: the meters whose own evidence (archive,
    carrier, signature, voltage) prefers another label by more than ``POLISH_MARGIN`` are moved
    there -- together, else one at a time -- and refined again; kept when the objective gains.
    Single moves and swaps cannot undo a cycle (a meter on a gap another meter should fill, that
    one on a third gap, ...); a kick along the evidence can."""
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e9)
    rows = np.arange(p.n)
    favoured = np.argmax(ev, axis=1)
    gap = ev[rows, favoured] - ev[rows, labels]
    conflict = np.nonzero((favoured != labels) & (gap > POLISH_MARGIN))[0]
    if not len(conflict) or not p.balances:
        return labels, 0
    best = objective(p, labels, fits)
    moves = 0
    trial = labels.copy()
    trial[conflict] = favoured[conflict]
    refined, m = refine(p, trial, fits, pair_candidates=pair_candidates)
    value = objective(p, refined, fits)
    if value > best + 1e-9:
        return refined, m
    for i in conflict[np.argsort(-gap[conflict])][:POLISH_SINGLES]:
        if labels[i] == favoured[i]:
            continue
        trial = labels.copy()
        trial[i] = favoured[i]
        refined, m = refine(p, trial, fits, pair_candidates=pair_candidates)
        value = objective(p, refined, fits)
        if value > best + 1e-9:
            labels, best = refined, value
            moves += m
    return labels, moves


def objective(p: Problem, labels: IArray, fits: Sequence[Fit]) -> float:
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e9)
    value = float(ev[np.arange(p.n), labels].sum())
    for b, f in zip(p.balances, fits, strict=True):
        resid = b.targets - f.loss - b.prediction(np.eye(p.k)[labels], b.members())
        value -= misfit(b, resid, point_scale(f.sigma, f.loss))
    return value


def solve(
    p: Problem, *, start: IArray | None = None, relax_iterations: int = RELAX_ITERATIONS, rounds: int = 3,
    use_relaxation: bool = True,
) -> Solution:  # fmt: skip
    """Relax, round, refine; then ``rounds`` times: refit losses, scales and robust weights to
    the labelling so far (one IRLS step), relax again and refine from every candidate.

    The first round trusts the measurements' own accuracy; later rounds let a target whose
    residual stays large (unmetered load behind it) pull only linearly. ``start`` (optional) is
    a labelling to refine as well (e.g. the archive's); the best refinement wins each round.
    Without ``use_relaxation`` (a re-solve from a good labelling) only refinement runs.
    """
    ev = np.where(np.isfinite(p.evidence), p.evidence, -1e9)
    first = np.argmax(ev, axis=1).astype(np.int64) if start is None else start.copy()
    labels = first
    fits = [initial_fit(b, start, p.k) for b in p.balances]
    relaxed = np.exp(ev - ev.max(axis=1, keepdims=True))
    moves = 0
    pairs = PAIR_CANDIDATES if p.k <= RELAX_MAX_LABELS else 0
    for round_ in range(1 + (max(0, rounds) if p.balances else 0)):
        candidates = [labels, first] if round_ <= 1 else [labels]
        if round_ == 0 and start is not None:  # what the evidence alone says, too
            candidates.append(np.argmax(ev, axis=1).astype(np.int64))
        if use_relaxation and p.balances and p.k <= RELAX_MAX_LABELS and round_ <= 1:
            relaxed = relax(p, fits, iterations=relax_iterations)
            candidates.insert(0, np.argmax(relaxed, axis=1).astype(np.int64))
        best: tuple[float, IArray, int] | None = None
        for cand in candidates:
            refined, m = refine(p, cand, fits, pair_candidates=pairs)
            value = objective(p, refined, fits)
            if best is None or value > best[0]:
                best = (value, refined, m)
        assert best is not None
        _, labels, m = best
        labels, kicked = polish(p, labels, fits, pair_candidates=pairs)
        moves += m + kicked
        fits = [refit(b, labels, p.k, f) for b, f in zip(p.balances, fits, strict=True)]
    parts = {b.name: _State(b, f, labels, p.k).scores(labels) for b, f in zip(p.balances, fits, strict=True)}
    score = ev + sum(parts.values(), np.zeros_like(ev))
    return Solution(
        labels=labels,
        score=np.asarray(score, dtype=np.float64),
        balance_scores=parts,
        fits={b.name: f for b, f in zip(p.balances, fits, strict=True)},
        moves=moves,
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
    "point_gains",
    "refine",
    "relax",
    "solve",
]
