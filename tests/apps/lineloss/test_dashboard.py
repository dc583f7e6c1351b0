"""The line-loss panel drawn by a real browser (headless Chromium) from what the cloud stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from apps.lineloss.dashboard import SCRIPT, data
from apps.lineloss.report import summary

from ._browser import Elements, dump_dom

THRESHOLDS = {
    "high_min_pct": 10.0,
    "negative_max_pct": -1.0,
    "economic_min_pct": 0.0,
    "economic_max_pct": 4.0,
}


def day(date: str, revision: int, rates: dict[str, float | None], anomalies: list[Any]) -> dict[str, Any]:
    rows = [
        {
            "date": date,
            "scope": scope,
            "level": "station" if scope == "station" else "box" if "-X" in scope else "branch",
            "supply_kwh": 100.0,
            "sales_kwh": 100.0 - (rate or 0.0),
            "loss_kwh": rate,
            "loss_rate": rate,
            "class": "incomputable" if rate is None else "high" if rate > 10 else "qualified",
            "coverage": 1.0,
        }
        for scope, rate in rates.items()
    ]
    return {"type": "day", "date": date, "revision": revision, "thresholds": THRESHOLDS,
            "days": rows, "anomalies": anomalies}  # fmt: skip


THEFT = {"date": "2024-06-03", "kind": "theft", "target": "m-0020", "branch": "F2",
         "evidence": {"bypass_pct": 31.2, "t": 18.8}, "confidence": 0.82}  # fmt: skip

EARLY = {"type": "anomaly", "found_at": 1.7e9, "date": "2024-06-04", "kind": "meter_stopped",
         "target": "m-0035", "branch": "F3", "evidence": {"early": True}, "confidence": 0.99}  # fmt: skip

STREAM = [
    {
        **day("2024-06-02", 1, {"station": 3.1, "F1": 0.4, "F2": 2.0}, []),
        "partial": {"from": 1.7e9, "intervals": 60},
    },
    {**EARLY, "date": "2024-06-03", "kind": "theft", "target": "m-0020"},  # the day repeats it
    day("2024-06-03", 1, {"station": None, "F1": 0.5, "F2": None}, []),
    {"type": "intervals", "date": "2024-06-03"},
    day("2024-06-03", 2, {"station": 4.2, "F1": 0.5, "F2": 12.5, "F2-X01": 31.0}, [THEFT]),  # 补抄 came in
    EARLY,  # today, found by an early look: no day message yet
    "garbage",
]


def test_the_cloud_json_keeps_the_newest_revision_of_each_day() -> None:
    out = summary("TTU-1", STREAM)
    assert out["terminal"] == "TTU-1"
    assert [(d["date"], d["scope"], d["loss_rate"], d["class"]) for d in out["days"]] == [
        ("2024-06-02", "station", 3.1, "qualified"),
        ("2024-06-02", "F1", 0.4, "qualified"),
        ("2024-06-02", "F2", 2.0, "qualified"),
        ("2024-06-03", "station", 4.2, "qualified"),
        ("2024-06-03", "F1", 0.5, "qualified"),
        ("2024-06-03", "F2", 12.5, "high"),
        ("2024-06-03", "F2-X01", 31.0, "high"),
    ]
    assert set(out["days"][0]) >= {"date", "scope", "supply_kwh", "sales_kwh", "loss_kwh", "loss_rate",
                                   "class", "coverage"}  # fmt: skip
    early = {k: EARLY[k] for k in ("date", "kind", "target", "branch", "evidence", "confidence")}
    assert out["anomalies"] == [THEFT, early]


def test_the_panel_draws_rates_thresholds_and_anomalies_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "panel.html"
    page.write_text(
        "<html><body><div id='panel'></div><script>"
        + SCRIPT
        + f"\nrender(document.getElementById('panel'), {json.dumps(data('TTU-1', STREAM))});"
        + "</script></body></html>",
        encoding="utf-8",
    )
    dom = Elements(dump_dom(page.as_uri(), tmp_path / "profile"))
    assert len(dom.find("svg", class_="lineloss-chart")) == 1
    series = {a["data-scope"]: a["points"].split() for a in dom.find("polyline", class_="series")}
    assert set(series) == {"station", "F1", "F2", "F2-X01"}
    assert len(series["F1"]) == 2 and len(series["F2"]) == 2  # both days drawn
    assert len(series["F2-X01"]) == 1  # the box terminal's day
    levels = {a["data-scope"]: a["data-level"] for a in dom.find("polyline", class_="series")}
    assert levels == {"station": "station", "F1": "branch", "F2": "branch", "F2-X01": "box"}
    (box,) = dom.find("polyline", class_="series-box")
    assert box["stroke-dasharray"] and float(box["stroke-width"]) < 1.5  # told apart from branches
    assert dom.find("line", class_="threshold-high") and dom.find("line", class_="threshold-negative")
    assert dom.find("rect", class_="band-economic")
    high_y = float(dom.find("line", class_="threshold-high")[0]["y1"])
    f2_y = [float(p.split(",")[1]) for p in series["F2"]]
    assert f2_y[1] < high_y < f2_y[0]  # 12.5 % above the 10 % line, 2 % below it (SVG y grows down)
    assert dom.find("tr", class_="anomaly-theft") and dom.find("tr", class_="anomaly-meter_stopped")
    assert {"2024-06-03", "theft", "m-0020", "F2", "0.82"} <= set(dom.cells)
    # the day the terminal first started in is labelled partial, the other one not
    assert len(dom.find("text", class_="date-partial")) == 1 and len(dom.find("text", class_="date")) == 1
