"""The sim dashboard over real HTTP on loopback: page, JSON API, and refusals that never crash it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from sim.dashboard import MAX_REQUEST_BYTES, Dashboard


@dataclass(frozen=True)
class Row:
    device: str
    value: float


class FakeCloud:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.broken = False

    async def terminals(self) -> list[Any]:
        return [Row("TTU-1", 1.0)]

    async def readings(self, terminal: str | None = None, device: str | None = None,
                       quantity: str | None = None, since: float | None = None,
                       limit: int = 100) -> list[Any]:  # fmt: skip
        if self.broken:
            raise RuntimeError("db locked")
        self.asked.append({"device": device, "quantity": quantity, "limit": limit})
        return [Row(device or "m-1", float(i)) for i in range(min(limit, 3))]

    async def events(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.asked.append(kwargs)
        return []


async def get(url: str, path: str, *, method: str = "GET", extra: bytes = b"") -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_page_and_api() -> None:
    cloud = FakeCloud()

    async def summary() -> dict[str, Any]:
        return {"meters": 7, "acquisition": {"success_rate": 0.5}}

    async with Dashboard(summary, cloud, port=0) as dash:
        status, body = await get(dash.url, "/")
        assert status == 200 and b"<html" in body and b"api/summary" in body
        status, body = await get(dash.url, "/api/summary")
        assert (status, json.loads(body)) == (200, {"meters": 7, "acquisition": {"success_rate": 0.5}})
        status, body = await get(dash.url, "/api/readings?device=m-9&quantity=voltage.a&limit=2")
        assert status == 200
        assert json.loads(body) == [{"device": "m-9", "value": 0.0}, {"device": "m-9", "value": 1.0}]
        assert cloud.asked[-1] == {"device": "m-9", "quantity": "voltage.a", "limit": 2}
        status, _ = await get(dash.url, "/api/events?kind=meter.power_down")
        assert status == 200 and cloud.asked[-1] == {"kind": "meter.power_down", "limit": 50}
        status, body = await get(dash.url, "/api/terminals")
        assert json.loads(body) == [{"device": "TTU-1", "value": 1.0}]


async def test_bad_requests_are_refused_and_counted() -> None:
    cloud = FakeCloud()

    async def summary() -> dict[str, Any]:
        return {}

    async with Dashboard(summary, cloud, port=0) as dash:
        assert (await get(dash.url, "/nope"))[0] == 404
        assert (await get(dash.url, "/api/summary", method="POST"))[0] == 405
        status, body = await get(dash.url, "/api/readings?limit=9999")
        assert status == 400 and b"limit" in body
        assert (await get(dash.url, "/api/readings?limit=-1"))[0] == 400
        big = b"X-Pad: " + b"a" * (MAX_REQUEST_BYTES + 10) + b"\r\n"
        assert (await get(dash.url, "/api/summary", extra=big))[0] in (400, 431)
        cloud.broken = True
        status, body = await get(dash.url, "/api/readings")
        assert status == 503 and b"RuntimeError" in body
        cloud.broken = False
        assert (await get(dash.url, "/api/readings"))[0] == 200  # still serving
        assert dash.refused == 6


class PanelCloud(FakeCloud):
    """A cloud whose database is a dict of results per stream (what ``Panel.data`` reads)."""

    def __init__(self, results: dict[str, list[Any]]) -> None:
        super().__init__()
        self.db = results

    async def query(self, fn: Any) -> Any:
        return fn(self)

    def results(
        self, stream: str, *, terminal: str | None = None, since: Any = None, limit: int = 100
    ) -> list[Any]:
        return self.db.get(stream, [])[:limit]

    def latest(self, stream: str, *, terminal: str | None = None) -> Any:
        found = self.db.get(stream, [])
        return found[0] if found else None


def demo_data(reader: Any, query: Any) -> Any:
    return {"terminal": query.get("terminal", ["?"])[-1], "n": len(reader.results("demo"))}


def broken_data(reader: Any, query: Any) -> Any:
    raise KeyError("a bug in the app's view")


async def test_panels_contributed_by_apps_are_listed_served_and_contained() -> None:
    from protocols.cloud import Panel

    panels = {
        "demo": Panel(
            "demo", "Demo app", demo_data, "function render(el, data) { el.textContent = data.n; }"
        ),
        "broken": Panel("broken", "Broken app", broken_data, "function render(el, data) {}"),
    }

    async def summary() -> dict[str, Any]:
        return {}

    async with Dashboard(summary, PanelCloud({"demo": [1, 2, 3]}), port=0, panels=panels) as dash:
        status, body = await get(dash.url, "/api/panels")
        assert status == 200 and json.loads(body) == [
            {"name": "demo", "title": "Demo app"},
            {"name": "broken", "title": "Broken app"},
        ]
        status, body = await get(dash.url, "/api/panels/demo?terminal=TTU-1")
        assert status == 200 and json.loads(body) == {"terminal": "TTU-1", "n": 3}
        status, body = await get(dash.url, "/panels/demo.js")
        assert (
            status == 200
            and b'window.ttuPanels["demo"] = (function () {' in body
            and b"return render;" in body
        )
        assert (await get(dash.url, "/api/panels/broken"))[0] == 503  # the app's bug, not the dashboard's
        assert (await get(dash.url, "/api/panels/nope"))[0] == 404
        assert (await get(dash.url, "/panels/nope.js"))[0] == 404
        assert (await get(dash.url, "/api/summary"))[0] == 200  # still serving


def test_the_station_panel_comes_from_the_entry_points() -> None:
    from sim.cloud.plugins import load_panels

    assert "station" in load_panels()
