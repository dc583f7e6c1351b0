"""A branch correction that the meter's own signature current contradicts is not made
(``identify._contradicted``): the archive's places stand, unresolved."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from apps.topology import identify as ident
from apps.topology.identify import identify
from apps.topology.inputs import Detection, Inputs
from apps.topology.synthetic import Spec, station


def _stolen_next_door() -> tuple[Inputs, str, str, str]:
    """A meter of F1 (archive right) whose energy the units see on F2: F2's unit measures that
    much more than its meters (energy bypassing a meter there, e.g. a thief with the same evening
    habits) and F1's that much less. F1's unit heard the meter's signature current four nights
    out of four, F2's never."""
    inputs, truth = station(
        Spec(branches=2, injections=0, box_terminals=False, wrong_phase=0.0, wrong_branch=0.0, wrong_box=0.0),
        seed=4,
    )
    meter = next(m.id for m in inputs.meters if truth.branch[m.id] == "F1" and truth.phase[m.id] != "ABC")
    c = inputs.curves
    j, here, there = c.index()[meter], c.index()["bu-F1"], c.index()["bu-F2"]
    slot = "ABC".index(truth.phase[meter])
    energy, current = c.energy.copy(), c.current.copy()
    energy[:, here] -= c.energy[:, j]
    energy[:, there] += c.energy[:, j]
    current[:, here, slot] -= c.current[:, j, 0]
    current[:, there, slot] += c.current[:, j, 0]
    units = ("bu-F1", "bu-F2")
    heard = tuple(Detection(meter, float(c.times[0]) + 3600.0 * (k + 1), ("bu-F1",), units) for k in range(4))
    curves = replace(c, energy=energy, current=current)
    return replace(inputs, curves=curves, detections=heard), meter, "F1", "F2"


def test_a_branch_correction_its_own_signature_contradicts_is_not_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inputs, meter, archive, balance = _stolen_next_door()
    got = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}[meter]
    assert got.branch.value == archive and got.branch.outcome == "unresolved"
    assert got.branch.confidence < 0.9 and "signature" in got.branch.evidence["contested"]["against"]
    assert got.status != "corrected" and got.box.outcome != "corrected" and got.phase.outcome != "corrected"
    assert got.box.value == got.box.archive  # no box of the branch it was not put on
    # without the rule the balance alone moves it, sure of itself
    monkeypatch.setattr(ident, "_contradicted", lambda *a, **k: None)
    plain = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}[meter]
    assert plain.branch.value == balance and plain.branch.outcome == "corrected"
    assert np.isclose(plain.branch.confidence, 0.9999)


def test_a_box_correction_the_box_terminals_signature_detections_contest_is_not_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A box terminal's balance fooled by energy its meters do not read (a slow register in the
    next box, with the habits of a meter here): the meter's energy appears at the next box's
    terminal, which never heard its signature current in two injections, while its own box's
    terminal heard both. The archive's box stands, unresolved."""
    inputs, truth = station(
        Spec(branches=2, injections=0, wrong_phase=0.0, wrong_branch=0.0, wrong_box=0.0), seed=4
    )
    boxes = {x.id: x for x in inputs.boxes}
    meter = next(
        m for m in inputs.meters
        if truth.phase[m.id] != "ABC" and m.box.value is not None and boxes[m.box.value].terminal
        and any(x.branch == m.branch.value and x.terminal and x.id != m.box.value for x in inputs.boxes)
    )  # fmt: skip
    here = boxes[meter.box.value or ""]
    there = next(x for x in inputs.boxes if x.branch == here.branch and x.terminal and x.id != here.id)
    c = inputs.curves
    col = c.index()
    j, a, b = col[meter.id], col[here.terminal or ""], col[there.terminal or ""]
    slot = "ABC".index(truth.phase[meter.id])
    energy, current = c.energy.copy(), c.current.copy()
    energy[:, a] -= c.energy[:, j]
    energy[:, b] += c.energy[:, j]
    current[:, a, slot] -= c.current[:, j, 0]
    current[:, b, slot] += c.current[:, j, 0]
    units = (here.terminal or "", there.terminal or "")
    heard = tuple(Detection(meter.id, float(c.times[0]) + 3600.0 * (k + 1), (here.terminal or "",), units)
                  for k in range(2))  # fmt: skip
    inputs = replace(inputs, curves=replace(c, energy=energy, current=current), detections=heard)
    got = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}[meter.id]
    assert got.box.value == here.id and got.box.outcome == "unresolved"
    assert "signature" in got.box.evidence["contested"]["against"]
    monkeypatch.setattr(ident, "BOX_CONTEST", {"signature": np.inf})
    plain = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}[meter.id]
    assert plain.box.value == there.id and plain.box.outcome == "corrected"


def test_two_injections_the_chosen_branchs_unit_missed_are_enough_to_contest() -> None:
    """F1's unit was offline both nights; F2's listened and missed the injected current twice
    (4.6 nats: a 1 % chance if the meter were on F2): that contests the balance's correction."""
    inputs, meter, archive, _ = _stolen_next_door()
    t0 = float(inputs.curves.times[0])
    missed = tuple(Detection(meter, t0 + 3600.0 * (k + 1), (), ("bu-F2",)) for k in range(2))
    inputs = replace(inputs, detections=missed)
    got = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}[meter]
    assert got.branch.value == archive and got.branch.outcome == "unresolved"
    assert 4.0 <= got.branch.evidence["contested"]["against"]["signature"] < ident.CONTESTED_NATS
