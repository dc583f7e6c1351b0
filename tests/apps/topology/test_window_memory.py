"""The identification window's memory per device: a ring of float32 values and int32 slots."""

from __future__ import annotations

import json

import numpy as np

from apps.topology.window import QUANTITIES, Window

T0 = 1_717_171_200  # a 15-min boundary


def test_a_device_holds_36_bytes_a_point_and_a_saved_window_reads_back_the_same() -> None:
    w = Window(keep_points=4 * 96 + 8)
    rows = [
        {"device": "m1", "quantity": q, "ts": T0 + 900 * k, "value": 230.0 + k / 10 + j}
        for k in range(500)  # more than the ring keeps: the oldest give way
        for j, q in enumerate(QUANTITIES)
    ]
    w.add_curve(rows)
    ring = w._devices["m1"]
    held = ring.slots.nbytes + ring.values.nbytes
    assert held == w.keep * (len(QUANTITIES) * 4 + 4)  # 36 B a point (int64 slots made it 40)
    back = Window.from_json(json.loads(json.dumps(w.to_json())))
    again = back._devices["m1"]
    np.testing.assert_array_equal(again.slots, ring.slots)
    np.testing.assert_array_equal(again.values, ring.values)
    assert int(ring.slots.max()) == T0 // 900 + 499 and int(ring.slots.min()) == T0 // 900 + 500 - w.keep
