"""Intervals from a meter's registers: exact between anchors, gaps filled evenly, freezes win."""

from __future__ import annotations

import itertools
import sys
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.energy import Anchor, MeterAnchors
from apps.billing.tariff import Interval

T0 = 1_782_835_200  # a 15-min boundary
#: registers: most within 10**9 units of each other (int32 offsets), some far apart or right at
#: the int32 edges (the columns widen to int64 values)
INT32_EDGES = [2**31 - 1, 2**31, 2**32 - 1, 2**32]
REGISTER = (
    st.integers(0, 10**9)
    | st.integers(0, 2**44)
    | st.sampled_from(INT32_EDGES)
    | st.integers(0, 10**7).map(lambda r: 100 * r)  # 0.01 kWh registers: held in steps of 100 units
)
#: export registers near the int16 offsets a meter without PV keeps (the column widens past them)
SMALL_EXPORT = st.integers(0, 2**16) | st.sampled_from([2**15 - 1, 2**15, 2**15 + 1])
#: anchors far from the first one: the slot column widens past +-2**15 slots (341 days)
SLOT_EDGES = st.sampled_from([-(2**15) - 1, -(2**15), 2**15 - 1, 2**15, 40_000])


def anchors(*rows: tuple[int, int, int | None, str]) -> MeterAnchors:
    m = MeterAnchors()
    for k, imp, exp, source in rows:
        m.add(Anchor(T0 + 900 * k, imp, exp, source))  # type: ignore[arg-type]
    return m


def test_consecutive_points_give_exact_intervals() -> None:
    m = anchors((0, 1_000_000, 0, "curve"), (1, 1_005_000, 0, "curve"), (2, 1_005_300, 200, "curve"))
    assert m.intervals(T0, T0 + 3 * 900) == [Interval(T0, 5000, 0), Interval(T0 + 900, 300, 200)]


def test_missing_point_is_filled_evenly_and_marked() -> None:
    # 00:30 missing: 0.8 kWh between 00:15 and 00:45 -> 0.4 + 0.4, both estimated
    m = anchors((0, 1_000_000, 0, "curve"), (1, 1_005_000, 0, "curve"), (3, 1_013_000, 0, "curve"))
    got = m.intervals(T0, T0 + 4 * 900)
    assert got == [Interval(T0, 5000), Interval(T0 + 900, 4000, 0, True), Interval(T0 + 1800, 4000, 0, True)]
    assert sum(i.imp for i in got) == 1_013_000 - 1_000_000  # nothing lost


def test_indivisible_remainder_goes_to_the_earliest_intervals() -> None:
    m = anchors((0, 0, None, "curve"), (3, 5, None, "curve"))
    assert [i.imp for i in m.intervals(T0, T0 + 3 * 900)] == [2, 2, 1]


def test_freeze_wins_over_a_curve_record_and_curve_never_replaces_it() -> None:
    m = anchors((0, 1_000_000, 10, "curve"))
    assert m.add(Anchor(T0, 1_000_100, None, "freeze")) is True  # corrects the curve record
    assert m.get(T0) == Anchor(T0, 1_000_100, 10, "freeze")  # export kept from the curve
    assert m.add(Anchor(T0, 999_999, 10, "curve")) is False
    assert m.add(Anchor(T0, 1_000_100, None, "freeze")) is False


def test_window_and_day_boundaries() -> None:
    # anchors only at 23:30 and 00:30 (two days): the day before gets 23:30 and 23:45, the next 00:00, 00:15
    m = anchors((0, 0, None, "curve"), (4, 4000, None, "curve"))
    day_end = T0 + 2 * 900
    assert [i.start for i in m.intervals(T0, day_end)] == [T0, T0 + 900]
    assert [i.start for i in m.intervals(day_end, T0 + 96 * 900)] == [T0 + 1800, T0 + 2700]


def test_register_going_backwards_gives_zero_and_an_anomaly() -> None:
    m = anchors((0, 5000, None, "curve"), (1, 100, None, "curve"), (2, 600, None, "curve"))
    assert [i.imp for i in m.intervals(T0, T0 + 1800)] == [0, 500]
    assert m.anomalies == 1


def test_export_follows_anchors_that_carry_it() -> None:
    # the freeze at k=1 has no export register: export spreads between the curve records at 0 and 2
    m = anchors((0, 0, 0, "curve"), (1, 100, None, "freeze"), (2, 300, 40, "curve"))
    assert m.intervals(T0, T0 + 1800) == [Interval(T0, 100, 20), Interval(T0 + 900, 200, 20)]


