"""Online phase changes: a meter moved to another phase shows as evidence that flips sign at
one point of the window.

Layer: apps (topology), pure numpy. Works on a solved phase problem (``assign.Solution`` and the
``Problem`` it solved); must not read stores or decide what to do about a change.

For meter ``i`` on label ``a`` and an alternative ``b``, each balance gives, point by point, the
log-likelihood change of putting ``i`` on ``b`` (``assign.point_gains``). Before a move from
``b`` to ``a`` those gains are positive (the meter was on ``b``), after it negative, and the
reverse for a move from ``a`` to ``b``. The change point is where the split into a prefix and
a suffix of opposite evidence is strongest; both sides must carry enough evidence and enough
points, so a meter that is simply hard to place is not a "change".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import assign
from .numeric import FArray, IArray


@dataclass(frozen=True, slots=True)
class Change:
    meter: int  # index in the problem
    before: int  # label before the change
    after: int  # label since the change
    since: int  # index of the first point on the new label
    llr: float  # evidence of the split (log-likelihood, both sides)


def point_evidence(problem: assign.Problem, solution: assign.Solution, i: int, c: int, points: int) -> FArray:
    """(points,) summed over balances: the gain of meter ``i`` on label ``c`` at each curve point
    (an energy balance over intervals counts at the interval's end point)."""
    out = np.zeros(points)
    for b in problem.balances:
        fit = solution.fits[b.name]
        g = assign.point_gains(b, fit, solution.labels, i, c)
        out[points - len(g) :] += g
    return out


def window_scores(problem: assign.Problem, solution: assign.Solution, mask: FArray) -> FArray:
    """(n, K) every meter's gain on every label, all others where ``solution`` has them, summed
    over the points where ``mask`` (points,) is 1 (an energy balance's intervals at their end)."""
    labels = solution.labels
    k = problem.k
    rows = np.arange(problem.n)
    out = np.zeros((problem.n, k))
    for b in problem.balances:
        fit = solution.fits[b.name]
        t = b.series.shape[0]
        w = fit.weight * mask[len(mask) - t :, None, None]
        members = b.members()
        a = b.incidence
        q = b.projections(w, members, squared=True)
        ga = b.projections(fit.residual * w, members) @ a.T
        cur = a[labels]
        quad = q @ a.T + (q * cur).sum(axis=1)[:, None] - 2.0 * ((q * cur) @ a.T)
        part = ga - ga[rows, labels][:, None] - 0.5 * quad
        part[b.group_of() < 0] = 0.0
        out += part
    return out


def detect(
    problem: assign.Problem,
    solution: assign.Solution,
    points: int,
    *,
    candidates: IArray,
    labels: int,
    min_points: int = 8,
    min_llr: float = 20.0,
) -> list[Change]:
    """Changes of label among ``candidates`` (meter indices), over the real labels
    ``0 .. labels - 1``."""
    out: list[Change] = []
    for i in candidates:
        a = int(solution.labels[i])
        if a >= labels:
            continue
        best: Change | None = None
        for b in range(labels):
            if b == a:
                continue
            ev = point_evidence(problem, solution, int(i), b, points)
            prefix = np.cumsum(ev)  # prefix[k] = sum of ev[0..k]
            since = np.arange(min_points, points - min_points + 1)
            if not len(since):
                continue
            before = prefix[since - 1]  # evidence for b before each split
            after = prefix[-1] - before  # evidence for b from the split on
            half = min_llr / 2
            was_b = (before > half) & (after < -half)  # was b, is a now
            now_b = (after > half) & (before < -half)  # was a, is b now
            llr = np.where(was_b | now_b, np.abs(before - after), -np.inf)
            k = int(np.argmax(llr))
            if llr[k] >= min_llr and (best is None or llr[k] > best.llr):
                first, second = (b, a) if was_b[k] else (a, b)
                best = Change(int(i), first, second, int(since[k]), float(llr[k]))
        if best is not None:
            out.append(best)
    return out


def split(problem: assign.Problem, i: int, since: int, points: int) -> assign.Problem:
    """``problem`` with meter ``i`` cut at point ``since``: its column keeps the points before,
    a new last column the points from ``since`` on (same group, same evidence), so each part
    can take its own label. Energy intervals count at their end point."""
    balances = []
    for b in problem.balances:
        t = b.series.shape[0]
        offset = points - t  # an energy balance has one value fewer than there are points
        after = (np.arange(t) + offset) >= since
        col = b.series[:, i]
        series = np.concatenate([b.series, np.where(after, col, 0.0)[:, None]], axis=1)
        series[:, i] = np.where(after, 0.0, col)
        groups = None if b.groups is None else np.concatenate([b.groups, b.groups[i : i + 1]])
        balances.append(
            assign.Balance(
                b.name,
                series,
                b.targets,
                b.incidence,
                groups=groups,
                fixed=b.fixed,
                partition=b.partition,
                partition_of=b.partition_of,
                sigma_floor=b.sigma_floor,
                relative_floor=b.relative_floor,
                floor_base=b.floor_base,
                residual_model=b.residual_model,
                one_sided=b.one_sided,
            )
        )
    evidence = np.concatenate([problem.evidence, problem.evidence[i : i + 1]], axis=0)
    return assign.Problem(tuple(balances), evidence)


def resolve_changes(
    problem: assign.Problem,
    solution: assign.Solution,
    points: int,
    *,
    candidates: IArray,
    labels: int,
    min_points: int = 8,
    min_llr: float = 20.0,
    max_changes: int = 20,
) -> tuple[list[Change], assign.Problem, assign.Solution]:
    """Find changes one at a time, strongest first: cut the meter at its change point and solve
    again, so the misfit a moved meter left in its balances does not look like a change of its
    neighbours. Returns the changes (meter indices of the original problem), the cut problem
    and its solution (columns past the original meters are the parts after each change)."""
    found: list[Change] = []
    pending = [int(i) for i in candidates]
    for _ in range(max_changes):
        changes = detect(
            problem,
            solution,
            points,
            candidates=np.array(pending, dtype=np.int64),
            labels=labels,
            min_points=min_points,
            min_llr=min_llr,
        )
        if not changes:
            break
        best = max(changes, key=lambda c: c.llr)
        found.append(best)
        pending.remove(best.meter)
        problem = split(problem, best.meter, best.since, points)
        start = np.concatenate([solution.labels, [best.after]])
        start[best.meter] = best.before
        solution = assign.solve(problem, start=start.astype(np.int64), use_relaxation=False, rounds=1)
    return found, problem, solution


__all__ = ["Change", "detect", "point_evidence", "resolve_changes", "split", "window_scores"]
