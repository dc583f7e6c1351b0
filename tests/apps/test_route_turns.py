"""Module-led reading's extras (realtime snapshot, event read) take turns across the carrier meters."""

from __future__ import annotations

from collections import Counter

from apps.acquisition.route import turn

METERS = [f"m-{i:04d}" for i in range(2_000)]


def test_every_meter_has_exactly_one_turn_in_any_every_consecutive_rounds() -> None:
    for every in (1, 2, 4, 7):
        for first in (1, 5):
            for meter in METERS[:200]:
                assert sum(turn(r, meter, every) for r in range(first, first + every)) == 1


def test_a_round_carries_about_one_in_every_meters() -> None:
    per_round = Counter(r for r in range(1, 5) for m in METERS if turn(r, m, 4))
    assert all(400 <= n <= 600 for n in per_round.values()), per_round  # 500 each on average


def test_zero_means_never() -> None:
    assert not any(turn(r, m, 0) for r in range(10) for m in METERS[:10])
