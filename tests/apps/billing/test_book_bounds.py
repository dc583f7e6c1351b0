"""The book runs for years: what it keeps per day or per quarter-hour stays bounded."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from apps.billing.book import Book
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
