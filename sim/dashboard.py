"""The simulator's web dashboard: one page and a small JSON API over a running ``SimRun``.

Layer: sim. A read-only view for a person watching ``make sim``: the live summary (the same
dict the terminal summary prints), and what the cloud stub received (terminals, newest
readings and events). Plain HTTP/1.1 on asyncio streams, loopback by default, GET only,
``Connection: close``; it must not change the simulation or the terminal, and a bad request
gets a 4xx with a one-line reason, never a traceback.

Routes::

    GET /                       the page (polls the API every 2 s)
    GET /api/summary            SimRun.summary()
    GET /api/readings?device=&quantity=&limit=   newest first (limit <= 500)
    GET /api/events?kind=&limit=                 newest first (limit <= 500)
    GET /api/terminals
    GET /api/panels             the apps' panels (entry points ``ttu.dashboard``): name, title, script
    GET /api/panels/<name>?terminal=   that panel's data, from what the cloud stored

An app's panel (``protocols.cloud.Panel``) is drawn on the page by its own ``render(element,
data)``; its ``data(reader, query)`` runs on a worker thread over the cloud stub's database
(read-only), so a slow panel never holds the event loop.
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


class PanelReader(Protocol):
    """What a panel's ``data`` reads (``sim.cloud.plugins.Reader``)."""

    def results(self, stream: str, *, terminal: str | None = None) -> list[Any]: ...


def load_panels() -> list[Any]:
    """The ``protocols.cloud.Panel`` of every installed ``ttu.dashboard`` entry point."""
    from importlib.metadata import entry_points

    panels = []
    for ep in sorted(entry_points(group="ttu.dashboard"), key=lambda e: e.name):
        try:
            panels.append(ep.load())
        except Exception as err:  # a broken app panel must not take the dashboard down
            log.warning("dashboard panel %s unavailable: %s", ep.name, err)
    return panels


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
        panels: list[Any] | None = None,
        reader: PanelReader | None = None,
    ) -> None:
        self._summary = summary
        self._cloud = cloud
        self._panels = {p.name: p for p in (load_panels() if panels is None else panels)}
        self._reader = reader
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
        route = _ROUTES.get(url.path)
        if route is None and url.path.startswith("/api/panels/"):
            name = url.path.removeprefix("/api/panels/")

            async def route(dash: Dashboard, q: Mapping[str, list[str]]) -> Any:
                return await dash._api_panel(name, q)

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
        if self._reader is None:
            return []
        return [{"name": p.name, "title": p.title, "script": p.script} for p in self._panels.values()]

    async def _api_panel(self, name: str, query: Mapping[str, list[str]]) -> Any:
        panel = self._panels.get(name)
        if panel is None or self._reader is None:
            raise BadRequest(404, f"no panel {name!r}")
        terminal = _one(query, "terminal")
        args = {"terminal": terminal} if terminal else {}
        return await asyncio.to_thread(panel.data, self._reader, args)


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


__all__ = ["BadRequest", "CloudView", "Dashboard", "PanelReader", "load_panels"]
