"""The topology methods on synthetic curves (apps.topology.synthetic): each part on its own,
then whole identifications scored against the synthetic ground truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from apps.topology import assign, changes, evidence, voltage
from apps.topology import identify as ident
from apps.topology.identify import Settings, identify
from apps.topology.inputs import Detection, Fact
from apps.topology.numeric import simplex_project
from apps.topology.synthetic import Spec, station


def accuracy(result, truth, dim: str) -> float:
    rows = [m for m in result.meters if m.meter_id not in truth.foreign]
    return float(np.mean([getattr(m, dim).value == getattr(truth, dim)[m.meter_id] for m in rows]))


# -- numeric kernels ------------------------------------------------------------------------------


def test_simplex_projection_lands_on_the_simplex_and_keeps_points_already_there() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(0, 3, size=(50, 4))
    p = simplex_project(v)
    assert np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all()
    inside = simplex_project(p)
    assert np.allclose(inside, p)


# -- the assignment engine ------------------------------------------------------------------------


def _phase_problem(seed: int, n: int = 60, t: int = 96) -> tuple[assign.Problem, np.ndarray]:
    """n households on three phases; the transformer sees each phase's sum plus 2 % losses."""
    rng = np.random.default_rng(seed)
    hours = np.arange(t) / 4.0

    def household() -> np.ndarray:
        evening = np.exp(-0.5 * ((hours - rng.uniform(17, 21)) / 1.5) ** 2)
        return rng.uniform(0.05, 0.2) + rng.uniform(0, 0.6) * evening + rng.gamma(1.5, 0.05, t)

    loads = np.stack([household() for _ in range(n)], axis=1)
    truth = rng.integers(0, 3, n)
    y = np.stack([loads[:, truth == k].sum(axis=1) for k in range(3)], axis=1)
    y = y + 0.02 * y**2 / y.mean()
    balance = assign.Balance("transformer", loads, y[:, None, :], np.eye(3), partition=True, one_sided=True)
    return assign.Problem((balance,), np.zeros((n, 3))), truth


def test_energy_balance_alone_recovers_every_phase_from_any_start() -> None:
    problem, truth = _phase_problem(1)
    start = np.random.default_rng(2).integers(0, 3, len(truth))  # a useless archive
    sol = assign.solve(problem, start=start)
    assert (sol.labels == truth).all()
    assert (sol.margin() > 0).all()


def test_refinement_fixes_a_swap_that_no_single_move_fixes() -> None:
    problem, truth = _phase_problem(3)
    labels = truth.copy()
    # two meters with the most similar curves, on each other's phase
    x = problem.balances[0].series
    pairs = [(i, j) for i in range(len(truth)) for j in range(len(truth)) if truth[i] != truth[j]]
    i, j = max(pairs, key=lambda p: float(np.corrcoef(x[:, p[0]], x[:, p[1]])[0, 1]))
    labels[i], labels[j] = truth[j], truth[i]
    fits = [assign.initial_fit(b) for b in problem.balances]
    refined, moves = assign.refine(problem, labels, fits)
    assert (refined == truth).all() and moves >= 2


def test_evidence_moves_a_meter_the_balance_cannot_place() -> None:
    problem, _truth = _phase_problem(4)
    ev = problem.evidence.copy()
    idle = 5
    ev[idle] = np.log([0.02, 0.02, 0.96])  # say it is on C, strongly
    series = problem.balances[0].series.copy()
    series[:, idle] = 0.0  # a vacant house: no energy evidence at all
    b = problem.balances[0]
    b0 = assign.Balance(b.name, series, b.targets, b.incidence, partition=True, one_sided=True)
    sol = assign.solve(assign.Problem((b0,), ev))
    assert sol.labels[idle] == 2


# -- voltage --------------------------------------------------------------------------------------


def test_voltage_features_ignore_the_common_mode() -> None:
    rng = np.random.default_rng(5)
    own = rng.normal(0, 0.5, size=(96, 20)).cumsum(axis=0) * 0.1 + 230
    mv = 5 * np.sin(np.arange(96) / 9.0)  # the MV supply moves every meter together
    z1, ok1 = voltage.features(own)
    z2, ok2 = voltage.features(own + mv[:, None])
    assert ok1.all() and ok2.all()
    # the common mode goes with the median; what is left is each meter's own variation
    assert np.corrcoef(z1.ravel(), z2.ravel())[0, 1] > 0.95


