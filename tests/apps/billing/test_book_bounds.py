"""The book runs for years: what it keeps per day or per quarter-hour stays bounded."""

from __future__ import annotations

import json
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from apps.billing.book import ODD_NAMES_MAX, Account, Book, ClosedDay, DayNames, OddNamesFull, pack_closed
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
    assert acc.closed(book.names) == ()  # no closed day yet
    assert acc.tier is Account("c2").tier == TierState()  # one zero tier count for all such accounts
    restored = Book(TZ, keep_days=3)
    restored.restore(book.checkpoint([], 0))
    assert (
        restored.accounts["c1"].debited == acc.debited
        and restored.accounts["c1"].closed(restored.names) == ()
    )
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
        and [c.day for c in acc.closed(book.names)] == ["2024-06-01"]
        and acc.tier == acc.closed(book.names)[0].tier_end
        and acc.closed(book.names)[0].tier_start == Account("c2").tier
    )
    book.apply(
        Record(3, T0 * 1000, "charge", None, charge | {"date": "2024-06-02", "tier_start": tier}, "", "")
    )
    closed = acc.closed(book.names)
    assert [c.day for c in closed] == ["2024-06-01", "2024-06-02"] and acc.debits() == {}
    assert closed[1].tier_start == closed[0].tier_end and acc.oldest_closed(book.names) == "2024-06-01"
    restored.restore(book.checkpoint([], 0))
    assert restored.accounts["c1"].debits() == {}
    assert restored.accounts["c1"].closed(restored.names) == closed


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
    table = DayNames()
    assert [table.name(table.code(n)) for n in names] == names
    assert len({table.code(n) for n in names}) == len(names)
    days = [
        ClosedDay("2024-06-01", -(1 << 62), TierState(), TierState("2024-01", 8, "2024-06", 8)),
        ClosedDay("2024-06-02", 7, TierState("2024-01", 8, "2024-06", 8), TierState("odd", 1 << 40, "", 0)),
    ]
    packed = pack_closed(days, table)
    assert pack_closed([], table) is None and packed is not None and len(packed) == 2 * 10
    assert Account("c", packed=packed).closed(table) == tuple(days)
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
    assert [(c.day, c.charge_fen) for c in acc.closed(book.names)] == [
        ("2024-06-03", 102),
        ("2024-06-04", 103),
    ]
    assert acc.oldest_closed(book.names) == "2024-06-03" and acc.closed_day("2024-06-02", book.names) is None
    correction = {"customer": "c1", "date": "2024-06-03", "fen": -5, "tier": ["2024-01", 99, "2024-06", 98]}
    book.apply(Record(9, T0 * 1000, "correction", None, correction, "", ""))
    assert acc.closed_day("2024-06-03", book.names) == ClosedDay(
        "2024-06-03", 97, TierState.from_json(tiers[2]), TierState("2024-01", 99, "2024-06", 98)
    )
    assert json.loads(json.dumps(book.checkpoint([], 0)))["accounts"]["c1"]["closed"] == {
        "2024-06-03": [97, tiers[2], ["2024-01", 99, "2024-06", 98]],
        "2024-06-04": [103, tiers[3], tiers[4]],
    }
    restored = Book(TZ, keep_days=2)
    restored.restore(book.checkpoint([], 0))
    again = restored.accounts["c1"]
    assert again.closed(restored.names) == acc.closed(book.names) and again.packed == acc.packed


def _charge(seq: int, day: str, tier_year: str) -> Record:
    body = {"customer": "c1", "meter": "m1", "date": day, "charge_fen": 1}
    tier = [tier_year, 1, "2024-06", 1]
    return Record(seq, T0 * 1000, "charge", None, body | {"tier_start": tier, "tier": tier}, "", "")


def test_each_book_holds_its_own_bounded_table_of_odd_names() -> None:
    """Odd day or month names (never in a ledger this terminal wrote) are coded per book: two books
    share no table, and a book takes at most ``ODD_NAMES_MAX`` of them; a record (or checkpoint
    account) naming one more is refused, named in the error."""
    first, second = Book(TZ, keep_days=2), Book(TZ, keep_days=2)
    assert first.names is not second.names
    first.apply(_charge(1, "2024-06-01", "odd-a"))
    second.apply(_charge(1, "2024-06-01", "odd-b"))
    assert first.names.code("odd-a") == second.names.code("odd-b")  # each book's first odd name
    assert first.accounts["c1"].closed(first.names)[0].tier_start.year == "odd-a"
    assert second.accounts["c1"].closed(second.names)[0].tier_start.year == "odd-b"
    assert first.names.code("2024-06-01") == second.names.code("2024-06-01")  # plain names: by value
    for n in range(1, ODD_NAMES_MAX):
        first.names.code(f"odd-{n}")
    with pytest.raises(OddNamesFull, match=r"ledger record 2 \(charge\): day or month name 'one more'"):
        first.apply(_charge(2, "2024-06-02", "one more"))
    assert first.names.code("odd-a") == second.names.code("odd-b")  # names already held still code
    checkpoint = second.checkpoint([], 0)
    no_tier = ["", 0, "", 0]
    checkpoint["accounts"]["c1"]["closed"] = {
        f"day {n}": [1, no_tier, no_tier] for n in range(ODD_NAMES_MAX + 1)
    }
    with pytest.raises(OddNamesFull, match="checkpoint, account 'c1'"):
        Book(TZ, keep_days=2).restore(checkpoint)