def test_prune_keeps_the_anchor_that_starts_the_next_gap() -> None:
    m = anchors((0, 0, None, "curve"), (1, 10, None, "curve"), (5, 50, None, "curve"))
    m.prune(T0 + 3 * 900)
    assert [a.ts for a in m.rows()] == [T0 + 900, T0 + 5 * 900]
    assert sum(i.imp for i in m.intervals(T0 + 900, T0 + 5 * 900)) == 40


def test_off_grid_anchor_is_refused() -> None:
    with pytest.raises(ValueError, match="15-min"):
        MeterAnchors().add(Anchor(T0 + 60, 0, None, "curve"))


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40) | SLOT_EDGES,
            REGISTER,
            st.none() | REGISTER | SMALL_EXPORT,
            st.sampled_from(["curve", "catch_up", "freeze"]),
        ),
        max_size=60,
    )
)
def test_packed_anchors_keep_what_a_plain_map_of_anchors_keeps(
    adds: list[tuple[int, int, int | None, str]],
) -> None:
    # the packed columns against the rule written plainly: a new time is kept, a freeze replaces
    # a curve record (keeping its export when it has none), nothing replaces a freeze
    m, plain = MeterAnchors(), dict[int, Anchor]()
    for k, imp, exp, source in adds:
        ts = T0 + 900 * k
        known = plain.get(ts)
        if known is None:
            plain[ts], expected = Anchor(ts, imp, exp, source), True  # type: ignore[arg-type]
        elif source == "freeze" and known.source != "freeze":
            kept = exp if exp is not None else known.exp
            plain[ts], expected = Anchor(ts, imp, kept, "freeze"), (imp, kept) != (known.imp, known.exp)
        else:
            expected = False
        assert m.add(Anchor(ts, imp, exp, source)) is expected  # type: ignore[arg-type]
        assert m.get(ts) == plain[ts]
    assert m.rows() == [plain[t] for t in sorted(plain)]
    assert (m.first, m.last, len(m)) == (min(plain, default=None), max(plain, default=None), len(plain))


def _held_per_anchor(m: MeterAnchors) -> float:
    held = sys.getsizeof(m) + sum(sys.getsizeof(c) for c in (m._slots, m._imp, m._exp, m._marks))
    return held / len(m)


def test_anchors_are_held_in_about_two_bytes_each() -> None:
    # 4 days of 15-min points: ~2 bytes an anchor while a quarter-hour's steps fit a byte each
    # (consecutive slots a range, no bytes; an Anchor tuple with its dict entry was ~250: 2,400
    # meters x 4 days were ~230 MB of the terminal; int16 offsets from a base took ~5)
    m = anchors(*((k, 9_000_000_000 + 50 * k, 10 * k, "curve") for k in range(4 * 96)))  # past 2**31 units
    assert not m.wide and m._slots is None and (m._imp.typecode, m._exp.typecode) == ("B", "B")
    assert _held_per_anchor(m) < 3.5
    household = anchors(*((k, 123_456_700 + 1200 * k, None, "curve") for k in range(4 * 96)))  # 0.12 kWh
    assert household._imp_step == 100 and household._imp.typecode == "B"  # 0.01 kWh steps
    assert _held_per_anchor(household) < 3.5
    assert household.rows()[-1] == Anchor(T0 + 900 * 383, 123_456_700 + 1200 * 383, None, "curve")
    branch = anchors(*((k, 110_000 * k, 0, "curve") for k in range(4 * 96)))  # 11 kWh a quarter-hour
    assert (branch._imp.typecode, branch._exp) == ("h", None) and not branch.wide  # no PV: no export bytes
    assert 2.5 <= _held_per_anchor(branch) < 3.5
    m.prune(T0 + 900 * 300)
    assert m.first == T0 + 900 * 300 and len(m) == 84
    assert m.rows()[-1] == Anchor(T0 + 900 * 383, 9_000_000_000 + 50 * 383, 3830, "curve")


