"""The service's per-meter doubt keeps one float object per value (thousands of meters share a
few values), with the same values as computed."""

from __future__ import annotations

from apps.topology.service import _shared_values


def test_equal_doubts_share_one_float_and_keep_their_values_and_order() -> None:
    raw = {f"m{k}": 1.0 - (k % 3) / 2 for k in range(30)}  # computed floats: a new object each
    shared = _shared_values(raw)
    assert shared == raw and list(shared) == list(raw)
    assert len({id(v) for v in shared.values()}) == len(set(raw.values())) == 3
