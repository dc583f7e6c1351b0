"""What the terminal believes about each meter's and group's supply, updated by evidence.

Layer: apps (outage), pure. ``Beliefs.observe(evidence)`` folds one piece of evidence into
per-meter state (dark since, last answers, silent since, relay) and per-group signals (a
breaker, a branch unit, a box terminal, the metrology unit, the terminal's own supply).
It judges signals (a loss shorter than the judgement delay is a dip: counted, then forgotten)
but draws no conclusion about levels: that is ``classify.Classifier``. Must not do I/O.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from .evidence import (
    Evidence,
    GroupSupply,
    MetersBack,
    MetersDark,
    PowerDownRecord,
    ReadResult,
    RecordsRead,
    RelayState,
    Window,
)
from .members import Group, Members

_V = TypeVar("_V")

ANSWERS_KEPT = 32  # per meter: enough to tell whether it answered during a past interval
#: sources whose "supplied" says the whole group is supplied (a box terminal at the box incomer,
#: the metrology unit at the transformer, the terminal's own input); a branch unit does not
#: (the group can be cut further down its cable)
VETO_SOURCES = frozenset({"box_terminal", "metrology", "power_monitor"})
#: sources reporting a state that lasts until it changes (judged by waiting, not by a 2nd sample)
CONTINUOUS_SOURCES = frozenset({"breaker", "power_monitor"})
#: a vetoing source the app samples itself every few seconds (the metrology unit's phases): a loss
#: that began after its last "supplied" sample, if that sample is at most ``VETO_DUE_S`` old, waits
#: for its next one. A box terminal, polled once a minute, is not waited for (it would delay every
#: box report by a poll).
WAITED_VETO_SOURCES = frozenset({"metrology"})
VETO_DUE_S = 30.0


@dataclass(slots=True)
class Spell:
    """A meter's own evidence that it is dark: since ``when``, seen by ``sources``."""

    when: Window
    sources: set[str]
    received: float


@dataclass(slots=True)
class _Rare:
    """A meter's seldom-set state (an outage, a return, an open relay, a records read): made
    for the few meters that have one, so the rest cost three slots."""

    dark: Spell | None = None
    back: Window | None = None
    relay_open_since: float | None = None
    relay_cause: str = ""
    records_read: float | None = None
    records_received: float | None = None


class _RareField(Generic[_V]):
    """A ``MeterBelief`` field kept in its ``_Rare``: reads the default while the meter has none,
    and a set to the default makes none."""

    __slots__ = ("_default", "_name")

    def __init__(self, default: _V) -> None:
        self._default = default
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, belief: MeterBelief, owner: type | None = None) -> _V:
        rare = belief._rare
        return self._default if rare is None else cast(_V, getattr(rare, self._name))

    def __set__(self, belief: MeterBelief, value: _V) -> None:
        rare = belief._rare
        if rare is None:
            if value == self._default:
                return
            rare = belief._rare = _Rare()
        setattr(rare, self._name, value)


class MeterBelief:
    """One meter's state. ``dark`` / ``back`` (the last return evidence: power-on list, answer
    after dark) / ``relay_open_since`` / ``relay_cause`` / ``records_read`` (when its power-down
    records were last read) / ``records_received`` (when the terminal heard of that read) live
    in one ``_Rare`` made at the first one set to other than its default (56 B a meter instead
    of 96 B with eight slots)."""

    __slots__ = ("_rare", "answers", "fails")

    dark: _RareField[Spell | None] = _RareField(None)
    back: _RareField[Window | None] = _RareField(None)
    relay_open_since: _RareField[float | None] = _RareField(None)
    relay_cause: _RareField[str] = _RareField("")
    records_read: _RareField[float | None] = _RareField(None)
    records_received: _RareField[float | None] = _RareField(None)

    def __init__(self) -> None:
        # sorted, the latest ANSWERS_KEPT; arrays (a full list of 32 floats was ~1.1 kB a meter), the
        # shared empty tuple until the first (most meters never fail a read: 64 B each). Answers are
        # whole seconds (int32) while every one is (RS-485 reads carry their slot's time: ~0.13 kB
        # less a full meter), else doubles (route reads carry the read's time, probes and health
        # theirs): read them as floats (``answer_times``, ``last_answer``, ``first_answer_after``)
        self.answers: array[int] | array[float] | tuple[()] = ()
        self.fails: array[float] | tuple[()] = ()
        self._rare: _Rare | None = None

    @property
    def last_answer(self) -> float | None:
        return float(self.answers[-1]) if self.answers else None

    def answer_times(self) -> list[float]:
        return [float(a) for a in self.answers]

    @property
    def last_failed(self) -> float | None:
        return self.fails[-1] if self.fails else None

    def answered_between(self, lo: float, hi: float) -> bool:
        return any(lo < t < hi for t in self.answers)

    def first_answer_after(self, t: float) -> float | None:
        return next((float(a) for a in self.answers if a > t), None)

    def failed_after(self, t: float) -> list[float]:
        return [f for f in self.fails if f > t]


