"""A meter-day's curve items held as int8 / int16 decimals or int32 ten-thousandths read back as given."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.lineloss.book import (
    _DELTAS8,
    _FLOATS,
    _FREEZE,
    _STEPS8,
    _STEPS16,
    _TEN_THOUSANDTHS,
    POINTS,
    Layouts,
    MeterDay,
)

_DECIMAL = st.builds(
    lambda n, places: round(n / 10**places, places),
    st.integers(-(10**9), 10**9),
    st.integers(0, 4),
)  # what a meter's decoder gives: a decimal register, volts, amps, power factor
_ANY = st.one_of(
    _DECIMAL,
    st.floats(allow_nan=True, allow_infinity=True),  # anything else (the book skips inf; MeterDay keeps it)
    st.sampled_from(
        [
            -0.0,
            0.0,
            float("nan"),
            214748.3647,
            214748.3648,
            -214748.3647,
            1e-5,
            230.10000000000002,
            32767.0,
            32768.0,
            -32767.0,
            -32768.0,
            3.2767,
            3.2768,
            -3.2768,
            0.0001,
            1e300,
        ]  # int16 edges too
    ),
)


def _layout(md: MeterDay) -> tuple[tuple[str, int, int], ...]:
    """(item, kind, exponent) of each row of ``md`` (the exponent is in the row's head)."""
    out = []
    for item, kind in md._rows:
        found = md._find(item, freeze=kind == _FREEZE)
        assert found is not None
        out.append((item, kind, found[2]))
    return tuple(out)


def _same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(a, b)
    number = ~np.isnan(b)
    assert (np.signbit(a[number]) == np.signbit(b[number])).all()  # -0.0 stays -0.0 (a NaN is "not read")


@settings(max_examples=150, deadline=None)
@given(puts=st.lists(st.tuples(st.integers(0, POINTS - 1), st.one_of(_DECIMAL, _ANY)), max_size=60))
def test_points_read_back_bit_for_bit(puts: list[tuple[int, float]]) -> None:
    layouts = Layouts()
    md, plain = MeterDay(), np.full(POINTS, np.nan)
    for k, value in puts:
        md.put("va", k, value, layouts)
        plain[k] = value
    if puts:
        _same(md.values["va"], plain)
        again = MeterDay()
        again.set_curve("va", plain, layouts)  # as unpacked from the store
        _same(again.values["va"], plain)
        _same(again.curve_of("va"), plain)  # type: ignore[arg-type]
    else:
        assert md.curve_of("va") is None and md.values == {}


def test_a_day_of_decimal_readings_is_held_in_a_quarter_of_the_bytes() -> None:
    layouts = Layouts()
    md = MeterDay()
    rng = np.random.default_rng(3)
    registers = np.round(12_345.67 + np.cumsum(rng.uniform(0, 0.5, POINTS)), 2)
    for k in range(POINTS):
        md.put("forward", k, float(registers[k]), layouts)
        md.put("va", k, round(float(rng.uniform(210, 240)), 1), layouts)
        md.put("ia", k, round(float(rng.uniform(0, 60)), 3), layouts)
        md.put("pf", k, round(float(rng.uniform(-1, 1)), 3), layouts)
    assert _layout(md) == (
        ("forward", _DELTAS8, 2),  # up to 50 steps of 0.01 kWh from the point before
        ("va", _STEPS16, 1),
        ("ia", _STEPS16, 3),
        ("pf", _STEPS16, 3),
    )
    assert len(md._buf) == (POINTS + 8) + 3 * (POINTS * 2 + 8)  # 0.1 V, 1 mA, 0.001 from a base each
    np.testing.assert_array_equal(md.values["forward"], registers)
    md.put("forward", 5, 1 / 3, layouts)  # not a decimal: that item is float64 from now on, values kept
    assert _layout(md)[0] == ("forward", _FLOATS, 0) and len(md._buf) == POINTS * 8 + 3 * (POINTS * 2 + 8)
    registers[5] = 1 / 3
    np.testing.assert_array_equal(md.values["forward"], registers)
    assert list(md.values) == ["forward", "va", "ia", "pf"]  # the order the items came in
    md.put("va", 7, 8000.0, layouts)  # ~78,000 steps of 0.1 V apart: int32 ten-thousandths
    assert _layout(md)[1] == ("va", _TEN_THOUSANDTHS, 0) and md.values["va"][7] == 8000.0


def test_volts_a_power_factor_and_an_idle_register_are_int8_and_rows_grow_with_the_day() -> None:
    layouts = Layouts()
    md = MeterDay()
    for k in range(10):
        md.put("va", k, round(229.5 + k / 10, 1), layouts)
        md.put("pf", k, round(0.95 - k / 100, 2), layouts)
        md.put("reverse", k, 0.0, layouts)
    assert _layout(md) == (("va", _STEPS8, 1), ("pf", _STEPS8, 2), ("reverse", _STEPS8, 0))
    assert md._width == 16 and len(md._buf) == 3 * (16 + 8)  # the points of the day so far
    md.put("va", 96, 230.0, layouts)
    md.put("va", 40, 200.0, layouts)  # 30.4 V below the highest: int16 steps (a base midway)
    assert md._width == POINTS and _layout(md)[0] == ("va", _STEPS16, 1)
    want = np.full(POINTS, np.nan)
    want[:10], want[40], want[96] = [round(229.5 + k / 10, 1) for k in range(10)], 200.0, 230.0
    _same(md.values["va"], want)
    _same(md.values["reverse"], np.where(np.arange(POINTS) < 10, 0.0, np.nan))


def test_a_short_item_moves_to_a_finer_exponent_a_better_base_then_to_int32() -> None:
    layouts = Layouts()
    md = MeterDay()
    md.put("ia", 0, 12.0, layouts)
    md.put("ia", 1, 3.5, layouts)
    assert _layout(md) == (("ia", _STEPS8, 1),)  # rescaled from 1 A to 0.1 A steps
    md.put("ia", 2, 0.125, layouts)
    assert _layout(md) == (("ia", _STEPS16, 3),)  # 11,875 steps of 1 mA from the base
    md.put("ia", 3, 50.5, layouts)  # 38,500 steps from the base (12 A): a base midway holds them all
    assert _layout(md) == (("ia", _STEPS16, 3),)
    md.put("ia", 4, 70.5, layouts)  # 70,375 steps apart: not int16 any more
    assert _layout(md) == (("ia", _TEN_THOUSANDTHS, 0),)
    md.put("ia", 5, -0.0, layouts)  # nor int32: float64
    assert _layout(md) == (("ia", _FLOATS, 0),)
    _same(md.values["ia"], np.array([12.0, 3.5, 0.125, 50.5, 70.5, -0.0] + [np.nan] * (POINTS - 6)))


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["forward", "reverse", "va", "ia", "pf"]),
            st.one_of(st.integers(0, POINTS - 1), st.none()),  # None: set_curve (a whole item)
            st.one_of(_DECIMAL, _ANY),
        ),
        max_size=40,
    )
)
def test_a_meter_day_of_several_items_reads_back_as_a_dict_of_float64_arrays(
    steps: list[tuple[str, int | None, float]],
) -> None:
    """Items packed as rows of one array, widened, set whole again: each reads back as a plain
    float64 array of what was given, in the order the items first came."""
    layouts = Layouts()
    md, plain = MeterDay(), {}
    for item, k, value in steps:
        if k is None:
            whole = np.full(POINTS, value)
            md.set_curve(item, whole.copy(), layouts)
            plain[item] = whole
        else:
            md.put(item, k, value, layouts)
            plain.setdefault(item, np.full(POINTS, np.nan))[k] = value
    assert list(md.values) == list(plain)
    for item, want in plain.items():
        _same(md.values[item], want)
        _same(md.curve_of(item), want)  # type: ignore[arg-type]


