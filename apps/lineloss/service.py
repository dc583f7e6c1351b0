"""The line-loss app: gathers the meters' own records, computes each day once its freezes are in,
again when late data (补抄) changes it, and every 15-min interval as it completes.

Layer: apps (lineloss). Uses only its context: the bus (acquisition's ``meter/<id>/curve``,
``meter/<id>/freeze`` and the metrology unit's ``meter/transformer/reading``; the topology app's
``topology/result``), the station model, the scheduler, its key-value store and the uplink.
The arithmetic is pure (``engine``); this module decides when, and says what came out:

* bus ``lineloss/day`` (retained): the newest day message; ``lineloss/anomaly``: each anomaly
  new in a revision or an early look; ``lineloss/interval``: each completed 15-min interval
  (station, branches, boxes with a box terminal);
* uplink stream ``lineloss``: ``{"type": "day", "date", "revision", "computed_at", "station",
  "thresholds", "days": [...], "anomalies": [...]}`` and ``{"type": "intervals", "date",
  "revision", "start", "step_s", "scopes", "supply_kwh", "loss_kwh", "loss_rate", "coverage"}``;
  a day is sent again (revision + 1) only when its figures or findings change;
  ``{"type": "anomaly", "date", "found_at", "kind", "target", "branch", "evidence",
  "confidence"}`` for a finding of an early look;
* every ``early_every_min`` the findings that need only 15-min data (CT ratio, registers,
  theft) are looked for on today so far; what is new for today is sent at once (an early
  warning that does not wait for the day's freezes);
* cloud commands ``lineloss.day {"date"}`` (the stored day message) and ``lineloss.recompute``.

The day the app first started in is computed as a partial day (message key ``partial``: from
the first curve point at which nearly every meter was read, to the closing midnight): its
opening freeze was not read (acquisition reads each midnight's freeze after it), so every meter
counts from that one curve point instead (when at least ``PARTIAL_MIN_INTERVALS`` are left). It
never enters a later day's history. Days before it are not computed. A first start on the
midnight itself (a simulated run's start) counts as running from it: acquisition reads that
freeze back at once.
After a restart the book is reloaded from the store: the daily freezes of the days kept, and
the energy registers at the 15-min points of yesterday and today; a past day given to the store
comes back whole under them (``Book.restore``), and the stored points of a day that left the
window while the terminal was off are deleted (key ``book``: the dates stored). The store keeps one value
per (device, quantity, time), so a realtime snapshot taken at a 15-min point may stand for the
curve point there: seconds of energy off, not a gap. Results already sent stay in the store.

Memory: only today's points stay in RAM between updates. A past day is given to the store
(keys ``book/<date>/<part>``, ``Book.chill``) at the end of each update, and taken back (``Book.thaw``)
while it is one of the newest ``window_days`` days of a window being computed; older days of a
window need only their energies, which go to the store with the points (key ``book/<date>/ends``,
~150 kB at 2,400 meters) and are read back (``Book.warm``) for the update that computes, then let
go (``Book.cool``): between updates a past day holds only the rows that came for it since. No
``Day`` is held between updates either (a ``Day`` is ~10 kB per meter).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from protocols.cloud import paged_lists
from runtime.api import AppContext
from runtime.bus import Overflow
from runtime.scheduler import Aligned, CatchUp, Slot

from .book import METROLOGY, Book, unpack_parts
from .causes.archive import Records, TopologyView
from .causes.ct import CtSettings
from .causes.meters import MeterSettings
from .causes.sections import FitSettings
from .classify import Thresholds
from .energy import INTERVALS_PER_DAY, common_opening
from .engine import DayResult, Settings, analyse, registers_and_theft
from .layout import Layout
from .station import StationLike, records_from_model
from .window import Day

STREAM = "lineloss"
TICK_S = 300
PARTIAL_MIN_INTERVALS = 4  # a partial first day is computed when it holds at least an hour
START_SLACK_S = 1.0  # a first start this close after a midnight is on it (acquisition's too)
STORED_DAYS_KEY = "book"  # the dates whose points are in the store (``book/<date>/<i>``)
INTERVAL_LEVELS = ("station", "branch", "box")


@dataclass(frozen=True)
class Config:
    settings: Settings
    day_close_delay_s: float = 1800.0
    recompute_days: int = 7
    early_every_s: float = 3600.0  # 0: no early looks

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> Config:
        """From the app's resolved config (the manifest checked types and ranges)."""
        window = int(config.get("window_days", 3))
        try:
            thresholds = Thresholds.from_config(config)
        except ValueError as err:
            raise ValueError(f"apps.lineloss.config: {err}") from err
        settings = Settings(
            thresholds=thresholds,
            meters=MeterSettings(
                stopped_min_kwh=float(config.get("stopped_min_kwh", 0.5)),
                slow_min_pct=float(config.get("slow_min_pct", 5.0)),
                window_days=window,
            ),
            fit=FitSettings(
                min_share=float(config.get("theft_min_share", 0.14)),
                min_t=float(config.get("theft_min_t", 5.0)),
                window_days=window,
            ),
            ct=CtSettings(tolerance=float(config.get("ct_tolerance", 0.1))),
            history_days=max(7, window),
        )
        return cls(
            settings,
            day_close_delay_s=60.0 * float(config.get("day_close_delay_min", 30)),
            recompute_days=int(config.get("recompute_days", 7)),
            early_every_s=60.0 * float(config.get("early_every_min", 60)),
        )


