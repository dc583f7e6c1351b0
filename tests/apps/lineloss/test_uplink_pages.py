"""A day of a ~2,000-meter station area reaches the master station whole, in messages that each fit
the uplink.

With a scope per meter box (~1,700 boxes) a day message is ~600 kB and its intervals several MB,
over ``MAX_MESSAGE_BYTES``: the service sends them as ``protocols.cloud.paged_lists`` parts, and
``ttu cloud lineloss`` joins them, showing a revision only once all its parts have arrived.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.lineloss.cloud import bodies
from apps.lineloss.engine import Intervals
from protocols.cloud import MAX_MESSAGE_BYTES, StoredResult, UpBatch, UpMessage, json_size, paged_lists
from runtime.cli import main
from sim.cloud.db import CloudDb
from tests.apps.lineloss.test_dashboard import THEFT, day

T0 = 1_717_200_000.0
BOXES = [f"F{k % 8 + 1}-X{k:04d}" for k in range(1_700)]


def big_day(revision: int) -> dict[str, Any]:
    rates: dict[str, float | None] = {"station": 4.2, **{f"F{k}": 3.0 for k in range(1, 9)}}
    rates.update(dict.fromkeys(BOXES, 2.0 + revision))  # what tells the revisions apart
    return {**day("2024-06-03", revision, rates, [THEFT]), "computed_at": T0 + revision}


def big_intervals(revision: int) -> dict[str, Any]:
    scopes = ("station", *BOXES)
    values = np.random.default_rng(revision).random((len(scopes), 96))
    iv = Intervals(scopes, values * 10, values, values * 5, np.ones_like(values)).to_json()
    return {"type": "intervals", "date": "2024-06-03", "revision": revision, "computed_at": T0 + revision,
            "start": T0, "step_s": 900, **iv}  # fmt: skip


def store(db: CloudDb, parts: list[dict[str, Any]], first_seq: int = 1) -> None:
    numbered = enumerate(parts, start=first_seq)
    messages = tuple(UpMessage(f"T1:lineloss:{i}", i, T0 + i, b) for i, b in numbered)
    db.ingest_batch(topic="ttu/T1/up/lineloss", batch=UpBatch("T1", "lineloss", messages), now=T0 + 100)


def test_a_station_area_day_goes_up_in_parts_each_within_the_limit() -> None:
    for body in (big_day(1), big_intervals(1)):
        assert json_size(body) > MAX_MESSAGE_BYTES  # the case this guards
        parts = paged_lists(body)
        assert len(parts) > 1 and all(json_size(p) <= MAX_MESSAGE_BYTES for p in parts)
    small = day("2024-06-02", 1, {"station": 3.1}, [])
    assert paged_lists(small) == [small]  # a usual station area: one message, as before


def test_the_master_station_joins_the_parts_and_waits_for_the_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = big_day(1), big_day(2)
    parts_1, parts_2 = paged_lists(first), paged_lists(second)
    intervals = paged_lists(big_intervals(1))
    path = tmp_path / "cloud.sqlite"

    def shown() -> dict[str, Any]:
        assert main(["cloud", "lineloss", "--terminal", "T1", "--json", "--db", str(path)]) == 0
        out: dict[str, Any] = json.loads(capsys.readouterr().out)
        return out

    db = CloudDb(path)
    try:
        store(db, [*parts_1, *intervals, *parts_2[:-1]])  # revision 2's last part has not arrived
    finally:
        db.close()
    got = shown()
    assert {d["loss_rate"] for d in got["days"] if d["scope"] in BOXES} == {3.0}  # revision 1
    assert sorted(d["scope"] for d in got["days"]) == sorted(r["scope"] for r in first["days"])
    db = CloudDb(path)
    try:
        store(db, parts_2[-1:], first_seq=len(parts_1) + len(intervals) + len(parts_2))
    finally:
        db.close()
    got = shown()
    assert {d["loss_rate"] for d in got["days"] if d["scope"] in BOXES} == {4.0}  # revision 2, whole
    assert len(got["days"]) == len(second["days"])
    assert [a["target"] for a in got["anomalies"]] == [THEFT["target"]]

    class Reader:
        def results(self, stream: str, *, terminal: str, limit: int) -> list[StoredResult]:
            with CloudDb(path) as db:
                return list(db.results(stream, terminal=terminal, limit=limit))

    joined = [b for b in bodies(Reader(), "T1") if b["type"] == "intervals"]
    assert joined == [big_intervals(1)]
