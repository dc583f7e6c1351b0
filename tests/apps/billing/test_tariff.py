"""The tariff engine against hand-computed bills: TOU, tiers across day/month/year, contract changes,
export, rounding. Every expected amount below is worked out by hand in its comment."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from apps.billing.tariff import DayBill, Interval, Pricing, TierState, Timeline, price, tier_split
from protocols.billing import ENERGY

from .contracts import beijing, document, zhejiang

TZ = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> int:
    return int(datetime(*args, tzinfo=TZ).timestamp())  # type: ignore[misc]


def kwh(x: str) -> int:
    whole, _, frac = x.partition(".")
    return int(whole) * ENERGY + int((frac + "0000")[:4])


def bill_of(
    customer: str,
    intervals: list[Interval],
    timeline: Timeline,
    tier: TierState | None = None,
    tariff: str = "residential",
    pricing: Pricing | None = None,
) -> DayBill:
    bill = DayBill(customer, "d", tier or TierState())
    return price(bill, intervals, timeline, tariff, TZ, pricing=pricing)


def test_tou_periods_of_one_day() -> None:
    # 1 kWh at 02:00 (valley 0.288) + 2 kWh at 10:00 (peak 0.568) = 0.288 + 1.136 = 1.424 -> 1.42 元
    b = bill_of(
        "C1",
        [Interval(at(2026, 3, 2, 2), kwh("1")), Interval(at(2026, 3, 2, 10), kwh("2"))],
        Timeline([zhejiang()]),
    )
    assert b.kwh == {"sharp": 0, "peak": kwh("2"), "flat": 0, "valley": kwh("1")}
    assert (b.tou_exact, b.adder_exact, b.charge_fen) == (142_400_000, 0, 142)
    assert b.contracts == ("ZJ-RES@1",) and b.intervals == 2


def test_annual_tier_crossed_inside_an_interval() -> None:
    # 2759.5 kWh billed this year; 2 kWh at peak: 0.5 in tier 1, 1.5 in tier 2
    # 2 x 0.568 = 1.136, + 1.5 x 0.05 = 0.075 -> 1.211 -> 1.21 元
    tier = TierState("2026-01", kwh("2759.5"), "2026-03", 0)
    b = bill_of("C1", [Interval(at(2026, 3, 2, 10), kwh("2"))], Timeline([zhejiang()]), tier)
    assert b.tier_units == [kwh("0.5"), kwh("1.5"), 0]
    assert (b.adder_exact, b.charge_fen) == (7_500_000, 121)
    # TOU periods, then tiers, in the bill's one int32 array
    assert b.units.tolist() == [*b.period_units, *b.tier_units] and b.units.typecode == "i"
    assert b.period_units == [b.kwh[p] for p in ("sharp", "peak", "flat", "valley")]
    assert b.tier.year_units == kwh("2761.5")


def test_both_tier_bounds_in_one_interval() -> None:
    # bounds 2760 / 4800 are both inside (2759, 4801]: 1 + 2040 + 1 kWh; valley 0.288
    # 2042 x 0.288 = 588.096; adders 2040 x 0.05 + 1 x 0.30 = 102.30 -> 690.396 -> 690.40 元
    tier = TierState("2026-01", kwh("2759"), "2026-03", 0)
    b = bill_of("C1", [Interval(at(2026, 3, 2, 3), kwh("2042"))], Timeline([zhejiang()]), tier)
    assert b.tier_units == [kwh("1"), kwh("2040"), kwh("1")]
    assert b.charge_fen == 69040


def test_year_boundary_resets_annual_tiers() -> None:
    # 4000 kWh in 2025 (tier 2): 23:45 on Dec 31 pays 0.288 + 0.05; 00:00 on Jan 1 is tier 1 of 2026
    # 1 x 0.338 + 1 x 0.288 = 0.626 -> 0.63 元
    tier = TierState("2025-01", kwh("4000"), "2025-12", kwh("300"))
    b = bill_of(
        "C1",
        [Interval(at(2025, 12, 31, 23, 45), kwh("1")), Interval(at(2026, 1, 1, 0, 0), kwh("1"))],
        Timeline([zhejiang(effective_from="2025-01-01T00:00")]),
        tier,
    )
    assert b.adder_exact == 5_000_000 and b.charge_fen == 63
    assert b.tier == TierState("2026-01", kwh("1"), "2026-01", kwh("1"))


def test_billing_year_may_start_in_another_month() -> None:
    doc = document("zhejiang-residential", effective_from="2025-01-01T00:00")
    doc["tariffs"][0]["tiers"]["year_start_month"] = 7
    from protocols.billing import parse_contract

    # year from July: 2026-06-30 still belongs to the year 2025-07, 2026-07-01 starts 2026-07
    tier = TierState("2025-07", kwh("3000"), "2026-06", 0)
    b = bill_of(
        "C1",
        [Interval(at(2026, 6, 30, 23, 45), kwh("1")), Interval(at(2026, 7, 1, 0, 0), kwh("1"))],
        Timeline([parse_contract(doc)]),
        tier,
    )
    assert b.tier_units == [kwh("1"), kwh("1"), 0] and b.tier.year == "2026-07"


def test_monthly_tiers_reset_at_the_month_boundary() -> None:
    # Beijing monthly bounds 240 / 400; 239 kWh in July. Jul 31 23:45 (valley 0.30) 2 kWh: 1 + 1 in tier 2
    # = 0.60 + 0.05; Aug 1 00:00 2 kWh: new month, tier 1 = 0.60. Total 1.25 元
    tier = TierState("2026-01", kwh("1500"), "2026-07", kwh("239"))
    b = bill_of(
        "C1",
        [Interval(at(2026, 7, 31, 23, 45), kwh("2")), Interval(at(2026, 8, 1, 0, 0), kwh("2"))],
        Timeline([beijing()]),
        tier,
    )
    assert b.tier_units == [kwh("3"), kwh("1"), 0] and b.charge_fen == 125
    assert b.tier.month == "2026-08" and b.tier.month_units == kwh("2")
    assert b.tier.year_units == kwh("1504")  # the year keeps counting across the month


def test_summer_sharp_period_only_in_its_season() -> None:
    # 11:00 is sharp (0.6818) in July, peak (0.5683) in September: 1 kWh each = 1.2501 -> 1.25 元
    timeline = Timeline([beijing()])
    b = bill_of(
        "C1", [Interval(at(2026, 7, 15, 11), kwh("1")), Interval(at(2026, 9, 15, 11), kwh("1"))], timeline
    )
    assert b.kwh["sharp"] == kwh("1") and b.kwh["peak"] == kwh("1") and b.charge_fen == 125


def test_contract_version_change_splits_the_day_exactly() -> None:
    # v2 raises peak to 0.600 from 12:00: 11:45 pays v1 0.568, 12:00 pays v2 0.600 -> 1.168 -> 1.17 元
    v2doc = document("zhejiang-residential", version=2, effective_from="2026-03-02T12:00")
    v2doc["tariffs"][0]["seasons"][0]["prices"]["peak"] = "0.6000"
    from protocols.billing import parse_contract

    timeline = Timeline([zhejiang(), parse_contract(v2doc)])
    b = bill_of(
        "C1", [Interval(at(2026, 3, 2, 11, 45), kwh("1")), Interval(at(2026, 3, 2, 12), kwh("1"))], timeline
    )
    assert b.contracts == ("ZJ-RES@1", "ZJ-RES@2")
    assert b.tou_exact == 116_800_000 and b.charge_fen == 117


def test_contract_change_at_month_and_year_boundary_keeps_accumulating() -> None:
    # v2 from 2026-01-01 00:00 with monthly tiers 200 / 400: the annual count of v1 does not carry into a
    # monthly basis, the month's does. 2025-12-31 23:45: v1 annual, 2800 kWh billed -> tier 2 adder 0.05;
    # 2026-01-01 00:00: v2 monthly, 0 kWh in January -> tier 1. 1 kWh each, valley 0.288: 0.626 -> 0.63 元
    v2doc = document("zhejiang-residential", version=2, effective_from="2026-01-01T00:00")
    v2doc["tariffs"][0]["tiers"] = {
        "basis": "monthly",
        "bounds_kwh": ["200", "400"],
        "adders": ["0.05", "0.30"],
    }
    from protocols.billing import parse_contract

    timeline = Timeline([zhejiang(effective_from="2025-01-01T00:00"), parse_contract(v2doc)])
    tier = TierState("2025-01", kwh("2800"), "2025-12", kwh("250"))
    b = bill_of(
        "C1",
        [Interval(at(2025, 12, 31, 23, 45), kwh("1")), Interval(at(2026, 1, 1), kwh("1"))],
        timeline,
        tier,
    )
    assert b.contracts == ("ZJ-RES@1", "ZJ-RES@2") and b.charge_fen == 63


def test_feed_in_credits_export() -> None:
    # import 1 kWh valley 0.288, export 2 kWh at 0.4153: 0.288 - 0.8306 = -0.5426 -> -0.54 元
    b = bill_of("C1", [Interval(at(2026, 3, 2, 3), kwh("1"), kwh("2"))], Timeline([zhejiang()]))
    assert b.export_units == kwh("2") and b.charge_fen == -54


def test_net_export_per_interval() -> None:
    # small-business flat 0.65, net credit 0.3598: (3 - 1) x 0.65 = 1.30; (1 - 3) -> 2 x -0.3598 = -0.7196
    # total 0.5804 -> 0.58 元; the netted interval pays no import
    timeline = Timeline([beijing()])
    b = bill_of(
        "C0017",
        [Interval(at(2026, 7, 2, 10), kwh("3"), kwh("1")), Interval(at(2026, 7, 2, 11), kwh("1"), kwh("3"))],
        timeline,
        tariff="other",
    )
    assert b.kwh["flat"] == kwh("2") and b.export_units == kwh("2") and b.charge_fen == 58


def test_rounding_half_away_from_zero_once_per_day() -> None:
    # 12.34 kWh at 0.5583 = 6.889422 -> 6.89; two intervals of 0.0050 kWh at 1.0000 = 0.0100 exactly:
    # rounding each would give 0.01 + 0.01, rounding the day gives 0.01
    doc = document("zhejiang-residential")
    doc["tariffs"][0]["seasons"][0]["prices"] = {"peak": "0.5583", "valley": "1.0000"}
    from protocols.billing import parse_contract

    timeline = Timeline([parse_contract(doc)])
    assert bill_of("C1", [Interval(at(2026, 3, 2, 10), kwh("12.34"))], timeline).charge_fen == 689
    half = bill_of("C1", [Interval(at(2026, 3, 2, 1), 50), Interval(at(2026, 3, 2, 2), 50)], timeline)
    assert half.exact == 1_000_000 and half.charge_fen == 1
    assert bill_of("C1", [Interval(at(2026, 3, 2, 1), 50)], timeline).charge_fen == 1  # 0.005 -> 0.01


def test_uncovered_energy_is_counted_not_billed() -> None:
    b = bill_of(
        "C1",
        [Interval(at(2025, 12, 31, 10), kwh("1")), Interval(at(2026, 1, 1, 10), kwh("1"))],
        Timeline([zhejiang()]),
    )
    assert b.unbilled_units == kwh("1") and b.charge_fen == 57  # only 2026: peak 0.568


def test_priced_in_pieces_equals_priced_at_once() -> None:
    day = at(2026, 3, 2)
    intervals = [Interval(day + 900 * k, 1234 * (k % 7 + 1)) for k in range(96)]
    timeline = Timeline([zhejiang()])
    tier = TierState("2026-01", kwh("2750"), "2026-03", 0)
    once = bill_of("C1", intervals, timeline, tier.copy())
    pieces = DayBill("C1", "d", tier.copy())
    for start in range(0, 96, 5):
        price(pieces, intervals[start : start + 5], timeline, "residential", TZ)
    assert pieces.to_json() == once.to_json()
    with pytest.raises(ValueError, match="not after"):
        price(pieces, intervals[:1], timeline, "residential", TZ)


def test_tier_split() -> None:
    assert tier_split(0, 100, (50, 80)) == [50, 30, 20]
    assert tier_split(90, 5, (50, 80)) == [0, 0, 5]
    assert tier_split(10, 0, (50,)) == [0, 0]


def test_timeline_series_and_coverage() -> None:
    b = beijing()
    z = zhejiang(effective_until="2026-07-01T00:00")
    timeline = Timeline([z, b])
    june, july = at(2026, 6, 30, 12), at(2026, 7, 1, 12)
    assert [c.key for c in timeline.in_force(june)] == ["ZJ-RES@1"]
    assert [c.key for c in timeline.in_force(july)] == ["BJ-TOU@1"]
    before = timeline.terms(july, "C0001", "residential")  # (cached for every customer no contract names)
    terms = timeline.terms(july, "C0017", "residential")
    assert terms is not None and terms[1].id == "small-business"  # explicit beats "*"
    assert before is not None and before[1].id != "small-business"
    assert timeline.terms(july, "C0002", "residential") == before
    assert timeline.terms(july, "C0001", "commercial") is None  # no "*" for that tariff id


def test_customers_on_the_same_terms_share_one_cursor() -> None:
    # each open bill held its own cursor (~0.2 kB): 2,400 customers ~0.5 MB of equal ones
    day = at(2026, 3, 2)
    timeline, pricing = Timeline([zhejiang()]), Pricing(TZ)
    quarters = [Interval(day + 900 * k, 1000) for k in range(4)]
    bills = [bill_of(c, quarters, timeline, pricing=pricing) for c in ("C1", "C2")]
    assert bills[0].cursor is not None and bills[0].cursor is bills[1].cursor
    assert bills[0].contracts is bills[1].contracts and bills[0].tier.month is bills[1].tier.month
    other = Timeline([zhejiang()])  # other contract objects: a cursor of its own, same figures
    third = bill_of("C3", quarters, other, pricing=pricing)
    assert third.cursor is not bills[0].cursor and third.to_json() | {"customer": "C1"} == bills[0].to_json()
    # another book's pricing (another app in the process): the same figures, nothing shared
    fourth = bill_of("C1", quarters, timeline, pricing=Pricing(TZ))
    assert fourth.to_json() == bills[0].to_json() and fourth.cursor is not bills[0].cursor
    assert fourth.contracts is not bills[0].contracts


def test_a_bill_past_int32_units_goes_on_counting_in_int64() -> None:
    # 150,000 kWh at 02:00 (valley) and again at 10:00 (peak): the valley's units pass 2**31 (a
    # day's 214,748 kWh) in the second interval's tier count, the bill's array turns int64
    big = kwh("150000")
    b = bill_of(
        "C1", [Interval(at(2026, 3, 2, 2), big), Interval(at(2026, 3, 2, 10), big)], Timeline([zhejiang()])
    )
    assert b.units.typecode == "q" and b.kwh == {"sharp": 0, "peak": big, "flat": 0, "valley": big}
    assert sum(b.tier_units) == 2 * big > 2**31 and b.tier.year_units == 2 * big
    small = bill_of("C1", [Interval(at(2026, 3, 2, 2), kwh("1"))], Timeline([zhejiang()]))
    assert small.units.typecode == "i" and small.period_units == [0, 0, 0, kwh("1")]