@dataclass(slots=True)
class Signal:
    """One source's view of one group: lost (``powered`` False) since ``when``, or supplied."""

    powered: bool
    when: Window
    source: str
    received: float
    sampled: bool
    confirmed: bool = False  # a loss judged longer than the judgement delay
    last_seen: float = 0.0  # time of the latest sample agreeing with ``powered``
    returned: bool = False  # supplied again after a judged loss (return evidence for the group)


@dataclass(slots=True)
class Counters:
    evidence: int = 0
    dips: int = 0
    unknown_meters: int = 0
    records: int = 0
    by_source: dict[str, int] = field(default_factory=dict)


class Beliefs:
    """Per-meter and per-group supply state of one station area."""

    def __init__(self, members: Members, *, judgement_s: float = 3.0) -> None:
        self.members = members
        self.judgement_s = judgement_s
        self.meters: dict[str, MeterBelief] = {}
        self.signals: dict[Group, dict[str, Signal]] = {}
        self.records: list[PowerDownRecord] = []  # power-down records not yet placed by the classifier
        #: losses judged only as they ended: (group, lost since, back since)
        self.closed_losses: list[tuple[Group, Window, Window]] = []
        self.port_answer: dict[str, float] = {}  # port -> last answer of any meter on it
        self.counters = Counters()

    def meter(self, meter_id: str) -> MeterBelief:
        b = self.meters.get(meter_id)
        if b is None:
            b = self.meters[meter_id] = MeterBelief()
        return b

    def use(self, members: Members) -> None:
        """A new station model: forget meters that left it (their evidence means nothing now)."""
        self.members = members
        for mid in [m for m in self.meters if m not in members.meters and m not in _watchers(members)]:
            del self.meters[mid]

    # ---- evidence in

    def observe(self, ev: Evidence) -> None:
        c = self.counters
        c.evidence += 1
        c.by_source[ev.source if not isinstance(ev, RelayState) else "relay"] = (
            c.by_source.get(ev.source if not isinstance(ev, RelayState) else "relay", 0) + 1
        )
        if isinstance(ev, MetersDark):
            for mid in self._known(ev.meters):
                self._dark(mid, ev.when, ev.source, ev.received)
        elif isinstance(ev, MetersBack):
            for mid in self._known(ev.meters):
                self._back(mid, ev.when, received=ev.received)
        elif isinstance(ev, ReadResult):
            self._read(ev)
        elif isinstance(ev, RelayState):
            b = self.meter(ev.meter)
            if ev.open and b.relay_open_since is None:
                b.relay_open_since = ev.at
                b.relay_cause = ev.cause
            elif not ev.open:
                b.relay_open_since = None
                b.relay_cause = ""
        elif isinstance(ev, PowerDownRecord):
            if ev.end is None or ev.end - ev.start >= self.judgement_s:
                c.records += 1
                self.records.append(ev)
            else:
                c.dips += 1
        elif isinstance(ev, RecordsRead):
            b = self.meter(ev.meter)
            if b.records_read is None or ev.at >= b.records_read:
                b.records_read, b.records_received = ev.at, ev.received
        elif isinstance(ev, GroupSupply):
            self._group(ev)

    def _known(self, meters: tuple[str, ...]) -> list[str]:
        known = [m for m in meters if m in self.members.meters]
        self.counters.unknown_meters += len(meters) - len(known)
        return known

    def _dark(self, mid: str, when: Window, source: str, received: float) -> None:
        b = self.meter(mid)
        if b.dark is None:
            b.dark = Spell(when, {source}, received)
            b.back = None
        else:
            b.dark.sources.add(source)

    def _back(self, mid: str, when: Window, *, received: float | None = None) -> None:
        """Supply back. A power-on list received after the power-off list is about a later
        time, even when the two windows overlap (a short outage: the CCO holds the power-on back
        until the power-off is out): its window starts no earlier than the loss."""
        b = self.meter(mid)
        if b.dark is not None:
            if received is not None and received >= b.dark.received:
                lo = max(when.lo, b.dark.when.lo)
                when = Window.between(lo, max(when.hi, lo), at=when.at)
            elif when.hi <= b.dark.when.hi:
                return  # an older power-on than the power-off we hold
        b.back = when
        b.dark = None

    def _read(self, ev: ReadResult) -> None:
        b = self.meter(ev.meter)
        if not ev.ok:
            b.fails = _kept(b.fails, ev.at)
            return
        if b.dark is not None and ev.at > b.dark.when.hi:
            self._back(ev.meter, Window.between(max(b.dark.when.hi, b.last_failed or 0.0), ev.at))
        b.answers = _kept_answer(b.answers, ev.at)
        info = self.members.meters.get(ev.meter)
        if info is not None and info.port is not None:
            self.port_answer[info.port] = max(ev.at, self.port_answer.get(info.port, ev.at))

    def _group(self, ev: GroupSupply) -> None:
        per = self.signals.setdefault(ev.group, {})
        old = per.get(ev.source)
        sampled = ev.sampled and ev.source not in CONTINUOUS_SOURCES
        if ev.powered:
            if old is not None and not old.powered:
                if not old.confirmed and not sampled and ev.when.at - old.when.hi >= self.judgement_s:
                    # a continuous loss that lasted, told only now (the terminal was off meanwhile)
                    self.closed_losses.append((ev.group, old.when, ev.when))
                    per[ev.source] = Signal(
                        True, ev.when, ev.source, ev.received, sampled, last_seen=ev.when.hi, returned=True
                    )
                    return
                if not old.confirmed:
                    self.counters.dips += 1  # lost, then back before it was judged: a dip
                    per[ev.source] = Signal(
                        True, ev.when, ev.source, ev.received, sampled, last_seen=ev.when.hi
                    )
                    return
                # back after a judged loss: somewhere after the last sample that saw it lost
                when = ev.when if not sampled else Window.between(min(old.last_seen, ev.when.hi), ev.when.hi)
                per[ev.source] = Signal(
                    True, when, ev.source, ev.received, sampled, last_seen=ev.when.hi, returned=True
                )
            elif old is None:
                per[ev.source] = Signal(True, ev.when, ev.source, ev.received, sampled, last_seen=ev.when.hi)
            else:
                old.last_seen = max(old.last_seen, ev.when.hi)
            return
        if old is None or old.powered:
            # a sampled source lost it after the last sample that saw it supplied
            lo = old.last_seen if old is not None and old.powered and sampled else ev.when.lo
            when = Window.between(min(lo, ev.when.hi), ev.when.hi, at=ev.when.at)
            per[ev.source] = Signal(False, when, ev.source, ev.received, sampled, last_seen=ev.when.hi)
            return
        old.last_seen = ev.when.hi
        old.received = ev.received
        if sampled and ev.when.hi - old.when.hi >= self.judgement_s:
            old.confirmed = True

    # ---- judging

    def judge(self, now: float) -> list[Signal]:
        """Confirm continuous losses that lasted the judgement delay; return those newly confirmed."""
        out = []
        for per in self.signals.values():
            for s in per.values():
                if (
                    not s.powered
                    and not s.confirmed
                    and not s.sampled
                    and now >= s.when.hi + self.judgement_s
                ):
                    s.confirmed = True
                    out.append(s)
        return out

    def corroborate(self, group: Group) -> None:
        """Members of ``group`` are dark by their own evidence: its sampled loss is not a dip."""
        for s in self.signals.get(group, {}).values():
            if not s.powered:
                s.confirmed = True

    def next_judgement(self) -> float | None:
        times = [
            s.when.hi + self.judgement_s
            for per in self.signals.values()
            for s in per.values()
            if not s.powered and not s.confirmed and not s.sampled
        ]
        return min(times) if times else None

    def lost(self, group: Group) -> list[Signal]:
        """The confirmed losses on ``group`` now."""
        return [s for s in self.signals.get(group, {}).values() if not s.powered and s.confirmed]

    def pending_loss(self, group: Group) -> list[Signal]:
        """Losses on ``group`` seen but not yet judged."""
        return [s for s in self.signals.get(group, {}).values() if not s.powered and not s.confirmed]

    def supplied_after(self, group: Group, t: float) -> Signal | None:
        """A vetoing source says ``group`` is supplied at a time after ``t``."""
        for s in self.signals.get(group, {}).values():
            # a continuous source's state holds until it changes
            seen = float("inf") if s.source in CONTINUOUS_SOURCES else s.last_seen
            if s.powered and s.source in VETO_SOURCES and seen > t:
                return s
        return None

    def veto_due(self, group: Group, t: float) -> bool:
        """A vetoing source the app samples itself said ``group`` supplied shortly before ``t``
        (within ``VETO_DUE_S``), not after: its next sample, due in seconds, tells whether a loss
        that may have begun at ``t`` is the group's."""
        return any(
            s.powered and s.source in WAITED_VETO_SOURCES and t - VETO_DUE_S <= s.last_seen <= t
            for s in self.signals.get(group, {}).values()
        )

    def back_signal(self, group: Group, after: float) -> Signal | None:
        """A source that said ``group`` was lost now says supplied again, since after ``after``."""
        for s in self.signals.get(group, {}).values():
            if s.powered and s.returned and s.when.hi > after:
                return s
        return None

    # ---- state for the store

    def to_json(self) -> dict[str, Any]:
        meters = {}
        for mid, b in self.meters.items():
            row: dict[str, Any] = {}
            if b.dark is not None:
                row["dark"] = [*_w(b.dark.when), sorted(b.dark.sources), b.dark.received]
            if b.relay_open_since is not None:
                row["relay"] = [b.relay_open_since, b.relay_cause]
            if row:
                meters[mid] = row
        signals = [
            [
                g.level,
                g.target,
                s.source,
                s.powered,
                *_w(s.when),
                s.received,
                s.sampled,
                s.confirmed,
                s.last_seen,
                s.returned,
            ]
            for g, per in self.signals.items()
            for s in per.values()
        ]
        return {"meters": meters, "signals": signals}

    def load_json(self, data: dict[str, Any]) -> None:
        for mid, row in dict(data.get("meters") or {}).items():
            b = self.meter(str(mid))
            if "dark" in row:
                at, lo, hi, sources, received = row["dark"]
                b.dark = Spell(Window(at, lo, hi), set(sources), received)
            if "relay" in row:
                b.relay_open_since, b.relay_cause = row["relay"]
        for row in data.get("signals") or []:
            level, target, source, powered, at, lo, hi, received, sampled, confirmed, seen, returned = row
            self.signals.setdefault(Group(level, target), {})[source] = Signal(
                powered, Window(at, lo, hi), source, received, sampled, confirmed, seen, returned
            )


