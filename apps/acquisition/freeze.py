"""The daily freeze (日冻结) read back from the meters after local midnight, and missed days later.

Layer: apps (acquisition), one task. After 00:00 local every meter is asked for its last
daily freeze (CURVE priority); its values become ``daily.*`` readings at the freeze time. A
day not read -- no answer, or the meter has not frozen yet (a skewed clock) -- is remembered
(persisted as ``missing_freeze``) and read back from the meter's freeze history (up to 62
days back) once it answers again. A new day also starts the tracker's daily success rate.
Must not schedule itself.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hal.interfaces import Priority
from protocols.station import Meter
from runtime.api import AppContext
from runtime.model import Quality, Reading
from runtime.scheduler import Slot

from . import items
from .curve import START_SLACK_S
from .output import Output
from .plan import Plan, each_meter
from .reader import MeterReader

STORE_KEY = "missing_freeze"
SAME_FREEZE_S = 900  # a freeze stamped within this of the day's midnight is that day's
HISTORY_DAYS = 62  # DL/T 645 meters keep 62 daily freezes (050600nn)


class FreezeTask:
    def __init__(
        self, ctx: AppContext, plan: Plan, reader: MeterReader, output: Output, *, tz: ZoneInfo
    ) -> None:
        self._ctx = ctx
        self._plan = plan
        self._reader = reader
        self._output = output
        self._tz = tz
        self.counters = reader.counters
        self.counters.setdefault("freezes_caught_up", 0)
        self.missing: dict[str, set[float]] = {}

    async def load(self) -> None:
        saved = await self._ctx.store.get(STORE_KEY)
        self.missing = {k: set(v) for k, v in (saved or {}).items()}
        now = self._ctx.clock.now()
        local = datetime.fromtimestamp(now, self._tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        if saved is None and now - midnight <= START_SLACK_S:
            # the first start ever, at local midnight (a simulated run's start): today's freeze,
            # the day's opening register, is read back like a missed one (the 00:00 slot came first)
            for meter in self._plan.terminal_led():
                self.missing.setdefault(meter.id, set()).add(midnight)

    async def save(self) -> None:
        await self._ctx.store.set(STORE_KEY, {k: sorted(v) for k, v in self.missing.items()})

    def forget(self, meter_ids: set[str]) -> None:
        for meter_id in meter_ids:
            self.missing.pop(meter_id, None)

    async def run(self, slot: Slot) -> None:
        self._reader.tracker.new_day()
        day = slot.epoch
        readings = await self._plan.per_port(lambda port, meters: self._port(port, meters, day))
        await self._output.readings(readings, kind="freeze")

    async def _read(self, meter: Meter, times_ago: int) -> tuple[float, dict[str, float]] | None:
        client = self._plan.client(meter.id)
        if client is None:
            return None
        record = await self._reader.attempt(meter, "freeze", lambda: client.read_daily_freeze(times_ago))
        if record is None:
            return None
        return items.local_to_epoch(record.at, self._tz), record.values

    async def _port(self, port: str, meters: list[Meter], day: float) -> list[Reading]:
        out: list[Reading] = []

        async def one(meter: Meter) -> None:
            got = await self._read(meter, 1)
            if got is None or abs(got[0] - day) > SAME_FREEZE_S:
                # not read, or the meter has not frozen today yet (clock skew): read it back later
                self.missing.setdefault(meter.id, set()).add(day)
                return
            out.extend(items.to_readings(meter, got[1], got[0], prefix=items.DAILY_PREFIX))

        queue = self._plan.transport(port)
        await each_meter(meters, one, task="freeze", queue=queue, priority=Priority.CURVE)
        return out

    async def catch_up(self) -> None:
        """Read missed days back from the freeze history of meters that answer again."""
        meters = {m.id: m for m in self._plan.readable()}
        now = self._ctx.clock.now()
        readings: list[Reading] = []
        for meter_id, days in list(self.missing.items()):
            meter = meters.get(meter_id)
            if meter is None or not self._reader.available(meter):
                continue
            for day in sorted(days):
                times_ago = int((now - day) // 86400) + 1
                if times_ago > HISTORY_DAYS:
                    days.discard(day)
                    continue
                for n in (times_ago, times_ago + 1, max(1, times_ago - 1)):
                    got = await self._read(meter, n)
                    if got is not None and abs(got[0] - day) <= SAME_FREEZE_S:
                        readings.extend(
                            items.to_readings(
                                meter, got[1], got[0], quality=Quality.CATCH_UP, prefix=items.DAILY_PREFIX
                            )
                        )
                        self.counters["freezes_caught_up"] += 1
                        days.discard(day)
                        break
            if not days:
                self.missing.pop(meter_id, None)
        await self._output.readings(readings, kind="freeze")


__all__ = ["FreezeTask"]
