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