def test_a_meter_day_of_single_phase_items_holds_one_array() -> None:
    """One buffer a meter-day: ~0.9 kB a meter less than an array (and a dict entry) an item."""
    import sys

    layouts = Layouts()
    days = [MeterDay(), MeterDay()]
    for md in days:
        for item in ("forward", "reverse", "va", "ia", "pf", "p"):
            for k in range(POINTS):
                md.put(item, k, 1.5, layouts)
    md, other = days
    assert {kind for _, kind in md._rows} == {_STEPS8}  # 1.5 all day: int8 at 0.1
    assert sys.getsizeof(md._buf) <= 6 * (POINTS + 8) + 64  # was 6 x (97 x 4 + 112) + a dict
    assert md._rows is other._rows  # the items and kinds: one tuple for all (exponents: in the rows)


def test_a_meter_days_freezes_are_written_through_frozen() -> None:
    layouts = Layouts()
    md = MeterDay()
    assert md.freeze == {}
    md.frozen("forward", layouts)[1] = 12.5
    md.frozen("reverse", layouts)[0] = 0.25
    md.frozen("forward", layouts)[0] = 11.0
    md.set_freeze("reverse", np.array([0.25, 0.5]), layouts)
    assert _layout(md) == (("forward", _FREEZE, 0), ("reverse", _FREEZE, 0)) and len(md._buf) == 32
    assert list(md.freeze) == ["forward", "reverse"]
    np.testing.assert_array_equal(md.freeze["forward"], [11.0, 12.5])
    np.testing.assert_array_equal(md.freeze["reverse"], [0.25, 0.5])