def test_pruning_keeps_a_running_meters_registers_narrow() -> None:
    # 40 days of a household (0.36 kWh a quarter-hour: 1,382 kWh, past int16 steps of 0.01 kWh from
    # the first register); pruned daily to 4 days, the offsets from the oldest kept stay int16
    m = MeterAnchors()
    for k in range(40 * 96):
        m.add(Anchor(T0 + 900 * k, 5_000_000 + 3600 * k, 77 if k % 2 else None, "curve"))
        if k % 96 == 95:
            m.prune(T0 + 900 * (k - 4 * 96))
    assert (m._imp.typecode, m._exp.typecode) == ("B", "B") and m._imp_step == 100
    assert len(m) == 4 * 96 + 1 and m.rows()[0].imp == 5_000_000 + 3600 * (36 * 96 - 1)
    k = 40 * 96 - 1
    assert m.rows()[-2:] == [
        Anchor(T0 + 900 * (k - 1), 5_000_000 + 3600 * (k - 1), None, "curve"),
        Anchor(T0 + 900 * k, 5_000_000 + 3600 * k, 77, "curve"),
    ]
    assert m.intervals(T0 + 900 * (k - 1), T0 + 900 * k) == [Interval(T0 + 900 * (k - 1), 3600, 0)]


def test_slots_take_no_column_while_consecutive_an_array_with_a_gap() -> None:
    m = anchors((0, 0, None, "curve"), (1, 10, None, "curve"))
    assert m._slots is None and m._times() == range(2)
    m.add(Anchor(T0 + 4 * 900, 40, None, "curve"))  # a gap
    assert isinstance(m._slots, array) and list(m._slots) == [0, 1, 4]
    m.add(Anchor(T0 + 3 * 900, 30, None, "catch_up"))
    assert isinstance(m._slots, array)
    m.add(Anchor(T0 + 2 * 900, 20, None, "catch_up"))  # the gap filled: consecutive again
    assert m._slots is None and m._times() == range(5) and (m.first, m.last) == (T0, T0 + 4 * 900)
    m.add(Anchor(T0 - 900, 0, None, "catch_up"))  # one before the first: the base moves to it
    assert m._slots is None and m._times() == range(6) and m.first == T0 - 900
    assert [a.ts for a in m.rows()] == [T0 + 900 * k for k in range(-1, 5)]
    m.add(Anchor(T0 + 9 * 900, 90, None, "curve"))
    m.prune(T0 + 9 * 900)  # only the last: consecutive again
    assert m._slots is None and m.rows() == [Anchor(T0 + 9 * 900, 90, None, "curve")]
    m.add(Anchor(T0 + 10 * 900, 100, None, "curve"))
    assert m._slots is None and m.get(T0 + 10 * 900) == Anchor(T0 + 10 * 900, 100, None, "curve")
    assert [a.imp for a in anchors(*((k, k, None, "curve") for k in (0, 1, 3))).rows()] == [0, 1, 3]


def test_a_register_step_beyond_int32_widens_the_columns_and_loses_nothing() -> None:
    # steps from the register before: -2**31 would read as "no export", +2**31 overflows
    for first, later in ((2**31, 0), (0, 2**31), (5, 5 + 2**31), (2**40, 2**40 - 2**31)):
        m = anchors((0, first, None, "curve"), (1, first, 7, "curve"))
        assert not m.wide
        m.add(Anchor(T0 + 2 * 900, later, later, "curve"))
        assert m.wide
        assert m.rows() == [
            Anchor(T0, first, None, "curve"),
            Anchor(T0 + 900, first, 7, "curve"),
            Anchor(T0 + 1800, later, later, "curve"),
        ]
        assert _held_per_anchor(m) > 17  # int64 now
    edge = anchors(
        (0, 0, 0, "curve"), (1, 2**31 - 1, 2**31 - 1, "curve"), (2, 0, None, "curve"), (3, 1, 0, "curve")
    )
    assert not edge.wide and edge._imp.typecode == "i"
    assert [(a.imp, a.exp) for a in edge.rows()] == [(0, 0), (2**31 - 1, 2**31 - 1), (0, None), (1, 0)]
    assert [(i.imp, i.exp) for i in edge.intervals(T0, T0 + 3 * 900)] == [
        (2**31 - 1, 2**31 - 1),
        (0, 0),
        (1, 0),
    ]


