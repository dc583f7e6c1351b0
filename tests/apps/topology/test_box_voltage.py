"""The voltage alone does not move a meter to another box of its branch unless its preference
holds up over the whole window (``identify._keep_archive_box_without_sustained_voltage``)."""

from __future__ import annotations

import pytest

from apps.topology import identify as ident
from apps.topology.identify import Settings, identify
from apps.topology.result import Dimension
from apps.topology.synthetic import Spec, station

#: boxes told apart by the voltage only: no box terminals, no signature current, archive right
VOLTAGE_ONLY = Spec(
    branches=3, box_terminals=False, injections=0, wrong_box=0.0, wrong_phase=0.0, wrong_branch=0.0, days=1.0
)


def _false_box_corrections(seed: int) -> tuple[list[str], list[Dimension]]:
    inputs, truth = station(VOLTAGE_ONLY, seed=seed)
    result = identify(inputs, terminal="T", computed_at=0.0)
    false = [
        m.meter_id
        for m in result.meters
        if m.box.outcome == "corrected" and m.box.value != truth.box[m.meter_id]
    ]
    kept = [m.box for m in result.meters if m.box.value == m.box.archive and m.box.outcome == "unresolved"]
    return false, kept


def test_neighbouring_boxes_are_not_swapped_on_voltage_that_does_not_hold_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Boxes of one branch differ in voltage by very little; which one a meter correlates best
    with over a day is partly noise. With a right archive, no box is corrected, and the archive's
    box kept against such voltage has a modest confidence (below the bar: unresolved)."""
    false, kept = _false_box_corrections(seed=1)
    assert false == []
    assert kept and all(b.confidence < Settings().confidence_min for b in kept)
    # without the check the same day's voltage "corrects" meters into a neighbour's box
    monkeypatch.setattr(ident, "_keep_archive_box_without_sustained_voltage", lambda *a, **k: None)
    before, _ = _false_box_corrections(seed=1)
    assert len(before) >= 2
