"""Module-led reading (路由主动抄表) of the HPLC meters: curve blocks and daily freezes per round.

Layer: apps (acquisition), one task. At station-area scale (hundreds to thousands of carrier
meters) a terminal does not read each meter point by point: it lets the carrier module lead.
Every ``round_s`` (hourly by default, just after the boundary) the task restarts the module's
routing (AFN12 F1); the module walks its node table, several nodes at once, and asks for each
what to read (AFN14 F1). The answer is what is due at that meter: the curve points recorded
since the last one read (DL/T 645 load-curve blocks / DL/T 698.45 record reads with a time
selector, as many points per exchange as the protocol allows, back to ``catch_up_hours``) and,
after local midnight, yesterday's daily freeze. Every ``realtime_every`` rounds a visit also
takes the meter's realtime snapshot (``realtime_items``, stamped with the visit's time) and every
``events_every`` rounds its event read (power-down records, relay state: ``EventTask.read_with``),
which terminal-led polls would otherwise do. The meters take turns (a stable offset per meter), so
a round carries the curve of every meter and the extras of a share of them: at 2,000 meters a
snapshot of every meter every round did not fit the hour (rounds overran, 93 % of the points in
time instead of all).
The reads go through the same ``MeterClient`` code as terminal-led reads, over
``hal.meters.RouteTransport``.

Per meter the task keeps the last curve point and the last freeze day read (persisted as
``route_progress`` together with the readings they stand for: first the readings, then the
progress), so a restarted terminal asks only for what it has not got. Points a meter does not
hold (it was off, or the points are older than the catch-up window) are counted lost, not asked
again. A round not finished by the next slot goes on (a restart would starve the end of the
table) unless it has run for ``STALE_ROUNDS`` periods: then the module is told to start over.
When such a round ends, a catch-up round starts at once rather than at the next slot.

Must not: read meters outside a module's ask (the module decides when a node is read), or
schedule itself (the service does).
"""

from __future__ import annotations

import contextlib
import math
import zlib
from array import array
from collections.abc import Awaitable, Iterable, Iterator
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from hal.errors import CapabilityMissing, DeviceError, HalError, TransportTimeout
from hal.interfaces import RouteModule
from hal.meters import MeterClient, MeterClients, RouteTransport
from hal.meters.route import Job
from protocols.errors import ProtocolError
from protocols.station import Meter, StationModel
from runtime.api import AppContext
from runtime.errors import TerminalError
from runtime.model import Quality, Reading
from runtime.scheduler import Slot

from . import items
from .curve import CURVE_PERIOD_S
from .events import EventTask
from .freeze import SAME_FREEZE_S
from .output import Output
from .reader import MeterReader

T = TypeVar("T")

HPLC = "hplc"
STORE_KEY = "route_progress"
ROUND_DELAY_S = 60.0  # after the boundary: the meters have frozen the point that just closed
FLUSH_READINGS = 2000  # readings buffered before they go to the store and uplink
FLUSH_EVERY_S = 300.0  # ... or this often while a round runs
STALE_ROUNDS = 3  # a round unfinished for this many periods is restarted
DAY_S = 86400


