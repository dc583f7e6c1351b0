"""Who is fed by what: the supply groups of a station area, as the outage classifier sees them.

Layer: apps (outage), pure. ``Members`` answers "which customer meters does this group feed"
for the five outage levels -- station, phase, branch (with its sub-branches), meter box and
meter -- and "which groups feed this meter", plus which field devices watch which group
(branch breakers, branch monitoring units, box terminals). It is built from the station model
(``from_station``) or from plain records (tests, and terminals without a model). Must not do
I/O or know where the records came from.

A three-phase customer belongs to no phase group (losing one phase does not make it dark); a
meter of unknown phase belongs to none either. Only customer meters are members: the field
devices watch groups, they are not counted in "all members dark".

Kept small (one terminal holds it for thousands of meters): a group's members are stored as
the sorted numbers of its meters (``array``, 2 or 4 bytes a member) and made a ``frozenset``
when asked (the last few small ones asked are kept; ``feeds`` and ``size`` need none); a
meter's feeding groups are one tuple shared by every meter of the same box, branch and phase,
its own group made when asked.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from protocols.station import StationModel

Level = Literal["station", "phase", "branch", "box", "meter"]
LEVELS: tuple[Level, ...] = ("station", "phase", "branch", "box", "meter")
PHASES = ("A", "B", "C")
#: member sets ``Members.members`` keeps made (the groups an outage step asks about again and
#: again), of groups up to ``KEPT_SET_MAX`` meters (a bigger one is made again when asked)
SETS_KEPT = 16
KEPT_SET_MAX = 256


@dataclass(frozen=True, slots=True, order=True)
class Group:
    """One supply group: ``Group("branch", "F2")``; a meter is ``Group("meter", "m-0007")``."""

    level: Level
    target: str

    def __str__(self) -> str:
        return f"{self.level} {self.target}"

    @property
    def rank(self) -> int:
        """0 for the station, 4 for a meter: lower is higher in the supply tree."""
        return LEVELS.index(self.level)


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """Where a customer meter is: its phase, branch, box and how the terminal reaches it (one
    object shared by the meters of the same place: its id is its key in ``Members.meters``)."""

    phase: str | None = None  # A | B | C | ABC | None (unknown)
    branch: str | None = None
    box: str | None = None
    port: str | None = None  # the RS-485 port name, or "hplc"


@dataclass(slots=True)
class Members:
    """The station area's supply tree and the devices that watch it."""

    station: str
    meters: dict[str, MeterInfo]
    box_branch: dict[str, str | None] = field(default_factory=dict)  # box -> its branch
    branch_parent: dict[str, str | None] = field(default_factory=dict)  # branch -> parent branch
    breakers: dict[str, str] = field(default_factory=dict)  # breaker device id -> branch
    branch_units: dict[str, str] = field(default_factory=dict)  # branch-unit meter id -> branch
    box_terminals: dict[str, str] = field(default_factory=dict)  # box-terminal meter id -> box
    by_address: dict[str, str] = field(default_factory=dict)  # meter address -> meter id
    # group -> the numbers (places in ``_ids``) of its member meters, ascending
    _members: dict[Group, array[int]] = field(default_factory=dict, init=False, repr=False)
    _ids: tuple[str, ...] = field(default=(), init=False, repr=False)  # the meters, numbered
    # (box, branch, phase) -> the groups feeding a meter there, above its own: shared by those meters
    _feeders: dict[tuple[str | None, str | None, str | None], tuple[Group, ...]] = field(
        default_factory=dict, init=False, repr=False
    )
    _sets: dict[Group, frozenset[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for m in self.meters.values():
            if m.box is not None and m.box not in self.box_branch:
                self.box_branch[m.box] = m.branch
            if m.branch is not None:
                self.branch_parent.setdefault(m.branch, None)
        for _box, branch in self.box_branch.items():
            if branch is not None:
                self.branch_parent.setdefault(branch, None)
        for branch in (*self.breakers.values(), *self.branch_units.values()):
            self.branch_parent.setdefault(branch, None)
        self._index()

    def _index(self) -> None:
        self._ids = tuple(self.meters)
        numbers: dict[Group, list[int]] = {Group("station", self.station): list(range(len(self._ids)))}
        one: dict[Group, Group] = {}  # one object per group
        for n, m in enumerate(self.meters.values()):
            where = (m.box, m.branch, m.phase)
            feeders = self._feeders.get(where)
            if feeders is None:
                feeders = self._feeders[where] = tuple(one.setdefault(g, g) for g in self._chain(m))
            for g in feeders[:-1]:  # (the last is the station: every meter, listed above)
                numbers.setdefault(g, []).append(n)
        for box in self.box_branch:
            numbers.setdefault(Group("box", box), [])
        for branch in self.branch_parent:
            numbers.setdefault(Group("branch", branch), [])
        typecode = "H" if len(self._ids) <= 2**16 else "I"
        self._members = {g: array(typecode, n) for g, n in numbers.items()}
        self._sets = {}

    def _chain(self, m: MeterInfo) -> tuple[Group, ...]:
        """The groups feeding a meter at ``m``, lowest first, but its own: box, branches (inner to
        outer), phase, station."""
        out = []
        if m.box is not None:
            out.append(Group("box", m.box))
        branch = m.branch if m.branch is not None else self.box_branch.get(m.box or "")
        seen: set[str] = set()
        while branch is not None and branch not in seen:  # a loop in bad data must not hang us
            seen.add(branch)
            out.append(Group("branch", branch))
            branch = self.branch_parent.get(branch)
        if m.phase in PHASES:
            out.append(Group("phase", m.phase))
        out.append(Group("station", self.station))
        return tuple(out)

    # ---- queries

    @property
    def station_group(self) -> Group:
        return Group("station", self.station)

    def members(self, group: Group) -> frozenset[str]:
        """Customer meters the group feeds (a meter group: itself; unknown group: none)."""
        if group.level == "meter":
            return frozenset((group.target,)) if group.target in self.meters else frozenset()
        made = self._sets.get(group)
        if made is None:
            numbers = self._members.get(group)
            if numbers is None:
                return frozenset()
            made = frozenset(map(self._ids.__getitem__, numbers))
            if len(numbers) <= KEPT_SET_MAX:
                if len(self._sets) >= SETS_KEPT:
                    self._sets.clear()
                self._sets[group] = made
        return made

    def feeds(self, group: Group, meter: str) -> bool:
        """``meter in members(group)``, without making the set."""
        if group.level == "meter":
            return group.target == meter and meter in self.meters
        return group in self.feeders_of(meter)

    def size(self, group: Group) -> int:
        """``len(members(group))``, without making the set."""
        if group.level == "meter":
            return 1 if group.target in self.meters else 0
        numbers = self._members.get(group)
        return 0 if numbers is None else len(numbers)

    def groups_of(self, meter: str) -> tuple[Group, ...]:
        """The groups feeding ``meter``, lowest first (empty for a meter not in the model)."""
        feeders = self.feeders_of(meter)
        return (Group("meter", meter), *feeders) if feeders else ()

    def feeders_of(self, meter: str) -> tuple[Group, ...]:
        """``groups_of`` without the meter's own group (a tuple shared by the meters of its box)."""
        m = self.meters.get(meter)
        return () if m is None else self._feeders[(m.box, m.branch, m.phase)]

    def ancestors(self, group: Group) -> tuple[Group, ...]:
        """Every group that feeds all of ``group``'s members (not itself), lowest first."""
        mem = self.members(group)
        if not mem:
            return ()
        first = next(iter(mem))
        chain = self.groups_of(first)
        return tuple(g for g in chain if g != group and g.rank < group.rank and mem <= self.members(g))

    def meter_by_address(self, address: str) -> str | None:
        return self.by_address.get(address)

    def groups(self) -> list[Group]:
        """Every group with at least one member (meters excluded), highest level first."""
        return sorted((g for g, n in self._members.items() if n), key=lambda g: (g.rank, g.target))

    def same_members(self, a: Group, b: Group) -> bool:
        return self.members(a) == self.members(b)


def from_records(
    station: str,
    meters: Iterable[Mapping[str, Any]],
    *,
    boxes: Iterable[Mapping[str, Any]] = (),
    branches: Iterable[Mapping[str, Any]] = (),
    devices: Iterable[Mapping[str, Any]] = (),
) -> Members:
    """``Members`` from plain records shaped like the station model's (``protocols.station``).

    ``meters``: id, address, phase, branch, box, channel/port, kind ("customer" by default;
    "branch_unit" / "box_terminal" become watchers of their branch / box, "assessment" is left
    out). ``boxes``: id, branch, terminal. ``branches``: id, parent, breaker, monitor.
    ``devices``: id, profile, branch (a "breaker" profile watches its branch).
    """
    out: dict[str, MeterInfo] = {}
    places: dict[MeterInfo, MeterInfo] = {}  # one object a place
    addresses: dict[str, str] = {}  # meter id -> address
    units: dict[str, str] = {}
    terminals: dict[str, str] = {}
    for r in meters:
        kind = str(r.get("kind") or "customer")
        mid = str(r["id"])
        if kind == "branch_unit" and r.get("branch"):
            units[mid] = str(r["branch"])
            continue
        if kind == "box_terminal" and r.get("box"):
            terminals[mid] = str(r["box"])
            continue
        if kind != "customer":
            continue
        port = r.get("port") or ("hplc" if r.get("channel") == "hplc" else None)
        place = MeterInfo(_opt(r.get("phase")), _opt(r.get("branch")), _opt(r.get("box")), _opt(port))
        out[mid] = places.setdefault(place, place)
        addresses[mid] = str(r.get("address") or "")
    box_branch = {str(b["id"]): _opt(b.get("branch")) for b in boxes}
    for b in boxes:
        if b.get("terminal"):
            terminals[str(b["terminal"])] = str(b["id"])
    parents = {str(b["id"]): _opt(b.get("parent")) for b in branches}
    breakers: dict[str, str] = {}
    for b in branches:
        if b.get("breaker"):
            breakers[str(b["breaker"])] = str(b["id"])
        if b.get("monitor"):
            units[str(b["monitor"])] = str(b["id"])
    for d in devices:
        if d.get("profile") == "breaker" and d.get("branch"):
            breakers[str(d["id"])] = str(d["branch"])
    return Members(
        station,
        out,
        box_branch=box_branch,
        branch_parent=parents,
        breakers=breakers,
        branch_units=units,
        box_terminals=terminals,
        by_address={address: mid for mid, address in addresses.items() if address},
    )


def from_station(model: StationModel) -> Members:
    """``Members`` of the runtime's station model (``ctx.station.model``)."""
    return from_records(
        model.id or "station",
        [
            {
                "id": m.id,
                "address": m.address,
                "phase": m.phase,
                "branch": m.branch,
                "box": m.box,
                "kind": m.kind,
                "port": m.transport,
            }
            for m in model.meters
        ],
        boxes=[{"id": b.id, "branch": b.branch, "terminal": b.terminal} for b in model.boxes],
        branches=[
            {"id": b.id, "parent": b.parent, "breaker": b.breaker, "monitor": b.monitor}
            for b in model.branches
        ],
        devices=[{"id": d.id, "profile": d.profile, "branch": d.branch} for d in model.devices],
    )


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


__all__ = ["LEVELS", "PHASES", "Group", "Level", "Members", "MeterInfo", "from_records", "from_station"]