def test_voltage_marks_gaps_and_dead_columns() -> None:
    v = np.full((96, 3), 230.0) + np.random.default_rng(6).normal(0, 0.3, (96, 3))
    v[10:30, 0] = np.nan  # a gap: interpolated
    v[:, 1] = np.nan  # never read: unusable
    filled, usable = voltage.fill_gaps(v)
    assert usable.tolist() == [True, False, True]
    assert np.isfinite(filled[:, 0]).all()


# -- evidence ------------------------------------------------------------------------------------


def test_archive_prior_weighs_facts_by_provenance() -> None:
    facts = [Fact("A", "confirmed"), Fact("A", "archive"), Fact("A", "identified", 0.7), Fact(None, "none")]
    ll = evidence.prior_loglik(facts, ("A", "B", "C"))
    gaps = ll[:, 0] - ll[:, 1]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert (ll[3] == 0).all()


def test_signature_detections_point_at_the_path() -> None:
    on_path = np.array([[1, 0], [0, 1], [0, 0]], dtype=float)  # label 0 -> unit u1, label 1 -> u2, 2 -> none
    shots = [Detection("m1", 0.0, ("u1",), ("u1", "u2")), Detection("m1", 1.0, (), ("u1", "u2"))]
    ll, count = evidence.signature_loglik(
        ["m1"], shots, ["u1", "u2"], on_path, miss_rate=0.1, crosstalk_rate=0.01
    )
    assert count[0] == 2
    assert ll[0, 0] > ll[0, 2] > ll[0, 1]


# -- whole identifications ------------------------------------------------------------------------

SMALL = Spec(branches=4, boxes_per_branch=(3, 6), meters_per_box=(4, 8))


@pytest.mark.parametrize("seed", [0, 2])
def test_archive_errors_are_corrected_in_every_dimension(seed: int) -> None:
    inputs, truth = station(SMALL, seed=seed)
    result = identify(inputs, terminal="T", computed_at=0.0)
    assert accuracy(result, truth, "phase") == 1.0
    assert accuracy(result, truth, "branch") == 1.0
    assert accuracy(result, truth, "box") == 1.0
    by_id = {m.meter_id: m for m in result.meters}
    for meter, dims in truth.archive_errors.items():
        assert by_id[meter].status == "corrected", (meter, dims, by_id[meter].to_json())
    right = [m for m in result.meters if m.meter_id not in truth.archive_errors]
    assert all(m.status == "confirmed" for m in right)


def test_three_phase_meters_are_recognised() -> None:
    inputs, truth = station(Spec(branches=3, boxes_per_branch=(2, 4), three_phase_share=0.15), seed=3)
    result = identify(inputs, terminal="T", computed_at=0.0)
    three = [m for m in result.meters if truth.phase[m.meter_id] == "ABC"]
    assert three and all(m.phase.value == "ABC" for m in three)


def test_foreign_and_missing_meters_are_found_without_false_alarms() -> None:
    inputs, truth = station(Spec(branches=5, foreign=2, missing=2), seed=5)
    result = identify(inputs, terminal="T", computed_at=0.0)
    foreign = {m.meter_id for m in result.meters if m.status == "foreign"}
    assert foreign == set(truth.foreign)
    for m in result.meters:
        if m.status == "foreign":
            assert len(m.evidence["foreign_tests"]) >= 2
    found = {m.address for m in result.missing if m.address}
    assert found == set(truth.missing)
    # a missing meter whose curves were read is placed like any other
    for m in result.missing:
        assert m.branch is not None and m.phase in ("A", "B", "C", "ABC")
    assert accuracy(result, truth, "phase") == 1.0


def test_a_meter_moved_to_another_phase_is_noticed() -> None:
    inputs, truth = station(Spec(branches=5, moves=2, wrong_phase=0.0), seed=3)
    result = identify(inputs, terminal="T", computed_at=0.0)
    by_id = {m.meter_id: m for m in result.meters}
    for meter, (before, after, _) in truth.moved.items():
        assert by_id[meter].phase.value == after
        moved = by_id[meter].phase.evidence.get("moved")
        assert moved is not None and moved["from"] == before


def test_a_move_is_noticed_in_a_window_of_eight_hours() -> None:
    """A check's short window: each half (17 points) is below a meter's usual minimum of points,
    yet the move is found, and a station without one reports none."""
    inputs, truth = station(Spec(branches=3, moves=2, wrong_phase=0.0, days=8.25 / 24), seed=2)
    assert inputs.points < 2 * Settings().min_points
    result = identify(inputs, terminal="T", computed_at=0.0)
    by_id = {m.meter_id: m for m in result.meters}
    assert truth.moved
    for meter, (before, after, _) in truth.moved.items():
        moved = by_id[meter].phase.evidence.get("moved")
        assert moved is not None and (moved["from"], moved["to"]) == (before, after)
    still, _ = station(Spec(branches=3, moves=0, days=8.25 / 24), seed=2)
    quiet = identify(still, terminal="T", computed_at=0.0)
    assert not [m.meter_id for m in quiet.meters if m.phase.evidence.get("moved")]


