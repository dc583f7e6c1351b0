"""The uplink of a terminal whose board has no ``[uplink]``: the outbox without a sender.

Layer: runtime (uplink). A terminal being commissioned, or one whose master station link is
configured later, still keeps every upward message: ``send`` appends to the same durable
outbox the MQTT uplink drains, so nothing an app produced is lost once an uplink is
configured. There is no downlink, so registered commands are only remembered (and listed by
``commands()``); nothing here talks to a network.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from protocols.cloud import MAX_MESSAGE_BYTES, StreamPriority
from runtime.store import Store
from runtime.uplink._commands import Handler, Validator
from runtime.uplink._uplink import _check_stream

_log = logging.getLogger(__name__)


class OutboxOnlyUplink:
    """``UplinkClient`` for a board without an uplink: durable ``send``, no command channel."""

    def __init__(self, store: Store, *, terminal_id: str) -> None:
        self._store = store
        self.terminal_id = terminal_id
        self._commands: dict[str, Handler] = {}
        self.queued = 0

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        """Append ``body`` durably to the outbox of ``stream``; return its idempotency key."""
        (key,) = await self.send_many(stream, [body])
        return key

    async def send_many(self, stream: str, bodies: Sequence[dict[str, Any]]) -> list[str]:
        """``send`` of several bodies in order, in one store transaction; their keys."""
        _check_stream(stream)
        entries = await self._store.outbox_append_many(
            stream, bodies, terminal=self.terminal_id, max_bytes=MAX_MESSAGE_BYTES
        )
        self.queued += len(entries)
        return [entry.key for entry in entries]

    def declare_stream(self, stream: str, *, priority: StreamPriority | str) -> None:
        """Checked and forgotten: with no sender there is nothing to order."""
        _check_stream(stream)
        StreamPriority.parse(priority)

    def register_command(self, name: str, handler: Handler, *, validate: Validator | None = None) -> None:
        """Remember ``name``; with no downlink it can never be called, which is logged once per name."""
        if name not in self._commands:
            _log.debug("command %s registered, but this board has no uplink to receive it", name)
        self._commands[name] = handler

    def unregister_command(self, name: str) -> None:
        self._commands.pop(name, None)

    def commands(self) -> list[str]:
        return sorted(self._commands)

    def statistics(self) -> dict[str, Any]:
        return {"connected": False, "configured": False, "queued": self.queued}


__all__ = ["OutboxOnlyUplink"]
