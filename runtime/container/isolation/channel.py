"""One end of the runtime <-> app host connection: ordered frames, requests with ids.

Layer: runtime. Used on both sides of ``runtime.container.isolation.wire``'s wire. It
moves frames and pairs replies with requests; what a request means is the
caller's business. It never reads the socket itself: the owner's read loop
hands every ``reply`` frame to ``resolve`` so there is exactly one reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from hal.clock import Clock
from runtime.container.isolation.wire import encode_frame, error_from_json, error_to_json
from runtime.errors import BusError, RequestTimeout

WRITE_BACKLOG_MAX = 8 * 1024 * 1024  # bytes queued in the transport before sync sends are refused


class Channel:
    """Frames out, replies in. ``close()`` fails every pending request."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        *,
        clock: Clock,
        name: str,
        on_orphan_error: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._writer = writer
        self.clock = clock
        self.name = name
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._on_orphan_error = on_orphan_error
        self._closed = False
        self.log = logging.getLogger(f"ttu.bridge.{name}")

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    def send_nowait(self, obj: Mapping[str, Any]) -> None:
        """Queue a frame without waiting for the socket (for the app API's synchronous calls)."""
        if self.closed:
            raise BusError(f"{self.name}: bridge connection closed")
        if self._writer.transport.get_write_buffer_size() > WRITE_BACKLOG_MAX:
            raise BusError(f"{self.name}: bridge backlog above {WRITE_BACKLOG_MAX} bytes, message refused")
        self._writer.write(encode_frame(obj))

    async def send(self, obj: Mapping[str, Any]) -> None:
        """Send a frame and wait until the socket took it (backpressure)."""
        if self.closed:
            raise BusError(f"{self.name}: bridge connection closed")
        self._writer.write(encode_frame(obj))
        try:
            await self._writer.drain()
        except ConnectionError as err:
            raise BusError(f"{self.name}: bridge connection lost: {err}") from err

    def request_nowait(self, op: str, body: Mapping[str, Any]) -> int:
        """Send a request whose reply nobody awaits: the peer answers only a failure
        (``nowait``), which goes to ``on_orphan_error``; success costs no reply frame."""
        rid = next(self._ids)
        self.send_nowait({**body, "op": op, "id": rid, "nowait": True})
        return rid

    async def request(
        self,
        op: str,
        body: Mapping[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (clock seconds)
        cancel_op: str | None = None,
    ) -> Any:
        """Send a request and return its reply's result (or raise the error it carries).

        With ``cancel_op``, a caller cancelled while waiting tells the peer
        (``{"op": cancel_op, "rid": id}``) so the work stops there too, e.g. a queued
        bus transaction leaves the port's queue."""
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self.send({**body, "op": op, "id": rid})
            if timeout is None:
                return await fut
            try:
                async with self.clock.timeout(timeout):
                    return await fut
            except TimeoutError as err:
                raise RequestTimeout(f"{self.name}: {op}: no reply within {timeout:g} s") from err
        except asyncio.CancelledError:
            if cancel_op is not None and not fut.done() and not self.closed:
                with contextlib.suppress(BusError):
                    self.send_nowait({"op": cancel_op, "rid": rid})
            raise
        finally:
            self._pending.pop(rid, None)

    def resolve(self, frame: Mapping[str, Any]) -> None:
        """Hand a ``reply`` frame to whoever waits for it."""
        rid = frame.get("id")
        if not isinstance(rid, int):
            self.log.warning("reply without an id: %.200r", frame)
            return
        fut = self._pending.pop(rid, None)
        if fut is None:
            if not frame.get("ok") and self._on_orphan_error is not None:
                self._on_orphan_error(str(frame.get("req", "?")), dict(frame.get("error") or {}))
            else:
                self.log.debug("reply %d nobody waits for (timed out?)", rid)
            return
        if fut.done():
            return
        if frame.get("ok"):
            fut.set_result(frame.get("result"))
        else:
            fut.set_exception(error_from_json(frame.get("error")))

    async def reply(
        self, rid: Any, result: Any = None, *, error: BaseException | None = None, req: str | None = None
    ) -> None:
        """Answer a request of the peer (silently nothing if the connection is gone)."""
        if self.closed:
            return
        frame: dict[str, Any] = {"op": "reply", "id": rid, "ok": error is None}
        if req is not None:
            frame["req"] = req
        if error is None:
            frame["result"] = result
        else:
            frame["error"] = error_to_json(error)
        try:
            await self.send(frame)
        except BusError as err:
            self.log.debug("reply %r not sent: %s", rid, err)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BusError(f"{self.name}: bridge connection closed"))
        self._pending.clear()
        self._writer.close()


__all__ = ["WRITE_BACKLOG_MAX", "Channel"]