@dataclass(frozen=True, slots=True)
class _Computed:
    """What a day's last computation sent, as digests (the JSON itself was ~0.1-1 MB a day at
    2,000 meters, kept for every day of ``recompute_days``)."""

    key: tuple[int, int, int]  # (book version of the day, layout version, topology version)
    body: bytes  # digest of the figures and findings last sent, to send a revision only on change
    anomalies: frozenset[bytes] = frozenset()  # digest of each finding sent (JSON, keys sorted)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass
class LineLossService:
    ctx: AppContext
    config: Config
    book: Book = field(init=False)
    records: Records | None = None
    layout: Layout | None = None
    layout_version: int = 0
    topology: TopologyView | None = None
    topology_version: int = 0
    since: float = 0.0
    revisions: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: {"days_computed": 0, "revisions_sent": 0})
    _computed: dict[date, _Computed] = field(default_factory=dict)
    _days: dict[date, tuple[tuple[int, int, bool], Day]] = field(default_factory=dict)  # this update's
    _interval_sent: tuple[date, int] | None = None
    _early_at: float = 0.0
    _reported: dict[date, set[tuple[str, str]]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        keep = max(self.config.recompute_days, self.config.settings.history_days) + 2
        self.book = Book(self.ctx.terminal.tz, keep_days=keep)

    # ------------------------------------------------------------------ setup

    async def start(self) -> None:
        store = self.ctx.store
        since = await store.get("since")
        if since is None:
            since = self.ctx.clock.now()
            await store.set("since", since)
        self.since = float(since)
        self.revisions = {str(k): int(v) for k, v in (await store.get("revisions", {})).items()}
        self.use_station(self._model())
        await self.reload()
        self.ctx.scheduler.add("tick", Aligned(TICK_S), self._tick, catch_up=CatchUp.LATEST)
        self.ctx.uplink.register_command("lineloss.day", self._cmd_day)
        self.ctx.uplink.register_command("lineloss.recompute", self._cmd_recompute)
        self.ctx.bus.serve("lineloss/day/get", self._get_day)

    async def reload(self) -> None:
        """Refill the book from the store after a restart (see the module docstring)."""
        today = self.local_date(self.ctx.clock.now())
        store = self.ctx.store
        loaded = 0
        for quantity, since in (
            ("daily.energy.active.import.total", today - timedelta(days=self.book.keep_days)),
            ("daily.energy.active.export.total", today - timedelta(days=self.book.keep_days)),
            ("energy.active.import.total", today - timedelta(days=1)),
            ("energy.active.export.total", today - timedelta(days=1)),
        ):
            rows = await store.query_readings(quantity=quantity, since=self.book.midnight(since))
            by_device: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                by_device.setdefault(r.device, []).append(r.to_json())
            for device, batch in by_device.items():
                kind = "freeze" if quantity.startswith("daily.") else "curve"
                self.book.add("realtime" if device == METROLOGY and kind == "curve" else kind, device, batch)
            loaded += len(rows)
        self.book.skipped = 0  # snapshots off the 15-min grid are expected here
        # the past days given to the store hold every item: they stand under the energies reloaded
        for d in [d for d in self.book.days if d < today]:
            parts = await self._load_points(d, quiet=True)
            if parts is not None:
                self.book.restore_unpacked(d, await asyncio.to_thread(unpack_parts, parts, self.book.layouts))
        # days that left the window while the terminal was off: their stored points go
        for name in await store.get(STORED_DAYS_KEY, []):
            if not self.book.has(date.fromisoformat(name)):
                await self._save_points(date.fromisoformat(name), [])
        if loaded:
            self.ctx.log.info("reloaded %d stored readings", loaded)

    def _model(self) -> StationLike | None:
        station = getattr(self.ctx, "station", None)
        return None if station is None else station.model

    def use_station(self, model: StationLike | None) -> None:
        """Rebuild the layout from the station model (every day is computed again)."""
        if model is None:
            self.ctx.log.warning("no station model: line loss waits for one")
            self.records = self.layout = None
            return
        metrology = bool(getattr(self.ctx.terminal, "metrology", True))
        self.records = records_from_model(model, metrology=metrology)
        self.layout = self.records.layout()
        self.layout_version += 1
        self._days.clear()
        scopes = len(self.layout.scopes)
        self.ctx.log.info("station model: %d meters, %d scopes", self.layout.n, scopes)

    def use_topology(self, result: Any) -> None:
        if self.records is None or not isinstance(result, Mapping):
            return
        archive = {m.id: m for m in self.records.meters}
        self.topology = TopologyView.from_result(result, archive)
        self.topology_version += 1

    # ------------------------------------------------------------------ input

    async def run(self) -> None:
        bus = self.ctx.bus
        subs = [
            (bus.subscribe("meter/+/curve", maxsize=50_000, overflow=Overflow.DROP_OLDEST), "curve"),
            (bus.subscribe("meter/+/freeze", maxsize=50_000, overflow=Overflow.DROP_OLDEST), "freeze"),
            (bus.subscribe("meter/transformer/reading", maxsize=1_000), "realtime"),
        ]
        topology = bus.subscribe("topology/result", maxsize=4, overflow=Overflow.KEEP_LATEST_PER_TOPIC)
        async with asyncio.TaskGroup() as tg:
            for sub, kind in subs:
                tg.create_task(self._consume(sub, kind), name=f"lineloss:{kind}")
            tg.create_task(self._follow_topology(topology), name="lineloss:topology")
            station = getattr(self.ctx, "station", None)
            if station is not None and hasattr(station, "watch"):
                tg.create_task(self._follow_station(station), name="lineloss:station")

    async def _consume(self, sub: Any, kind: str) -> None:
        async for msg in sub:
            device = msg.topic.split("/")[1]
            payload = msg.payload if isinstance(msg.payload, list) else [msg.payload]
            self.book.add(kind, device, payload)

    async def _follow_topology(self, sub: Any) -> None:
        async for msg in sub:
            self.use_topology(msg.payload)

    async def _follow_station(self, station: Any) -> None:
        async with station.watch() as changes:
            async for change in changes:
                self.use_station(change.model)
                if self.topology is not None and self.records is not None:
                    self.topology_version += 1  # re-read against the new archive at the next result

    # ------------------------------------------------------------------ when

    async def _tick(self, slot: Slot) -> None:
        await self.update(self.ctx.clock.now())

    def local_date(self, t: float) -> date:
        return datetime.fromtimestamp(t, self.ctx.terminal.tz).date()

    def due(self, now: float) -> list[date]:
        """Days whose freezes should be in and whose inputs changed since they were computed."""
        if self.layout is None:
            return []
        today = self.local_date(now)
        first = today - timedelta(days=self.config.recompute_days)
        out = []
        for d in self.book.dates():
            if d < first or d >= today or self._first_point(d) is None:
                continue
            if now < self.book.midnight(d + timedelta(days=1)) + self.config.day_close_delay_s:
                continue
            key = (self.book.version.get(d, 0), self.layout_version, self.topology_version)
            done = self._computed.get(d)
            if done is None or done.key != key:
                out.append(d)
        return out

    async def update(self, now: float) -> None:
        """Publish completed intervals of today and (re)compute the days that are due."""
        async with self._lock:
            await self._intervals(now)
            for d in self.due(now):
                await self.compute(d)
            every = self.config.early_every_s
            if every > 0 and now - self._early_at >= every - 1.0:
                self._early_at = now
                await self.early(now)
            await self._forget_old(self.local_date(now))

    async def early(self, now: float) -> list[dict[str, Any]]:
        """Look at today so far (and the days before it) for what needs only 15-min data; send
        what was not reported today yet. The days before the first start count here: curves
        are read from the first 15 minutes on, only the opening freeze is missing."""
        if self.layout is None:
            return []
        today = self.local_date(now)
        if not self.book.has(today):
            return []
        window = await self._window(today, whole_only=False)
        layout, settings = self.layout, self.config.settings
        topology = self.topology
        found = await asyncio.to_thread(registers_and_theft, layout, window, settings, topology=topology)
        reported = self._reported.setdefault(today, set())
        sent = []
        for anomaly in found:
            key = (anomaly.kind, anomaly.target)
            if key in reported:
                continue
            reported.add(key)
            body = anomaly.to_json()
            body["evidence"] = {**body["evidence"], "early": True}
            message = {"type": "anomaly", "found_at": now, **body}
            await self.ctx.uplink.send(STREAM, message)
            self.ctx.bus.publish("lineloss/anomaly", message)
            sent.append(message)
        for d in [d for d in self._reported if d < today - timedelta(days=self.config.recompute_days)]:
            del self._reported[d]
        return sent

    async def _forget_old(self, today: date) -> None:
        """Give every past day's points to the store (see the module docstring) and drop this
        update's ``Day`` objects. A day the book no longer holds is never computed again: forget
        its stored points, its result and its revision number (the terminal runs for years; the
        book keeps ``keep_days``)."""
        self._days.clear()
        for d in [d for d in self.book.days if d < today]:
            await self._give_away(d)
        self.book.cool()
        dropped, self.book.dropped = self.book.dropped, []
        for d in dropped:
            await self._save_points(d, [])
        for d in [d for d in self._computed if not self.book.has(d)]:
            del self._computed[d]
        oldest = min(self.book.dates(), default=None)
        if oldest is not None:
            for name in [n for n in self.revisions if n < oldest.isoformat()]:
                del self.revisions[name]

    async def _give_away(self, d: date) -> None:
        """Hot past day ``d`` to the store (``Book.chill``): its changed parts and its ends."""
        parts = self.book.chill(d)
        if parts is not None:
            await self._save_points(d, parts, self.book.ends_of(d))  # (packed before any await)

    async def _save_points(
        self, d: date, parts: list[dict[str, Any] | None], ends: dict[str, Any] | None = None
    ) -> None:
        """A past day's packed points to the store: ``book/<date>`` the number of parts,
        ``book/<date>/<i>`` each part that changed (None: unchanged; no parts: the day is
        forgotten), ``book/<date>/ends`` its ends (``Book.ends_of``) when given."""
        store, key = self.ctx.store, f"book/{d.isoformat()}"
        if ends is not None:
            await store.set(f"{key}/ends", ends)
        elif not parts:
            await store.delete(f"{key}/ends")
        before = int(await store.get(key, 0))
        for i, part in enumerate(parts):
            if part is not None:
                await store.set(f"{key}/{i}", part)
        for i in range(len(parts), before):
            await store.delete(f"{key}/{i}")
        if parts:
            await store.set(key, len(parts))
        else:
            await store.delete(key)
        listed = set(await store.get(STORED_DAYS_KEY, []))
        now_listed = listed | {d.isoformat()} if parts else listed - {d.isoformat()}
        if now_listed != listed:
            await store.set(STORED_DAYS_KEY, sorted(now_listed))

    async def _load_points(self, d: date, *, quiet: bool = False) -> list[Any] | None:
        store, key = self.ctx.store, f"book/{d.isoformat()}"
        count = await store.get(key)
        if not isinstance(count, int):
            if not quiet:
                self.ctx.log.warning("%s: the day's points are not in the store: its energies only", d)
            return None
        return [await store.get(f"{key}/{i}") for i in range(count)]

    # ------------------------------------------------------------------ what

    def _day(self, d: date) -> Day:
        """Day ``d`` from the book (of a cold day: its energies only, see ``_window``)."""
        assert self.layout is not None
        key = (self.book.version.get(d, 0), self.layout_version, d in self.book.cold)
        cached = self._days.get(d)
        if cached is not None and cached[0] == key:
            return cached[1]
        readings = self.book.readings(d, [m.id for m in self.layout.meters])
        first = self._first_point(d)
        opening = common_opening(readings, first) if first else 0
        day = Day.of(d.isoformat(), readings, self.layout, opening=opening)
        self._days[d] = (key, day)
        return day

    def _whole(self, d: date) -> bool:
        """Whether the app ran from day ``d``'s first instant (``START_SLACK_S``) on: only then
        was its opening freeze read (acquisition reads a midnight's freeze after it, and at a
        first start on the midnight itself reads it back)."""
        return self.book.midnight(d) >= self.since - START_SLACK_S

    def _first_point(self, d: date) -> int | None:
        """0 for a day the app saw whole; for the day it first started in, the first curve point
        at or after that start (a partial day); None for a day before it."""
        if self._whole(d):
            return 0
        start = self.book.midnight(d)
        if self.since >= start + 86400.0:
            return None
        return min(-int(-(self.since - start) // 900), INTERVALS_PER_DAY)

    async def _window(self, last: date, *, whole_only: bool) -> list[Day]:
        """The days of the history window ending at ``last`` that the book holds (with
        ``whole_only``, those the app saw whole), oldest first. The cause finders read every
        point of the newest ``window_days`` of them (taken back from the store when cold) and
        only the energies of the older ones (what a cold day keeps)."""
        history = self.config.settings.history_days
        days = [last - timedelta(days=k) for k in range(history - 1, -1, -1)]
        days = [
            x
            for x in days
            if self.book.has(x)
            and (not whole_only or self._whole(x) or (x == last and self._first_point(x) is not None))
        ]
        settings = self.config.settings
        for x in days[-max(settings.meters.window_days, settings.fit.window_days) :]:
            if x in self.book.cold:
                parts = await self._load_points(x)
                if not parts or any(part is None for part in parts):
                    await self._warm(x)  # it comes back from its ends
                self.book.thaw_unpacked(x, await asyncio.to_thread(unpack_parts, parts, self.book.layouts))
        for x in days:
            if x in self.book.cold:
                await self._warm(x)
        return [self._day(x) for x in days]

    async def _warm(self, d: date) -> None:
        """Cold day ``d``'s ends held again, from the store. Stored without them (before they had
        a key of their own): from its points, given away again at once (the ends saved)."""
        if self.book.is_warm(d):
            return
        packed = await self.ctx.store.get(f"book/{d.isoformat()}/ends")
        if packed is None:
            parts = await self._load_points(d, quiet=True)
            if parts and all(part is not None for part in parts):
                self.book.thaw_unpacked(d, await asyncio.to_thread(unpack_parts, parts, self.book.layouts))
                again = self.book.chill(d) or [None] * len(parts)
                await self._save_points(d, again, self.book.ends_of(d))
                return
            self.ctx.log.warning("%s: its energies are not in the store: the rows since only", d)
        self.book.warm(d, packed)

    async def compute(self, d: date, *, force: bool = False) -> DayResult | None:
        if self.layout is None or self.records is None:
            return None
        key = (self.book.version.get(d, 0), self.layout_version, self.topology_version)
        window = await self._window(d, whole_only=True)
        if not window or window[-1].date != d.isoformat():
            return None
        if window[-1].opening > INTERVALS_PER_DAY - PARTIAL_MIN_INTERVALS:  # started in its last hour
            self._computed[d] = _Computed(key, b"")
            return None
        records, layout, topology = self.records, self.layout, self.topology
        result = await asyncio.to_thread(
            analyse, records, layout, window, self.config.settings, topology=topology
        )
        self.counters["days_computed"] += 1
        days = [sd.to_json() for sd in result.days]
        anomalies = [a.to_json() for a in result.anomalies]
        body = _digest(json.dumps([days, anomalies], sort_keys=True))
        before = self._computed.get(d)
        found = frozenset(_digest(json.dumps(a, sort_keys=True)) for a in anomalies)
        self._computed[d] = _Computed(key, body, found)
        if before is not None and before.body == body and not force:
            return result
        await self._send(d, result, days, anomalies, before, opening=window[-1].opening)
        return result

    async def _send(
        self,
        d: date,
        result: DayResult,
        days: list[dict[str, Any]],
        anomalies: list[dict[str, Any]],
        before: _Computed | None,
        *,
        opening: int = 0,
    ) -> None:
        name = d.isoformat()
        revision = self.revisions.get(name, 0) + 1
        self.revisions[name] = revision
        now = self.ctx.clock.now()
        model = self._model()
        message = {
            "type": "day",
            "date": name,
            "revision": revision,
            "computed_at": now,
            "station": getattr(model, "id", "") if model is not None else "",
            "thresholds": dataclasses.asdict(self.config.settings.thresholds),
            "days": days,
            "anomalies": anomalies,
            # a partial day (the terminal first started during it): the span its figures cover
            "partial": (
                None
                if not opening
                else {"from": self.book.midnight(d) + 900 * opening, "intervals": INTERVALS_PER_DAY - opening}
            ),
        }
        assert self.layout is not None
        keep = [k for k, s in enumerate(self.layout.scopes) if s.level in INTERVAL_LEVELS]
        iv = result.intervals.to_json()
        intervals = {
            "type": "intervals",
            "date": name,
            "revision": revision,
            "computed_at": now,
            "start": self.book.midnight(d),
            "step_s": 900,
            **{k: [v[i] for i in keep] for k, v in iv.items()},
        }
        for part in [*paged_lists(message), *paged_lists(intervals)]:  # parts only over the uplink's limit
            await self.ctx.uplink.send(STREAM, part)
        self.counters["revisions_sent"] += 1
        await self.ctx.store.set(f"day/{name}", message)
        await self.ctx.store.set("revisions", self.revisions)
        self.ctx.bus.publish("lineloss/day", message, retain=True)
        seen = frozenset() if before is None else before.anomalies
        for a in anomalies:
            if _digest(json.dumps(a, sort_keys=True)) not in seen:
                self.ctx.bus.publish("lineloss/anomaly", a)

    async def _intervals(self, now: float) -> None:
        """Each newly completed 15-min interval of today: station, branch and box figures on the bus."""
        if self.layout is None:
            return
        today = self.local_date(now)
        if today not in self.book.days:  # (today is never cold: past days are)
            return
        day = self._day(today)
        from .balance import balances  # local: the interval figures of one day

        b = balances(self.layout, day.intervals)
        last = int((now - self.book.midnight(today)) // 900) - 1  # intervals that ended before now
        start = (
            0
            if self._interval_sent is None or self._interval_sent[0] != today
            else self._interval_sent[1] + 1
        )
        for k in range(start, min(last, 95) + 1):
            scopes = [
                {
                    "scope": s.id,
                    "level": s.level,
                    "supply_kwh": _num(b.supply[j, k]),
                    "loss_kwh": _num(b.loss[j, k]),
                    "loss_rate": _num(b.rate[j, k]),
                    "coverage": _num(b.coverage[j, k]),
                }
                for j, s in enumerate(self.layout.scopes)
                if s.level in INTERVAL_LEVELS
            ]
            start_ts = self.book.midnight(today) + 900 * k
            self.ctx.bus.publish(
                "lineloss/interval",
                {"date": today.isoformat(), "index": k, "start": start_ts, "scopes": scopes},
            )
            self._interval_sent = (today, k)

    # ------------------------------------------------------------------ commands

    async def _cmd_day(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("date")
        if not isinstance(name, str):
            raise ValueError("args.date: need a local date YYYY-MM-DD")
        found = await self.ctx.store.get(f"day/{name}")
        if found is None:
            raise ValueError(f"no line-loss result for {name}")
        return dict(found)

    async def _cmd_recompute(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("date")
        try:
            d = date.fromisoformat(name) if isinstance(name, str) else None
        except ValueError:
            d = None
        if d is None:
            raise ValueError("args.date: need a local date YYYY-MM-DD")
        if not self.book.has(d):
            raise ValueError(f"{name}: no data kept for that day")
        async with self._lock:
            result = await self.compute(d, force=True)
        return {
            "date": d.isoformat(),
            "revision": self.revisions.get(d.isoformat(), 0),
            "computed": result is not None,
        }

    async def _get_day(self, payload: Any) -> Any:
        asked = payload.get("date") if isinstance(payload, Mapping) else None
        name = asked if isinstance(asked, str) else max(self.revisions, default=None)
        return None if name is None else await self.ctx.store.get(f"day/{name}")

    def status(self) -> dict[str, Any]:
        return {**self.counters, **self.book.counters, "skipped_rows": self.book.skipped}


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 4)  # NaN -> None


async def run_lineloss(ctx: AppContext, config: dict[str, Any]) -> None:
    service = LineLossService(ctx, Config.parse(config))
    await service.start()
    async with asyncio.TaskGroup() as tg:
        consumer = tg.create_task(service.run(), name="lineloss:run")
        await ctx.ready()
        await ctx.wait_stop()
        consumer.cancel()


__all__ = ["STREAM", "Config", "LineLossService", "run_lineloss"]
