"""What the topology app holds between identifications: the labels a check starts from and the
slim retained ``topology/result`` body."""

from __future__ import annotations

from apps.topology.identify import identify
from apps.topology.result import DIMENSIONS, Labels, TopologyResult
from apps.topology.service import retained_body
from apps.topology.synthetic import Spec, station


def _result() -> TopologyResult:
    inputs, _ = station(Spec(branches=3, foreign=2, missing=2, days=1.0), seed=5)
    return identify(inputs, terminal="T", computed_at=0.0)


def test_labels_keep_each_meters_and_nodes_values_foreign_as_not_ours() -> None:
    result = _result()
    labels = Labels.of(result)
    assert any(m.status == "foreign" for m in result.meters)
    for d in DIMENSIONS:
        want = {m.meter_id: None if m.status == "foreign" else m.dimension(d).value for m in result.meters}
        assert labels.meters(d) == want
        assert labels.nodes(d) == {x.address: getattr(x, d) for x in result.missing if x.address}
    assert len(labels.meter_ids) == len(result.meters)


def test_retained_body_keeps_the_rows_of_meters_not_confirmed_and_the_rest_of_the_body() -> None:
    body = _result().to_json()
    retained = retained_body(body)
    assert {k: v for k, v in retained.items() if k != "meters"} == {
        k: v for k, v in body.items() if k != "meters"
    }
    rows = [m for m in body["meters"] if m["status"] != "confirmed"]
    assert rows and len(rows) < len(body["meters"])
    assert [r["meter_id"] for r in retained["meters"]] == [m["meter_id"] for m in rows]
    for slim, full in zip(retained["meters"], rows, strict=True):
        assert slim == {
            k: full[k] for k in ("meter_id", "address", "status", "phase", "branch", "box", "confidence")
        }
