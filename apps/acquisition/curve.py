"""The 15-min load curve (负荷曲线) from the meters' own memory, and catch-up of missed points (补抄).

Layer: apps (acquisition), one task. At :00/:15/:30/:45 every meter is asked for the point
that just closed (CURVE priority). A point not read -- no answer, or the meter has not
recorded it -- is remembered per meter (persisted in the app's store as ``missing_curve``)
and read back later from the meter's memory, in the largest batches the protocol allows,
once the meter answers again; points older than ``catch_up_hours`` are given up and counted
as lost. Must not schedule itself.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from hal.interfaces import Priority
from protocols.station import Meter
from runtime.api import AppContext
from runtime.model import Quality, Reading
from runtime.scheduler import Slot

from . import items
from .output import Output
from .plan import Plan, each_meter
from .reader import MeterReader

CURVE_PERIOD_S = 900
STORE_KEY = "missing_curve"
START_SLACK_S = 1.0  # a first start this close after a boundary is on it: the boundary is owed


class CurveTask:
    def __init__(
        self,
        ctx: AppContext,
        plan: Plan,
        reader: MeterReader,
        output: Output,
        *,
        tz: ZoneInfo,
        catch_up_hours: int,
    ) -> None:
        self._ctx = ctx
        self._plan = plan
        self._reader = reader
        self._output = output
        self._tz = tz
        self._catch_up_hours = catch_up_hours
        self.counters = reader.counters
        self.counters.setdefault("curve_points_caught_up", 0)
        self.counters.setdefault("curve_points_lost", 0)
        self.missing: dict[str, set[float]] = {}

    async def load(self) -> None:
        saved = await self._ctx.store.get(STORE_KEY)
        self.missing = {k: set(v) for k, v in (saved or {}).items()}
        now = self._ctx.clock.now()
        point = math.floor(now / CURVE_PERIOD_S) * CURVE_PERIOD_S
        if saved is None and now - point <= START_SLACK_S:
            # the first start ever, on a boundary (a simulated run's start): the boundary's own
            # point is read back like a missed one (slots come after the start, so none reads it)
            for meter in self._plan.terminal_led():
                self.missing.setdefault(meter.id, set()).add(point)

    async def save(self) -> None:
        await self._ctx.store.set(STORE_KEY, {k: sorted(v) for k, v in self.missing.items()})

    def forget(self, meter_ids: set[str]) -> None:
        """Drop the missed points of meters that left the station model."""
        for meter_id in meter_ids:
            self.missing.pop(meter_id, None)

    async def run(self, slot: Slot) -> None:
        """Read the point that just closed; then catch up what is missing (the caller saves)."""
        point = slot.epoch
        readings = await self._plan.per_port(lambda port, meters: self._port(port, meters, point))
        await self._output.readings(readings, kind="curve")
        await self.catch_up()

    async def _read(
        self, meter: Meter, start: float, count: int, quality: Quality
    ) -> dict[float, list[Reading]] | None:
        client = self._plan.client(meter.id)
        if client is None:
            return None
        local = datetime.fromtimestamp(start, self._tz).replace(tzinfo=None)
        records = await self._reader.attempt(meter, "curve", lambda: client.read_curve(local, count))
        if records is None:
            return None
        return items.records_to_points(meter, records, self._tz, quality=quality)

    async def _port(self, port: str, meters: list[Meter], point: float) -> list[Reading]:
        out: list[Reading] = []

        async def one(meter: Meter) -> None:
            points = await self._read(meter, point, 1, Quality.GOOD)
            if points is None or point not in points:
                self.missing.setdefault(meter.id, set()).add(point)
                return
            out.extend(points[point])

        queue = self._plan.transport(port)
        await each_meter(meters, one, task="curve", queue=queue, priority=Priority.CURVE)
        return out

    async def catch_up(self) -> None:
        """补抄: read missed curve points of meters that answer again from their memory."""
        horizon = self._ctx.clock.now() - self._catch_up_hours * 3600
        meters = {m.id: m for m in self._plan.readable()}
        readings: list[Reading] = []
        for meter_id, missing in list(self.missing.items()):
            expired = {t for t in missing if t < horizon}
            if expired:
                self.counters["curve_points_lost"] += len(expired)
                missing -= expired
            meter = meters.get(meter_id)
            client = self._plan.client(meter_id)
            if meter is None or client is None or not missing:
                self.missing.pop(meter_id, None)
                continue
            if not client.available():
                continue
            while missing:
                first = min(missing)
                count = min(client.curve_batch, int((max(missing) - first) // CURVE_PERIOD_S) + 1)
                points = await self._read(meter, first, count, Quality.CATCH_UP)
                if points is None:
                    break
                found = missing & set(points)
                for ts in found:
                    readings.extend(points[ts])
                self.counters["curve_points_caught_up"] += len(found)
                window = {t for t in missing if t < first + count * CURVE_PERIOD_S}
                missing -= window  # records the meter does not have are not asked for again
                if not found:
                    self.counters["curve_points_lost"] += len(window)
            if not missing:
                self.missing.pop(meter_id, None)
        await self._output.readings(readings, kind="curve")


__all__ = ["CURVE_PERIOD_S", "CurveTask"]