def test_a_meter_without_data_is_unresolved_not_guessed() -> None:
    inputs, _truth = station(replace(SMALL, injections=0, hplc_share=0.0), seed=7)
    c = inputs.curves
    j = c.index()[inputs.meters[0].id]
    c.voltage[:, j, :] = np.nan
    c.current[:, j, :] = np.nan
    c.energy[:, j] = np.nan
    result = identify(inputs, terminal="T", computed_at=0.0, settings=Settings())
    first = result.meters[0]
    assert first.evidence.get("data") == "too few curve points"
    assert first.status == "unresolved"
    # what it reports is the archive's value, not a guess
    assert (first.phase.value, first.branch.value, first.box.value) == (
        first.phase.archive,
        first.branch.archive,
        first.box.archive,
    )


def test_points_no_unit_recorded_take_no_part_in_the_balances() -> None:
    """The window starts before the first curve point (a day's run, a terminal just installed):
    every device and the transformer lack the first intervals. Meters are placed as well as
    with every point -- a missing target is not read as zero energy that the meters exceed."""
    spec = Spec(branches=4, wrong_phase=0.1, wrong_branch=0.05, foreign=1, missing=1)
    inputs, truth = station(spec, seed=11)
    c = inputs.curves
    energy, voltage_, current = c.energy.copy(), c.voltage.copy(), c.current.copy()
    energy[:2], voltage_[:2], current[:2] = np.nan, np.nan, np.nan
    trafo = np.array(inputs.transformer_energy, dtype=float)
    trafo[:2] = np.nan
    gappy = replace(
        inputs,
        curves=replace(c, energy=energy, voltage=voltage_, current=current),
        transformer_energy=trafo,
    )
    result = identify(gappy, terminal="T", computed_at=0.0)
    for dim in ("phase", "branch", "box"):
        assert accuracy(result, truth, dim) >= 0.98, dim
    assert {m.meter_id for m in result.meters if m.status == "foreign"} == set(truth.foreign)
    assert sum(m.status == "unresolved" for m in result.meters) <= 1


def test_one_night_of_injections_is_enough_for_the_signature_foreign_test() -> None:
    """After one day the service has one injection per meter: a foreign meter's, heard by no
    unit on any path of ours, is already a foreign test -- and no meter of ours fails it."""
    inputs, truth = station(Spec(branches=4, foreign=2, injections=1), seed=3)
    result = identify(inputs, terminal="T", computed_at=0.0)
    fired = {m.meter_id for m in result.meters if "signature" in m.evidence.get("foreign_tests", {})}
    assert fired == set(truth.foreign)
    assert {m.meter_id for m in result.meters if m.status == "foreign"} == set(truth.foreign)


def test_a_unit_whose_meters_were_barely_read_shows_no_unexplained_energy() -> None:
    """The first identification after a start: a 24-h window of which only the last 23 intervals
    were read, fewer than a meter needs. The units' energy is not "unexplained" then: the meters
    that draw it were not read long enough to count. With the whole window read, load that no
    listed meter measures (a household nobody knows of) shows as unexplained energy at its unit."""
    inputs, _truth = station(replace(SMALL, wrong_phase=0.0, wrong_branch=0.0, wrong_box=0.0), seed=5)
    c = inputs.curves
    branch = next(b for b in inputs.branches if b.monitor and b.parent is None)
    j = c.index()[branch.monitor]
    hours = np.arange(c.energy.shape[0]) / 4.0
    energy = c.energy.copy()
    energy[:, j] += 0.3 + 0.5 * np.exp(-0.5 * ((hours - 19.0) / 2.0) ** 2)  # kWh an interval: ~10 %
    inputs = replace(inputs, curves=replace(c, energy=energy))
    whole = identify(inputs, terminal="T", computed_at=0.0)
    assert [(m.address, m.branch) for m in whole.missing] == [(None, branch.id)]
    first = len(c.times) - Settings().min_points  # 23 intervals read
    energy, voltage_, current = energy.copy(), c.voltage.copy(), c.current.copy()
    energy[:first], voltage_[:first], current[:first] = np.nan, np.nan, np.nan
    trafo = np.array(inputs.transformer_energy, dtype=float)
    trafo[:first] = np.nan
    started = replace(
        inputs, curves=replace(c, energy=energy, voltage=voltage_, current=current), transformer_energy=trafo
    )
    result = identify(started, terminal="T", computed_at=0.0)
    assert all(m.evidence.get("data") == "too few curve points" for m in result.meters)
    assert not result.missing


