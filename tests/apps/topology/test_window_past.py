"""The window's past points in the store: a topology service holds in memory only the blocks its
daily run and checks read, moves older blocks (and late points for them) to its store, and reads
them back for a longer window -- the curves it gives equal those of a window holding every point
in memory, also across a restart and from a window saved whole before."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.topology import service as svc
from apps.topology.window import BLOCK, QUANTITIES, STEP_S, Window

T0 = 1_717_171_200  # a 15-min boundary (slot T0 // 900 is a block boundary too)
SLOT0 = T0 // STEP_S
KEEP = 4 * 24 * 2 + 8  # the service's reach at window_h 24: 200 points
DEVICES = ("m1", "m2", "m3")


class DictStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        return json.loads(self.data[key]) if key in self.data else default

    async def set(self, key: str, value: Any) -> None:
        self.data[key] = json.dumps(value)

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None


def _service(store: DictStore, window_h: float = 24.0) -> svc.TopologyService:
    ctx: Any = SimpleNamespace(
        log=logging.getLogger("test-topology"),
        store=store,
        station=SimpleNamespace(model=SimpleNamespace(version=1)),
        clock=SimpleNamespace(now=lambda: 0.0),
        terminal=SimpleNamespace(id="T"),
    )
    return svc.TopologyService(ctx, svc.Settings(window_h=window_h))


def _row(device: str, column: int, slot: int, value: float) -> dict[str, Any]:
    return {"device": device, "quantity": QUANTITIES[column], "ts": (SLOT0 + slot) * STEP_S, "value": value}


async def _feed(app: svc.TopologyService, batches: list[list[dict[str, Any]]]) -> None:
    for batch in batches:  # as the bus pump does
        app.window.add_curve(batch)
        if app.window.pending:
            await app._flush()


async def _curves(app: svc.TopologyService, first_slot: int, points: int) -> Any:
    first = float((SLOT0 + first_slot) * STEP_S)
    past = await app._past(first)
    return app.window.curves(list(DEVICES), first, points, past=past)


def _assert_same(got: Any, want: Any) -> None:
    for name in ("times", "voltage", "current", "energy"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def _held(window_h: float) -> int:
    w = Window(keep_points=KEEP)
    w.hold(svc.TopologyService._points(window_h))
    return w.held


_POINT = st.tuples(
    st.sampled_from(DEVICES),
    st.integers(0, len(QUANTITIES) - 1),
    st.integers(0, KEEP - 1),  # every point within the reach of each other: none is dropped
    st.floats(-1e4, 1e4, allow_nan=False, width=32),
)


@settings(max_examples=60, deadline=None)
@given(
    points=st.lists(_POINT, min_size=1, max_size=300),
    batch=st.integers(1, 40),
    window_h=st.sampled_from([2.0, 8.0, 24.0]),
    restart_h=st.sampled_from([2.0, 8.0, 24.0]),  # the setting may change across a restart
    asks=st.lists(st.tuples(st.integers(0, KEEP - 1), st.integers(2, KEEP)), min_size=1, max_size=4),
)
def test_curves_from_held_and_stored_blocks_equal_a_window_holding_every_point(
    points: list[tuple[str, int, int, float]],
    batch: int,
    window_h: float,
    restart_h: float,
    asks: list[tuple[int, int]],
) -> None:
    rows = [_row(*p) for p in points]  # any arrival order: late points included
    whole = Window(keep_points=KEEP)
    whole.add_curve(rows)
    store = DictStore()

    async def run() -> None:
        app = _service(store, window_h)
        app.window = Window(keep_points=KEEP)
        app.window.hold(app._points(window_h))
        assert app.window.held < KEEP
        await _feed(app, [rows[i : i + batch] for i in range(0, len(rows), batch)])
        assert app.window.latest() == whole.latest()
        for first, n in asks:
            n = min(n, KEEP - first)
            _assert_same(
                await _curves(app, first, n), whole.curves(list(DEVICES), float((SLOT0 + first) * STEP_S), n)
            )
        # a restart: the window as saved hourly, the blocks as stored
        await app._save(None)  # type: ignore[arg-type]
        again = _service(store, restart_h)
        again.window = Window.from_json(await store.get("window"))
        again.window.hold(again._points(restart_h))
        await again._flush()
        assert again.window.latest() == whole.latest()
        assert again.window.held == min(app.window.held, Window(keep_points=KEEP).held, _held(restart_h))
        for first, n in asks:
            n = min(n, KEEP - first)
            _assert_same(
                await _curves(again, first, n),
                whole.curves(list(DEVICES), float((SLOT0 + first) * STEP_S), n),
            )

    asyncio.run(run())


def test_a_window_saved_whole_before_is_split_on_load_and_reads_back_the_same() -> None:
    rng = np.random.default_rng(3)
    rows = [
        _row(d, c, s, float(rng.normal(230, 5)))
        for s in range(KEEP + 40)  # more than the ring keeps: the oldest gave way
        for d in DEVICES
        for c in range(len(QUANTITIES))
    ]
    whole = Window(keep_points=KEEP)
    whole.add_curve(rows)
    saved = json.loads(json.dumps(whole.to_json()))
    del saved["held"]  # as saved before windows were held in part
    store = DictStore()

    async def run() -> None:
        app = _service(store)
        app.window = Window.from_json(saved)
        app.window.hold(app._points(24.0))
        await app._flush()
        assert json.loads(store.data[svc.BLOCKS_KEY])
        for first in (40, 100, KEEP + 40 - 97):
            n = KEEP + 40 - first
            want = whole.curves(list(DEVICES), float((SLOT0 + first) * STEP_S), n)
            _assert_same(await _curves(app, first, n), want)

    asyncio.run(run())


def test_a_held_window_keeps_32_of_200_points_a_device_in_memory_and_forgets_past_its_reach() -> None:
    store = DictStore()

    async def run() -> svc.TopologyService:
        app = _service(store)
        single = ("voltage.a", "current.a", "energy.active.import.total", "energy.active.export.total")
        for s in range(3 * KEEP):
            await _feed(
                app,
                [[{"device": "m1", "quantity": q, "ts": (SLOT0 + s) * STEP_S, "value": 1.0} for q in single]],
            )
        late = [_row("m1", 0, 3 * KEEP - 1 - KEEP - BLOCK, 5.0)]  # older than the reach
        await _feed(app, [late])
        return app

    app = asyncio.run(run())
    ring = app.window._devices["m1"]
    assert app.window.held == 32 and ring.values.nbytes == 32 * 4 * 4  # 4 h (was 112: 24 h; 200 x 20 B)
    assert ring.slots is app.window._held_slots  # one slot array for every device
    assert app.window.too_old == 1
    blocks = json.loads(store.data[svc.BLOCKS_KEY])
    oldest = app.window.oldest_kept_block()
    assert blocks == list(range(oldest, app.window.oldest_held() // BLOCK))  # older ones deleted
    assert not [k for k in store.data if k.startswith("window/block/") and int(k.rsplit("/", 1)[1]) < oldest]


def test_a_held_window_saved_with_a_slot_array_per_device_loads_without_stale_rows() -> None:
    """Saved by d1b6b7c..f954524 (each device its own slots): a row a device last wrote blocks
    ago (given to the store then) must not read as a newer slot once the rows share one array."""
    held = 112
    newest = SLOT0 + 3 * held  # the newest block starts here
    slots_a = np.full(held, -1, dtype=np.int64)
    slots_b = np.full(held, -1, dtype=np.int64)
    values = np.full((held, len(QUANTITIES)), np.nan, dtype=np.float32)
    values_b = values.copy()
    stale = newest - held  # a's row for slot ``newest`` still holds this older slot
    slots_a[stale % held], values[stale % held, 0] = stale, 111.0
    slots_b[newest % held], values_b[newest % held, 0] = newest, 222.0
    ring = Window(keep_points=KEEP).to_json()["energy"]  # the transformer's rings, empty

    def enc(a: np.ndarray) -> str:
        import base64

        return base64.b64encode(a.tobytes()).decode()

    doc = {
        "keep": KEEP,
        "held": held,
        "devices": {
            "a": {"slots": enc(slots_a), "values": enc(values)},
            "b": {"slots": enc(slots_b), "values": enc(values_b)},
        },
        "energy": ring,
        "volts": Window(keep_points=KEEP).to_json()["volts"],
    }
    w = Window.from_json(json.loads(json.dumps(doc)))
    assert w.latest() == newest * STEP_S
    got = w.curves(["a", "b"], float(newest * STEP_S), 1)
    assert np.isnan(got.voltage[0, 0, 0]) and got.voltage[0, 1, 0] == 222.0
