"""Past days given to the store: the same results as a book that keeps every point, and only
today's points in RAM.

The reference is the computation the app made before (every day of the window built from a book
that keeps every point, ``engine.analyse`` / ``registers_and_theft`` on it); the app under test
gives its past days to a fake store and takes them back, late rows of a stored day included.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest

from apps.lineloss import service as lineloss_service
from apps.lineloss.book import PART_METERS, Book, Layouts, pack, unpack, unpack_parts
from apps.lineloss.engine import DayResult, analyse, registers_and_theft
from apps.lineloss.service import Config, LineLossService
from apps.lineloss.window import Day
from runtime.bus import Bus
from runtime.model import Reading

from .test_service import D0, DAY, TZ, ctx_at, row, started

METERS = ("T", "bu1", "a", "b")
DAYS = 6


def day_rows(
    rng: np.random.Generator, day: int
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Curve and freeze rows of every meter for one day: noisy loads, phase data for V x I x PF,
    a few points not read; ``b``'s register stops from day 3 on while its front end measures."""
    start = D0 + day * DAY
    out = {}
    load = rng.uniform(0.1, 0.6, size=(2, 97))  # a and b, kWh per 15 min
    per = {"a": load[0], "b": load[1]}
    per["bu1"] = (per["a"] + per["b"]) * 1.02
    per["T"] = per["bu1"] * 1.01 / 100
    for meter in METERS:
        e = per[meter]
        base = 1000.0 + day * 40.0 + np.concatenate([[0.0], np.cumsum(e[:-1])])
        if meter == "b" and day >= 3:
            base[40:] = base[40]
        curve = []
        for k in range(97):
            if rng.random() < 0.03:
                continue  # not read
            ts = start + 900 * k
            kw = float(e[k] * 4)
            curve += [
                row("energy.active.import.total", round(float(base[k]), 2), ts),
                row("energy.active.export.total", 0.0, ts),
                row("voltage.a", round(230.0 + float(rng.normal(0, 2)), 1), ts),
                row("current.a", round(kw * 1000 / 230.0, 3), ts),
                row("power_factor.total", 0.98, ts),
                row("power.active.total", round(kw, 4), ts),
            ]
        freezes = [row("daily.energy.active.import.total", round(float(base[0]), 2), start)]
        out[meter] = (curve, freezes)
    return out


def reference(full: Book, svc: LineLossService, last: date, since: float | None) -> list[Day]:
    """The window as the app built it before: every day from a book that keeps every point."""
    assert svc.layout is not None
    history = svc.config.settings.history_days
    days = [last - timedelta(days=k) for k in range(history - 1, -1, -1)]
    meters = [m.id for m in svc.layout.meters]
    return [
        Day.of(x.isoformat(), full.readings(x, meters), svc.layout)
        for x in days
        if x in full.days and (since is None or full.midnight(x) > since)
    ]


def as_json(result: DayResult) -> str:
    return json.dumps(
        [
            [d.to_json() for d in result.days],
            result.intervals.to_json(),
            [a.to_json() for a in result.anomalies],
        ],
        sort_keys=True,
    )


