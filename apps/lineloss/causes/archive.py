"""Archive errors (档案/户变): an abnormal loss that becomes normal once the meters the topology
app found misplaced are moved where they really are.

Layer: apps (lineloss). Pure. Takes the topology app's result as data (``TopologyView``, parsed
from what it publishes on the bus; never its internals) and recomputes the day with

* meters it marks ``foreign`` (fed by another transformer) left out of the sales,
* meters it ``corrected`` put in the branch and box it identified,
* meters it found ``missing`` from the archive added with the day they must have had for their
  box, branch or station to be normal, when a household can draw (or, with PV, export) that
  much -- else the median day of their neighbours (their registers are not read),

then compares class by class. Each misplaced meter that turns an abnormal scope (high,
negative, or incomputable because it was never read) into a qualified one is an ``archive``
anomaly with the before/after figures as evidence (CN115423250B recombines neighbouring areas
until the loss is normal; GRID.md §2). Must not read the bus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..balance import Balance, day_balances
from ..classify import INCOMPUTABLE, QUALIFIED, Thresholds, Verdict, classify
from ..energy import Energies
from ..layout import BoxInfo, BranchInfo, Layout, MeterInfo
from ..window import Day
from .anomaly import ARCHIVE, Anomaly, rounded

UNLISTED = "unlisted-"  # the name of an addressless missing entry: unlisted-<branch>-<n>


@dataclass(frozen=True, slots=True)
class Placement:
    branch: str | None
    box: str | None
    confidence: float


@dataclass(frozen=True, slots=True)
class MissingMeter:
    address: str
    branch: str | None = None
    box: str | None = None
    confidence: float = 0.8
    #: no address: the energy the topology app saw at the branch unit that no listed meter
    #: explains, kWh a day (> 0 drawn, < 0 exported); None when it gave none
    unexplained_kwh_per_day: float | None = None

    @property
    def heard(self) -> bool:
        """A meter heard on the carrier (an address), not unexplained energy at a unit."""
        return not self.address.startswith(UNLISTED)


@dataclass(frozen=True)
class TopologyView:
    """What the topology app found, as line loss uses it."""

    foreign: Mapping[str, float]  # meter id -> confidence
    moved: Mapping[str, Placement]  # meter id -> where it really is
    missing: tuple[MissingMeter, ...] = ()
    computed_at: float | None = None

    @property
    def empty(self) -> bool:
        return not self.foreign and not self.moved and not self.missing

    @classmethod
    def from_result(cls, result: Mapping[str, Any], archive: Mapping[str, MeterInfo]) -> TopologyView:
        """From the topology result JSON (``meters[]`` with ``meter_id``, ``status``, ``branch``,
        ``box``, ``confidence``; ``missing[]`` with ``address`` and optionally ``branch``, ``box``,
        ``confidence``). Malformed entries are skipped: this is another app's output."""
        foreign: dict[str, float] = {}
        moved: dict[str, Placement] = {}
        for row in _rows(result.get("meters")):
            meter_id = row.get("meter_id")
            if not isinstance(meter_id, str):
                continue
            conf = _confidence(row.get("confidence"), 0.8)
            status = row.get("status")
            if status == "foreign":
                foreign[meter_id] = conf
            elif status == "corrected" and meter_id in archive:
                was = archive[meter_id]
                branch, box = _text(row.get("branch")), _text(row.get("box"))
                if (branch or was.branch) != was.branch or (box or was.box) != was.box:
                    moved[meter_id] = Placement(branch or was.branch, box or was.box, conf)
        missing = []
        for k, row in enumerate(_rows(result.get("missing"))):
            address, branch = _text(row.get("address")), _text(row.get("branch"))
            if address is None and branch is None:
                continue  # nowhere to put it
            # no address: unexplained energy the topology app saw at a branch unit
            name = address or f"{UNLISTED}{branch}-{k + 1}"
            evidence = row.get("evidence")
            seen = evidence.get("unexplained_kwh_per_day") if isinstance(evidence, Mapping) else None
            unexplained = _finite(seen) if address is None else None
            conf = _confidence(row.get("confidence"), 0.8)
            missing.append(MissingMeter(name, branch, _text(row.get("box")), conf, unexplained))
        at = result.get("computed_at")
        return cls(foreign, moved, tuple(missing), float(at) if isinstance(at, int | float) else None)


def _rows(value: Any) -> list[Mapping[str, Any]]:
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


def _confidence(value: Any, default: float) -> float:
    v = _finite(value)
    return v if v is not None and 0 <= v <= 1 else default


@dataclass(frozen=True)
class Records:
    """The station model's records a ``Layout`` was built from (needed to rebuild it moved)."""

    meters: Sequence[MeterInfo]
    branches: Sequence[BranchInfo] = ()
    boxes: Sequence[BoxInfo] = ()
    assessment: str | None = None

    def layout(self) -> Layout:
        return Layout.build(self.meters, branches=self.branches, boxes=self.boxes, assessment=self.assessment)