class Progress:
    """Per meter: the last curve point read, the local midnight of the last freeze read, and the
    round of its last realtime/event visit -- columns, a row a meter (NaN / -1: none yet).

    Points and freezes are kept for the meters given to ``keep`` (and those loaded before);
    visits are kept for every meter ever visited (a meter that leaves and comes back in the same
    round is not visited twice)."""

    __slots__ = ("_freeze", "_point", "_rows", "_visit")

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}  # meter id -> row
        self._point = array("d")
        self._freeze = array("d")
        self._visit = array("q")

    def _row(self, meter_id: str) -> int:
        row = self._rows.get(meter_id)
        if row is None:
            row = self._rows[meter_id] = len(self._point)
            self._point.append(math.nan)
            self._freeze.append(math.nan)
            self._visit.append(-1)
        return row

    def _epoch(self, column: array[float], meter_id: str) -> float | None:
        """The meter's value in ``column`` (None: no row, or NaN: none yet)."""
        row = self._rows.get(meter_id)
        value = math.nan if row is None else column[row]
        return None if math.isnan(value) else value

    def point(self, meter_id: str) -> float | None:
        return self._epoch(self._point, meter_id)

    def set_point(self, meter_id: str, epoch: float) -> None:
        self._point[self._row(meter_id)] = epoch

    def freeze(self, meter_id: str) -> float | None:
        return self._epoch(self._freeze, meter_id)

    def set_freeze(self, meter_id: str, midnight: float) -> None:
        self._freeze[self._row(meter_id)] = midnight

    def visited(self, meter_id: str) -> int | None:
        row = self._rows.get(meter_id)
        return None if row is None or self._visit[row] < 0 else self._visit[row]

    def set_visited(self, meter_id: str, round_number: int) -> None:
        self._visit[self._row(meter_id)] = round_number

    def keep(self, meter_ids: Iterable[str]) -> None:
        """Forget the points and freezes of meters not in ``meter_ids`` (their visits stay)."""
        kept = set(meter_ids)
        old, self._rows = self._rows, {}
        point, freeze, visit = self._point, self._freeze, self._visit
        self._point, self._freeze, self._visit = array("d"), array("d"), array("q")
        for meter_id, row in old.items():
            if meter_id in kept:
                new = self._row(meter_id)
                self._point[new], self._freeze[new], self._visit[new] = point[row], freeze[row], visit[row]
            elif visit[row] >= 0:
                self.set_visited(meter_id, visit[row])

    def saved(self) -> Iterator[tuple[str, float | None, float | None]]:
        """(meter id, last point, last freeze) of every meter with either."""
        for meter_id, row in self._rows.items():
            point, freeze = self._point[row], self._freeze[row]
            if not (math.isnan(point) and math.isnan(freeze)):
                yield meter_id, None if math.isnan(point) else point, None if math.isnan(freeze) else freeze


def _upper(address: str) -> str:
    """``address`` in upper case -- the same string when it is already (no copy a meter)."""
    upper = address.upper()
    return address if upper == address else upper