async def test_days_given_to_the_store_give_the_results_of_a_book_that_keeps_everything() -> None:
    rng = np.random.default_rng(15)
    ctx = ctx_at(D0 - 3600)
    svc = await started(ctx)
    full = Book(TZ, keep_days=svc.book.keep_days)
    for day in range(DAYS):
        for meter, (curve, freezes) in day_rows(rng, day).items():
            for book in (svc.book, full):
                book.add("curve", meter, curve)
                book.add("freeze", meter, freezes)
        for hour in (1, 13):
            now = D0 + (day + 1) * DAY + hour * 3600
            await svc.update(now)
        assert set(svc.book.days) <= {date(2024, 6, 2) + timedelta(days=day + 1)}  # past days: stored
    assert svc.counters["days_computed"] >= DAYS - 1
    # late rows for a day already in the store (补抄 of a's afternoon, a corrected freeze of b)
    old = date(2024, 6, 4)
    assert old in svc.book.cold
    late = [row("energy.active.import.total", 1085.5 + k, D0 + 2 * DAY + 900 * (60 + k)) for k in range(5)]
    freeze = [row("daily.energy.active.import.total", 1130.0, D0 + 3 * DAY)]
    for book in (svc.book, full):
        book.add("curve", "a", late)
        book.add("freeze", "b", freeze)
    assert len(svc.book.cold[old].late) == 5 + 1
    for key in sorted(k for k in ctx.store.kv if k.endswith("/ends"))[::2]:
        del ctx.store.kv[key]  # days stored before their ends had a key: from their points
    assert svc.records is not None and svc.layout is not None
    settings = svc.config.settings
    found = 0
    for d in svc.book.dates()[:-1]:
        if svc.book.midnight(d) <= svc.since:
            continue
        got = await svc.compute(d, force=True)
        assert got is not None
        await svc.update(now)  # (nothing due) the days taken back go to the store again
        assert len(svc.book.days) == 1
        want = analyse(svc.records, svc.layout, reference(full, svc, d, svc.since), settings)
        assert as_json(got) == as_json(want), d
        found += len(got.anomalies)
    assert found > 0  # the stopped register of b is in the results compared
    # the hourly early look: today with the days before it
    today = svc.book.dates()[-1]
    early = await svc._window(today, whole_only=False)
    assert len(svc.book.days) == 3  # today, and the two days before it taken back
    want_early = registers_and_theft(svc.layout, reference(full, svc, today, None), settings)
    got_early = registers_and_theft(svc.layout, early, settings)
    assert [a.to_json() for a in got_early] == [a.to_json() for a in want_early]


def test_a_book_s_meter_days_share_its_row_layouts_and_no_other_book_s() -> None:
    """Meter-days with the same rows hold one tuple of them, kept by their book (``Book.layouts``,
    also for a day unpacked from the store): two books in one process share none."""
    rng = np.random.default_rng(4)
    rows = day_rows(rng, 0)
    first, second = Book(TZ), Book(TZ)
    for book in (first, second):
        for meter, (curve, freezes) in rows.items():
            book.add("curve", meter, curve)
            book.add("freeze", meter, freezes)
    d = date(2024, 6, 2)
    a, b, other = first.days[d]["a"], first.days[d]["b"], second.days[d]["a"]
    assert a._rows == b._rows == other._rows and a._rows is b._rows and a._rows is not other._rows
    back = unpack(json.loads(json.dumps(pack(first.days[d]))), first.layouts)
    assert back["a"]._rows is a._rows
    assert all(rows_ is not second.layouts.shared(rows_) for rows_ in first.layouts._tuples)


def test_a_packed_day_comes_back_with_the_same_items_and_values() -> None:
    rng = np.random.default_rng(2)
    book = Book(TZ)
    for meter, (curve, freezes) in day_rows(rng, 0).items():
        book.add("curve", meter, curve[: 6 * 50])
        book.add("freeze", meter, freezes)
    book.add(
        "curve", "c", [row("voltage.b", float("nan"), D0), row("voltage.b", 231.2, D0 + 900)]
    )  # NaN: skipped
    d = date(2024, 6, 2)
    points = book.days[d]
    back = unpack(json.loads(json.dumps(pack(points))), book.layouts)  # through the store's JSON
    assert set(back) == set(points)
    for meter, md in points.items():
        assert set(back[meter].values) == set(md.values) and set(back[meter].freeze) == set(md.freeze)
        for item, a in md.values.items():
            np.testing.assert_array_equal(back[meter].values[item], a)
        for item, a in md.freeze.items():
            np.testing.assert_array_equal(back[meter].freeze[item], a)
    back["a"].put("va", 3, 1.0, book.layouts)  # the book writes into an unpacked day
    assert back["a"].values["va"][3] == 1.0


