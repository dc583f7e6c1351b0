"""The incremental identification (a check starting from the newest result) and the scaled
search kernels: each must give what the full computation gives."""

from __future__ import annotations

import numpy as np
import pytest

from apps.topology import assign, evidence
from apps.topology.identify import identify, window
from apps.topology.inputs import Detection
from apps.topology.result import DIMENSIONS, Labels, TopologyResult, outcomes
from apps.topology.synthetic import Spec, station


def placed(result: TopologyResult) -> set[tuple[str | None, ...]]:
    return {(x.address, x.phase, x.branch, x.box) for x in result.missing}


@pytest.mark.parametrize(
    ("spec", "seed"),
    [
        (Spec(branches=4, foreign=2, missing=2, days=1.25), 5),
        (Spec(branches=3, moves=2, wrong_phase=0.0, days=1.25), 2),
    ],
    ids=["errors-foreign-missing", "phase-moves"],
)
def test_a_check_from_the_newest_result_equals_a_full_identification(spec: Spec, seed: int) -> None:
    """The newest result is two hours older than the check's window (the service's cadence);
    starting there gives the same phase, branch, box, status, moves and missing meters as a full
    identification of the same window -- with the archive's errors corrected, foreign meters
    found and moves reported by both."""
    inputs, truth = station(spec, seed=seed)
    points = inputs.points
    earlier = identify(window(inputs, 0, points - 8), terminal="T", computed_at=0.0)
    now = window(inputs, 8, points)
    full = identify(now, terminal="T", computed_at=1.0)
    check = identify(now, terminal="T", computed_at=1.0, previous=earlier)
    assert outcomes(check) == outcomes(full)
    assert placed(check) == placed(full)
    ours = [m for m in check.meters if m.meter_id not in truth.foreign]
    for d in DIMENSIONS:
        assert all(getattr(m, d).value == getattr(truth, d)[m.meter_id] for m in ours), d
    assert {m.meter_id for m in check.meters if m.status == "foreign"} == set(truth.foreign)
    for meter, (before, after, _) in truth.moved.items():
        moved = {m.meter_id: m for m in check.meters}[meter].phase.evidence.get("moved")
        assert moved is not None and (moved["from"], moved["to"]) == (before, after)


def test_a_check_repairs_wrong_labels_in_the_result_it_starts_from() -> None:
    """A starting result with meters on a wrong phase, branch and box (as the archive's errors
    would be) is no trap: the check's own search moves them back."""
    inputs, truth = station(Spec(branches=4, wrong_phase=0.0, wrong_branch=0.0, wrong_box=0.0), seed=7)
    good = identify(inputs, terminal="T", computed_at=0.0)
    rows = [m for m in good.meters if m.phase.value in ("A", "B", "C")]
    rng = np.random.default_rng(1)
    spoiled = {}
    for m in rng.choice(np.array(rows, dtype=object), size=6, replace=False):
        phase = "ABC"[("ABC".index(m.phase.value) + 1) % 3]
        other_box = next(
            x.box.value for x in rows if x.branch.value == m.branch.value and x.box.value != m.box.value
        )
        spoiled[m.meter_id] = (phase, other_box)
    bad = TopologyResult(
        good.terminal, good.computed_at, good.days, good.window,
        tuple(
            m if m.meter_id not in spoiled else type(m)(
                m.meter_id, m.address, m.status,
                type(m.phase)(spoiled[m.meter_id][0], 0.99, m.phase.archive, "corrected"),
                m.branch,
                type(m.box)(spoiled[m.meter_id][1], 0.99, m.box.archive, "corrected"),
            )
            for m in good.meters
        ),
        good.missing,
    )  # fmt: skip
    check = identify(inputs, terminal="T", computed_at=1.0, previous=bad)
    by_id = {m.meter_id: m for m in check.meters}
    for meter in spoiled:
        for d in DIMENSIONS:
            assert getattr(by_id[meter], d).value == getattr(truth, d)[meter], (meter, d)


# -- kernels against their plain definitions ----------------------------------------------------


