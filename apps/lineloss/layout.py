"""Who measures what: the station area's balance scopes and sections, from the station model.

Layer: apps (lineloss). Pure: turns meter, branch and box records into index arrays the
statistics work on. Must not read files, the bus or the store, and must not know any meter's
energy (``energy`` and ``balance`` do).

Two views of the same tree:

* **scopes** are what is reported (GRID.md §2): the station (总表 vs every customer), every
  branch with a branch monitoring unit (the unit vs every customer below it, sub-branches
  included), every meter box with a box terminal (the terminal vs the box's customers).
* **sections** are the smallest balances, used to localise a cause: a supply meter against
  its direct children, where a child is a customer or the supply meter of the next monitored
  level down (a sub-branch unit, a box terminal). The station section is the 总表 against the
  top branch units and the customers no unit measures.

A branch without a monitoring unit is not a scope; its customers fall into the nearest
monitored ancestor's section (or the station's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

STATION = "station"
KINDS = ("customer", "branch_unit", "box_terminal", "assessment")

IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """One metering point as line loss sees it.

    ``multiplier`` is the comprehensive ratio (综合倍率, CT x PT) the archive records: a meter's
    register difference times it is the primary energy. ``excluded`` meters (e.g. flagged as
    another station area's) are left out of every sum."""

    id: str
    kind: str = "customer"
    branch: str | None = None
    box: str | None = None
    phase: str | None = None  # A | B | C | ABC; None when the archive does not know
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    excluded: bool = False

    @property
    def multiplier(self) -> float:
        return self.ct_ratio * self.pt_ratio


@dataclass(frozen=True, slots=True)
class BranchInfo:
    id: str
    monitor: str | None = None  # meter id of its branch monitoring unit
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class BoxInfo:
    id: str
    branch: str | None = None
    terminal: str | None = None  # meter id of its box terminal


@dataclass(frozen=True, slots=True)
class Scope:
    """A reported balance: ``supply`` (a meter index, -1 when none) against ``customers``."""

    id: str
    level: str  # station | branch | box
    branch: str | None  # the branch it belongs to (itself for a branch; None for the station)
    supply: int
    customers: IntArray


@dataclass(frozen=True, slots=True)
class Section:
    """A smallest balance: ``supply`` against ``customers`` plus the ``feeds`` (supply meters of
    the monitored levels just below)."""

    id: str  # the scope id it refines (station, a branch or a box)
    level: str
    branch: str | None
    supply: int
    customers: IntArray
    feeds: IntArray


@dataclass(frozen=True)
class Layout:
    """The station area's meters in a fixed order, with its scopes and sections."""

    meters: tuple[MeterInfo, ...]
    scopes: tuple[Scope, ...]
    sections: tuple[Section, ...]
    assessment: int  # index of the 总表, -1 when the station has none
    index: Mapping[str, int] = field(repr=False)
    multipliers: NDArray[np.float64] = field(repr=False)
    pt_ratios: NDArray[np.float64] = field(repr=False)
    customer_mask: NDArray[np.bool_] = field(repr=False)
    #: (n, 3) share of each meter's energy on phases A, B, C (a third each when unknown)
    phase_share: NDArray[np.float64] = field(repr=False)
    #: supply meter index -> the customers its scope holds (to split a feed's flow by phase)
    below: Mapping[int, IntArray] = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.meters)

    def ids(self, idx: Iterable[int]) -> list[str]:
        return [self.meters[int(i)].id for i in idx]

    def scope(self, scope_id: str) -> Scope:
        for s in self.scopes:
            if s.id == scope_id:
                return s
        raise KeyError(scope_id)

    def branch_of(self, meter_id: str) -> str | None:
        i = self.index.get(meter_id)
        return None if i is None else self.meters[i].branch

    @classmethod
    def build(
        cls,
        meters: Sequence[MeterInfo],
        *,
        branches: Sequence[BranchInfo] = (),
        boxes: Sequence[BoxInfo] = (),
        assessment: str | None = None,
    ) -> Layout:
        """The layout of these records. Unknown references (a meter's branch that no branch
        record names, a monitor that is not a meter) are ignored, not fatal: the station model
        validates references, and line loss must still compute what it can."""
        kept = tuple(m for m in meters if not m.excluded)
        index = {m.id: i for i, m in enumerate(kept)}
        by_id = {b.id: b for b in branches}
        monitored = {b.id: index[b.monitor] for b in branches if b.monitor in index}
        box_supply = {x.id: index[x.terminal] for x in boxes if x.terminal in index}
        box_branch = {x.id: x.branch for x in boxes}
        top = index.get(assessment, -1) if assessment is not None else -1

        def ancestors(branch: str | None) -> list[str]:
            """The branch and its ancestors, innermost first (cycles cut)."""
            out: list[str] = []
            while branch is not None and branch not in out:
                out.append(branch)
                parent = by_id.get(branch)
                branch = parent.parent if parent is not None else None
            return out

        def monitored_home(branch: str | None) -> str | None:
            return next((b for b in ancestors(branch) if b in monitored), None)

        customers = [i for i, m in enumerate(kept) if m.kind == "customer"]
        cust_branch = {i: kept[i].branch or box_branch.get(kept[i].box or "") for i in customers}
        for x in boxes:  # a box without a branch is where its customers are
            if not box_branch.get(x.id):
                homes = (cust_branch[i] for i in customers if kept[i].box == x.id)
                box_branch[x.id] = next((b for b in homes if b), None)

        scopes = [Scope(STATION, "station", None, top, np.array(customers, dtype=np.int64))]
        for b in branches:
            if b.id not in monitored:
                continue
            below = [i for i in customers if b.id in ancestors(cust_branch[i])]
            scopes.append(Scope(b.id, "branch", b.id, monitored[b.id], np.array(below, dtype=np.int64)))
        for x in boxes:
            if x.id not in box_supply:
                continue
            inside = [i for i in customers if kept[i].box == x.id]
            scopes.append(
                Scope(x.id, "box", box_branch[x.id], box_supply[x.id], np.array(inside, dtype=np.int64))
            )

        # sections: every customer and every lower supply meter hangs under exactly one section
        home_cust: dict[str, list[int]] = {}
        home_feed: dict[str, list[int]] = {}
        for i in customers:
            box = kept[i].box
            key = box if box in box_supply else (monitored_home(cust_branch[i]) or STATION)
            home_cust.setdefault(key or STATION, []).append(i)
        for b in branches:
            if b.id in monitored:
                key = monitored_home(b.parent) or STATION
                home_feed.setdefault(key, []).append(monitored[b.id])
        for x in boxes:
            if x.id in box_supply:
                key = monitored_home(box_branch[x.id]) or STATION
                home_feed.setdefault(key, []).append(box_supply[x.id])
        sections = []
        for s in scopes:
            sections.append(
                Section(
                    s.id,
                    s.level,
                    s.branch,
                    s.supply,
                    np.array(sorted(home_cust.get(s.id, [])), dtype=np.int64),
                    np.array(sorted(home_feed.get(s.id, [])), dtype=np.int64),
                )
            )
        return cls(
            meters=kept,
            scopes=tuple(scopes),
            sections=tuple(sections),
            assessment=top,
            index=index,
            multipliers=np.array([m.multiplier for m in kept], dtype=np.float64),
            pt_ratios=np.array([m.pt_ratio for m in kept], dtype=np.float64),
            customer_mask=np.array([m.kind == "customer" for m in kept], dtype=bool),
            phase_share=np.array([_phase_share(m.phase) for m in kept], dtype=np.float64).reshape(-1, 3),
            below={s.supply: s.customers for s in scopes if s.supply >= 0},
        )


def _phase_share(phase: str | None) -> tuple[float, float, float]:
    if phase in ("A", "B", "C"):
        return tuple(1.0 if p == phase else 0.0 for p in "ABC")  # type: ignore[return-value]
    return (1 / 3, 1 / 3, 1 / 3)


__all__ = ["KINDS", "STATION", "BoxInfo", "BranchInfo", "Layout", "MeterInfo", "Scope", "Section"]
