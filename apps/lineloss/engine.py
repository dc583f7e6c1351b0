"""One day of line loss: statistics, classes, 15-min intervals and causes, from a window of days.

Layer: apps (lineloss). Pure: ``analyse`` takes the layout, the newest days' readings and the
topology app's view, and returns a ``DayResult``; the service decides when to call it (after
the freezes, again when late data arrives). Must not touch the bus, the store or the clock.

Order of the cause finders, each taking out what an earlier one explained:
CT ratio of the 总表 -> stopped/slow registers -> section fits (theft) -> archive -> comms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .balance import Balance, balances, day_balances
from .causes.anomaly import METER_SLOW, METER_STOPPED, Anomaly
from .causes.archive import Records, TopologyView, explain_by_archive
from .causes.comms import MAX_LISTED, comms_anomalies
from .causes.ct import CtSettings, detect_ct
from .causes.meters import MeterSettings, check_meters, register_ratios
from .causes.sections import Candidate, FitSettings, fit_sections
from .causes.theft import meter_anomalies, theft_anomalies
from .classify import Thresholds, Verdict, classify
from .energy import FArray
from .layout import Layout
from .window import Day


@dataclass(frozen=True)
class Settings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    meters: MeterSettings = field(default_factory=MeterSettings)
    fit: FitSettings = field(default_factory=FitSettings)
    ct: CtSettings = field(default_factory=CtSettings)
    history_days: int = 7


@dataclass(frozen=True, slots=True)
class ScopeDay:
    date: str
    balance: Balance
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        b, v = self.balance, self.verdict
        return {
            "date": self.date,
            "scope": b.scope,
            "level": b.level,
            "branch": b.branch,
            "supply_kwh": _r(b.supply_kwh, 3),
            "sales_kwh": _r(b.sales_kwh, 3),
            "pv_kwh": _r(b.pv_kwh, 3),
            "loss_kwh": _r(b.loss_kwh, 3),
            "loss_rate": _r(b.loss_rate, 4),
            "class": v.klass,
            "economic": v.economic,
            "reason": v.reason,
            "coverage": _r(b.coverage, 4),
            "customers": b.customers,
            "read": b.read,
            "unread": list(b.unread[:MAX_LISTED]),
        }


@dataclass(frozen=True)
class Intervals:
    """The day's 96 intervals per scope: rates (percent, NaN = incomputable) and coverage."""

    scopes: tuple[str, ...]
    supply: FArray  # (scopes, 96)
    loss: FArray
    rate: FArray
    coverage: FArray

    def to_json(self) -> dict[str, Any]:
        def rows(a: FArray, digits: int) -> list[list[float | None]]:
            return [[None if not np.isfinite(x) else round(float(x), digits) for x in row] for row in a]

        return {
            "scopes": list(self.scopes),
            "supply_kwh": rows(self.supply, 4),
            "loss_kwh": rows(self.loss, 4),
            "loss_rate": rows(self.rate, 3),
            "coverage": rows(self.coverage, 4),
        }


@dataclass(frozen=True)
class DayResult:
    date: str
    days: list[ScopeDay]
    intervals: Intervals
    anomalies: list[Anomaly]

    def station(self) -> ScopeDay:
        return self.days[0]


def expected_energy(layout: Layout, window: list[Day]) -> FArray:
    """Each meter's typical day (median of its read days in the window) to weight coverage;
    meters never read count as the median customer."""
    if not window:
        return np.ones(layout.n)
    days = np.column_stack([d.energy.forward for d in window])
    with np.errstate(all="ignore"):
        known = np.isfinite(days).any(axis=1)
        median = np.full(layout.n, np.nan)
        median[known] = np.nanmedian(days[known], axis=1)
    typical = (
        np.nanmedian(median[layout.customer_mask]) if np.isfinite(median[layout.customer_mask]).any() else 1.0
    )
    typical = float(typical) if np.isfinite(typical) and typical > 0 else 1.0
    out = np.where(np.isfinite(median) & (median > 0), median, typical)
    return np.maximum(out, 0.05 * typical)  # an empty house still counts when it is not read


