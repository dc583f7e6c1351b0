"""The acquisition app's side of the HPLC carrier module: node-table sync and meter events.

Layer: apps (acquisition). ``CarrierLink`` keeps the module's node table (its archive) equal to
the station model's HPLC meters (``sync_archive(addresses, protocols=...)`` at start and each
time the model's HPLC meters change; a failure is logged once, counted, and retried with
backoff until it works or a newer model arrives) and turns the module's meter events -- the runtime publishes
each carrier event as ``hplc/event/<kind>`` -- into an immediate event read of that meter
(its power-down records and status) instead of waiting for the next poll. Uses only the
app context; must not read meters itself (the service's ``event_read`` does) and must not
end the app on a module's or a message's fault.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from hal.errors import CapabilityMissing, HalError
from hal.interfaces import CarrierModule
from protocols.station import Meter, StationModel
from runtime.api import AppContext
from runtime.errors import TerminalError

HPLC = "hplc"
METER_EVENTS = "hplc/event/meter_event"
SYNC_RETRY_S = 30.0  # first retry after a failed sync; doubles up to SYNC_RETRY_MAX_S
SYNC_RETRY_MAX_S = 600.0
SETTLE_WAIT_S = 60.0  # a cycle waits at most this long for the first sync of a new model

EventRead = Callable[[Meter], Awaitable[None]]


def _upper(address: str) -> str:
    """``address`` in upper case -- the same string when it is already (no copy a meter)."""
    upper = address.upper()
    return address if upper == address else upper


class CarrierLink:
    """Node-table sync and meter-event reads for the HPLC meters of the current station model."""

    def __init__(self, ctx: AppContext, *, event_read: EventRead, counters: dict[str, int]) -> None:
        self._ctx = ctx
        self._log = ctx.log
        self._event_read = event_read
        self._counters = counters
        for key in ("hplc_syncs", "hplc_sync_failures", "carrier_events", "carrier_event_reads",
                    "carrier_events_ignored"):  # fmt: skip
            counters.setdefault(key, 0)
        # the HPLC meters' addresses and protocols (parallel tuples: the mapping is made per sync)
        self._wish: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._by_address: dict[str, Meter] = {}
        self._synced_nonempty = False
        self._dirty = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._reading: set[str] = set()

    # ------------------------------------------------------------------ node table

    def model_changed(self, model: StationModel) -> None:
        """Queue a sync of the module with ``model``'s HPLC meters (at start and on every change
        of the model; nothing is sent when the HPLC meters stay the same)."""
        meters = [m for m in model.meters if m.channel == HPLC]
        self._by_address = {_upper(m.address): m for m in model.meters}
        if not meters and not self._synced_nonempty:
            self._wish = None  # nothing on the carrier and nothing to clear from the module
            self._settled.set()
            return
        wish = (tuple(m.address for m in meters), tuple(m.protocol for m in meters))
        if wish == self._wish:
            return
        self._wish = wish
        self._settled.clear()
        self._dirty.set()

    async def settled(self) -> None:
        """Wait (bounded) until the latest model's HPLC meters have been offered to the module once."""
        if self._settled.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with self._ctx.clock.timeout(SETTLE_WAIT_S):
                await self._settled.wait()

    def _module(self) -> CarrierModule | None:
        try:
            return self._ctx.hal.hplc()
        except CapabilityMissing:
            return None  # the service has said so once already

    async def _keep_synced(self) -> None:
        failing = False
        delay = SYNC_RETRY_S
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            wish, module = self._wish, self._module()
            if wish is None or module is None:
                self._settled.set()
                continue
            addresses, protocols = wish
            try:
                await module.sync_archive(addresses, protocols=dict(zip(addresses, protocols, strict=True)))
            except (HalError, TerminalError, ValueError) as err:
                self._counters["hplc_sync_failures"] += 1
                if not failing:  # edge-triggered: once until it works again
                    self._log.warning("HPLC archive sync failed (retrying): %s", err)
                failing = True
                self._settled.set()  # reads go ahead; the module may still know the nodes
                with contextlib.suppress(TimeoutError):
                    async with self._ctx.clock.timeout(delay):
                        await self._dirty.wait()  # a newer model cuts the wait short
                delay = min(delay * 2, SYNC_RETRY_MAX_S)
                self._dirty.set()
                continue
            if failing:
                self._log.info("HPLC archive sync works again")
            failing, delay = False, SYNC_RETRY_S
            self._counters["hplc_syncs"] += 1
            self._synced_nonempty = bool(addresses)
            self._log.info("HPLC module archive: %d nodes", len(addresses))
            if self._wish is wish:
                self._settled.set()

    # ------------------------------------------------------------------ meter events

    async def _meter_events(self) -> None:
        async with (
            self._ctx.bus.subscribe(METER_EVENTS, maxsize=256) as sub,
            asyncio.TaskGroup() as tg,
        ):
            async for msg in sub:
                self._counters["carrier_events"] += 1
                meter = self._meter_of(msg.payload)
                if meter is None:
                    self._counters["carrier_events_ignored"] += 1
                    continue
                if meter.id in self._reading:
                    continue  # a read of this meter is under way: it sees this event's records too
                self._reading.add(meter.id)
                tg.create_task(self._read(meter), name=f"acquisition:event-read:{meter.id}")

    def _meter_of(self, payload: object) -> Meter | None:
        addresses = payload.get("addresses") if isinstance(payload, dict) else None
        if not isinstance(addresses, list) or not addresses or not isinstance(addresses[0], str):
            self._log.debug("carrier meter event without a meter address: %.120r", payload)
            return None
        meter = self._by_address.get(addresses[0].upper())
        if meter is None:
            self._log.info("carrier meter event from %s: not in the station model", addresses[0])
        return meter

    async def _read(self, meter: Meter) -> None:
        try:
            self._counters["carrier_event_reads"] += 1
            await self._event_read(meter)
        finally:
            self._reading.discard(meter.id)

    async def run(self) -> None:
        """Both jobs, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._keep_synced(), name="acquisition:hplc-sync")
            tg.create_task(self._meter_events(), name="acquisition:hplc-events")


__all__ = ["METER_EVENTS", "CarrierLink"]
