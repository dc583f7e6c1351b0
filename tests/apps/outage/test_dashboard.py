"""The outage timeline on the simulator's dashboard, drawn by a real browser (headless Chromium).

The dashboard (``sim.dashboard.Dashboard``) serves its page and the apps' panels, found through
the ``ttu.dashboard`` entry point group, over a real cloud-stub database holding what the
terminal sent on stream ``outage`` (several revisions of each outage, one merged away).
Chromium loads the page with a virtual-time budget, so its fetches and timers settle without
wall-clock waits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from apps.outage.dashboard import PANEL, outages
from protocols.cloud import ResultReader, UpBatch, UpMessage, up_topic
from sim.cloud.db import CloudDb
from sim.cloud.plugins import load_panels
from sim.dashboard import Dashboard

from ..lineloss._browser import Elements, chromium

T0 = 1_717_200_000.0
TERMINAL = "TTU-1"


def body(
    oid: str, rev: int, level: str, target: str, start: float, end: float | None, **extra: Any
) -> dict[str, Any]:
    return {"type": "outage", "id": oid, "revision": rev, "level": level, "target": target, "start": start,
            "end": end, "status": "ongoing" if end is None else "restored", "meters": ["m-1", "m-2"],
            "sources": ["hplc"], "reported_at": start + 63, **extra}  # fmt: skip


STREAM = [
    body("o1", 1, "box", "F2-X01", T0, None),
    body("o1", 2, "branch", "F2", T0, None),  # re-levelled: the whole branch turned out dark
    body("o1", 3, "branch", "F2", T0, T0 + 1200, still_dark=["m-9"]),
    body("o2", 1, "meter", "m-0007", T0 + 1500, None),
    body("o3", 1, "box", "F1-X02", T0 + 1510, None),
    body("o3", 2, "box", "F1-X02", T0 + 1510, None, status="merged", merged_into="o4"),
    body("o4", 1, "station", "4401-0001", T0 + 1800, None),
    body("o5", 1, "box", "F3-X01", T0 + 600, T0 + 900, lit=["m-0044"]),  # m-0044 answered throughout
]


def stored(db: CloudDb) -> None:
    messages = tuple(UpMessage(f"{TERMINAL}:outage:{i}", i, T0 + i, b) for i, b in enumerate(STREAM, start=1))
    db.ingest_batch(
        topic=up_topic(TERMINAL, "outage"), batch=UpBatch(TERMINAL, "outage", messages), now=T0 + 2000
    )


class StubView:
    """The parts of ``CloudStub`` the dashboard asks for, over a database file."""

    def __init__(self, db: CloudDb) -> None:
        self.db = db

    async def terminals(self) -> list[Any]:
        return list(self.db.terminals())

    async def readings(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    async def events(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    async def query(self, fn: Any) -> Any:
        return fn(self.db)


async def summary() -> dict[str, Any]:
    return {"sim_time": T0 + 2000, "speed": 1, "elapsed_s": 0, "meters": 0, "apps": [], "recent_events": [],
            "cloud": {}, "uplink_backlog": 0, "acquisition": {}}  # fmt: skip


def test_the_panel_keeps_the_newest_revision_and_drops_merged_outages(tmp_path: Path) -> None:
    db = CloudDb(tmp_path / "cloud.sqlite")
    try:
        stored(db)
        reader: ResultReader = db
        found, now = outages(reader.results("outage", limit=1000))
    finally:
        db.close()
    assert [(o["id"], o["level"], o["end"]) for o in found] == [
        ("o4", "station", None),
        ("o2", "meter", None),
        ("o5", "box", T0 + 900),
        ("o1", "branch", T0 + 1200),
    ]
    assert found[-1]["still_dark"] == 1 and now == T0 + 2000
    assert found[2]["kept_supply"] == ["m-0044"] and found[-1]["kept_supply"] == []


async def test_the_dashboard_draws_the_outage_timeline_in_chromium(tmp_path: Path) -> None:
    assert "outage" in load_panels()  # the app's entry point is installed
    db = CloudDb(tmp_path / "cloud.sqlite")
    try:
        stored(db)
        async with Dashboard(summary, StubView(db), port=0) as dash:
            args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=8000", "--dump-dom",
                    dash.url]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
            assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
            assert dash.refused <= 1  # the browser asks for /favicon.ico: not served
    finally:
        db.close()
    dom = Elements(out.decode())
    assert dom.find("section", class_="panel", id="panel-outage")
    assert len(dom.find("svg", class_="outage-timeline")) == 1
    bars = {a["data-id"]: a for a in dom.find("rect", class_="outage-bar")}
    assert set(bars) == {"o1", "o2", "o4", "o5"}  # o3 was merged into o4
    assert bars["o1"]["data-level"] == "branch" and "ongoing" not in bars["o1"]["class"]
    assert "ongoing" in bars["o4"]["class"] and bars["o4"]["data-target"] == "4401-0001"
    lanes = [a["data-level"] for a in dom.find("rect", class_="outage-lane")]
    assert lanes == ["station", "phase", "branch", "box", "meter"]
    y = {k: float(a["y"]) for k, a in bars.items()}
    assert y["o4"] < y["o1"] < y["o2"]  # station lane above branch above meter
    assert float(bars["o1"]["x"]) < float(bars["o2"]["x"]) < float(bars["o4"]["x"])  # in time order
    assert len(dom.find("tr", class_="outage-row")) == 4
    assert {"o1", "branch", "F2", "20.0 min", "ongoing", "m-0044"} <= set(dom.cells)
    assert PANEL.title in out.decode()