def test_a_big_day_goes_to_the_store_in_parts_and_comes_back_whole() -> None:
    book = Book(TZ)
    meters = [f"m{j}" for j in range(2 * PART_METERS + 5)]
    for j, meter in enumerate(meters):
        book.add("curve", meter, [row("voltage.a", 200.0 + j / 10, D0 + 900 * k) for k in range(4)])
    d = date(2024, 6, 2)
    parts = book.chill(d)
    assert parts is not None and len(parts) == 3
    assert all(len(json.dumps(p)) < 1_500_000 for p in parts)  # under the isolation wire's 4 MB frames
    assert d in book.cold and d not in book.days
    book.add("curve", "m7", [row("voltage.a", 1.5, D0 + 900 * 9)])  # a late row, replayed
    book.thaw(d, json.loads(json.dumps(parts)))
    assert list(book.days[d]) == meters
    assert book.days[d]["m260"].values["va"][3] == 226.0 and book.days[d]["m7"].values["va"][9] == 1.5
    # a part lost from the store: the day comes back with what its energies need only
    parts = book.chill(d)
    assert parts is not None
    ends = json.loads(json.dumps(book.ends_of(d)))
    book.cool()
    book.warm(d, ends)
    book.thaw(d, [parts[0], None, parts[2]])
    assert "va" not in book.days[d]["m7"].values and d not in book.stored
    assert all(p is not None for p in book.chill(d) or [])  # packed whole again


def test_cold_days_hold_their_ends_until_cooled_and_warm_again_with_the_rows_since() -> None:
    book = Book(TZ)
    days = [date(2024, 6, 2) + timedelta(days=n) for n in range(3)]
    stored = {}
    for n, d in enumerate(days):
        for meter in ("a", "b"):
            book.add("curve", meter, [row("energy.active.import.total", 10.0 + n, D0 + DAY * n + 900)])
            book.add("freeze", meter, [row("daily.energy.active.import.total", 9.5 + n, D0 + DAY * n)])
        book.chill(d)
        stored[d] = json.loads(json.dumps(book.ends_of(d)))  # through the store's JSON
    book.cool()
    assert all(c.ends is None and not book.is_warm(d) for d, c in book.cold.items())  # rows since only
    book.add("curve", "c", [row("energy.active.import.total", 7.5, D0 + 2 * DAY)])  # 06-04 00:00, new meter
    book.add("freeze", "a", [row("daily.energy.active.import.total", 1 / 3, D0 + 3 * DAY)])  # not decimal
    for d in days:
        book.warm(d, stored[d])
    assert list(book.cold[days[1]].ends.rows) == ["a", "b", "c"]  # type: ignore[union-attr]
    assert book.readings(days[1], ["c"]).curve_forward[0, -1] == 7.5
    assert book.readings(days[2], ["c"]).curve_forward[0, 0] == 7.5
    assert np.isnan(book.readings(days[0], ["c"]).curve_forward[0]).all()
    got = book.readings(days[2], ["a", "b"]).freeze_forward
    assert got[0].tolist() == [11.5, 1 / 3] and got[1, 0] == 11.5 and np.isnan(got[1, 1])
    book.cool()
    book.warm(days[0], None)  # a copy lost: the rows since alone (06-03's freeze closes it)
    lost = book.readings(days[0], ["a"])
    assert np.isnan(lost.freeze_forward[0, 0]) and lost.freeze_forward[0, 1] == 10.5


def test_only_the_parts_with_a_changed_meter_are_packed_again() -> None:
    book = Book(TZ)
    meters = [f"m{j}" for j in range(2 * PART_METERS + 5)]
    for meter in meters:
        book.add("curve", meter, [row("voltage.a", 230.0, D0 + 900 * k) for k in range(4)])
    d = date(2024, 6, 2)
    first = book.chill(d)
    assert first is not None and all(p is not None for p in first)
    book.thaw(d, first)
    assert book.chill(d) is None  # taken back, nothing changed: the stored copy stands
    book.add("curve", meters[PART_METERS + 1], [row("voltage.a", 229.0, D0 + 900 * 5)])  # cold: a late row
    book.thaw(d, first)
    again = book.chill(d)
    assert again is not None and [p is not None for p in again] == [False, True, False]
    book.thaw(d, [first[0], again[1], first[2]])
    assert book.days[d][meters[PART_METERS + 1]].values["va"][5] == 229.0


