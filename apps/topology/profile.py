"""How sure a labelling is of one meter's label when everything else may follow: the profile
likelihood ratio, for the move detector's short parts.

Layer: apps (topology), pure numpy, on ``assign``'s problems and solutions. Must not know what a
label means (phase, branch, box), nor read stores or decide what a result reports.

``assign.label_margin`` holds every other meter and each balance's residual model (losses, a
unit's gain and offset) where the solution has them. In a short part that overstates how sure a
meter is: at night a load is nearly constant, a unit's fitted offset takes up a misplaced
meter's load, and then moving that meter alone costs hundreds of nats while moving it together
with its refitted offset costs little or nothing. ``margin`` re-solves with the meter held on the
other label and free, refits the residual model to each labelling and compares the two on the
same misfit scales.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from . import assign
from .numeric import IArray


def resolve(problem: assign.Problem, start: IArray) -> IArray:
    """Refinement from ``start`` with one refit of the residual model (no relaxation)."""
    return assign.solve(problem, start=start, use_relaxation=False, rounds=1).labels


def fitted_objective(problem: assign.Problem, labels: IArray, fits: Sequence[assign.Fit]) -> float:
    """``assign.objective`` of ``labels`` with each balance's residual model refitted to them
    (the misfit scales of ``fits`` kept, so two labellings are compared on one scale)."""
    refitted = []
    for b, f in zip(problem.balances, fits, strict=True):
        r = assign.refit(b, labels, problem.k, f)
        refitted.append(replace(r, sigma=f.sigma))
    return assign.objective(problem, labels, refitted)


def margin(
    problem: assign.Problem, solution: assign.Solution, i: int, other: int, *, free: IArray | None = None
) -> float:
    """How much better ``problem`` is explained with meter ``i`` where ``solution`` has it than on
    label ``other``, every other meter free to follow and the residual model refitted to each
    labelling. Both labellings come from the same re-solve (``resolve`` from ``solution``'s
    labels), with ``i`` held on ``other`` or free; ``free``: that free re-solve's labels, if
    already known (one per problem, whatever the meter)."""
    fits = [solution.fits[b.name] for b in problem.balances]
    held = problem.evidence.copy()
    held[i] = -1e6
    held[i, other] = problem.evidence[i, other]
    start = solution.labels.copy()
    start[i] = other
    forced = resolve(assign.Problem(problem.balances, held), start)
    if free is None:
        free = resolve(problem, solution.labels)
    return fitted_objective(problem, free, fits) - fitted_objective(problem, forced, fits)


__all__ = ["fitted_objective", "margin", "resolve"]