def analyse(
    records: Records,
    layout: Layout,
    window: list[Day],
    settings: Settings,
    *,
    topology: TopologyView | None = None,
) -> DayResult:
    """The newest day of ``window`` (oldest first) with its causes."""
    day = window[-1]
    expected = expected_energy(layout, window)
    th = settings.thresholds
    pairs = []
    for b in day_balances(layout, day.energy, expected):
        pairs.append((b, classify(b.loss_rate, b.supply_kwh, b.coverage, th)))
    iv = balances(layout, day.intervals, expected)
    intervals = Intervals(tuple(s.id for s in layout.scopes), iv.supply, iv.loss, iv.rate, iv.coverage)

    anomalies = registers_and_theft(layout, window, settings, topology=topology)
    not_ours: set[str] = set()
    if topology is not None and not topology.empty:
        registers = {a.branch for a in anomalies if a.kind in (METER_STOPPED, METER_SLOW)}
        view = _registers_explain(topology, registers)
        named = {(a.kind, a.target) for a in anomalies}  # a heard meter the balances placed already
        found = explain_by_archive(records, layout, day, pairs, view, th, expected)
        anomalies += [a for a in found if (a.kind, a.target) not in named]
        not_ours = set(topology.foreign)
    anomalies += comms_anomalies(day.date, layout, pairs, not_ours=not_ours)
    return DayResult(day.date, [ScopeDay(day.date, b, v) for b, v in pairs], intervals, anomalies)


def registers_and_theft(
    layout: Layout, window: list[Day], settings: Settings, *, topology: TopologyView | None = None
) -> list[Anomaly]:
    """The findings that need only 15-min data: a wrong CT on the 总表, stopped/slow registers,
    then theft with those taken out. The newest day may still be going on: the service runs
    this every hour on today so far (an early warning), and on each whole day. (Fitting the last
    day alone as well, so that a theft that began lately is not diluted, was tried: on clean
    feeders a day's fit names far customers whose own I²R the technical terms miss.)"""
    date = window[-1].date
    ct = detect_ct(layout, window[-1], settings.ct)
    scale = {} if ct is None else {layout.assessment: ct.factor}
    checks = check_meters(layout, window, settings.meters)
    faulty = {c.meter for c in checks}
    confirm: dict[int, Candidate] = {}
    fits = fit_sections(layout, window, settings.fit, supply_scale=scale)
    stopped = frozenset(c.meter for c in checks if c.kind == "stopped")
    slow = {c.meter: 1.0 / c.ratio for c in checks if c.kind == "slow" and c.ratio > 0}
    if faulty:
        confirm = {c.meter: c for f in fits for c in f.found if c.meter in faulty}
        fits = fit_sections(
            layout, window, settings.fit, supply_scale=scale, meter_scale=slow, substitute=stopped
        )
    # each section's whole loss a day (room for a meter the topology app placed there)
    room = {f.section.id: f.loss_kwh / f.intervals * 96.0 for f in fits if f.intervals}
    if topology is not None and topology.missing:
        # a meter the archive lacks draws unmetered energy there: an archive matter, not a theft
        unlisted = {m.branch for m in topology.missing} | {m.box for m in topology.missing}
        fits = [f for f in fits if f.section.id not in unlisted]
    ratios = register_ratios(layout, window, settings.meters)
    slow_below = 1.0 - settings.meters.slow_min_pct / 100.0
    heard = () if topology is None else tuple(m for m in topology.missing if m.heard)
    thefts = theft_anomalies(
        date, layout, fits, faulty, ratios, slow_below=slow_below, unlisted=heard, room=room
    )
    found = [] if ct is None else [ct.anomaly]
    return found + meter_anomalies(date, layout, checks, confirm) + thefts


def _registers_explain(topology: TopologyView, branches: set[str | None]) -> TopologyView:
    """The topology view without its addressless "missing" entries on ``branches`` (those with a
    stopped or slow register): such an entry is energy the branch unit measured that no listed
    meter's register explains, and a register that stopped or runs slow leaves exactly that; it
    is no meter missing from the archive (the lineloss scenario: the stopped m-0035 on F3 was
    taken for an unlisted meter drawing 19 kWh a day there)."""
    kept = tuple(m for m in topology.missing if m.heard or m.branch not in branches)
    return topology if len(kept) == len(topology.missing) else dataclasses.replace(topology, missing=kept)


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


__all__ = [
    "DayResult",
    "Intervals",
    "ScopeDay",
    "Settings",
    "analyse",
    "expected_energy",
    "registers_and_theft",
]