async def fed(ctx: Any, days: int) -> LineLossService:
    """A started app given ``days`` days of ``day_rows`` (seed 7), updated half an hour into the next each."""
    rng = np.random.default_rng(7)
    svc = await started(ctx)
    for day in range(days):
        for meter, (curve, freezes) in day_rows(rng, day).items():
            svc.book.add("curve", meter, curve)
            svc.book.add("freeze", meter, freezes)
        await svc.update(D0 + (day + 1) * DAY + 1800)
    return svc


async def test_between_updates_the_app_holds_only_todays_points_and_a_few_bytes_a_meter_day() -> None:
    # before: 9 days x ~9 kB a meter in RAM (2,400 meters ~190 MB) and today's Day (~10 kB a meter)
    ctx = ctx_at(D0 - 3600)
    days = 12
    svc = await fed(ctx, days)
    book = svc.book
    assert list(book.days) == [date(2024, 6, 2) + timedelta(days=days)]  # today only: the midnight point
    assert len(book.cold) == book.keep_days - 1 and svc._days == {}
    assert all(c.ends is None and not c.late for c in book.cold.values())  # their ends: in the store
    cold = sum(sys.getsizeof(c) + sys.getsizeof(c.late) for c in book.cold.values())
    assert cold / len(book.cold) < 200  # bytes a cold day, whatever its meters
    stored = sorted(k for k in ctx.store.kv if k.startswith("book/"))
    names = [f"book/{d.isoformat()}" for d in sorted(book.cold)]
    assert stored == sorted([*names, *(f"{n}/0" for n in names), *(f"{n}/ends" for n in names)])


async def test_a_restart_keeps_the_stored_days_whole_and_forgets_those_that_left_the_window() -> None:
    rng = np.random.default_rng(7)
    ctx = ctx_at(D0 - 3600)
    svc = await started(ctx)
    for day in range(3):
        for meter, (curve, freezes) in day_rows(rng, day).items():
            svc.book.add("curve", meter, curve)
            svc.book.add("freeze", meter, freezes)
            # what acquisition put in the readings table: the energies (and the freezes)
            for r in curve + freezes:
                if r["quantity"] in ("energy.active.import.total", "daily.energy.active.import.total"):
                    ctx.store.readings.append(Reading(meter, r["quantity"], r["value"], "kWh", r["ts"]))
        await svc.update(D0 + (day + 1) * DAY + 3600)
    d = date(2024, 6, 3)
    stored = {k: v for k, v in ctx.store.kv.items() if k.startswith(f"book/{d.isoformat()}/")}
    assert stored and "va" in unpack(stored[f"book/{d.isoformat()}/0"], svc.book.layouts)["a"].values
    assert f"book/{d.isoformat()}/ends" in stored
    # a new process, the same store, 10 minutes into 5 June: 3 June comes back from its freezes
    ctx.clock.t = D0 + 3 * DAY + 600
    ctx.bus = Bus(clock=ctx.clock)
    ctx.store.kv["book/2024-05-20"] = 1  # a day that left the window while the terminal was off
    ctx.store.kv["book/2024-05-20/0"] = pack({})
    ctx.store.kv["book/2024-05-20/ends"] = {"meters": [], "ends": ""}
    ctx.store.kv["book"] = sorted([*ctx.store.kv["book"], "2024-05-20"])
    again = LineLossService(ctx, Config.parse({}))
    await again.start()
    await again.update(D0 + 3 * DAY + 900)
    after = {k: v for k, v in ctx.store.kv.items() if k.startswith(f"book/{d.isoformat()}/")}
    assert after == stored  # not overwritten with the energies alone
    assert not [k for k in ctx.store.kv if k.startswith("book/2024-05-20")]
    assert "2024-05-20" not in ctx.store.kv["book"]
    parts = ctx.store.kv[f"book/{d.isoformat()}"]
    again.book.thaw(d, [ctx.store.kv[f"book/{d.isoformat()}/{i}"] for i in range(parts)])
    np.testing.assert_array_equal(
        again.book.days[d]["a"].values["va"],
        unpack(stored[f"book/{d.isoformat()}/0"], again.book.layouts)["a"].values["va"],
    )