def test_a_step_past_a_byte_widens_the_column_and_a_prune_narrows_it_again() -> None:
    # a quarter-hour of 3 kWh (300 steps of 0.01 kWh) does not fit a byte, a register going back
    # is a negative step: int16 until they are pruned; the registers read the same throughout
    m = anchors(*((k, 1_000_000 + 100 * k, 500, "curve") for k in range(10)))
    assert (m._imp.typecode, m._exp) == ("B", None)  # (an export that has not moved: quiet)
    m.add(Anchor(T0 + 10 * 900, 1_000_000 + 100 * 9 + 30_000, 400, "curve"))
    m.add(Anchor(T0 + 11 * 900, 1_000_000 + 100 * 9 + 30_100, 400, "curve"))
    assert (m._imp.typecode, m._exp.typecode) == ("h", "h")
    assert [(a.imp, a.exp) for a in m.rows()[-3:]] == [(1_000_900, 500), (1_030_900, 400), (1_031_000, 400)]
    assert m.intervals(T0 + 9 * 900, T0 + 11 * 900) == [
        Interval(T0 + 9 * 900, 30_000, 0),
        Interval(T0 + 10 * 900, 100, 0),
    ]
    m.prune(T0 + 10 * 900)
    assert (m._imp.typecode, m._exp.typecode) == ("B", "B")
    assert [(a.imp, a.exp) for a in m.rows()] == [(1_030_900, 400), (1_031_000, 400)]


def _split(total: int, n: int) -> list[int]:
    return [total // n + (1 if k < total % n else 0) for k in range(n)]


def _plain_intervals(rows: list[Anchor], start: int, end: int) -> list[Interval]:
    """The gap rule written plainly over a sorted list of anchors."""
    imports: dict[int, tuple[int, bool]] = {}
    exports: dict[int, int] = {}
    for a, b in itertools.pairwise(rows):
        n = (b.ts - a.ts) // 900
        for k, share in enumerate(_split(max(b.imp - a.imp, 0), n)):
            imports[a.ts + k * 900] = (share, n > 1)
    carrying = [a for a in rows if a.exp is not None]
    for a, b in itertools.pairwise(carrying):
        n = (b.ts - a.ts) // 900
        for k, share in enumerate(_split(max(b.exp - a.exp, 0), n)):  # type: ignore[operator]
            exports[a.ts + k * 900] = share
    return [
        Interval(s, e, exports.get(s, 0), est) for s, (e, est) in sorted(imports.items()) if start <= s < end
    ]


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(0, 30), REGISTER, st.none() | REGISTER), max_size=25),
    st.lists(st.tuples(st.integers(-2000, 32 * 900), st.integers(0, 12 * 900)), min_size=1, max_size=6),
)
def test_lookups_and_intervals_agree_with_the_rules_written_plainly(
    adds: list[tuple[int, int, int | None]], queries: list[tuple[int, int]]
) -> None:
    # the times are kept as slot numbers: any instant asked (on the grid or not) finds what the
    # plain sorted list of anchor times finds
    m, plain = MeterAnchors(), dict[int, Anchor]()
    for k, imp, exp in adds:
        ts = T0 + 900 * k
        if m.add(Anchor(ts, imp, exp, "curve")):
            plain[ts] = Anchor(ts, imp, exp, "curve")
    rows = [plain[t] for t in sorted(plain)]
    times = [a.ts for a in rows]
    for offset, length in queries:
        ts = T0 + offset
        assert m.at_or_before(ts) == max((t for t in times if t <= ts), default=None)
        assert m.at_or_after(ts) == min((t for t in times if t >= ts), default=None)
        assert m.get(ts) == plain.get(ts)
        start = T0 + offset // 900 * 900  # the callers ask from an interval's start
        assert m.intervals(start, start + length) == _plain_intervals(rows, start, start + length)


def test_a_gap_to_the_end_of_the_range_is_spread_over_it() -> None:
    # read at 00:00 and 00:15, then not until the range's end: the one-interval fast path once
    # returned the 00:00 interval alone and the spread of the gap was never billed
    m = anchors((0, 0, 0, "curve"), (1, 10, 0, "curve"), (4, 40, 0, "curve"))
    got = m.intervals(T0, T0 + 4 * 900)
    assert [(i.start - T0, i.imp, i.estimated) for i in got] == [
        (0, 10, False),
        (900, 10, True),
        (1800, 10, True),
        (2700, 10, True),
    ]


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(0, 30), REGISTER, st.none() | REGISTER | SMALL_EXPORT), max_size=25),
    st.integers(-2, 32),
    st.lists(st.tuples(st.integers(0, 40), REGISTER, st.none() | REGISTER | SMALL_EXPORT), max_size=15),
)
def test_pruned_anchors_keep_the_registers_and_intervals_of_those_kept(
    before: list[tuple[int, int, int | None]], cut: int, after: list[tuple[int, int, int | None]]
) -> None:
    # a prune moves the register bases and narrows the columns: what is kept reads the same,
    # and anchors added after it too
    m, plain = MeterAnchors(), dict[int, Anchor]()

    def add(rows: list[tuple[int, int, int | None]]) -> None:
        for k, imp, exp in rows:
            ts = T0 + 900 * k
            if m.add(Anchor(ts, imp, exp, "curve")):
                plain[ts] = Anchor(ts, imp, exp, "curve")

    add(before)
    keep = max((t for t in plain if t <= T0 + 900 * cut), default=None)
    m.prune(T0 + 900 * cut)
    if keep is not None:
        for t in [t for t in plain if t < keep]:
            del plain[t]
    assert m.rows() == [plain[t] for t in sorted(plain)]
    add(after)
    rows = [plain[t] for t in sorted(plain)]
    assert m.rows() == rows
    assert m.intervals(T0, T0 + 41 * 900) == _plain_intervals(rows, T0, T0 + 41 * 900)