class RouteTask:
    """Leads nothing itself: answers the carrier module's asks with what each meter owes."""

    def __init__(
        self,
        ctx: AppContext,
        reader: MeterReader,
        output: Output,
        clients: MeterClients,
        *,
        tz: ZoneInfo,
        catch_up_hours: int,
        round_s: float,
        daily_freeze: bool,
        realtime_items: tuple[str, ...] = (),
        realtime_every: int = 0,
        events: EventTask | None = None,
        events_every: int = 0,
    ) -> None:
        self._ctx = ctx
        self._log = ctx.log
        self._reader = reader
        self._output = output
        self._factory = clients
        self._tz = tz
        self._catch_up_s = catch_up_hours * 3600.0
        self.round_s = round_s
        self._daily_freeze = daily_freeze
        self._realtime_items = realtime_items
        self._realtime_every = realtime_every if realtime_items else 0
        self._events = events if events_every > 0 else None
        self._events_every = events_every
        self.transport = RouteTransport(clock=ctx.clock, name="hplc-route", jobs=self._job)
        self.counters = reader.counters
        for key in ("route_rounds", "route_rounds_unfinished", "route_points", "route_points_lost",
                    "route_freezes", "route_lead_refused", "route_realtime",
                    "route_event_reads", "route_rounds_catch_up"):  # fmt: skip
            self.counters.setdefault(key, 0)
        self._meters: dict[str, Meter] = {}  # by address (upper case)
        self.progress = Progress()  # last curve point / freeze read, round of the last visit
        self._pending: list[Reading] = []
        self._pending_realtime: list[Reading] = []
        self._module: RouteModule | None = None
        self._round_started_at: float | None = None
        self._round = 0  # rounds started (realtime once a round, events every ``events_every``)
        self._first_point = math.floor(ctx.clock.now() / CURVE_PERIOD_S) * CURVE_PERIOD_S

    # ------------------------------------------------------------------ setup

    def attach(self, module: object) -> bool:
        """Lead ``module``'s reading through this task; False when it cannot lead (a proxy
        of an isolated app, a driver without AFN14): the HPLC meters are then read terminal-led."""
        if not isinstance(module, RouteModule):
            return False
        try:
            module.lead(self.transport)
        except CapabilityMissing as err:
            self.counters["route_lead_refused"] += 1
            self._log.warning("module-led reading unavailable, reading terminal-led: %s", err)
            return False
        self._module = module
        return True

    def detach(self) -> None:
        """Stop answering the module (the app stops): jobs under way are cancelled."""
        if self._module is not None:
            self._module.lead(None)
            self._module = None
        self.transport.close()

    def use(self, model: StationModel) -> None:
        """Follow the station model's HPLC meters (clients on the route transport)."""
        meters = [m for m in model.meters if m.transport == HPLC]
        self._meters = {_upper(m.address): m for m in meters}
        self.progress.keep(m.id for m in meters)

    async def load(self) -> None:
        saved = await self._ctx.store.get(STORE_KEY, {})
        for meter_id, row in saved.items() if isinstance(saved, dict) else ():
            if isinstance(row, list) and len(row) == 2:
                point, freeze = row
                if isinstance(point, int | float):
                    self.progress.set_point(meter_id, float(point))
                if isinstance(freeze, int | float):
                    self.progress.set_freeze(meter_id, float(freeze))

    # ------------------------------------------------------------------ rounds

    async def run(self, slot: Slot) -> None:
        """One scheduled round: start the module's routing (unless a round still runs), pass
        the readings on while it runs, and return when it finished or the period is nearly over.
        A round of an earlier period that ends inside this one (the midnight round, with every
        meter's daily freeze, can outlast its hour at thousands of meters) is followed at once by
        a catch-up round: what came due meanwhile is read now, not a period later."""
        if self._module is None or not self._meters:
            return
        await self._ctx.clock.sleep(ROUND_DELAY_S)
        deadline = slot.epoch + self.round_s - FLUSH_EVERY_S
        started = await self._start_round()
        while started is not None:
            await self._follow_round(deadline)
            if started or self.transport.in_round or self._ctx.clock.now() >= deadline:
                break
            self.counters["route_rounds_catch_up"] += 1
            self._log.info("the previous period's module-led round ended: a catch-up round starts")
            started = await self._start_round(force=True)
        await self.flush()

    async def _start_round(self, *, force: bool = False) -> bool | None:
        """Restart the module's routing; False: an earlier round goes on (not stale yet), None:
        the module refused."""
        module = self._module
        if module is None:
            return None
        now = self._ctx.clock.now()
        running = self.transport.in_round and self._round_started_at is not None
        if not force and running and now - (self._round_started_at or now) < STALE_ROUNDS * self.round_s:
            self.counters["route_rounds_unfinished"] += 1
            self._log.info("module-led round still under way: not restarted")
            return False
        try:
            await module.route("restart")
        except (HalError, TerminalError) as err:
            self._log.warning("module-led round not started: %s", err)
            return None
        self.transport.round_started()
        self._round_started_at = now
        self.counters["route_rounds"] += 1
        self._round += 1
        return True

    async def _follow_round(self, deadline: float) -> None:
        """Pass the readings on while the round runs, until it finished or ``deadline``."""
        while self.transport.in_round:
            left = deadline - self._ctx.clock.now()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with self._ctx.clock.timeout(min(FLUSH_EVERY_S, left)):
                    await self.transport.wait_round()
            await self.flush()

    async def flush(self) -> None:
        """Readings gathered so far to the store and uplink, then the progress they stand for."""
        if self._pending_realtime:
            realtime, self._pending_realtime = self._pending_realtime, []
            await self._output.readings(realtime)
        if not self._pending:
            return
        readings, self._pending = self._pending, []
        progress = {m: [point, freeze] for m, point, freeze in self.progress.saved()}
        curve = [r for r in readings if not r.quantity.startswith(items.DAILY_PREFIX)]
        freeze = [r for r in readings if r.quantity.startswith(items.DAILY_PREFIX)]
        await self._output.readings(curve, kind="curve")
        await self._output.readings(freeze, kind="freeze")
        await self._ctx.store.set(STORE_KEY, progress)

    # ------------------------------------------------------------------ one node

    def _job(self, address: str) -> Job | None:
        """What is due at the node the module asks about (None: nothing, the node is done)."""
        meter = self._meters.get(address.upper())
        if meter is None:
            return None
        # a client for the visit (no state of its own: the master it shares is the state), not
        # one kept a meter
        client = self._factory.client(
            self.transport, meter.protocol, meter.address, three_phase=meter.three_phase
        )
        now = self._ctx.clock.now()
        latest = math.floor(now / CURVE_PERIOD_S) * CURVE_PERIOD_S
        horizon = latest - self._catch_up_s
        last = self.progress.point(meter.id)
        first = self._first_point if last is None else last + CURVE_PERIOD_S
        if first < horizon:
            lost = int((horizon - first) // CURVE_PERIOD_S)
            self.counters["route_points_lost"] += lost
            first += lost * CURVE_PERIOD_S
        midnight = self._midnight(now)
        last_freeze = self.progress.freeze(meter.id)
        freeze_due = self._daily_freeze and (last_freeze is None or last_freeze < midnight)
        realtime_due = self._turn(meter, self._realtime_every)
        events_due = self._events is not None and self._turn(meter, self._events_every)
        visit_due = self.progress.visited(meter.id) != self._round and (realtime_due or events_due)
        if first > latest and not freeze_due and not visit_due:
            return None

        async def job() -> bool:
            ok = True
            if first <= latest:
                ok = await self._read_curve(meter, client, first, latest)
            if freeze_due:
                ok = await self._read_freeze(meter, client, midnight) and ok
            if visit_due:
                ok = await self._read_visit(meter, client, realtime_due, events_due) and ok
            return ok

        return job

    def _turn(self, meter: Meter, every: int) -> bool:
        return turn(self._round, meter.id, every)

    async def _read_visit(self, meter: Meter, client: MeterClient, realtime: bool, events: bool) -> bool:
        """The realtime snapshot and/or the event read, on the meter's turn."""
        got_any = not realtime
        at = self._ctx.clock.now()
        for batch in client.realtime_batches(self._realtime_items) if realtime else ():
            values = await self._call(meter, "realtime", client.read_realtime(batch))
            if values is not None:
                got_any = True
                self._pending_realtime.extend(items.to_readings(meter, values, at))
        if realtime and got_any:
            self.counters["route_realtime"] += 1
        if events and self._events is not None:
            await self._events.read_with(client, meter)
            self.counters["route_event_reads"] += 1
        if got_any:
            self.progress.set_visited(meter.id, self._round)
        return got_any

    def _midnight(self, now: float) -> float:
        local = datetime.fromtimestamp(now, self._tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    async def _read_curve(self, meter: Meter, client: MeterClient, first: float, latest: float) -> bool:
        start = first
        while start <= latest:
            count = min(client.curve_batch, int((latest - start) // CURVE_PERIOD_S) + 1)
            local = datetime.fromtimestamp(start, self._tz).replace(tzinfo=None)
            records = await self._call(meter, "curve", client.read_curve(local, count))
            if records is None:
                return False
            points = items.records_to_points(meter, records, self._tz, quality=Quality.GOOD)
            window_end = start + (count - 1) * CURVE_PERIOD_S
            got = sorted(ts for ts in points if start <= ts <= window_end)
            for ts in got:
                self._pending.extend(points[ts])
            self.counters["route_points"] += len(got)
            if got:
                # points before the newest one read that the meter did not hold: lost
                self.counters["route_points_lost"] += int((got[-1] - start) // CURVE_PERIOD_S) + 1 - len(got)
                self.progress.set_point(meter.id, got[-1])
            if not got or got[-1] < window_end:
                break  # the meter holds nothing newer yet: asked again next round
            start = window_end + CURVE_PERIOD_S
        return True

    async def _read_freeze(self, meter: Meter, client: MeterClient, midnight: float) -> bool:
        record = await self._call(meter, "freeze", client.read_daily_freeze(1))
        if record is None:
            return False
        at = items.local_to_epoch(record.at, self._tz)
        if abs(at - midnight) > SAME_FREEZE_S:
            return True  # not frozen yet (a skewed clock): asked again next round
        self._pending.extend(items.to_readings(meter, record.values, at, prefix=items.DAILY_PREFIX))
        self.progress.set_freeze(meter.id, midnight)
        self.counters["route_freezes"] += 1
        return True

    async def _call(self, meter: Meter, kind: str, call: Awaitable[T]) -> T | None:
        """One exchange inside the node's visit: no retry (the module revisits failed nodes)."""
        try:
            result = await call
        except DeviceError as err:
            self.counters["device_errors"] += 1
            self._log.debug("%s: %s", meter.id, err)
            self._reader.record(meter, kind, True)
            return None
        except (TransportTimeout, ProtocolError, HalError) as err:
            if isinstance(err, ProtocolError):
                self.counters["protocol_errors"] += 1
            self.counters["reads_failed"] += 1
            self._reader.record(meter, kind, False)
            return None
        self.counters["reads_ok"] += 1
        self._reader.record(meter, kind, True)
        return result

    def statistics(self) -> dict[str, object]:
        return {**self.transport.statistics(), "meters": len(self._meters)}


def turn(round_number: int, meter_id: str, every: int) -> bool:
    """Whether round ``round_number`` is the meter's turn for a read done every ``every`` rounds
    (0: never). The meters take turns (a stable offset per meter), so each round carries about
    1/every of them and the curve points of every meter still fit the round."""
    if every <= 0:
        return False
    return (round_number + zlib.crc32(meter_id.encode())) % every == 0


__all__ = ["HPLC", "STORE_KEY", "Progress", "RouteTask", "turn"]
