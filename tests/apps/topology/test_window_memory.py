"""The identification window's memory per device: a ring of float32 values of the quantities the
device gives and int32 slots; what it reads back equals a ring that stores every column."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.topology.window import QUANTITIES, STEP_S, Window

T0 = 1_717_171_200  # a 15-min boundary
SINGLE_PHASE = ("voltage.a", "current.a", "energy.active.import.total", "energy.active.export.total")


def _rows(device: str, quantities: tuple[str, ...], points: int) -> list[dict[str, Any]]:
    return [
        {"device": device, "quantity": q, "ts": T0 + STEP_S * k, "value": 230.0 + k / 10 + j}
        for k in range(points)
        for j, q in enumerate(quantities)
    ]


def test_a_three_phase_meter_holds_36_bytes_a_point_and_a_saved_window_reads_back_the_same() -> None:
    w = Window(keep_points=4 * 96 + 8)
    w.add_curve(_rows("m1", QUANTITIES, 500))  # more than the ring keeps: the oldest give way
    ring = w._devices["m1"]
    held = ring.slots.nbytes + ring.values.nbytes
    assert held == w.keep * (len(QUANTITIES) * 4 + 4)  # 36 B a point (int64 slots made it 40)
    back = Window.from_json(json.loads(json.dumps(w.to_json())))
    again = back._devices["m1"]
    np.testing.assert_array_equal(again.slots, ring.slots)
    np.testing.assert_array_equal(again.values, ring.values)
    assert int(ring.slots.max()) == T0 // 900 + 499 and int(ring.slots.min()) == T0 // 900 + 500 - w.keep


def test_a_single_phase_meter_holds_20_bytes_a_point_saved_with_every_column_as_before() -> None:
    w = Window(keep_points=200)
    w.add_curve(_rows("m1", SINGLE_PHASE, 300))
    ring = w._devices["m1"]
    assert ring.slots.nbytes + ring.values.nbytes == w.keep * (4 * 4 + 4)
    saved = w.to_json()["devices"]["m1"]
    values = np.frombuffer(base64.b64decode(saved["values"]), dtype=np.float32)
    values = values.reshape(w.keep, len(QUANTITIES))
    for j, q in enumerate(QUANTITIES):
        assert np.isnan(values[:, j]).all() == (q not in SINGLE_PHASE), q
    back = Window.from_json(json.loads(json.dumps(w.to_json())))
    assert back._devices["m1"].values.nbytes == ring.values.nbytes  # stays packed after a restart


def test_rings_share_their_window_s_column_lists_and_no_other_window_s() -> None:
    """Rings storing the same columns share one list, held by their window (not the process): two
    windows share none, and a held window's tables use the same lists."""
    first, second = Window(keep_points=200), Window(keep_points=200)
    for w in (first, second):
        w.add_curve(_rows("m1", SINGLE_PHASE, 20) + _rows("m2", SINGLE_PHASE, 20))
    a1, a2, b1 = first._devices["m1"], first._devices["m2"], second._devices["m1"]
    assert a1.columns is a2.columns and a1.columns == b1.columns and a1.columns is not b1.columns
    assert first.column_lists[tuple(a1.columns)] is a1.columns
    assert all(lst is not second.column_lists[k] for k, lst in first.column_lists.items())
    first.hold(16)
    assert first._devices["m1"].columns is first.column_lists[tuple(a1.columns)]


class _FullWindow:
    """The window as it was: every device's ring stores all columns (the reference)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.slots: dict[str, np.ndarray] = {}
        self.values: dict[str, np.ndarray] = {}

    def add(self, device: str, column: int, slot: int, value: float) -> None:
        if device not in self.slots:
            self.slots[device] = np.full(self.keep, -1, dtype=np.int64)
            self.values[device] = np.full((self.keep, len(QUANTITIES)), np.nan, dtype=np.float32)
        k = slot % self.keep
        if self.slots[device][k] != slot:
            self.slots[device][k] = slot
            self.values[device][k] = np.nan
        self.values[device][k, column] = value


_ROW = st.tuples(
    st.sampled_from(("m1", "m2", "m3")),
    st.integers(0, len(QUANTITIES) - 1),
    st.integers(0, 60),  # slot after T0: more than the ring keeps, so rows give way
    st.floats(-1e4, 1e4, allow_nan=False, width=32),
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_ROW, max_size=120))
def test_packed_rings_read_back_what_full_rings_hold(rows: list[tuple[str, int, int, float]]) -> None:
    keep = 17
    w, ref = Window(keep_points=keep), _FullWindow(keep)
    for device, column, slot, value in rows:
        ts = T0 + STEP_S * slot
        w.add_curve([{"device": device, "quantity": QUANTITIES[column], "ts": ts, "value": value}])
        ref.add(device, column, T0 // STEP_S + slot, value)
    devices = ["m1", "m2", "m3", "absent"]
    for first in (T0, T0 + STEP_S * 30, T0 + STEP_S * 50):
        got = w.curves(devices, first, keep + 3)
        slots = first // STEP_S + np.arange(keep + 3)
        for j, d in enumerate(devices):
            expected = np.full((keep + 3, len(QUANTITIES)), np.nan)
            if d in ref.slots:
                k = slots % keep
                expected = ref.values[d][k].astype(np.float64)
                expected[ref.slots[d][k] != slots] = np.nan
            np.testing.assert_array_equal(got.voltage[:, j, :], expected[:, 0:3])
            np.testing.assert_array_equal(got.current[:, j, :], expected[:, 3:6])
    saved = w.to_json()
    for d in ref.slots:  # the saved form is the full rings', byte for byte
        assert base64.b64decode(saved["devices"][d]["slots"]) == ref.slots[d].tobytes()
        assert base64.b64decode(saved["devices"][d]["values"]) == ref.values[d].tobytes()
    assert Window.from_json(json.loads(json.dumps(saved))).to_json() == saved