def _kept(times: array[float] | tuple[()], t: float) -> array[float]:
    """``times`` with ``t`` inserted in order (reads may be reported late), keeping the latest
    ``ANSWERS_KEPT`` (the same array, or a new one in place of the empty tuple)."""
    if not times:
        return array("d", (t,))
    if t >= times[-1]:
        times.append(t)
    else:
        bisect.insort(times, t)
    if len(times) > ANSWERS_KEPT:
        del times[0]
    return times


def _kept_answer(times: array[int] | array[float] | tuple[()], t: float) -> array[int] | array[float]:
    """``_kept`` for answers: whole seconds in int32 while every time is one (``t`` a whole number
    within int32), else doubles (the int32 ones turned to doubles, exactly). Full, the array is
    exact-size and shifted in place (no append past ``ANSWERS_KEPT``)."""
    whole = float(t).is_integer() and -(2**31) <= t < 2**31
    if not times:
        return array("i", (int(t),)) if whole else array("d", (t,))
    kept: array[Any] = times if times.typecode == "d" or whole else array("d", times)
    value = int(t) if kept.typecode == "i" else t
    if len(kept) < ANSWERS_KEPT:
        if value >= kept[-1]:
            kept.append(value)
        else:
            bisect.insort(kept, value)
        # full from now on: an exact-size copy (appends left room for ~7 more)
        return kept[:] if len(kept) == ANSWERS_KEPT else kept
    # the latest ANSWERS_KEPT: ``value`` in, the oldest out (``value`` itself when it is older)
    at = bisect.bisect_right(kept, value)
    if at:
        kept[0 : at - 1] = kept[1:at]
        kept[at - 1] = value
    return kept


def _w(w: Window) -> list[float]:
    return [w.at, w.lo, w.hi]


def _watchers(members: Members) -> set[str]:
    return set(members.breakers) | set(members.branch_units) | set(members.box_terminals)


__all__ = ["ANSWERS_KEPT", "VETO_SOURCES", "Beliefs", "Counters", "MeterBelief", "Signal", "Spell"]
