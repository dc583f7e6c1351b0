"""Benchmark: what line loss's book and billing's anchors hold per meter once their windows are full.

Not a test. Feeds synthetic 15-min rows (10 % three-phase meters with 10 curve items, the rest
single-phase with 6, daily freezes) into ``apps.lineloss.book.Book`` for ``--days`` days the way
the service keeps them between updates (past days given to the store with ``Book.chill`` where
the code has it; before that change every kept day stayed in RAM, with today's ``Day`` cached),
and billing's ``MeterAnchors`` with ``--anchor-days`` days of points per meter; prints the heap
they hold (tracemalloc) per meter and projected to ``--project`` meters.

Run it on two trees to compare (same script, the tree's code):
    .venv/bin/python -P bench/appmem.py
    PYTHONPATH=/work/main .venv/bin/python -P bench/appmem.py     # main's code
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

TZ = ZoneInfo("Asia/Shanghai")
D0 = datetime(2024, 6, 1, tzinfo=TZ).timestamp()
SINGLE = ("energy.active.import.total", "energy.active.export.total", "voltage.a", "current.a")
THREE = ("voltage.b", "voltage.c", "current.b", "current.c")
BOTH = ("power.active.total", "power_factor.total")


def rows_of(
    meter: int, day: int, rng: np.random.Generator
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    quantities = SINGLE + BOTH + (THREE if meter % 10 == 0 else ())
    start = D0 + 86400 * day
    values = rng.uniform(0, 300, size=(len(quantities), 96))
    curve = [
        {"quantity": q, "value": round(float(values[j, k]), 2), "ts": start + 900 * k, "quality": "good"}
        for k in range(96)
        for j, q in enumerate(quantities)
    ]
    freeze = [
        {
            "quantity": "daily.energy.active.import.total",
            "value": 1000.0 + day,
            "ts": start,
            "quality": "good",
        }
    ]
    return curve, freeze


def _merged(before: str | None, parts: list[Any]) -> str:
    """The stored copy after a ``chill``: its changed parts replaced (None: unchanged)."""
    old = json.loads(before) if before is not None else [None] * len(parts)
    return json.dumps([new if new is not None else was for new, was in zip(parts, old, strict=False)])


def lineloss(meters: int, days: int) -> int:
    from apps.lineloss.book import Book

    rng = np.random.default_rng(1)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    book = Book(TZ, keep_days=9)
    chill = getattr(book, "chill", None)
    cool = getattr(book, "cool", None)  # (the cold days' ends go to the store too)
    stored: dict[Any, str] = {}  # the app's store (not the terminal's RAM: taken off below)

    def give_away(d: Any) -> None:
        packed = chill(d)
        if packed is not None:
            stored[d] = _merged(stored.get(d), packed)
            if cool is not None:
                stored[d, "ends"] = json.dumps(book.ends_of(d))

    for day in range(days):
        today = datetime.fromtimestamp(D0 + 86400 * day, TZ).date()
        if chill is not None:  # the service's update at 00:05: every past day to the store
            for d in [d for d in book.days if d < today]:
                give_away(d)
            if cool is not None:
                book.cool()
        rows = [rows_of(m, day, rng) for m in range(meters)]
        early = 3 * len(rows[0][0]) // 96  # 00:00-00:30: the midnight points, yesterday's last ones
        for m, (curve, freeze) in enumerate(rows):
            book.add("curve", f"m{m}", curve[:early])
            book.add("freeze", f"m{m}", freeze)
        if chill is not None and day > 0:  # 00:30: yesterday computed (taken back, given again)
            yesterday = today - timedelta(days=1)
            book.thaw(yesterday, json.loads(stored[yesterday]))
            give_away(yesterday)
            if cool is not None:
                book.cool()
        for m, (curve, _) in enumerate(rows):
            book.add("curve", f"m{m}", curve[early:])
        del rows
        for d in [d for d in stored if not book.has(d[0] if isinstance(d, tuple) else d)]:
            del stored[d]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base - sum(sys.getsizeof(v) for v in stored.values())
    note = "" if chill is not None else " (+ today's Day, which the service then kept too: ~10 kB a meter)"
    tracemalloc.stop()
    kept = len(book.days) + len(getattr(book, "cold", {}))
    print(f"line loss book: {meters} meters x {kept} days kept: {held / 1e6:.1f} MB held{note}")
    return held


def billing(meters: int, days: int) -> int:
    from apps.billing.energy import Anchor, MeterAnchors

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    anchors: dict[str, MeterAnchors] = {}
    t0 = int(D0)
    for m in range(meters):
        a = anchors[f"m{m}"] = MeterAnchors()
        for k in range(96 * days):
            a.add(Anchor(t0 + 900 * k, 10_000_000 + 37 * k + m, 1000 + k, "curve"))
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"billing anchors: {meters} meters x {days} days: {held / 1e6:.1f} MB held")
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=400)
    parser.add_argument("--days", type=int, default=12, help="days fed to line loss (it keeps 9)")
    parser.add_argument("--anchor-days", type=int, default=4, help="days of anchors billing keeps")
    parser.add_argument("--project", type=int, default=2405, help="meters to project to")
    args = parser.parse_args()
    import apps.lineloss.book as book_module

    print(f"code: {book_module.__file__}")
    scale = args.project / args.meters
    ll = lineloss(args.meters, args.days)
    bl = billing(args.meters, args.anchor_days)
    print(
        f"per meter: line loss {ll / args.meters / 1e3:.1f} kB, billing {bl / args.meters / 1e3:.1f} kB;"
        f" at {args.project} meters: line loss {ll * scale / 1e6:.0f} MB, billing {bl * scale / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    main()