def test_a_meter_alone_on_its_phase_in_its_box_is_not_pushed_out_by_the_voltage() -> None:
    """Three boxes on one branch, phase A: three meters in X1, three in X2, one in X3. Their
    voltages share the feeder's (the same phase of one branch) plus each box's own small drop and
    the meters' noise. Left out of its own group, the meter of X3 has nothing to compare with
    there (the neighbouring area's meter listed beside it is no reference), while X1 and X2
    correlate well: the voltage would move it. It must say nothing."""
    from types import SimpleNamespace

    from apps.topology.identify import _alone_is_no_evidence, reference_groups

    rng = np.random.default_rng(4)
    t = 96
    feeder = np.cumsum(rng.normal(0.0, 0.8, t))  # V, the branch's phase A
    drops = {0: rng.normal(0, 0.15, t), 1: rng.normal(0, 0.15, t), 2: rng.normal(0, 0.15, t)}
    boxes = [0, 0, 0, 1, 1, 1, 2]
    v = np.stack([230.0 + feeder + drops[b] + rng.normal(0, 0.1, t) for b in boxes], axis=1)
    # and a neighbouring area's meter the archive lists in X3 on phase A: another transformer's voltage
    v = np.concatenate([v, 230.0 + np.cumsum(rng.normal(0.0, 0.8, t))[:, None]], axis=1)
    boxes.append(2)
    z = (v - v.mean(axis=0)) / v.std(axis=0)
    usable = np.ones(len(boxes), dtype=bool)
    ours = np.array([True] * 7 + [False])  # the branch step found the last one not ours
    groups = reference_groups(np.array(boxes), np.zeros(len(boxes), dtype=np.int64), ours)
    assert list(groups) == [0, 0, 0, 3, 3, 3, 6, -1]  # (box, phase A); not ours: no group
    ll = voltage.loo_loglik(z, usable, groups, 9)
    volt_ll = np.concatenate([ll[:, [0, 3, 6]], np.zeros((len(boxes), 1))], axis=1)  # + "not ours"
    alone = 6
    assert volt_ll[alone, 2] == 0.0 and volt_ll[alone, :2].min() > 20.0  # the bias: out of X3
    before = volt_ll.copy()
    frame = SimpleNamespace(box_ids=("X1", "X2", "X3"), box_branch={"X1": "F1", "X2": "F1", "X3": "F1"})
    _alone_is_no_evidence(volt_ll, groups, usable, frame)
    assert volt_ll[alone, 2] == volt_ll[alone, :3].max()  # no evidence against its own box
    np.testing.assert_array_equal(volt_ll[:alone], before[:alone])  # the others' evidence unchanged
    # with the neighbour's meter as its reference, X3 would have been the worst box of all
    with_foreign = voltage.loo_loglik(z, usable, np.array(boxes) * 3, 9)[alone, [0, 3, 6]]
    assert with_foreign[2] < with_foreign[:2].min() - 20.0


def test_a_meter_found_not_ours_is_never_reported_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change of phase the detector sees for the neighbouring area's meter is no move: it has no
    phase of ours to move on (the default area's m-9102 was reported moved twice a week)."""
    inputs, truth = station(Spec(branches=4, foreign=2, wrong_phase=0.0), seed=5)
    found = ident.phase_changes

    def also_the_foreign(inputs, frame, branches, boxes, phases, *rest):  # type: ignore[no-untyped-def]
        out = dict(found(inputs, frame, branches, boxes, phases, *rest))
        for i, m in enumerate(frame.meters[: len(inputs.meters)]):
            if m.id in truth.foreign or m.id == ours:
                now = int(phases.chosen[i]) % 3
                out[i] = changes.Change(i, (now + 1) % 3, now, 5, 99.0)
        return out

    ours = next(m.meter_id for m in identify(inputs, terminal="T", computed_at=0.0).meters
                if m.status == "confirmed" and m.phase.value in ("A", "B", "C"))  # fmt: skip
    monkeypatch.setattr(ident, "phase_changes", also_the_foreign)
    result = identify(inputs, terminal="T", computed_at=0.0)
    by_id = {m.meter_id: m for m in result.meters}
    assert truth.foreign and all(by_id[f].status == "foreign" for f in truth.foreign)
    assert not [f for f in truth.foreign if by_id[f].phase.evidence.get("moved")]
    assert by_id[ours].phase.evidence.get("moved")  # the same change on a meter of ours is one
