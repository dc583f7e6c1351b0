"""The app around the engine: rows from the bus, days computed when due, revisions on late data.

A fake context (real ``runtime.bus.Bus``, in-memory store and uplink, a settable clock); the
figures asserted are computed by hand from the rows the test publishes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from apps.lineloss.report import summary
from apps.lineloss.service import Config, LineLossService
from runtime.bus import Bus
from runtime.model import Reading

TZ = ZoneInfo("Asia/Shanghai")
D0 = datetime(2024, 6, 2, tzinfo=TZ).timestamp()  # local midnight
DAY = 86400.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


@dataclass
class Terminal:
    id: str = "TTU-T"
    tz: ZoneInfo = TZ
    root: Path = Path(".")
    metrology: bool = True


@dataclass
class Store:
    kv: dict[str, Any] = field(default_factory=dict)
    readings: list[Reading] = field(default_factory=list)

    async def get(self, key: str, default: Any = None) -> Any:
        return self.kv.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        self.kv[key] = value

    async def delete(self, key: str) -> bool:
        return self.kv.pop(key, None) is not None

    async def query_readings(self, *, quantity: str, since: float) -> list[Reading]:
        return [r for r in self.readings if r.quantity == quantity and r.ts >= since]


@dataclass
class Uplink:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: dict[str, Any] = field(default_factory=dict)

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        self.sent.append((stream, body))
        return str(len(self.sent))

    def register_command(self, name: str, handler: Any) -> None:
        self.commands[name] = handler


class Scheduler:
    def add(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass(frozen=True)
class Tr:
    meter: str | None = "T"
    ct_ratio: float = 100.0
    pt_ratio: float = 1.0


@dataclass(frozen=True)
class Br:
    id: str
    monitor: str | None = None
    parent: str | None = None


@dataclass(frozen=True)
class Mt:
    id: str
    kind: str = "customer"
    branch: str | None = None
    box: str | None = None
    phase: str | None = "A"
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    id: str = "TA-1"
    transformer: Tr | None = field(default_factory=Tr)
    branches: tuple[Br, ...] = (Br("F1", monitor="bu1"),)
    boxes: tuple[Any, ...] = ()
    meters: tuple[Mt, ...] = (
        Mt("T", "assessment", phase="ABC"),
        Mt("bu1", "branch_unit", branch="F1", phase="ABC"),
        Mt("a", branch="F1"),
        Mt("b", branch="F1"),
    )


@dataclass
class Station:
    model: Model = field(default_factory=Model)


@dataclass
class Ctx:
    clock: Clock
    bus: Bus
    store: Store = field(default_factory=Store)
    uplink: Uplink = field(default_factory=Uplink)
    scheduler: Scheduler = field(default_factory=Scheduler)
    terminal: Terminal = field(default_factory=Terminal)
    station: Station = field(default_factory=Station)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("test.lineloss"))


def ctx_at(t: float) -> Ctx:
    clock = Clock(t)
    return Ctx(clock, Bus(clock=clock))


def row(q: str, v: float, ts: float) -> dict[str, Any]:
    return {"device": "x", "quantity": q, "value": v, "unit": "kWh", "ts": ts, "quality": "good"}


# hourly-flat loads, kWh per 15 min: a 0.25, b 0.5; the branch unit sees them plus 2 % loss; the
# 总表 (CT 100) sees the branch plus 1 % more, so F1 loses 0.015/0.765 and the station
# 0.02265/0.77265 of each interval
PER = {"T": 0.77265 / 100, "bu1": 0.765, "a": 0.25, "b": 0.5}


def feed(svc: LineLossService, day: int, *, freeze_b_end: bool = True) -> None:
    start = D0 + day * DAY
    for meter, e in PER.items():
        base = 1000.0 + day * 96 * e
        curve = []
        for k in range(97):
            ts = start + 900 * k
            curve += [
                row("energy.active.import.total", base + e * k, ts),
                row("energy.active.export.total", 0.0, ts),
            ]
        svc.book.add("curve", meter, curve)
        freezes = [row("daily.energy.active.import.total", base, start)]
        if meter != "b" or freeze_b_end:
            freezes.append(row("daily.energy.active.import.total", base + 96 * e, start + DAY))
        svc.book.add("freeze", meter, freezes)


async def started(ctx: Ctx, **config: Any) -> LineLossService:
    svc = LineLossService(ctx, Config.parse(config))
    await svc.start()
    return svc


@dataclass(frozen=True)
class Bx:
    id: str
    branch: str | None = None
    terminal: str | None = None


async def test_a_box_with_a_box_terminal_has_its_day_and_its_intervals() -> None:
    ctx = ctx_at(D0 - 3600)
    model = Model(
        boxes=(Bx("X1", branch="F1", terminal="bt1"),),
        meters=(
            *Model().meters[:2],
            Mt("bt1", "box_terminal", branch="F1", box="X1", phase="ABC"),
            Mt("a", branch="F1"),
            Mt("b", branch="F1", box="X1"),
        ),
    )
    ctx.station = Station(model)
    svc = await started(ctx)
    PER["bt1"] = 0.505  # b's 0.5 plus 1 % lost inside the box
    try:
        feed(svc, 0)
    finally:
        del PER["bt1"]
    seen = ctx.bus.subscribe("lineloss/interval", maxsize=100)
    await svc.update(D0 + 3 * 900 + 60)  # three intervals of the day completed: on the bus at once
    live = [m.payload for m in iter(seen.get_nowait, None)]
    assert [m["index"] for m in live] == [0, 1, 2]
    x1 = next(s for s in live[2]["scopes"] if s["scope"] == "X1")
    assert x1["level"] == "box" and x1["loss_rate"] == pytest.approx(0.005 / 0.505 * 100, abs=1e-2)
    await svc.update(D0 + DAY + 1800)
    day, iv = (body for _, body in ctx.uplink.sent)
    box = next(r for r in day["days"] if r["scope"] == "X1")
    assert box["level"] == "box" and box["supply_kwh"] == pytest.approx(0.505 * 96, abs=1e-3)
    assert box["loss_rate"] == pytest.approx(0.005 / 0.505 * 100, abs=1e-3)
    assert iv["scopes"] == ["station", "F1", "X1"]
    assert iv["loss_rate"][2][40] == pytest.approx(0.005 / 0.505 * 100, abs=1e-2)


async def test_a_day_is_computed_once_due_with_hand_computed_figures() -> None:
    ctx = ctx_at(D0 - 3600)  # running before the day began
    svc = await started(ctx)
    feed(svc, 0)
    await svc.update(D0 + DAY + 600)  # before the close delay: nothing yet
    assert ctx.uplink.sent == []
    await svc.update(D0 + DAY + 1800)
    kinds = [body["type"] for _, body in ctx.uplink.sent]
    assert kinds == ["day", "intervals"] and all(s == "lineloss" for s, _ in ctx.uplink.sent)
    day = ctx.uplink.sent[0][1]
    assert (day["date"], day["revision"], day["station"]) == ("2024-06-02", 1, "TA-1")
    rows = {r["scope"]: r for r in day["days"]}
    st = rows["station"]
    assert st["supply_kwh"] == pytest.approx(0.77265 * 96, abs=1e-3)
    assert st["sales_kwh"] == pytest.approx(0.75 * 96, abs=1e-3)
    assert st["loss_rate"] == pytest.approx(0.02265 / 0.77265 * 100, abs=1e-3)
    assert st["class"] == "qualified" and st["economic"] is True and st["coverage"] == 1.0
    assert rows["F1"]["loss_rate"] == pytest.approx(0.015 / 0.765 * 100, abs=1e-3)
    iv = ctx.uplink.sent[1][1]
    assert iv["scopes"] == ["station", "F1"] and len(iv["loss_rate"][0]) == 96
    assert iv["loss_rate"][1][5] == pytest.approx(0.015 / 0.765 * 100, abs=1e-2)
    assert ctx.bus.retained("lineloss/day") is not None
    # nothing new: no second revision
    await svc.update(D0 + DAY + 3600)
    assert len(ctx.uplink.sent) == 2
    assert (await ctx.uplink.commands["lineloss.day"]({"date": "2024-06-02"}))["revision"] == 1


async def test_late_data_reclassifies_the_day() -> None:
    ctx = ctx_at(D0 - 3600)  # running before the day began
    svc = await started(ctx)
    feed(svc, 0, freeze_b_end=False)
    # b's last curve point did not come either: the day cannot know b's energy
    svc.book.days[datetime(2024, 6, 2).date()]["b"].put("forward", 96, float("nan"), svc.book.layouts)
    await svc.update(D0 + DAY + 1800)
    first = ctx.uplink.sent[0][1]
    assert {r["scope"]: r["class"] for r in first["days"]}["station"] == "incomputable"
    assert [a["kind"] for a in first["anomalies"]] == ["comms", "comms"]
    assert first["anomalies"][0]["evidence"]["unread"] == ["b"]
    # 补抄: b's freeze read back later; the day is recomputed and reclassified
    svc.book.add("freeze", "b", [row("daily.energy.active.import.total", 1000.0 + 96 * 0.5, D0 + DAY)])
    await svc.update(D0 + DAY + 7200)
    second = ctx.uplink.sent[2][1]
    assert second["revision"] == 2
    assert {r["scope"]: r["class"] for r in second["days"]}["station"] == "qualified"
    assert second["anomalies"] == []


async def test_rows_arrive_over_the_bus_and_bad_rows_are_counted() -> None:
    ctx = ctx_at(D0 - 3600)  # running before the day began
    svc = await started(ctx)
    task = asyncio.create_task(svc.run())
    await asyncio.sleep(0)
    ctx.bus.publish("meter/a/curve", [row("energy.active.import.total", 5.0, D0 + 900)])
    ctx.bus.publish("meter/a/freeze", [row("daily.energy.active.import.total", 4.0, D0)])
    ctx.bus.publish("meter/transformer/reading", [row("energy.active.import.total", 9.0, D0 + 900)])
    ctx.bus.publish(
        "meter/a/curve", [{"quantity": "energy.active.import.total", "value": "x", "ts": D0}, 7, None]
    )
    ctx.bus.publish("meter/a/curve", [row("energy.active.import.total", 1.0, D0 + 17)])  # off the grid
    for _ in range(10):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    md = svc.book.days[datetime(2024, 6, 2).date()]
    assert md["a"].values["forward"][1] == 5.0 and md["a"].freeze["forward"][0] == 4.0
    assert md["transformer"].values["forward"][1] == 9.0
    assert svc.book.skipped == 4 and svc.status()["curve"] == 1


async def test_a_first_start_during_a_day_gives_that_day_partial_and_leaves_the_days_before_alone() -> None:
    ctx = ctx_at(D0 + 3600 + 60)  # started an hour into the day: its opening freeze was never read
    svc = await started(ctx)
    feed(svc, -1)
    feed(svc, 0)
    feed(svc, 1)
    for meter in ("bu1", "a"):  # the first round after the start missed their 01:15 points
        svc.book.days[date(2024, 6, 2)][meter].put("forward", 5, float("nan"), svc.book.layouts)
    await svc.update(D0 + 2 * DAY + 1800)
    days = {b["date"]: b for _, b in ctx.uplink.sent if b["type"] == "day"}
    assert list(days) == ["2024-06-02", "2024-06-03"]  # not the day before the start
    first, whole = days["2024-06-02"], days["2024-06-03"]
    # from 01:30: the first point after the start (01:01) that nearly every meter has
    assert first["partial"] == {"from": D0 + 6 * 900, "intervals": 90} and whole["partial"] is None
    rows = {r["scope"]: r for r in first["days"]}
    assert rows["station"]["supply_kwh"] == pytest.approx(0.77265 * 90, abs=1e-3)
    assert rows["station"]["sales_kwh"] == pytest.approx(0.75 * 90, abs=1e-3)
    assert rows["F1"]["loss_rate"] == pytest.approx(0.015 / 0.765 * 100, abs=1e-3)
    assert rows["F1"]["coverage"] == 1.0
    assert {r["scope"]: r for r in whole["days"]}["station"]["supply_kwh"] == pytest.approx(
        0.77265 * 96, abs=1e-3
    )
    stored = summary("TTU-T", [b for _, b in ctx.uplink.sent])  # as the master station shows it
    assert {(d["date"], str(d.get("partial"))) for d in stored["days"]} == {
        ("2024-06-02", str(first["partial"])),
        ("2024-06-03", "None"),
    }


@pytest.mark.parametrize(("start_s", "partial"), [(0.0, None), (2.0, {"from": D0 + 900, "intervals": 95})])
async def test_a_first_start_on_the_midnight_counts_as_running_from_it(
    start_s: float, partial: dict[str, float] | None
) -> None:
    # a simulated run starts on the midnight: acquisition reads that day's opening freeze back at
    # once, so the day is whole; two seconds later it is not, and counts from the next point
    ctx = ctx_at(D0 + start_s)
    svc = await started(ctx)
    feed(svc, 0)
    feed(svc, 1)
    await svc.update(D0 + 2 * DAY + 1800)
    days = [b for _, b in ctx.uplink.sent if b["type"] == "day"]
    assert [b["date"] for b in days] == ["2024-06-02", "2024-06-03"]
    assert days[0]["partial"] == partial and days[1]["partial"] is None


async def test_a_restart_reloads_the_book_from_the_store() -> None:
    ctx = ctx_at(D0 - 3600)  # running before the day began
    svc = await started(ctx)
    feed(svc, 0)
    for meter, md in svc.book.days[datetime(2024, 6, 2).date()].items():  # what acquisition stored
        for k, v in enumerate(md.values["forward"]):
            ctx.store.readings.append(Reading(meter, "energy.active.import.total", v, "kWh", D0 + 900 * k))
        for k, v in enumerate(md.freeze["forward"]):
            ctx.store.readings.append(
                Reading(meter, "daily.energy.active.import.total", v, "kWh", D0 + DAY * k)
            )
        ctx.store.readings.append(
            Reading(meter, "energy.active.import.total", 1.0, "kWh", D0 + 61)
        )  # realtime
    ctx.clock.t = D0 + DAY + 60
    ctx.bus = Bus(clock=ctx.clock)  # a new process: a new bus, the same store
    again = LineLossService(ctx, Config.parse({}))
    await again.start()  # the same store: "since" and the revisions survive
    await again.update(D0 + DAY + 1800)
    (day,) = [b for _, b in ctx.uplink.sent if b["type"] == "day"]
    assert {r["scope"]: r["class"] for r in day["days"]} == {"station": "qualified", "F1": "qualified"}
    assert day["days"][0]["loss_rate"] == pytest.approx(0.02265 / 0.77265 * 100, abs=1e-3)


async def test_an_early_look_reports_a_stopped_register_before_the_day_is_over() -> None:
    ctx = ctx_at(D0 - 3600)
    svc = await started(ctx)
    for meter, e in PER.items():
        rows = []
        for k in range(49):  # until noon
            ts = D0 + 900 * k
            # b's register stops at 06:00 (point 24); its front end goes on measuring
            value = 1000.0 + e * (min(k, 24) if meter == "b" else k)
            rows += [row("energy.active.import.total", value, ts), row("energy.active.export.total", 0.0, ts)]
            if meter == "b":
                rows += [row("voltage.a", 230.0, ts), row("current.a", e * 4 * 1000 / 230.0, ts)]  # 2 kW
                rows += [row("power_factor.total", 1.0, ts), row("power.active.total", e * 4, ts)]
        svc.book.add("curve", meter, rows)
    await svc.update(D0 + 12 * 3600 + 60)
    early = [b for _, b in ctx.uplink.sent if b["type"] == "anomaly"]
    assert [(b["kind"], b["target"], b["date"]) for b in early] == [("meter_stopped", "b", "2024-06-02")]
    assert early[0]["evidence"]["early"] is True and early[0]["evidence"]["since"] == D0 + 6 * 3600
    assert early[0]["evidence"]["vi_kwh"] == pytest.approx(0.5 * 24, rel=0.05)
    await svc.update(D0 + 13 * 3600 + 60)  # found again an hour later: not sent again
    assert len([b for _, b in ctx.uplink.sent if b["type"] == "anomaly"]) == 1


async def test_weeks_of_days_keep_what_the_app_remembers_bounded() -> None:
    # every day computed once stayed in the app's day cache and results (a Day holds every meter's
    # 96 points: MBs a day at 2,000 meters), and its revision number in the stored revisions
    ctx = ctx_at(D0 - 3600)
    svc = await started(ctx)
    days = 30
    for day in range(days):
        feed(svc, day)
        await svc.update(D0 + (day + 1) * DAY + 1800)
    assert svc.counters["days_computed"] >= days
    kept = svc.book.keep_days
    assert len(svc.book.days) <= kept + 1
    assert len(svc._days) <= 1 and len(svc._computed) <= kept + 1  # a past day's Day is built when needed
    assert len(svc.revisions) <= kept + 1 and len(ctx.store.kv["revisions"]) <= kept + 2
    newest = ctx.uplink.sent[-2][1]
    assert newest["date"] == "2024-07-01" and newest["revision"] == 1
