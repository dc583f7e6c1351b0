"""A branch no unit measures (the board's own outlets, the simulator's ``F0``): no balance can
put a meter there -- to every unit it is alike to "not ours" -- so a place there rests on the
other evidence (``identify._board_support``), and a neighbour's meter is not pulled onto it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from apps.topology.identify import identify, window
from apps.topology.inputs import Detection, Inputs
from apps.topology.synthetic import Spec, Truth, station


def _area_with_an_unmetered_branch() -> tuple[Inputs, Truth]:
    """Three branches, F3 without its unit; two of the neighbour's meters listed on F1/F2, and
    ours listed on a wrong branch (some truly on F3)."""
    inputs, truth = station(
        Spec(branches=3, foreign=2, box_terminals=False, injections=1, wrong_phase=0.0, wrong_branch=0.1,
             wrong_box=0.0),
        seed=3,
    )  # fmt: skip
    branches = tuple(replace(b, monitor=None) if b.id == "F3" else b for b in inputs.branches)
    return replace(inputs, branches=branches), truth


def test_a_neighbours_meter_is_not_put_on_a_branch_no_unit_measures() -> None:
    inputs, truth = _area_with_an_unmetered_branch()
    got = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}
    for meter in truth.foreign:  # without the rule both were "corrected" onto F3, sure of it
        assert got[meter].branch.value != "F3", got[meter]
        assert got[meter].status != "corrected"
    # ours the archive lists on a metered branch and that are on F3: found there, on evidence
    onto = [m for m in inputs.meters if truth.branch[m.id] == "F3" and m.branch.value != "F3"]
    assert len(onto) >= 2
    for m in onto:
        assert got[m.id].branch.value == "F3" and got[m.id].branch.outcome == "corrected"
        support = got[m.id].branch.evidence["unmetered"]
        assert support["supported"] and support["outside_metered_nats"] > 10 and support["ours_nats"] >= 30


def test_without_curve_data_a_missed_injection_moves_no_meter_onto_an_unmetered_branch() -> None:
    """Six hours after a start (too few points for any balance), F1's unit missed one meter's
    signature current: that miss alone favours every place no unit hears, and the board's
    outlets were 'corrected' to, the box at 1.0. The archive stands; no box is surer than its
    branch."""
    inputs, truth = _area_with_an_unmetered_branch()
    inputs = window(inputs, 0, 20)
    meter = next(m for m in inputs.meters if m.branch.value == "F1" and truth.branch[m.id] == "F1")
    units = tuple(sorted({u for d in inputs.detections for u in d.listening}))
    others = [d for d in inputs.detections if d.source != meter.id]
    missed = Detection(meter.id, float(inputs.curves.times[0]) + 3600.0, (), units)
    inputs = replace(inputs, detections=(*others, missed))
    got = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}[meter.id]
    assert got.branch.value == "F1" and got.box.value == meter.box.value
    assert got.status != "corrected" and got.box.outcome != "corrected"
    assert got.box.confidence <= got.branch.confidence + 1e-9
    assert np.isfinite(got.branch.confidence)
