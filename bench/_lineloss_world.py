"""Line loss straight on the simulator's world: the meters' own registers, no wire in between.

Used by ``bench/lineloss.py`` and the scoring tests to run the line-loss engine over many
networks and scenarios for days in seconds: every meter's curve points and daily freezes are
taken from its ``VirtualMeter`` memory (as a perfect acquisition would read them, truncated to
the resolution the protocols carry), the metrology unit's registers from the transformer's true
energy, and the station model from the world as the archive knows it (archive errors
included). The end-to-end tests run the same engine behind the real terminal instead.

Scoring compares the anomalies with ``World.faults`` (the rows of faults.csv): delay to the
first correct report per fault, and every report no fault explains as a false positive.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from apps.lineloss.causes.anomaly import Anomaly
from apps.lineloss.causes.archive import MissingMeter, Records, TopologyView
from apps.lineloss.energy import INTERVAL_S, INTERVALS_PER_DAY, DayReadings
from apps.lineloss.engine import DayResult, Settings, analyse, registers_and_theft
from apps.lineloss.layout import BoxInfo, BranchInfo, MeterInfo
from apps.lineloss.window import Day
from sim.loads import CHINA_UTC_OFFSET_S
from sim.scenarios import Scenario, parse_scenario
from sim.world import World, build_world

DAY_S = 86400.0
BUSES = ["rs485-1", "rs485-2", "rs485-3", "rs485-4"]
#: 2024-06-02 00:00 Beijing time: runs start on a local midnight, so day 1 is whole
START = datetime(2024, 6, 1, 16, 0, tzinfo=UTC).timestamp()


def scenario(name: str, data: dict[str, object]) -> Scenario:
    return parse_scenario(data, name=name, source=f"<{name}>")


def world(sc: Scenario, *, days: int, network: str = "ieee-eu-lv", seed: int = 1, scale: int = 1) -> World:
    return build_world(
        buses=BUSES,
        scenario=sc,
        seed=seed,
        start=START,
        duration_s=days * DAY_S,
        network=network,
        customers_scale=scale,
    )


def records(w: World) -> Records:
    """The station model as the archive has it: missing meters left out, foreign ones in."""
    meters: list[MeterInfo] = []
    recorded = w.assessment_ct[1]
    for m in w.meters.values():
        if m.id in w.station.unarchived:
            continue
        if m.kind == "assessment":
            meters.append(MeterInfo(m.id, "assessment", ct_ratio=recorded))
        elif m.kind == "branch_unit":
            meters.append(MeterInfo(m.id, "branch_unit", branch=m.branch))
        elif m.kind == "box_terminal":
            meters.append(MeterInfo(m.id, "box_terminal", branch=m.branch, box=m.box))
        else:
            phase = w.grid.network.customers[m.customer].phase  # whole-network index
            meters.append(MeterInfo(m.id, "customer", branch=m.branch, box=m.box, phase=phase))
    for entry in w.station.foreign:
        meters.append(MeterInfo(entry.id, "customer"))
    branches, boxes = [], []
    for rep in w.replicas:
        net = rep.network
        for b, name in enumerate(net.branches):
            parent = net.heads[b][3]
            branches.append(
                BranchInfo(
                    rep.prefix + name,
                    monitor=f"bu-{rep.prefix}{name}",
                    parent=None if parent < 0 else rep.prefix + net.branches[parent],
                )
            )
        for box in sorted({(c.box, c.branch) for c in net.customers}):
            terminal = f"bt-{rep.prefix}{box[0]}"
            boxes.append(
                BoxInfo(rep.prefix + box[0], rep.prefix + box[1], terminal if terminal in w.meters else None)
            )
    return Records(meters, branches, boxes, "assessment" if w.assessment is not None else None)


def _trunc(x: float, step: float) -> float:
    return math.floor(x / step + 1e-9) * step


@dataclass
class Reader:
    """Reads one day at a time from the world's meters, in the layout's order."""

    w: World
    ids: list[str]
    drop_rate: float = 0.0  # share of curve points and freezes that are not read (comms)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))

    def day(self, start: float) -> DayReadings:
        out = DayReadings.empty(start, len(self.ids))
        end = start + DAY_S
        for k in range(1, INTERVALS_PER_DAY + 1):  # scenario actions in time order (faults, outages)
            self.w.apply_due(start + k * INTERVAL_S)
        grid = {start + k * INTERVAL_S: k for k in range(INTERVALS_PER_DAY + 1)}
        for i, mid in enumerate(self.ids):
            wm = self.w.meters.get(mid)
            if wm is None:
                continue  # an archive entry with no meter behind it: never answers
            vm = wm.meter
            vm.advance(end + 1.0)
            for p in vm.curve:
                k = grid.get(p.ts)
                if k is None or self._lost():
                    continue
                out.curve_forward[i, k] = _trunc(p.forward_total, 0.01)
                out.curve_reverse[i, k] = _trunc(p.reverse_total, 0.01)
                out.curve_power[i, k] = _vi(p.instant)
                out.curve_voltage[i, k] = [np.nan if v is None else _trunc(v, 0.1) for v in p.instant.voltage]
            for f in vm.daily_freezes:
                for col, at in ((0, start), (1, end)):
                    if f.ts == at and not self._lost():
                        out.freeze_forward[i, col] = _trunc(f.registers.forward[0], 0.01)
                        out.freeze_reverse[i, col] = _trunc(f.registers.reverse[0], 0.01)
        edges = [start + k * INTERVAL_S for k in range(INTERVALS_PER_DAY + 1)]
        f = np.zeros(len(edges))
        r = np.zeros(len(edges))
        horizon = self.w.grid.horizon  # the one transformer of every replica
        for k in range(1, len(edges)):
            e = float(horizon.trafo_energy_kwh(edges[k - 1], edges[k]).sum())
            f[k] = max(e, 0.0)
            r[k] = max(-e, 0.0)
        out.metrology_forward[:] = np.floor((1000.0 + np.cumsum(f)) * 100) / 100
        out.metrology_reverse[:] = np.floor(np.cumsum(r) * 100) / 100
        return out

    def _lost(self) -> bool:
        return self.drop_rate > 0 and bool(self.rng.random() < self.drop_rate)


def _vi(inst: object) -> float:
    """V x I x |PF| summed over the phases, signed like the active power, kW (at the
    resolutions DL/T 645 carries: 0.1 V, 0.001 A, 0.001 PF)."""
    volts = inst.voltage  # type: ignore[attr-defined]
    amps = inst.current  # type: ignore[attr-defined]
    pf = abs(_trunc(inst.power_factor, 0.001))  # type: ignore[attr-defined]
    total = 0.0
    for v, a in zip(volts, amps, strict=True):
        if v is not None and a is not None:
            total += _trunc(v, 0.1) * _trunc(abs(a), 0.001) * pf / 1000.0
    return math.copysign(total, inst.total_power_kw)  # type: ignore[attr-defined]


def local_date(start: float) -> str:
    return (datetime.fromtimestamp(start, UTC) + timedelta(seconds=CHINA_UTC_OFFSET_S)).date().isoformat()


def perfect_topology(w: World) -> TopologyView:
    """What a topology app that got everything right would publish about the archive errors."""
    foreign = {e.id: 0.95 for e in w.station.foreign}
    missing = tuple(
        MissingMeter(w.meters[m].meter.address, w.meters[m].branch, w.meters[m].box, 0.9)
        for m in sorted(w.station.unarchived)
    )
    return TopologyView(foreign, {}, missing)


@dataclass
class Report:
    """What the terminal would say at ``found_at``: an hourly early look at today (``result`` None)
    or a whole day, computed once its freezes are in."""

    found_at: float
    anomalies: list[Anomaly]
    result: DayResult | None = None


EARLY_HOURS = (4, 8, 12, 16, 20, 22, 23)  # the app looks every hour; a sample of them
CLOSE_S = 1800.0  # the app computes a day half an hour after midnight


def partial(day: DayReadings, hours: float) -> DayReadings:
    """The day as known ``hours`` after its midnight: later points not read yet, no closing freeze."""
    cut = int(hours * 4) + 1
    out = copy.deepcopy(day)
    for a in (out.curve_forward, out.curve_reverse, out.curve_power, out.curve_voltage):
        a[:, cut:] = np.nan
    out.metrology_forward[cut:] = np.nan
    out.metrology_reverse[cut:] = np.nan
    out.freeze_forward[:, 1] = np.nan
    out.freeze_reverse[:, 1] = np.nan
    return out


def run(
    w: World,
    *,
    days: int,
    settings: Settings | None = None,
    drop_rate: float = 0.0,
    topology: TopologyView | None = None,
    early_hours: tuple[float, ...] = EARLY_HOURS,
) -> Iterator[Report]:
    """The engine's findings as the app makes them: early looks at each day, then the whole day."""
    rec = records(w)
    layout = rec.layout()
    reader = Reader(w, [m.id for m in layout.meters], drop_rate)
    settings = settings or Settings()
    window: list[Day] = []
    for d in range(days):
        start = w.start + d * DAY_S
        readings = reader.day(start)
        date = local_date(start)
        for h in early_hours:
            today = Day.of(date, partial(readings, h), layout)
            recent = [*window[-(settings.history_days - 1) :], today]
            found = registers_and_theft(layout, recent, settings, topology=topology)
            yield Report(start + h * 3600.0, found)
        window.append(Day.of(date, readings, layout))
        window = window[-settings.history_days :]
        result = analyse(rec, layout, window, settings, topology=topology)
        yield Report(start + DAY_S + CLOSE_S, result.anomalies, result)


