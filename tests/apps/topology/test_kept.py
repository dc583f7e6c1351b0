"""The night's kept detections in columns give back exactly the detections put in."""

from __future__ import annotations

import math

from apps.topology.inputs import Detection
from apps.topology.kept import Kept

UNITS = ("u1", "u2", "u3")


def _night(day: int, n: int, units: tuple[str, ...] = UNITS) -> list[Detection]:
    t0 = 1_717_200_000.0 + day * 86400 + 0.25
    return [
        Detection(f"m{(i * 7 + day) % 11}", t0 + 30.0 * i, tuple(units[: i % 3]), units) for i in range(n)
    ]


def test_round_trip_keeps_values_order_and_a_nights_units() -> None:
    nights = _night(0, 9) + _night(1, 6, ("u2", "u4"))
    kept = Kept()
    kept.extend(nights)
    assert len(kept) == 15
    assert list(kept) == nights
    assert [d.at for d in kept] == [d.at for d in nights]  # float64: exact
    assert kept.since(nights[9].at) == tuple(nights[9:])
    first = list(kept)[:9]
    assert all(d.listening is first[0].listening for d in first)  # one tuple a night


def test_last_injection_is_marked_not_implied() -> None:
    kept = Kept()
    kept.extend(_night(0, 4))
    assert kept.last() == {}  # stored detections without a stored "sent" (as the old list + dict)
    kept.mark(_night(0, 4))
    assert kept.last() == {d.source: d.at for d in _night(0, 4)}
    assert kept.last_of()("m0") == _night(0, 4)[0].at
    assert kept.last_of()("u1") is None  # a unit that heard is not an injection


def test_keep_since_drops_old_nights_and_unused_names_keeps_last_sent() -> None:
    kept = Kept()
    old, new = _night(0, 5, ("old1", "old2")), _night(2, 3)
    kept.extend(old)
    kept.mark(old)
    kept.extend(new)
    kept.mark(new)
    last = kept.last()
    kept.keep_since(new[0].at)
    assert list(kept) == new
    assert kept.last() == last  # a meter's last injection outlives its detections
    assert "old1" not in kept.names and "old2" not in kept.names
    assert not any(math.isnan(kept.last()[k]) for k in kept.last())


def test_keep_since_shares_the_given_strings() -> None:
    kept = Kept()
    night = _night(0, 6)
    kept.extend(night)
    kept.mark(night)
    model = {s: "".join(s) for s in {d.source for d in night} | set(UNITS)}  # equal, other objects
    kept.keep_since(0.0, lambda s: model.get(s, s))
    assert list(kept) == night
    assert all(any(n is v for v in model.values()) for n in kept.names)
