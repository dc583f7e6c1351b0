"""Where readings and events go: the store, the bus and the uplink, in that order.

Layer: apps (acquisition). ``Output.readings`` stores a batch, publishes it per device on
``meter/<id>/reading`` (and, for the meter's own records, also on ``meter/<id>/curve`` or
``meter/<id>/freeze``, so an app can tell them from a realtime read at the same instant)
and sends it up on stream ``readings`` in chunks of at most ``UPLINK_CHUNK`` readings that
always fit one upward message (``protocols.cloud.pages``);
``Output.event`` does the same for one event (``meter/<id>/event``, stream ``events``).
Must not read meters or decide what is worth sending.
"""

from __future__ import annotations

from typing import Any

from protocols.cloud import page_budget, pages
from runtime.api import AppContext
from runtime.model import Event, Reading

UPLINK_CHUNK = 200
READINGS_BUDGET = page_budget({"readings": []})  # a chunk's bytes: within the uplink's message limit


class Output:
    def __init__(self, ctx: AppContext, counters: dict[str, int]) -> None:
        self._ctx = ctx
        self.counters = counters
        counters.setdefault("readings", 0)
        counters.setdefault("events", 0)

    async def readings(self, readings: list[Reading], *, kind: str | None = None) -> None:
        """``kind``: "curve" or "freeze" when these are the meter's own stored records."""
        if not readings:
            return
        self.counters["readings"] += len(readings)
        await self._ctx.store.write_readings(readings)
        # one JSON form per reading, shared by the bus and the uplink (a bus payload is read-only)
        rows = [r.to_json() for r in readings]
        by_device: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_device.setdefault(row["device"], []).append(row)
        for device, device_rows in by_device.items():
            self._ctx.bus.publish(f"meter/{device}/reading", device_rows)
            if kind is not None:
                self._ctx.bus.publish(f"meter/{device}/{kind}", device_rows)
        for chunk in pages(rows, budget=READINGS_BUDGET, max_items=UPLINK_CHUNK, what="reading"):
            await self._ctx.uplink.send("readings", {"readings": chunk})

    async def event(self, event: Event) -> None:
        self.counters["events"] += 1
        await self._ctx.store.write_event(event)
        self._ctx.bus.publish(f"meter/{event.source}/event", event.to_json())
        await self._ctx.uplink.send("events", event.to_json())


__all__ = ["UPLINK_CHUNK", "Output"]