# -- scoring ----------------------------------------------------------------------------------------

MATCH = {
    "theft": "theft",
    "slow": "meter_slow",
    "stopped": "meter_stopped",
    "ct_ratio": "ct_ratio",
    "archive_missing": "archive",
    "archive_foreign": "archive",
    "comms": "comms",
}


@dataclass
class Score:
    """Per fault: days from its start to the first correct report; and the false positives."""

    delays: dict[str, list[float | None]] = field(default_factory=dict)  # kind -> per fault
    branch_delays: list[float | None] = field(default_factory=list)  # theft located to its branch
    false_positives: dict[str, int] = field(default_factory=dict)  # anomaly kind -> count
    examples: list[Anomaly] = field(default_factory=list)


def score(w: World, results: list[Report]) -> Score:
    out = Score()
    faults = [f for f in w.faults if f["kind"] in MATCH]
    branch_of = {m.id: m.branch for m in w.meters.values()}
    address = {m.meter.address: m.id for m in w.meters.values()}
    for f in faults:
        kind, target, start = str(f["kind"]), str(f["target"]), float(str(f["start"]))
        first = None
        first_branch = None
        for res in results:
            for a in res.anomalies:
                if a.kind != MATCH[kind]:
                    continue
                # lost reads are station-wide: a comms finding names the scope or the unread meter
                hit = kind == "comms" or address.get(a.target, a.target) == target
                if hit and first is None:
                    first = (res.found_at - start) / DAY_S
                if kind == "theft" and first_branch is None and a.branch == branch_of.get(target):
                    first_branch = (res.found_at - start) / DAY_S
        out.delays.setdefault(kind, []).append(first)
        if kind == "theft":
            out.branch_delays.append(first_branch)
    explained = {(MATCH[str(f["kind"])], str(f["target"])) for f in faults}
    explained |= {(k, a) for a, m in address.items() for k, t in explained if t == m}
    theft_branches = {branch_of.get(str(f["target"])) for f in faults if f["kind"] == "theft"}
    for res in results:
        for a in res.anomalies:
            if (a.kind, a.target) in explained:
                continue
            if a.kind == "comms" and any(f["kind"] == "comms" for f in faults):
                continue
            if a.kind == "theft" and a.target not in branch_of and a.branch in theft_branches:
                continue  # located to the thief's branch (or a box of it), no customer named: right
            if a.kind == "theft" and a.branch in theft_branches:
                pass  # a wrong customer in the right branch still counts as a false positive
            out.false_positives[a.kind] = out.false_positives.get(a.kind, 0) + 1
            if len(out.examples) < 10:
                out.examples.append(a)
    return out


__all__ = [
    "BUSES",
    "START",
    "Reader",
    "Report",
    "Score",
    "perfect_topology",
    "records",
    "run",
    "scenario",
    "score",
    "world",
]