async def test_the_app_unpacks_a_cold_days_points_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # ~1 s at 2,400 meters: on the loop's thread it held every other app (and the watchdog's
    # heartbeat) that long each time a day's causes were looked at again
    threads: list[str] = []

    def unpack_here(parts: Any, layouts: Layouts) -> Any:
        threads.append(threading.current_thread().name)
        return unpack_parts(parts, layouts)

    monkeypatch.setattr(lineloss_service, "unpack_parts", unpack_here)
    svc = await fed(ctx_at(D0 - 3600), 4)
    assert threads and threading.current_thread().name not in threads
    assert len(svc.book.cold) >= 2  # and the days went back to the store after


def test_a_cold_days_ends_take_late_rows_while_held_and_come_back_exact() -> None:
    book = Book(TZ)
    d = date(2024, 6, 2)
    book.add("curve", "a", [row("energy.active.import.total", 10.25, D0)])
    book.add("curve", "b", [row("energy.active.import.total", 20.5, D0)])
    book.chill(d)
    packed = book.ends_of(d)
    book.add("curve", "c", [row("energy.active.import.total", 1 / 3, D0 + DAY)])  # 06-02 24:00, a new meter
    held = book.readings(d, ["a", "b", "c"]).curve_forward
    book.cool()
    book.warm(d, json.loads(json.dumps(packed)))
    got = book.readings(d, ["a", "b", "c"]).curve_forward
    np.testing.assert_array_equal(got, held)
    assert (got[0, 0], got[1, 0], got[2, -1]) == (10.25, 20.5, 1 / 3)
    assert np.isnan(got[2, 0]) and np.isnan(got[0, -1])


def test_a_cold_days_late_rows_come_back_in_order_and_only_a_stored_days_meters_are_listed() -> None:
    book = Book(TZ)
    d = date(2024, 6, 2)
    assert book.add("curve", "m1", [row("voltage.a", 230.0, D0 + 900)]) == {d}
    assert d not in book.changed  # never stored: packed whole, no list of meters
    book.chill(d)
    rows = [
        ("curve", "m1", row("energy.active.import.total", 12.25, D0 + DAY)),  # point 96 (the midnight)
        ("curve", "m2", row("power_factor.total", -0.875, D0 + 900 * 7)),
        ("freeze", "m1", row("daily.energy.active.export.total", 1.5, D0 + DAY)),  # the closing freeze
        ("curve", "m1", row("voltage.c", 231.5, D0 + 900 * 95)),
    ]
    for kind, meter, r in rows:
        book.add(kind, "".join(meter), [r])  # a string of its own, as each message names its meter
    late = book.cold[d].late
    assert list(late) == [
        ("m1", "curve", "forward", 96, 12.25),
        ("m2", "curve", "pf", 7, -0.875),
        ("m1", "freeze", "reverse", 1, 1.5),
        ("m1", "curve", "vc", 95, 231.5),
    ]
    assert len(late) == 4 and len({id(device) for device, *_ in late}) == 2  # one string a meter
    assert d not in book.changed
    book.thaw(d, [pack({"m1": _one("va", 1, 230.0)})])  # the stored copy, and the rows since
    assert book.days[d]["m2"].values["pf"][7] == -0.875 and book.days[d]["m1"].values["va"][1] == 230.0
    assert book.days[d]["m1"].values["vc"][95] == 231.5 and book.days[d]["m1"].freeze["reverse"][1] == 1.5
    assert book.changed[d] == {"m1", "m2"}  # stored: the meters whose rows are not in the stored copy


def _one(item: str, k: int, value: float) -> Any:
    from apps.lineloss.book import MeterDay

    md = MeterDay()
    md.put(item, k, value, Layouts())
    return md
