"""The book runs for years: what it keeps per day or per quarter-hour stays bounded."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from apps.billing.book import Account, Book
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
        and acc.tier is acc.closed[0].tier_end
        and acc.closed[0].tier_start is Account("c2").tier  # equal counts: one object
    )
    book.apply(
        Record(3, T0 * 1000, "charge", None, charge | {"date": "2024-06-02", "tier_start": tier}, "", "")
    )
    assert [c.day for c in acc.closed] == ["2024-06-01", "2024-06-02"] and acc.debits() == {}
    assert acc.closed[1].tier_start is acc.closed[0].tier_end and acc.oldest_closed() == "2024-06-01"
    restored.restore(book.checkpoint([], 0))
    assert restored.accounts["c1"].debits() == {}
    assert restored.accounts["c1"].closed == acc.closed