def test_a_register_is_int8_steps_from_the_point_before_through_gaps_catch_ups_and_rescales() -> None:
    """A register's day (~24 kWh at 0.01: ~2,400 steps) as int8 steps from the point read before;
    a point caught up in a gap, one taken back (NaN), a finer exponent and a jump of more than
    127 steps each keep the values given."""
    layouts = Layouts()
    md = MeterDay()
    want = np.full(POINTS, np.nan)
    for k in range(0, POINTS, 2):  # every other point: ~1 kWh (~100 steps) apart
        want[k] = round(5_000.0 + k * 0.5 + (k % 5) * 0.01, 2)
        md.put("forward", k, float(want[k]), layouts)
    assert _layout(md) == (("forward", _DELTAS8, 2),) and len(md._buf) == POINTS + 8
    _same(md.values["forward"], want)
    for k, value in ((9, 5_004.5), (7, 5_003.62), (7, np.nan)):  # caught up in gaps; one taken back
        want[k] = value
        md.put("forward", k, value, layouts)
    assert _layout(md) == (("forward", _DELTAS8, 2),)
    _same(md.values["forward"], want)
    md.put("forward", 3, 5_001.495, layouts)  # 1 Wh: ~1,000 steps from the point before: not int8 any more
    want[3] = 5_001.495
    _same(md.values["forward"], want)
    assert _layout(md) == (("forward", _STEPS16, 3),)  # (48 kWh at 1 Wh: int16 from a base midway)
    md2 = MeterDay()
    md2.put("forward", 0, 100.0, layouts)
    md2.put("forward", 1, 100.5, layouts)
    md2.put("forward", 2, 101.25, layouts)
    md2.put("forward", 3, 102.0, layouts)  # 200 steps of 0.01: int8 from a base midway
    assert _layout(md2) == (("forward", _STEPS8, 2),)
    md2.put("forward", 4, 102.75, layouts)  # 275: not int8 from any base; 75 from the point before at most
    assert _layout(md2) == (("forward", _DELTAS8, 2),)
    md2.put("forward", 5, 110.0, layouts)  # 725 steps from the point before: int16 from a base midway
    assert _layout(md2) == (("forward", _STEPS16, 2),)
    given = [100.0, 100.5, 101.25, 102.0, 102.75, 110.0]
    _same(md2.values["forward"], np.array(given + [np.nan] * (POINTS - len(given))))


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, POINTS - 1),
            st.one_of(st.integers(-200, 200), st.none()),  # None: not read (NaN)
            st.integers(0, 4),
        ),
        min_size=1,
        max_size=60,
    ),
    start=st.integers(-(10**9), 10**9),
)
def test_a_register_of_small_steps_reads_back_as_given(
    steps: list[tuple[int, int | None, int]], start: int
) -> None:
    """Register-like points (a start, small steps at any exponent, any order, NaNs): whatever
    the rows become, each point reads back bit for bit."""
    layouts = Layouts()
    md, want = MeterDay(), np.full(POINTS, np.nan)
    total = start
    for k, step, places in steps:
        if step is None:
            value = float("nan")
        else:
            total += step
            value = round(total / 10**places, places)
        md.put("forward", k, value, layouts)
        want[k] = value
    _same(md.values["forward"], want)
