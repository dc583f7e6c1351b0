"""Event reading (事件): meters' power-down records and relay state, polled and on carrier reports.

Layer: apps (acquisition), one task. Every ``event_poll_interval_s`` (and at once when the
carrier module reports a meter event, see ``carrier.CarrierLink``) each available meter is
asked for its power-down count; when it rose, the new records (start/end, at most the 10 a
meter keeps) become ``meter.power_down`` events, oldest first. On first sight of a meter only
records that start after it joined the station model are ours (``first_seen/<id>``): older ones
were reported by whoever read the meter then. Status word 3 gives the relay state; a change
is ``meter.relay_open`` / ``meter.relay_closed``. One event read per meter at a time.
Must not schedule itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from hal.meters import MeterClient
from protocols.station import Meter
from runtime.api import AppContext
from runtime.model import Event, Reading
from runtime.scheduler import Slot

from . import items
from .output import Output
from .plan import Plan, each_meter
from .reader import MeterReader

POWER_DOWN_RECORDS = 10  # a meter keeps its 10 most recent power-down records (03110001..0A)


class EventTask:
    def __init__(
        self, ctx: AppContext, plan: Plan, reader: MeterReader, output: Output, *, tz: ZoneInfo
    ) -> None:
        self._ctx = ctx
        self._plan = plan
        self._reader = reader
        self._output = output
        self._tz = tz
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # meter -> its lock, holders and waiters

    async def note_first_seen(self, meters: Iterable[Meter]) -> None:
        """Remember when each meter joined the model: power-downs after that are ours to report."""
        now = self._ctx.clock.now()
        for meter in meters:
            key = f"first_seen/{meter.id}"
            if await self._ctx.store.get(key) is None:
                await self._ctx.store.set(key, now)

    async def run(self, slot: Slot) -> None:
        """Poll every available meter (all ports at once; each transport orders its meters)."""

        async def one(meter: Meter) -> None:
            if self._reader.available(meter):
                await self.read(meter)

        async def port(name: str, meters: list[Meter]) -> list[Reading]:
            await each_meter(meters, one, task="events")
            return []

        await self._plan.per_port(port)

    async def read(self, meter: Meter) -> None:
        """Power-down records and relay state of one meter: the poll, or a carrier meter event."""
        client = self._plan.client(meter.id)
        if client is None:
            return  # not reachable (no module), or no longer in the model
        await self.read_with(client, meter)

    async def read_with(self, client: MeterClient, meter: Meter) -> None:
        """``read`` through ``client`` (module-led reading: the module's visit of the meter)."""
        # one event read per meter at a time: a poll and an event read must not both emit records.
        # A meter's lock is kept while someone holds or waits for it, not for ever (a lock a meter)
        lock, users = self._locks.get(meter.id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[meter.id] = (lock, users + 1)
        try:
            async with lock:
                await self._power_down_records(client, meter)
                await self._relay_state(client, meter)
        finally:
            users = self._locks[meter.id][1] - 1
            if users:
                self._locks[meter.id] = (lock, users)
            else:
                del self._locks[meter.id]

    async def _power_down_records(self, client: MeterClient, meter: Meter) -> None:
        store = self._ctx.store
        new = await self._reader.attempt(meter, "event", client.read_power_down_count, record=False)
        if new is None:
            return
        key = f"power_down_count/{meter.id}"
        known = await store.get(key)
        if known is not None and new <= int(known):
            if new != int(known):
                await store.set(key, new)  # a meter clear lowers the count
            return  # unchanged: no write (a store write per meter and poll is most of a poll's cost)
        # Without a first-seen time (state of an older version) the count is a baseline.
        since = None if known is not None else await store.get(f"first_seen/{meter.id}")
        if known is None and (since is None or new == 0):
            await store.set(key, new)
            return
        wanted = new - int(known) if known is not None else new
        records = await self._reader.attempt(
            meter,
            "event",
            lambda: client.read_power_down_records(min(wanted, POWER_DOWN_RECORDS)),
            record=False,
        )
        if records is None:
            return  # the count stays: the records are read again at the next poll, not lost
        await store.set(key, new)
        for record in reversed(records):  # oldest first
            start = items.local_to_epoch(record.start, self._tz)
            if since is not None and start < float(since):
                continue
            end = None if record.end is None else items.local_to_epoch(record.end, self._tz)
            data = {"address": meter.address, "port": meter.transport}
            await self._output.event(Event("meter.power_down", meter.id, start, end, data))

    async def _relay_state(self, client: MeterClient, meter: Meter) -> None:
        relay_open = await self._reader.attempt(meter, "event", client.read_relay_state, record=False)
        if relay_open is None:
            return
        key = f"relay_open/{meter.id}"
        known = await self._ctx.store.get(key)
        if known is None or bool(known) != relay_open:
            await self._ctx.store.set(key, relay_open)
        if known is None or bool(known) != relay_open:  # retained: an app starting later knows it too
            state = {"open": relay_open, "at": self._ctx.clock.now(), "cause": "unknown"}
            self._ctx.bus.publish(f"meter/{meter.id}/relay", state, retain=True)
        if known is not None and bool(known) != relay_open:
            kind = "meter.relay_open" if relay_open else "meter.relay_closed"
            await self._output.event(
                Event(kind, meter.id, self._ctx.clock.now(), None, {"address": meter.address})
            )


__all__ = ["POWER_DOWN_RECORDS", "EventTask"]
