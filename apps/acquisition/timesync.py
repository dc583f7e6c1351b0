"""Broadcast time sync (广播校时): the terminal's time to every meter, once a day, after reading
each meter's clock.

Layer: apps (acquisition), one task. At ``time_sync_at`` local time every meter the terminal
reads itself is asked for its clock (DL/T 645 04000101/04000102, DL/T 698.45 40000200), then
the time is broadcast on every transport with meters, once per protocol spoken there (DL/T 645
08H, DL/T 698.45 ACTION 40007F00; HPLC meters through the carrier module's broadcast), at
CONTROL priority. A failed broadcast is logged and left to the next day. A meter takes a
broadcast of at most 5 minutes' correction: a clock found ``CLOCK_TOLERANCE_S`` off is read
again after the broadcast and, still off, set point to point (write 04000101/02, SET 40000200).

What a meter's clock said is published retained on ``meter/<id>/clock``::

    {"ts": <terminal time of the read>, "offset_s": <meter clock minus terminal time>,
     "corrected_at": <terminal time it was found (or put) right, or null: still off>}

so the apps that line up a meter's stamped records with other meters' (topology) know which of
its records were stamped by a wrong clock: those before ``corrected_at`` (all of them while it
is null). A meter that does not answer gets no message (nothing was measured). Meters on a port
the carrier module leads are not asked (the module owns that port's exchanges). Must not
schedule itself.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hal.errors import HalError
from hal.interfaces import Priority
from hal.meters import MeterClients
from protocols.errors import ProtocolError
from protocols.station import Meter
from runtime.api import AppContext
from runtime.scheduler import Slot

from .items import local_to_epoch
from .plan import Plan, each_meter

CLOCK_TOPIC = "meter/{}/clock"
#: a clock off by at least this is set point to point when the broadcast did not put it right
CLOCK_TOLERANCE_S = 60.0
#: a clock this far off is logged (DL/T 645 meters' broadcast sync corrects up to 5 minutes a day)
CLOCK_WARN_S = 300.0


class TimeSyncTask:
    def __init__(
        self, ctx: AppContext, plan: Plan, clients: MeterClients, *, tz: ZoneInfo, counters: dict[str, int]
    ) -> None:
        self._ctx = ctx
        self._plan = plan
        self._clients = clients
        self._tz = tz
        self.counters = counters
        for key in ("clock_reads", "clock_read_failures", "clocks_off", "clocks_set"):
            counters.setdefault(key, 0)

    async def run(self, slot: Slot) -> None:
        offsets = await self.read_clocks(self._plan.terminal_led())
        for meter, (_, offset) in offsets:
            if abs(offset) >= CLOCK_WARN_S:
                self.counters["clocks_off"] += 1
                self._ctx.log.warning("meter %s: its clock is %+.0f s off the terminal's", meter.id, offset)
        clock = self._ctx.clock
        at = clock.now()
        now = datetime.fromtimestamp(at, self._tz).replace(tzinfo=None)
        for port, err in await self._clients.broadcast_time(now, self._plan.pairs()):
            self._ctx.log.warning("time sync on %s failed: %s", port, err)
        off = [meter for meter, (_, offset) in offsets if abs(offset) >= CLOCK_TOLERANCE_S]
        corrected: dict[str, float | None] = {meter.id: at for meter, _ in offsets}
        corrected.update((meter.id, None) for meter in off)  # until a read finds it right
        for meter, (_, offset) in await self.read_clocks(off):  # did the broadcast do it?
            corrected[meter.id] = at if abs(offset) < CLOCK_TOLERANCE_S else await self._set_clock(meter)
        for meter, (ts, offset) in offsets:
            body = {"ts": ts, "offset_s": round(offset, 1), "corrected_at": corrected[meter.id]}
            self._ctx.bus.publish(CLOCK_TOPIC.format(meter.id), body, retain=True)

    async def _set_clock(self, meter: Meter) -> float | None:
        """Set one meter's clock point to point (a meter takes a broadcast sync of at most 5
        minutes); when it was put right, the time it was, else None."""
        client = self._plan.client(meter.id)
        if client is None:
            return None
        at = self._ctx.clock.now()
        try:
            await client.set_clock(datetime.fromtimestamp(at, self._tz).replace(tzinfo=None))
        except (HalError, ProtocolError) as err:
            self._ctx.log.warning("meter %s: its clock could not be set: %s", meter.id, err)
            return None
        self.counters["clocks_set"] += 1
        check = await self.read_clocks([meter])
        if check and abs(check[0][1][1]) < CLOCK_TOLERANCE_S:
            return at
        self._ctx.log.warning("meter %s: its clock is still off after being set", meter.id)
        return None

    async def read_clocks(self, meters: list[Meter]) -> list[tuple[Meter, tuple[float, float]]]:
        """(read time, offset in seconds) of each of ``meters`` that told its clock."""
        out: list[tuple[Meter, tuple[float, float]]] = []

        async def one(meter: Meter) -> None:
            client = self._plan.client(meter.id)
            if client is None:
                return
            try:
                told = await client.read_clock(priority=Priority.CONTROL)
            except (HalError, ProtocolError):
                told = None
            now = self._ctx.clock.now()
            if told is None:
                self.counters["clock_read_failures"] += 1
                return
            self.counters["clock_reads"] += 1
            out.append((meter, (now, local_to_epoch(told, self._tz) - now)))

        await each_meter(meters, one, task="clock")
        return out


__all__ = ["CLOCK_TOPIC", "TimeSyncTask"]