def test_signature_loglik_equals_the_sum_over_every_listening_unit() -> None:
    rng = np.random.default_rng(3)
    units = [f"u{j}" for j in range(30)]
    meters = [f"m{i}" for i in range(40)]
    on_path = (rng.random((12, 30)) < 0.15).astype(float)
    detections = []
    for _ in range(300):
        listening = tuple(units) if rng.random() < 0.5 else tuple(u for u in units if rng.random() < 0.8)
        heard = tuple(u for u in [*units, "elsewhere"] if rng.random() < 0.1)
        detections.append(Detection(f"m{rng.integers(0, 45)}", 0.0, heard + heard[:1], listening))
    got, count = evidence.signature_loglik(
        meters, detections, units, on_path, miss_rate=0.1, crosstalk_rate=0.01
    )
    hit, miss, cross, quiet = np.log(0.9), np.log(0.1), np.log(0.01), np.log(0.99)
    want = np.zeros_like(got)
    shots = np.zeros(len(meters))
    for d in detections:
        if d.source not in meters or not d.listening:
            continue
        i = meters.index(d.source)
        shots[i] += 1
        for u in d.listening:
            j = units.index(u)
            h = u in d.heard_by
            want[i] += np.where(on_path[:, j] > 0, hit if h else miss, cross if h else quiet)
    assert np.allclose(got, want, atol=1e-9)
    assert (count == shots).all()


def test_fit_gain_is_least_squares_per_column_within_the_limit() -> None:
    rng = np.random.default_rng(4)
    y = rng.gamma(2.0, 1.0, (96, 8))
    resid = 0.03 * y + rng.normal(0, 0.1, (96, 8)) + 0.2
    resid[:, 1] += 0.2 * y[:, 1]  # beyond the limit: clipped
    y[:, 2] = 0.0  # no variation: the minimum-norm fit, the residual's mean
    got = assign.fit_gain(y, resid)
    for j in range(y.shape[1]):
        x = np.stack([y[:, j], np.ones(len(y))], axis=1)
        c = float(np.clip(np.linalg.lstsq(x, resid[:, j], rcond=None)[0][0], -0.05, 0.05))
        assert np.allclose(got[:, j], c * y[:, j] + (resid[:, j] - c * y[:, j]).mean())


def _every_bucket_pair(
    states: list[assign._State], total: np.ndarray, labels: np.ndarray
) -> tuple[float, int, int]:
    """The swap search without bounds: every (label, label) bucket pair, in the order the
    buckets opened, each with its ``SWAP_BUCKET`` likeliest members, the first best winning."""
    meter, src, dst = assign._swap_entries(states, total, labels, 3, None)
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, a, b in zip(meter.tolist(), src.tolist(), dst.tolist(), strict=True):
        buckets.setdefault((a, b), []).append(i)
    best = (-np.inf, -1, -1)
    for (a, b), members in buckets.items():
        if a >= b or (b, a) not in buckets:
            continue
        rows = np.array(sorted(members, key=lambda i: -total[i, b])[: assign.SWAP_BUCKET])
        cols = np.array(sorted(buckets[(b, a)], key=lambda i: -total[i, a])[: assign.SWAP_BUCKET])
        gain = total[rows, b][:, None] + total[cols, a][None, :]
        for st in states:
            gain = gain + st.swap_cross(rows, cols, st.b.incidence[b] - st.b.incidence[a])
        r, c = np.unravel_index(int(np.argmax(gain)), gain.shape)
        if gain[r, c] > best[0]:
            best = (float(gain[r, c]), int(rows[r]), int(cols[c]))
    return best


