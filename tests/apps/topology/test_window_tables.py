"""A held window keeps its devices as rows of one array per set of columns (``_Tables``): the
curves, blocks and saved form equal those of rings a device, also when devices widen (a new
column moves a device to another table and frees its row for the next one)."""

from __future__ import annotations

import json
import random

import numpy as np

from apps.topology.window import QUANTITIES, STEP_S, Window, _Ring, _Tables

T0 = 1_717_171_200
SLOT0 = T0 // STEP_S
SINGLE = (0, 3, 6, 7)  # voltage.a, current.a, import, export


def _points(seed: int, devices: int, points: int) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    rows: list[dict[str, object]] = []
    for k in range(points):
        for d in range(devices):
            cols = range(len(QUANTITIES)) if d % 5 == 0 else SINGLE
            for c in cols:
                if rnd.random() < 0.9:
                    slot = SLOT0 + k - (rnd.random() < 0.05) * rnd.randrange(40)  # some late
                    rows.append(
                        {
                            "device": f"m{d}",
                            "quantity": QUANTITIES[c],
                            "ts": slot * STEP_S,
                            "value": rnd.random(),
                        }
                    )
    return rows


def test_held_tables_give_the_same_curves_blocks_and_saved_form_as_rings_a_device() -> None:
    rows = _points(1, 23, 120)
    held = Window(keep_points=200)
    held.hold(20)
    assert isinstance(held._devices, _Tables)
    for r in rows:
        held.add_curve([r])
    # the old way: the same window, every device a _Ring sharing the slot array
    ref = Window(keep_points=200)
    ref.hold(20)
    ref._devices = _RingsBySet(ref)
    for r in rows:
        ref.add_curve([r])
    assert held.devices() == ref.devices() and held.latest() == ref.latest()
    first = float((SLOT0 + 60) * STEP_S)
    a, b = held.curves(held.devices(), first, 60), ref.curves(ref.devices(), first, 60)
    np.testing.assert_array_equal(a.voltage, b.voltage)
    np.testing.assert_array_equal(a.current, b.current)
    np.testing.assert_array_equal(a.energy, b.energy)
    assert sorted(held.pending) == sorted(ref.pending)
    for block, got in held.pending.items():
        assert sorted(got) == sorted(ref.pending[block])
        for d, v in got.items():
            np.testing.assert_array_equal(v, ref.pending[block][d])
    assert json.dumps(held.to_json()) == json.dumps(ref.to_json())
    back = Window.from_json(json.loads(json.dumps(held.to_json())))
    assert isinstance(back._devices, _Tables)
    c = back.curves(held.devices(), first, 60)
    np.testing.assert_array_equal(a.voltage, c.voltage)
    np.testing.assert_array_equal(a.energy, c.energy)


def test_a_device_that_widens_frees_its_row_for_the_next() -> None:
    w = Window(keep_points=200)
    w.hold(20)
    tables = w._devices
    assert isinstance(tables, _Tables)
    for d in ("m1", "m2"):
        w.add_curve([{"device": d, "quantity": QUANTITIES[c], "ts": T0, "value": 1.0 + c} for c in SINGLE])
    # the tables of the partial column sets ({0}, {0,3}, {0,3,6}) are empty again
    by_columns = {tuple(t.columns): t for t in tables._tables}
    assert by_columns[SINGLE].values.shape[0] - len(by_columns[SINGLE].free) == 2
    for key, t in by_columns.items():
        if key != SINGLE:
            assert t.values.shape[0] == 0 and t.free == []  # no array kept for the partial sets
    ring = tables["m2"]
    assert ring.slots is w._held_slots and ring.columns == list(SINGLE)
    np.testing.assert_array_equal(ring.get(np.array([SLOT0]))[0, list(SINGLE)], [1.0, 4.0, 7.0, 8.0])


class _RingsBySet(dict[str, _Ring]):
    """What a held window kept before tables: a ``_Ring`` a device on the shared slot array."""

    def __init__(self, window: Window) -> None:
        super().__init__()
        self._window = window

    def get(self, device: str, default: _Ring | None = None) -> _Ring | None:  # type: ignore[override]
        ring = super().get(device)
        if ring is None:
            ring = self[device] = _Ring(
                self._window.held,
                len(QUANTITIES),
                self._window.column_lists,
                (),
                slots=self._window._held_slots,
            )
        return ring


def test_columns_given_quantity_by_quantity_leave_no_table_of_the_first_ones() -> None:
    w = Window(keep_points=200)
    w.hold(20)
    for c in SINGLE:  # every device's voltage first, then every current, ...: 300 devices wait in each set
        w.add_curve(
            [{"device": f"m{d}", "quantity": QUANTITIES[c], "ts": T0, "value": 1.0} for d in range(300)]
        )
    tables = w._devices
    assert isinstance(tables, _Tables)
    rows = {tuple(t.columns): t.values.shape[0] - len(t.free) for t in tables._tables}
    held = {tuple(t.columns): t.values.shape[0] for t in tables._tables}
    assert rows[SINGLE] == 300 and all(n == 0 for k, n in held.items() if k != SINGLE)
