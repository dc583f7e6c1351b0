"""What a result becomes: station-model corrections, the master station's ``ttu cloud topology``
object and the dashboard's tree; and the transformer's own power samples in the window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.topology import cloud, dashboard, proposals
from apps.topology.identify import identify
from apps.topology.result import PAGED, TopologyResult
from apps.topology.synthetic import Spec, station
from apps.topology.window import STEP_S, Window
from protocols.cloud import MAX_MESSAGE_BYTES, UpBatch, UpMessage, json_size, paged_lists
from protocols.station import Meter, StationModel, apply_ops
from protocols.station import Provenance as Prov
from runtime.cli import main
from sim.cloud.db import CloudDb

T0 = 1_717_200_000.0


def _result(seed: int = 4) -> tuple[TopologyResult, StationModel]:
    spec = Spec(branches=4, wrong_phase=0.15, wrong_branch=0.1, foreign=1, missing=1)
    inputs, _truth = station(spec, seed=seed)
    result = identify(inputs, terminal="T1", computed_at=T0)
    meters = tuple(
        Meter(m.id, m.address, channel=m.channel, phase=m.phase.value, flags=("prepaid",) if k == 0 else ())
        for k, m in enumerate(inputs.meters)
    )
    return result, StationModel(id="S", name="s", version=3, updated_at=None, transformer=None, meters=meters)


def test_corrections_follow_the_result_and_go_out_once() -> None:
    result, model = _result()
    out = proposals.corrections(result, model)
    corrected = {(m.meter_id, d) for m in result.meters for d in ("phase", "branch", "box")
                 if m.dimension(d).outcome == "corrected" and m.status != "foreign"}  # fmt: skip
    assert {(c.id, c.field) for c in out if c.field != "flags"} == corrected and corrected
    for c in out:
        assert c.problem() is None, c  # well-formed: confidence in 0..1, small JSON evidence
        if c.field == "flags":  # a foreign meter keeps its other flags
            before = model.meter(c.id)
            assert before is not None and c.value == (*before.flags, "foreign")
    foreign = {m.meter_id for m in result.meters if m.status == "foreign"}
    assert foreign and {c.id for c in out if c.field == "flags"} == foreign
    # the model takes them (set on existing records, with provenance identified)
    new, changes = apply_ops(model, [c.patch() for c in out if c.field == "phase"],
                             Prov("identified", by="topology", confidence=0.95))  # fmt: skip
    assert changes and all(new.meter(c.id).phase == c.value for c in out if c.field == "phase")  # type: ignore[union-attr]
    ledger = proposals.Ledger()
    assert ledger.fresh(out) == out
    ledger.remember(out)
    again = proposals.Ledger.from_json(json.loads(json.dumps(ledger.to_json())))
    assert again.fresh(proposals.corrections(result, model)) == []


def test_missing_meters_become_additions_placed_where_found() -> None:
    result, model = _result()
    adds = proposals.additions(result, model)
    heard = [m for m in result.missing if m.address]
    assert heard and [c.value["address"] for c in adds] == [m.address for m in heard]
    for c in adds:
        assert c.op == "add" and c.problem() is None and c.value["channel"] == "hplc"


def store(db: CloudDb, bodies: list[dict[str, Any]]) -> None:
    messages = tuple(UpMessage(f"T1:topology:{i}", i, T0 + i, b) for i, b in enumerate(bodies, start=1))
    db.ingest_batch(topic="ttu/T1/up/topology", batch=UpBatch("T1", "topology", messages), now=T0 + 100)


def test_the_cloud_object_is_exactly_the_issue_s(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, _ = _result()
    change = {"type": "change", "meter_id": "m-1", "from": "A", "to": "B", "since": T0, "computed_at": T0 + 5}
    db = CloudDb(tmp_path / "cloud.sqlite")
    try:
        store(db, [result.to_json(), change])  # the newest message is a phase move, not a result
    finally:
        db.close()
    path = str(tmp_path / "cloud.sqlite")
    assert main(["cloud", "topology", "--terminal", "T1", "--json", "--db", path]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"terminal", "computed_at", "days", "meters", "missing"}
    assert got["terminal"] == "T1" and got["computed_at"] == T0
    assert len(got["meters"]) == len(result.meters)
    assert all(set(m) == set(cloud.METER_KEYS) for m in got["meters"])
    assert {m["phase"] for m in got["meters"]} <= {"A", "B", "C", "ABC", None}
    assert {m["status"] for m in got["meters"]} <= {"confirmed", "corrected", "foreign", "unresolved"}
    assert got["missing"] and all(set(m) == {"address", "evidence"} for m in got["missing"])
    assert main(["cloud", "topology", "--terminal", "T1", "--db", path]) == 0  # the table
    table = capsys.readouterr().out
    assert "foreign" in table and "missing" in table
    assert main(["cloud", "topology", "--terminal", "nobody", "--json", "--db", path]) == 0
    assert json.loads(capsys.readouterr().out)["meters"] == []
    # user mistakes: one line and exit status 2, not a traceback
    assert main(["cloud", "topology", "--terminal", "T1", "--db", str(tmp_path / "none.sqlite")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["cloud", "topology", "--json", "--db", path])
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_dashboard_tree_nests_phase_branch_box_meter() -> None:
    result, _ = _result()
    t = dashboard.tree(result.to_json())
    placed = [
        (p["phase"], b["branch"], x["box"], m["meter_id"])
        for p in t["phases"] for b in p["branches"] for x in b["boxes"] for m in x["meters"]
    ]  # fmt: skip
    ours = [m for m in result.meters if m.status != "foreign"]
    assert sorted(r[3] for r in placed) == sorted(m.meter_id for m in ours)
    by_id = {m.meter_id: m for m in ours}
    for phase, branch, box, meter in placed:
        m = by_id[meter]
        assert (phase, branch, box) == (m.phase.value or "?", m.branch.value or "?", m.box.value or "?")
    assert [p["phase"] for p in t["phases"]][:3] == ["A", "B", "C"]
    flagged = {r["meter_id"]: r["corrected"] for p in t["phases"] for b in p["branches"] for x in b["boxes"]
               for r in x["meters"] if r["corrected"]}  # fmt: skip
    dims = ("phase", "branch", "box")
    assert flagged == {
        m.meter_id: {d: m.dimension(d).archive for d in dims if m.dimension(d).outcome == "corrected"}
        for m in ours if m.status == "corrected"
    }  # fmt: skip
    foreign = {m.meter_id for m in result.meters if m.status == "foreign"}
    assert {f["meter_id"] for f in t["foreign"]} == foreign


def test_the_app_s_own_power_samples_give_per_phase_energy() -> None:
    w = Window()
    for k in range(31):  # a sample every minute, jittered by a few seconds as a scheduler is
        ts = T0 + 60 * k + (3.0 if k % 2 else 0.0)
        w.add_snapshot(ts, (2.0, 4.0, None if k == 7 else 6.0), (230.0, 231.0, 232.0))
    energy, volts = w.transformer(T0, 3)
    assert np.allclose(energy[0], [0.5, 1.0, 1.5], rtol=0.02)  # one sample without C: skipped, bridged
    assert np.allclose(volts[0], [230.0, 231.0, 232.0]) and np.allclose(volts[1], [230.0, 231.0, 232.0])
    assert w.ignored == 1 and STEP_S == 900


def test_a_result_of_2000_meters_goes_up_in_parts_the_master_station_joins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every message within the uplink's limit; ``ttu cloud topology`` shows a result only once
    all its parts arrived (the older complete one meanwhile)."""
    result, _ = _result()
    small = result.to_json()
    big = dict(small, computed_at=T0 + 86400)
    one = small["meters"]
    big["meters"] = [
        {**one[i % len(one)], "meter_id": f"m-{i:05d}", "address": f"{i:012d}"} for i in range(2000)
    ]
    parts = paged_lists(big, PAGED)
    assert len(parts) > 1 and all(json_size(p) <= MAX_MESSAGE_BYTES for p in parts)
    path = tmp_path / "cloud.sqlite"

    def shown() -> dict[str, Any]:
        assert main(["cloud", "topology", "--terminal", "T1", "--json", "--db", str(path)]) == 0
        out: dict[str, Any] = json.loads(capsys.readouterr().out)
        return out

    db = CloudDb(path)
    try:
        store(db, [small, *parts[:-1]])  # the last part has not arrived yet
    finally:
        db.close()
    assert shown()["computed_at"] == T0 and len(shown()["meters"]) == len(one)
    db = CloudDb(path)
    try:
        store(db, [small, *parts[:-1], parts[-1]])
    finally:
        db.close()
    got = shown()
    assert got["computed_at"] == T0 + 86400
    assert [m["meter_id"] for m in got["meters"]] == [f"m-{i:05d}" for i in range(2000)]