def test_the_pruned_swap_search_finds_what_every_pair_finds() -> None:
    """``_best_swap`` examines bucket pairs best bound first and stops when no bound can beat
    the best found or the best single move; the search over every pair must agree with it
    whenever a swap beats that single move, and find none that does when it says so."""
    rng = np.random.default_rng(5)
    n, t = 90, 96
    hours = np.arange(t) / 4.0
    peaks = rng.uniform(7, 21, n // 2)
    shapes = rng.gamma(1.5, 0.2, (t, n // 2)) + np.exp(-0.5 * ((hours[:, None] - peaks) / 1.5) ** 2)
    loads = np.concatenate([shapes, shapes * rng.uniform(0.9, 1.1, n // 2)], axis=1)  # look-alike pairs
    truth = np.concatenate([rng.integers(0, 3, n // 2), np.zeros(n // 2, dtype=np.int64)])
    truth[n // 2 :] = (truth[: n // 2] + rng.integers(1, 3, n // 2)) % 3  # each twin on another phase
    y = np.stack([loads[:, truth == k].sum(axis=1) for k in range(3)], axis=1)
    b = assign.Balance("t", loads, y[:, None, :], np.vstack([np.eye(3), np.zeros((1, 3))]), partition=True)
    fit = assign.initial_fit(b)
    labels = truth.copy()
    twins = rng.choice(n // 2, 8, replace=False)
    # each twin on the other's phase: no single move mends it
    labels[twins], labels[twins + n // 2] = truth[twins + n // 2], truth[twins]
    labels[rng.choice(n, 4, replace=False)] = rng.integers(0, 4, 4)
    swaps = 0
    for _ in range(12):
        st = assign._State(b, fit, labels, 4)
        total = st.scores(labels)
        total[np.arange(n), labels] = -np.inf
        single = max(float(np.max(total)), 1e-9)
        pruned = assign._best_swap([st], total, labels, floor=single)
        every = _every_bucket_pair([st], total, labels)
        if every[0] > single:
            assert pruned == pytest.approx(every)
            assert pruned[1:] == every[1:]
            labels[pruned[1]], labels[pruned[2]] = labels[pruned[2]], labels[pruned[1]]
            swaps += 1
        else:
            assert pruned == (-np.inf, -1, -1)
            i = int(np.argmax(np.max(total, axis=1)))
            labels[i] = int(np.argmax(total[i]))
    assert swaps >= 3


# -- the service's check --------------------------------------------------------------------------


def test_the_service_s_check_starts_from_the_newest_full_result_and_skips_when_nothing_is_new() -> None:
    """Through ``TopologyService.run``: the daily run identifies from scratch, each check starts
    from the newest full result (the daily's, never another check's), and a check that would see
    no new curve point under the same station model is skipped and counted."""
    import asyncio
    import logging
    from types import SimpleNamespace
    from typing import Any

    from apps.topology import service as svc

    inputs, _ = station(Spec(branches=2, boxes_per_branch=(2, 3), days=0.5), seed=1)
    ctx: Any = SimpleNamespace(
        log=logging.getLogger("test-topology"),
        station=SimpleNamespace(model=SimpleNamespace(version=1)),
        clock=SimpleNamespace(now=lambda: 0.0),
        terminal=SimpleNamespace(id="T"),
    )
    app = svc.TopologyService(ctx, svc.Settings())
    latest = [1000.0]
    app.window.latest = lambda: latest[0]  # type: ignore[method-assign]

    async def fake_inputs(model: object, *, window_h: float) -> object:
        return inputs

    app.inputs = fake_inputs  # type: ignore[method-assign]
    seen: list[Labels | None] = []

    def spy(*args: Any, previous: Labels | None = None, **kw: Any) -> TopologyResult:
        seen.append(previous)
        return identify(*args, previous=previous, **kw)

    async def day() -> list[TopologyResult | None]:
        results = [await app.run(reason="daily", report=False)]
        for _ in range(2):
            latest[0] += 900.0
            results.append(await app.run(reason="check", report=False))
        results.append(await app.run(reason="check", report=False))  # nothing new
        ctx.station.model.version = 2
        results.append(await app.run(reason="check", report=False))  # the model changed
        return results

    original = svc.identify
    svc.identify = spy  # type: ignore[assignment]
    try:
        daily, first, second, skipped, after_change = asyncio.run(day())
    finally:
        svc.identify = original  # type: ignore[assignment]
    assert seen[0] is None
    assert daily is not None and first is not None and second is not None and after_change is not None
    # each check starts from the daily result's labels (held without its evidence)
    assert seen[1] is seen[2] is seen[3] is not None
    assert seen[1] == Labels.of(daily)
    assert skipped is None and app.counters["checks_skipped"] == 1
    assert len(seen) == 4 and app.counters["identifications"] == 4
    assert outcomes(second) == outcomes(daily)
