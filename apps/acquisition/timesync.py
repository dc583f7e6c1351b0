"""Broadcast time sync (广播校时): the terminal's time to every meter, once a day.

Layer: apps (acquisition), one task. At ``time_sync_at`` local time the time is broadcast on
every transport with meters, once per protocol spoken there (DL/T 645 08H, DL/T 698.45 ACTION
40007F00; HPLC meters through the carrier module's broadcast), at CONTROL priority. A failed
broadcast is logged and left to the next day. Must not schedule itself.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hal.meters import MeterClients
from runtime.api import AppContext
from runtime.scheduler import Slot

from .plan import Plan


class TimeSyncTask:
    def __init__(self, ctx: AppContext, plan: Plan, clients: MeterClients, *, tz: ZoneInfo) -> None:
        self._ctx = ctx
        self._plan = plan
        self._clients = clients
        self._tz = tz

    async def run(self, slot: Slot) -> None:
        now = datetime.fromtimestamp(self._ctx.clock.now(), self._tz).replace(tzinfo=None)
        for port, err in await self._clients.broadcast_time(now, self._plan.pairs()):
            self._ctx.log.warning("time sync on %s failed: %s", port, err)


__all__ = ["TimeSyncTask"]
