"""What a move candidate must be sure of: a part's label judged with the others free and the
residual model refitted (``profile.margin``), and current balances only where flows go one way."""

from __future__ import annotations

import numpy as np
import pytest

from apps.topology import assign, profile
from apps.topology.identify import (
    NOT_OURS,
    PHASES,
    Decided,
    _decide,
    _one_way,
    label_margin_at,
)

T = 32  # a move detector's part: 8 h of 15-min points


def _part(x_load: np.ndarray, *, x_on: int, seed: int = 4) -> tuple[assign.Problem, Decided]:
    """A branch unit's per-phase current (gain and offset model) over nine meters of varying load
    plus meter X (the last), which really is on phase A; solved from a labelling with X on
    ``x_on``."""
    rng = np.random.default_rng(seed)
    hours = np.arange(T) / 4.0
    loads = [
        0.5 + 0.4 * rng.random() * (1 + np.sin(hours / (1 + rng.random()) + rng.random() * 6))
        for _ in range(9)
    ]
    series = np.column_stack([*loads, x_load])
    true = np.array([0, 1, 2] * 3 + [0])
    targets = np.zeros((T, 1, 3))
    for i, k in enumerate(true):
        targets[:, 0, k] += series[:, i]
    targets += rng.normal(0.0, 0.02, targets.shape)
    balance = assign.Balance(
        "unit_currents", series, targets, np.vstack([np.eye(3), np.zeros((1, 3))]),
        residual_model="gain", sigma_floor=0.05, relative_floor=0.01,
    )  # fmt: skip
    evidence = np.zeros((10, 4))
    evidence[:, 3] = -1e6
    problem = assign.Problem((balance,), evidence)
    labels = true.copy()
    labels[-1] = x_on
    # a part's solution: a labelling with the residual model fitted to it (as the solver's
    # refits leave it), each meter's scores with the others held
    fit = assign.initial_fit(balance)
    for _ in range(2):
        fit = assign.refit(balance, labels, 4, fit)
    scores = assign._State(balance, fit, labels, 4).scores(labels)
    solution = assign.Solution(labels, evidence + scores, {balance.name: scores}, {balance.name: fit})
    return problem, _decide((*PHASES, NOT_OURS), solution, {}, problem)


def test_a_near_constant_load_a_unit_offset_absorbs_is_not_sure_where_it_was_put() -> None:
    """At night a meter's load is nearly constant, and a unit's fitted offset takes it up on
    whichever phase the labelling leaves it: held fixed, that offset makes the misplaced meter
    look hundreds of nats sure (the false moves of the default scenario's sections); with the
    residual model refitted, its phase is not known at all."""
    _, decided = _part(np.full(T, 1.0), x_on=1)
    assert label_margin_at(decided, 9) > 100.0
    assert abs(profile.margin(decided.problem, decided.solution, 9, 0)) < 1.0


def test_a_load_with_its_own_shape_stays_sure_of_its_phase() -> None:
    """A load with a shape of its own is no offset: its phase is sure either way."""
    hours = np.arange(T) / 4.0
    _, decided = _part(0.3 + 1.5 * (np.sin(hours) > 0), x_on=0)
    assert int(decided.chosen[-1]) == 0
    assert profile.margin(decided.problem, decided.solution, 9, 1) > 50.0
    assert profile.margin(decided.problem, decided.solution, 9, 2) > 50.0


def test_points_where_a_section_sees_power_flow_back_leave_its_current_balance() -> None:
    """Current magnitudes add up only while every flow goes one way: a point where a unit of the
    section or a meter in it reads negative (export) drops out of that section only."""
    series = np.ones((4, 3))
    series[2, 1] = -0.5  # meter 1 (section 0) exports at point 2
    targets = np.ones((4, 2, 3))
    fixed = np.full((4, 2, 3), 0.1)
    reversed_ = np.zeros((4, 2), dtype=bool)
    reversed_[0, 1] = True  # a unit of section 1 sees power flow back at point 0
    groups = np.array([0, 0, 1])
    s, t, f = _one_way(series, targets, fixed, groups, reversed_)
    assert (s[2, :2] == 0).all() and s[2, 2] == 1.0  # section 0's members at point 2
    assert (t[2, 0] == 0).all() and (t[2, 1] == 1).all() and (f[2, 0] == 0).all()
    assert s[0, 2] == 0.0 and (s[0, :2] == 1).all() and (t[0, 1] == 0).all() and (t[0, 0] == 1).all()
    assert (s[[1, 3]] == 1).all() and (t[[1, 3]] == 1).all() and (f[[1, 3]] == 0.1).all()


def test_a_sections_misfit_floor_is_relative_to_what_its_units_measured() -> None:
    """A section below monitored branches is one unit's current minus the others': its accuracy
    is that of all of them (1 % of 30 A), not 1 % of the few amperes left."""
    targets = np.full((T, 2, 3), 2.0)
    series = np.ones((T, 1))
    inc = np.vstack([np.eye(3), np.zeros((1, 3))])
    base = np.array([[30.0, 30.0, 30.0], [2.0, 2.0, 2.0]])  # section 0: a 30 A head minus its children
    kw = {"residual_model": "gain", "sigma_floor": 0.05, "relative_floor": 0.01}
    plain = assign.initial_fit(assign.Balance("unit_currents", series, targets, inc, **kw))
    section = assign.initial_fit(assign.Balance("unit_currents", series, targets, inc, floor_base=base, **kw))
    assert np.allclose(plain.sigma, 0.05)
    assert np.allclose(section.sigma[0], 0.3) and np.allclose(section.sigma[1], 0.05)


def test_a_meter_sure_of_its_phase_all_window_is_no_move_whatever_a_part_alone_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A part of the window solved alone may put a meter elsewhere (few points, a thief's
    deficit on a phase); the move is then decided on the whole window's point-by-point evidence,
    which must favour the old phase before the split and the new one after. A meter favouring its
    phase at every point is no move (the default area's m-0027 and m-0031 were reported moved
    B -> A: 'more for A after the split than before' was taken for a move)."""
    from apps.topology import identify as ident
    from apps.topology.synthetic import Spec, station

    inputs, truth = station(Spec(branches=3, moves=0, wrong_phase=0.0), seed=2)
    meter = next(m for m in inputs.meters if truth.phase[m.id] in ("A", "B", "C"))
    i = inputs.meters.index(meter)
    now = "ABC".index(truth.phase[meter.id])
    monkeypatch.setattr(ident, "move_candidates", lambda *a, **k: [(i, (now + 1) % 3, now)])
    result = ident.identify(inputs, terminal="T", computed_at=0.0)
    assert [m.meter_id for m in result.meters if m.phase.evidence.get("moved")] == []