def test_sources_are_marked_only_for_freezes_and_catch_up_reads() -> None:
    """An anchor's source is ``curve`` unless marked: one mark a freeze or catch-up read, kept
    through inserts before it, a freeze replacing a curve record, and prunes."""
    m = MeterAnchors()
    plain: dict[int, Anchor] = {}
    for k in range(4 * 96):
        if k % 7 == 3:
            continue  # read back later
        source = "freeze" if k % 96 == 0 else "curve"
        plain[T0 + 900 * k] = Anchor(T0 + 900 * k, 1000 + 10 * k, None, source)  # type: ignore[arg-type]
        m.add(plain[T0 + 900 * k])
    for k in reversed(range(3, 4 * 96, 7)):  # the gaps filled late, the newest first
        plain[T0 + 900 * k] = Anchor(T0 + 900 * k, 1000 + 10 * k, None, "catch_up")
        m.add(plain[T0 + 900 * k])
    m.add(Anchor(T0 + 900 * 50, 1000 + 10 * 50, None, "freeze"))  # a freeze where a curve record was
    plain[T0 + 900 * 50] = Anchor(T0 + 900 * 50, 1000 + 10 * 50, None, "freeze")
    assert m.rows() == [plain[t] for t in sorted(plain)]
    assert len(m._marks) == sum(a.source != "curve" for a in plain.values())
    m.prune(T0 + 900 * 200)
    kept = [plain[t] for t in sorted(plain) if t >= T0 + 900 * 200]
    assert m.rows() == kept and len(m._marks) == sum(a.source != "curve" for a in kept)
    assert m.get(T0 + 900 * 288) == plain[T0 + 900 * 288] and m.get(T0 + 900 * 288).source == "freeze"  # type: ignore[union-attr]


def test_an_export_that_does_not_move_takes_no_column_until_it_does() -> None:
    # a meter with no PV: its export register never moves, its daily freezes carry none. The
    # export column is quiet (no bytes: the freezes' exports not read are marked) until an export
    # moves; the anchors and intervals read the same before and after
    m, plain = MeterAnchors(), list[Anchor]()
    for k in range(3 * 96):
        a = Anchor(
            T0 + 900 * k,
            2_000_000 + 300 * k,
            None if k % 96 == 0 else 4200,
            "freeze" if k % 96 == 0 else "curve",
        )
        m.add(a)
        plain.append(a)
    assert m._exp is None and len(m._marks) == 3
    assert m.rows() == plain and m.get(T0 + 96 * 900) == plain[96]
    assert m.intervals(T0, T0 + 3 * 900) == [Interval(T0 + 900 * k, 300, 0) for k in range(3)]
    assert m.newest_step() is None  # (never priced: dirty from the first)
    m.prune(T0 + 96 * 900)
    assert m._exp is None and m.rows() == plain[96:] and len(m._marks) == 2
    m.add(Anchor(T0 + 900 * 288, 2_000_000 + 300 * 288, 4250, "curve"))  # PV: the export moves
    plain.append(Anchor(T0 + 900 * 288, 2_000_000 + 300 * 288, 4250, "curve"))
    assert m._exp is not None and m._exp.typecode == "B" and len(m._marks) == 2  # (freezes' marks kept)
    assert m.rows() == plain[96:]
    assert m.intervals(T0 + 900 * 287, T0 + 900 * 288) == [Interval(T0 + 900 * 287, 300, 50)]
    never = anchors(*((k, 100 * k, None, "curve") for k in range(96)))  # export never read: a column
    assert never._exp is not None and len(never._marks) < 40 and all(a.exp is None for a in never.rows())
