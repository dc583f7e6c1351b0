"""Energy and current no meter reads (a thief's bypass) on one phase of a branch: the balances
explain it by putting a meter of similar habits there. That makes no phase move -- a meter moved
onto another phase's wire follows that wire's voltage (``identify.voltage_after``), this one does
not -- and no phase correction the meter's own voltage contests (``identify._contradicted``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from apps.topology import identify as ident
from apps.topology.identify import identify
from apps.topology.inputs import Inputs
from apps.topology.synthetic import Spec, station


def _thief_next_to(meter: str, seed: int, *, from_middle: bool = True) -> Inputs:
    """From the window's middle on (or all window), an unread load with ``meter``'s habits, four
    times its size, on the next phase of its branch: F1's unit and the transformer measure it,
    no meter does."""
    inputs, truth = station(
        Spec(branches=2, wrong_phase=0.0, wrong_branch=0.0, wrong_box=0.0, box_terminals=False, injections=0),
        seed=seed,
    )
    assert truth.branch[meter] == "F1" and not truth.moved
    c = inputs.curves
    col = c.index()
    j, unit = col[meter], col["bu-F1"]
    other = ("ABC".index(truth.phase[meter]) + 1) % 3
    half = len(c.times) // 2 if from_middle else 0
    energy, current = c.energy.copy(), c.current.copy()
    energy[half:, unit] += 4.0 * c.energy[half:, j]
    current[half:, unit, other] += 4.0 * c.current[half:, j, 0]
    assert inputs.transformer_energy is not None
    transformer = np.array(inputs.transformer_energy, copy=True)
    transformer[half:, other] += 4.0 * c.energy[half:, j]
    return replace(inputs, curves=replace(c, energy=energy, current=current), transformer_energy=transformer)


def test_a_thiefs_unread_load_moves_no_meter_onto_its_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _thief_next_to("m-0005", seed=1)
    moved = [m.meter_id for m in identify(inputs, terminal="T", computed_at=0.0).meters
             if m.phase.evidence.get("moved")]  # fmt: skip
    assert moved == []
    # without the voltage's word the balances alone report the look-alike moved
    monkeypatch.setattr(ident, "MOVE_VOLTAGE_NATS", -np.inf)
    plain = [m.meter_id for m in identify(inputs, terminal="T", computed_at=0.0).meters
             if m.phase.evidence.get("moved")]  # fmt: skip
    assert plain == ["m-0005"]


def test_a_phase_correction_the_meters_voltage_contests_is_not_made(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _thief_next_to("m-0001", seed=1, from_middle=False)
    got = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}["m-0057"]
    assert got.phase.value == got.phase.archive == "B" and got.phase.outcome == "unresolved"
    assert got.phase.evidence["contested"]["against"]["voltage"] >= ident.CONTESTED_NATS
    # without the rule the balances put it on the thief's phase
    monkeypatch.setattr(ident, "_contradicted", lambda *a, **k: None)
    plain = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}["m-0057"]
    assert plain.phase.value == "A" and plain.phase.outcome == "corrected"
