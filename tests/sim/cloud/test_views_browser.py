"""The dashboard page in headless Chromium: the station panel, contributed through the
``ttu.dashboard`` entry point, drawn from what a real terminal sent on stream ``station``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sim.cloud.db import CloudDb
from sim.dashboard import Dashboard
from tests.apps.lineloss._browser import Elements, dump_dom
from tests.sim.cloud.test_views import station_messages, store


class DbCloud:
    """The stub's database behind the dashboard, as ``CloudStub`` serves it (one thread here)."""

    def __init__(self, db: CloudDb) -> None:
        self.db = db

    async def terminals(self) -> list[Any]:
        return self.db.terminals()

    async def readings(self, **kw: Any) -> list[Any]:
        return self.db.readings(**kw)

    async def events(self, **kw: Any) -> list[Any]:
        return self.db.events(**kw)

    async def query(self, fn: Any) -> Any:
        return fn(self.db)


async def test_the_station_panel_in_chromium(tmp_path: Path) -> None:
    *bodies, _ = await station_messages(tmp_path)
    db = CloudDb(tmp_path / "cloud.sqlite")
    store(db, bodies)

    async def summary() -> dict[str, Any]:
        return {"meters": 2, "speed": 1, "elapsed_s": 0, "sim_time": 0, "acquisition": {}, "apps": []}

    try:
        async with Dashboard(summary, DbCloud(db), port=0) as dash:  # panels from the entry points
            html = await asyncio.to_thread(dump_dom, dash.url, tmp_path / "profile")
    finally:
        db.close()
    dom = Elements(html)
    assert dom.find("section", id="panel-station")
    assert "v4: 2 meters, 0 branches, 2 boxes; 1 meters with identified or confirmed facts" in html