def explain_by_archive(
    records: Records,
    layout: Layout,
    day: Day,
    before: Sequence[tuple[Balance, Verdict]],
    topology: TopologyView,
    thresholds: Thresholds,
    expected: np.ndarray | None = None,
) -> list[Anomaly]:
    if topology.empty:
        return []
    meters = []
    for m in records.meters:
        if m.id in topology.foreign:
            meters.append(replace(m, excluded=True))
        elif m.id in topology.moved:
            p = topology.moved[m.id]
            meters.append(replace(m, branch=p.branch, box=p.box))
        else:
            meters.append(m)
    estimates = _missing_estimates(layout, day, before, topology.missing, thresholds)
    for miss, _ in estimates:
        meters.append(MeterInfo(f"missing:{miss.address}", branch=miss.branch, box=miss.box))
    alt = Records(meters, records.branches, records.boxes, records.assessment).layout()
    fwd = np.full(alt.n, np.nan)
    rev = np.full(alt.n, np.nan)
    weights = np.ones(alt.n)
    for j, m in enumerate(alt.meters):
        i = layout.index.get(m.id)
        if i is not None:
            fwd[j], rev[j] = day.energy.forward[i], day.energy.reverse[i]
            if expected is not None:
                weights[j] = expected[i]
    for miss, kwh in estimates:
        j = alt.index[f"missing:{miss.address}"]
        fwd[j], rev[j] = max(kwh, 0.0), max(-kwh, 0.0)  # an export is read by the reverse register
        weights[j] = abs(kwh)
    after = {
        b.scope: (b, classify(b.loss_rate, b.supply_kwh, b.coverage, thresholds))
        for b in day_balances(alt, Energies(fwd, rev), weights)
    }
    involved = _involved(layout, alt, topology)
    fixes: dict[str, list[dict[str, Any]]] = {}
    for b0, v0 in before:
        if v0.klass == QUALIFIED or b0.scope not in after:
            continue
        b1, v1 = after[b0.scope]
        if v1.klass != QUALIFIED:
            continue
        for key in involved.get(b0.scope, ()):
            fixes.setdefault(key, []).append(
                {
                    "scope": b0.scope,
                    "class_before": v0.klass,
                    "class_after": v1.klass,
                    "rate_before_pct": None if b0.loss_rate is None else rounded(b0.loss_rate, 3),
                    "rate_after_pct": None if b1.loss_rate is None else rounded(b1.loss_rate, 3),
                    "coverage_before": rounded(b0.coverage),
                    "coverage_after": rounded(b1.coverage),
                }
            )
    out = []
    for key, scopes in sorted(fixes.items()):
        status, conf, branch = _describe(key, layout, topology)
        fixed_incomputable = all(s["class_before"] == INCOMPUTABLE for s in scopes)
        evidence: dict[str, Any] = {"status": status, "source": "topology", "scopes": scopes}
        if key.startswith("missing:"):
            evidence["estimated_kwh"] = rounded({m.address: k for m, k in estimates}[key[8:]], 3)
        confidence = conf * (0.9 if fixed_incomputable else 0.95)
        out.append(Anomaly(day.date, ARCHIVE, key.removeprefix("missing:"), branch, confidence, evidence))
    return out


def _missing_estimates(
    layout: Layout,
    day: Day,
    before: Sequence[tuple[Balance, Verdict]],
    missing: Sequence[MissingMeter],
    thresholds: Thresholds,
) -> list[tuple[MissingMeter, float]]:
    """The day each missing meter must have had: the energy that brings its innermost scope (box,
    branch, else the station) to the middle of the economic band, shared by the missing meters
    there -- when that is what a household can draw or export (a prosumer's export is negative).
    An entry without an address is energy the topology app saw flowing one way at a branch unit
    (``unexplained_kwh_per_day``, drawn when positive): it cannot stand for a flow the other way
    (a consumption the unit measured does not make up for sales above the supply), so there its
    day is the topology app's own figure. Otherwise the median day of the scope's customers:
    their registers are not read, so this is all the archive can say."""
    target = (thresholds.economic_min_pct + thresholds.economic_max_pct) / 2.0
    balance = {b.scope: b for b, _ in before}
    scopes = {s.id: s for s in layout.scopes}
    reads = day.energy.net[layout.customer_mask]
    reads = reads[np.isfinite(reads)]
    plausible = 3.0 * float(np.max(np.abs(reads))) if len(reads) else 0.0
    home = {}
    for miss in missing:
        key = next((k for k in (miss.box, miss.branch) if k in scopes), layout.scopes[0].id)
        home[miss.address] = key
    out = []
    for miss in missing:
        key = home[miss.address]
        b = balance.get(key)
        sharing = sum(1 for v in home.values() if v == key)
        implied = None
        if b is not None and b.supply_kwh is not None and b.loss_kwh is not None and b.supply_kwh > 0:
            implied = (b.loss_kwh - target / 100.0 * b.supply_kwh) / sharing
        seen = miss.unexplained_kwh_per_day
        if implied is not None and abs(implied) <= plausible and (seen is None or implied * seen >= 0):
            out.append((miss, implied))
            continue
        if seen is not None:
            out.append((miss, seen))
            continue
        days = day.energy.forward[scopes[key].customers]
        days = days[np.isfinite(days)]
        if len(days):
            out.append((miss, float(np.median(days))))
    return out


def _involved(old: Layout, new: Layout, topology: TopologyView) -> dict[str, set[str]]:
    """Scope id -> keys (meter ids, ``missing:<address>``) of the misplaced meters in it, before or after."""
    keys = set(topology.foreign) | set(topology.moved) | {f"missing:{m.address}" for m in topology.missing}
    out: dict[str, set[str]] = {}
    for lay in (old, new):
        for s in lay.scopes:
            for i in s.customers:
                key = lay.meters[int(i)].id
                if key in keys:
                    out.setdefault(s.id, set()).add(key)
    return out


def _describe(key: str, layout: Layout, topology: TopologyView) -> tuple[str, float, str | None]:
    if key.startswith("missing:"):
        miss = next(m for m in topology.missing if f"missing:{m.address}" == key)
        return "missing", miss.confidence, miss.branch
    if key in topology.foreign:
        return "foreign", topology.foreign[key], layout.branch_of(key)
    p = topology.moved[key]
    return "moved", p.confidence, p.branch


__all__ = ["MissingMeter", "Placement", "Records", "TopologyView", "explain_by_archive"]
