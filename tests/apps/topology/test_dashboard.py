"""The topology panel drawn by a real browser (headless Chromium): the station as a tree --
transformer, phase, branch, box, meter -- with corrections highlighted, foreign and missing
meters listed; once from the panel's data directly and once served by the simulator's dashboard
from the master station's database, the way ``make sim`` shows it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from apps.topology.dashboard import PANEL, SCRIPT, tree
from apps.topology.identify import identify
from apps.topology.result import TopologyResult
from apps.topology.synthetic import Spec, station
from protocols.cloud import UpBatch, UpMessage, up_topic
from sim.cloud.db import CloudDb

from ..lineloss._browser import Elements, dump_dom

T0 = 1_717_200_000.0


def _result() -> TopologyResult:
    spec = Spec(branches=3, wrong_phase=0.15, wrong_branch=0.1, foreign=1, missing=1)
    inputs, _truth = station(spec, seed=5)
    return identify(inputs, terminal="TTU-T1", computed_at=T0)


def _check(dom: Elements, result: TopologyResult) -> None:
    ours = [m for m in result.meters if m.status != "foreign"]
    rows = {a["data-meter"]: a for a in dom.find("li", class_="meter") if "foreign" not in a["class"].split()}
    assert set(rows) == {m.meter_id for m in ours}
    corrected = {m.meter_id for m in ours if m.status == "corrected"}
    assert corrected, "the synthetic archive has errors the result corrects"
    highlighted = {k for k, a in rows.items() if "corrected" in a["class"].split()}
    assert highlighted == corrected
    for k in highlighted:
        assert "background" in rows[k].get("style", "")
    # nesting: every phase element holds branch elements holding box elements
    phases = [a["data-phase"] for a in dom.find("details", class_="phase")]
    assert phases[:3] == ["A", "B", "C"]
    assert {a["data-branch"] for a in dom.find("details", class_="branch")} == {
        str(m.branch.value or "?") for m in ours
    }
    boxes = {str(m.box.value or "?") for m in ours}
    assert {a["data-box"] for a in dom.find("details", class_="box")} == boxes
    foreign = {a["data-meter"] for a in dom.find("li", class_="foreign")}
    assert foreign == {m.meter_id for m in result.meters if m.status == "foreign"} and foreign
    missing = {a["data-address"] for a in dom.find("li", class_="missing")}
    assert missing == {m.address or "" for m in result.missing} and missing
    (head,) = dom.find("p", class_="topology-summary")
    assert head["data-corrected"] == str(len(corrected))
    assert head["data-foreign"] == str(len(foreign))


def test_the_panel_draws_the_tree_with_corrections_in_chromium(tmp_path: Path) -> None:
    result = _result()
    page = tmp_path / "panel.html"
    page.write_text(
        "<html><head><meta charset='utf-8'></head><body><div id='panel'></div><script>"
        + SCRIPT
        + f"\nrender(document.getElementById('panel'), {json.dumps(tree(result.to_json()))});"
        + "</script></body></html>",
        encoding="utf-8",
    )
    _check(Elements(dump_dom(page.as_uri(), tmp_path / "profile")), result)


async def test_the_simulator_dashboard_serves_the_topology_panel_from_the_cloud_db(tmp_path: Path) -> None:
    """The page of ``make sim``: the panel from the ``ttu.dashboard`` entry point, its data read
    from the stub's database (the newest result; a later phase-move message does not hide it)."""
    from sim.cloud.plugins import load_panels
    from sim.dashboard import Dashboard

    assert load_panels().get("topology") == PANEL
    result = _result()
    change = {"type": "change", "meter_id": "m-1", "from": "A", "to": "B", "since": T0, "computed_at": T0 + 5}
    db = CloudDb(tmp_path / "cloud.sqlite")
    messages = tuple(
        UpMessage(f"TTU-T1:topology:{i}", i, T0 + i, body)
        for i, body in enumerate([result.to_json(), change], start=1)
    )
    db.ingest_batch(
        topic=up_topic("TTU-T1", "topology"), batch=UpBatch("TTU-T1", "topology", messages), now=T0 + 9
    )

    class DbCloud:  # the stub's database behind the dashboard, as CloudStub serves it (one thread here)
        async def terminals(self) -> list[object]:
            return list(db.terminals())

        async def readings(self, *args: object, **kwargs: object) -> list[object]:
            return []

        async def events(self, *args: object, **kwargs: object) -> list[object]:
            return []

        async def query(self, fn: Any) -> Any:
            return fn(db)

    async def summary() -> dict[str, object]:
        return {"meters": len(result.meters), "speed": 1, "elapsed_s": 0, "sim_time": 0, "acquisition": {},
                "apps": [{"name": "topology", "state": "running", "restarts": 0}]}  # fmt: skip

    try:
        async with Dashboard(summary, DbCloud(), port=0) as dash:  # panels from the entry points
            html = await asyncio.to_thread(dump_dom, dash.url, tmp_path / "profile", budget_ms=8000)
    finally:
        db.close()
    dom = Elements(html)
    assert dom.find("section", id="panel-topology")
    _check(dom, result)
