"""The book runs for years: what it keeps per day or per quarter-hour stays bounded."""

from __future__ import annotations

import json
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from apps.billing.book import Account, Book, ClosedDay, code_name, name_code, pack_closed
from apps.billing.tariff import TierState
from protocols.ledger import Record

TZ = ZoneInfo("Asia/Shanghai")
T0 = 1_717_171_200  # 2024-06-01 00:00 +08:00
DAYS = 60


def test_a_year_of_days_folds_into_bounded_totals_and_memos() -> None:
    book = Book(TZ, keep_days=3)
    seq = 0
    for d in range(DAYS):
        day = (date(2024, 6, 1) + timedelta(days=d)).isoformat()
        for q in range(96):  # a debit every quarter-hour, a top-up a day
            seq += 1
            ts = T0 + d * 86400 + q * 900
            assert book.local_date(ts) == day
            book.day_bounds(day)
            book.next_day(day)
            debit = {"cycle": q, "entries": [["c1", day, 5, 0]]}
            book.apply(Record(seq, ts * 1000, "debit", None, debit, "", ""))
        seq += 1
        book.apply(
            Record(seq, (T0 + d * 86400) * 1000, "topup", None, {"customer": "c1", "fen": 100}, "", "")
        )
    assert book.accounts["c1"].balance == DAYS * (100 - 96 * 5)  # the fold itself is unchanged
    assert len(book.days) <= 10  # of 60 days seen
    newest = (date(2024, 6, 1) + timedelta(days=DAYS - 1)).isoformat()
    assert book.days[newest].debits == 96 * 5 and book.days[newest].credits == 100
    memos = (book._dates, book._bounds, book._next)
    assert all(len(m) <= 8 * 96 for m in memos), [len(m) for m in memos]  # of 60 x 96 quarter-hours


def test_open_day_debits_kept_flat_fold_and_round_trip_a_checkpoint() -> None:
    """An account keeps its open days' debits as one flat tuple (no dict per customer): they add
    up per day, keep the order days were first debited, leave with the day's charge, and a
    checkpoint restores them as they were."""
    book = Book(TZ, keep_days=3)
    entries = [["c1", "2024-06-01", 5, -5], ["c1", "2024-06-02", 7, -12], ["c1", "2024-06-01", 3, -15]]
    book.apply(Record(1, T0 * 1000, "debit", None, {"cycle": 1, "entries": entries}, "", ""))
    acc = book.accounts["c1"]
    assert acc.debited == ("2024-06-01", 8, "2024-06-02", 7)
    assert acc.debits() == {"2024-06-01": 8, "2024-06-02": 7}
    assert (acc.debit_of("2024-06-01"), acc.debit_of("2024-06-03"), acc.balance) == (8, 0, -15)
    assert acc.closed == ()  # no closed day yet
    assert acc.tier is Account("c2").tier == TierState()  # one zero tier count for all such accounts
    restored = Book(TZ, keep_days=3)
    restored.restore(book.checkpoint([], 0))
    assert restored.accounts["c1"].debited == acc.debited and restored.accounts["c1"].closed == ()
    tier = ["2024-01", 8, "2024-06", 8]
    charge = {
        "customer": "c1",
        "meter": "m1",
        "date": "2024-06-01",
        "charge_fen": 8,
        "tier_start": ["", 0, "", 0],
        "tier": tier,
    }
    book.apply(Record(2, T0 * 1000, "charge", None, charge, "", ""))
    assert (
        acc.debits() == {"2024-06-02": 7}
        and [c.day for c in acc.closed] == ["2024-06-01"]
        and acc.tier == acc.closed[0].tier_end
        and acc.closed[0].tier_start == Account("c2").tier
    )
    book.apply(
        Record(3, T0 * 1000, "charge", None, charge | {"date": "2024-06-02", "tier_start": tier}, "", "")
    )
    assert [c.day for c in acc.closed] == ["2024-06-01", "2024-06-02"] and acc.debits() == {}
    assert acc.closed[1].tier_start == acc.closed[0].tier_end and acc.oldest_closed() == "2024-06-01"
    restored.restore(book.checkpoint([], 0))
    assert restored.accounts["c1"].debits() == {}
    assert restored.accounts["c1"].closed == acc.closed


def test_closed_days_packed_in_ints_round_trip_exactly() -> None:
    """An account keeps its closed days as ints (day, charge, tier counts); the days it gives back,
    corrections, forgetting past ``keep_days`` and a checkpoint's JSON are as with objects."""
    names = [
        "",
        "2024-06-01",
        "0001-01-01",
        "9999-12-31",
        "2024-01",
        "0001-01",
        "9999-12",
        "2024-1",
        "x",
        "2024-13",
    ]
    assert [code_name(name_code(n)) for n in names] == names
    assert len({name_code(n) for n in names}) == len(names)
    days = [
        ClosedDay("2024-06-01", -(1 << 62), TierState(), TierState("2024-01", 8, "2024-06", 8)),
        ClosedDay("2024-06-02", 7, TierState("2024-01", 8, "2024-06", 8), TierState("odd", 1 << 40, "", 0)),
    ]
    packed = pack_closed(days)
    assert pack_closed([]) is None and packed is not None and len(packed) == 2 * 10
    assert Account("c", packed=packed).closed == tuple(days)
    book = Book(TZ, keep_days=2)
    tiers = [["2024-01", 10 * d, "2024-06", 10 * d] for d in range(5)]
    for d in range(4):
        day = f"2024-06-0{d + 1}"
        charge = {"customer": "c1", "meter": "m1", "date": day, "charge_fen": 100 + d}
        book.apply(
            Record(
                d + 1,
                T0 * 1000,
                "charge",
                None,
                charge | {"tier_start": tiers[d], "tier": tiers[d + 1]},
                "",
                "",
            )
        )
    acc = book.accounts["c1"]
    assert [(c.day, c.charge_fen) for c in acc.closed] == [("2024-06-03", 102), ("2024-06-04", 103)]
    assert acc.oldest_closed() == "2024-06-03" and acc.closed_day("2024-06-02") is None
    correction = {"customer": "c1", "date": "2024-06-03", "fen": -5, "tier": ["2024-01", 99, "2024-06", 98]}
    book.apply(Record(9, T0 * 1000, "correction", None, correction, "", ""))
    assert acc.closed_day("2024-06-03") == ClosedDay(
        "2024-06-03", 97, TierState.from_json(tiers[2]), TierState("2024-01", 99, "2024-06", 98)
    )
    assert json.loads(json.dumps(book.checkpoint([], 0)))["accounts"]["c1"]["closed"] == {
        "2024-06-03": [97, tiers[2], ["2024-01", 99, "2024-06", 98]],
        "2024-06-04": [103, tiers[3], tiers[4]],
    }
    restored = Book(TZ, keep_days=2)
    restored.restore(book.checkpoint([], 0))
    assert restored.accounts["c1"].closed == acc.closed and restored.accounts["c1"].packed == acc.packed
