"""The simulator's web dashboard: one page and a small JSON API over a running ``SimRun``.

Layer: sim. A read-only view for a person watching ``make sim``: the live summary (the same
dict the terminal summary prints), and what the cloud stub received (terminals, newest
readings and events). Plain HTTP/1.1 on asyncio streams, loopback by default, GET only,
``Connection: close``; it must not change the simulation or the terminal, and a bad request
gets a 4xx with a one-line reason, never a traceback.

Routes::

    GET /                       the page (polls the API every 2 s, the panels every 10 s)
    GET /api/summary            SimRun.summary()
    GET /api/readings?device=&quantity=&limit=   newest first (limit <= 500)
    GET /api/events?kind=&limit=                 newest first (limit <= 500)
    GET /api/terminals
    GET /api/panels             the panels apps contribute: [{"name", "title"}] in display order
    GET /api/panels/<name>?terminal=             the panel's data (``Panel.data`` on the db thread)
    GET /panels/<name>.js       the panel's script, as ``window.ttuPanels[name] = render``

Panels come from the ``ttu.dashboard`` entry points (``sim.cloud.plugins.load_panels``): an app
adds one without editing this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import parse_qs, urlsplit

from protocols.cloud import Panel
from sim.cloud.plugins import load_panels

log = logging.getLogger("ttu.sim.dashboard")

MAX_REQUEST_BYTES = 8192
MAX_LIMIT = 500
READ_TIMEOUT_S = 5.0


class CloudView(Protocol):
    """The cloud stub queries the dashboard shows (``sim.cloud.stub.CloudStub``)."""

    async def terminals(self) -> list[Any]: ...

    async def readings(
        self,
        terminal: str | None = None,
        device: str | None = None,
        quantity: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Any]: ...

    async def events(self, *args: Any, **kwargs: Any) -> list[Any]: ...

    async def query(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(db)`` where the stub's database lives (``CloudStub.query``)."""
        ...


class BadRequest(Exception):
    """A request the dashboard refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _limit(query: Mapping[str, list[str]], default: int = 50) -> int:
    raw = query.get("limit", [str(default)])[-1]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(400, f"limit: {raw!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _one(query: Mapping[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


class Dashboard:
    """Serve the dashboard until the context exits. ``port=0`` picks a free port (see ``url``)."""

    def __init__(
        self,
        summary: Callable[[], Awaitable[dict[str, Any]]],
        cloud: CloudView,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        panels: Mapping[str, Panel] | None = None,
    ) -> None:
        self._summary = summary
        self._cloud = cloud
        self.panels = dict(panels) if panels is not None else load_panels()
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.requests = 0
        self.refused = 0

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the dashboard is not serving")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
                status, ctype, body = await self._answer(head)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                status, ctype, body = 400, "text/plain", b"incomplete or oversized request\n"
            except BadRequest as err:
                status, ctype, body = err.status, "text/plain", f"{err}\n".encode()
            if status >= 400:
                self.refused += 1
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        if len(head) > MAX_REQUEST_BYTES:
            raise BadRequest(431, "request header too large")
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "malformed request line") from None
        if method != "GET":
            raise BadRequest(405, f"{method}: only GET is served")
        self.requests += 1
        url = urlsplit(target)
        query = parse_qs(url.query)
        if url.path == "/":
            return 200, "text/html; charset=utf-8", _page()
        if url.path.startswith("/panels/") and url.path.endswith(".js"):
            script = self._script(url.path.removeprefix("/panels/").removesuffix(".js"))
            return 200, "text/javascript; charset=utf-8", script
        if url.path.startswith("/api/panels/"):
            return await self._panel_data(url.path[len("/api/panels/") :], query)
        route = _ROUTES.get(url.path)
        if route is None:
            raise BadRequest(404, f"{url.path}: no such page")
        try:
            data = await route(self, query)
        except BadRequest:
            raise
        except Exception as err:  # the view must never take the simulator down
            log.warning("dashboard %s failed: %s", url.path, err)
            raise BadRequest(503, f"{url.path}: not available right now ({type(err).__name__})") from err
        return 200, "application/json", json.dumps(data, default=str).encode()

    async def _api_summary(self, query: Mapping[str, list[str]]) -> Any:
        return await self._summary()

    async def _api_readings(self, query: Mapping[str, list[str]]) -> Any:
        rows = await self._cloud.readings(
            device=_one(query, "device"), quantity=_one(query, "quantity"), limit=_limit(query)
        )
        return [_jsonable(r) for r in rows]

    async def _api_events(self, query: Mapping[str, list[str]]) -> Any:
        kind = _one(query, "kind")
        limit = _limit(query)
        rows = await (self._cloud.events(kind=kind, limit=limit) if kind else self._cloud.events(limit=limit))
        return [_jsonable(r) for r in rows]

    async def _api_terminals(self, query: Mapping[str, list[str]]) -> Any:
        return [_jsonable(r) for r in await self._cloud.terminals()]

    async def _api_panels(self, query: Mapping[str, list[str]]) -> Any:
        return [{"name": p.name, "title": p.title} for p in self.panels.values()]

    def _panel(self, name: str) -> Panel:
        panel = self.panels.get(name)
        if panel is None:
            raise BadRequest(404, f"no panel {name!r}")
        return panel

    def _script(self, name: str) -> bytes:
        panel = self._panel(name)
        wrapped = (
            "window.ttuPanels = window.ttuPanels || {};\n"
            f"window.ttuPanels[{json.dumps(panel.name)}] = (function () {{\n"
            f"{panel.script}\nreturn render;\n}})();\n"
        )
        return wrapped.encode()

    async def _panel_data(self, name: str, query: Mapping[str, list[str]]) -> tuple[int, str, bytes]:
        panel = self._panel(name)
        try:
            data = await self._cloud.query(lambda db: panel.data(db, query))
        except Exception as err:  # an app's view must never take the dashboard down
            log.warning("dashboard panel %s failed: %s: %s", name, type(err).__name__, err)
            raise BadRequest(503, f"panel {name}: not available right now ({type(err).__name__})") from err
        return 200, "application/json", json.dumps(data, default=str).encode()


_Route = Callable[[Dashboard, Mapping[str, list[str]]], Awaitable[Any]]
_ROUTES: dict[str, _Route] = {
    "/api/summary": Dashboard._api_summary,
    "/api/readings": Dashboard._api_readings,
    "/api/events": Dashboard._api_events,
    "/api/terminals": Dashboard._api_terminals,
    "/api/panels": Dashboard._api_panels,
}
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _page() -> bytes:
    return resources.files("sim").joinpath("dashboard.html").read_bytes()


__all__ = ["BadRequest", "CloudView", "Dashboard"]
