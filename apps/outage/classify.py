"""Outage classification (停电研判): evidence -> outages at station / phase / branch / box / meter.

Layer: apps (outage), pure. ``Classifier.observe`` takes typed evidence (``evidence``),
``step(now)`` re-judges and returns the outages whose report changed. No I/O, no clock of its
own: the caller passes ``now`` and calls ``step`` again at ``next_wakeup()``.

How a meter's state is read: the latest evidence wins. Dark evidence (an HPLC power-off, a
judged loss on a group feeding it: open breaker, branch unit or box terminal without voltage,
phase lost at the transformer, the terminal's own supply lost, or a whole group going silent
on RS-485) stands until positive evidence comes after it (an answer, a power-on, a group
supplied again). A failed read alone makes a meter *silent*: comms, not supply.

The rules (GRID.md §3; issue 9):

* **Highest level all dark.** A group is dark when all its members are dark or silent, at least
  one of them by supply evidence (or the group's own device says so), and none answered after
  the outage began. The outage is reported at the highest dark group; lower groups inside it
  are not reported again, their meters are listed.
* **A box out despite a few lit members.** A box where at least ``MIN_DARK_AROUND_LIT`` members
  on two phases or more lost supply together (their windows agree) is out even though a few of
  its archive members (at most ``MAX_LIT_SHARE``) kept answering: they are not in that box (an
  archive error, a neighbouring area's meter listed there). They are named in the report
  (``lit``); without this the box's outage came out as one meter outage per member. Not when
  the dark ones share one phase (that phase's outage) or an outage above the box covers that
  time (a late answer inside a branch outage).
* **Unknown members wait.** A group with members not heard from since the outage began is
  *pending* for at most ``settle_s``: its unknown members are asked for (``StepResult.probes``)
  and nothing below it is reported meanwhile; after that they count as supplied. A member silent
  since before the others lost supply (not read since) is unknown too, not dark.
* **The transformer's next sample.** A phase (or the station) whose meters all went dark after
  the metrology unit's last "supplied" sample of it is pending until the next sample (seconds,
  ``beliefs.VETO_DUE_S``): supplied then, the loss is not that phase's (a box outage that holds
  every meter of a phase).
* **Judgement.** A sampled loss counts once a second sample at least ``judgement_s`` later (or
  a member's own evidence) confirms it, a continuous one (breaker, own supply) once it lasted
  ``judgement_s``: a shorter dip never becomes a report. HPLC lists are already judged.
* **Relay open is no outage.** A meter whose relay was opened (fee control, remote trip)
  shortly before it went dark (``RELAY_EXPLAINS_S``) is not reported at meter level. A relay
  open for longer does not explain a later loss: the meter's own power-off report or power-down
  record then says its supply was lost (the relay cuts the customer's load, not the meter).
* **Repeated switching** of a group within ``merge_s`` of its restore reopens the same outage.
* **Restore** per outage: the earliest return evidence after its start (power-on, answers,
  supply back); ``still_dark`` lists members still dark or silent ``settle_s`` later.
* **Silence alone is withdrawn.** An outage seen only as RS-485 silence (no supply evidence) is
  reported, and withdrawn (``retracted``) when, after it ended, its meters' power-down records
  were read and none of them holds a power-down then: it was a communication loss (a box's
  RS-485 lead cut, say). Its meters are counted as comms.
* **Power-down records** read after the fact refine start and end (median over members:
  robust to one meter's clock), or report an outage the terminal did not see live (an
  RS-485-only meter or box, an outage while the terminal was down). They also re-level a group
  reported because its parts went dark minutes apart (two boxes of a branch): when members' records
  sit in another outage of that time that began apart, it becomes the group its own records span,
  unless the group's own device (breaker, unit, box terminal, metrology) saw it lost.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .beliefs import Beliefs, MeterBelief
from .evidence import Evidence, GroupSupply, PowerDownRecord, ReadResult, Window
from .members import PHASES, Group, Members

Kind = Literal["dark", "silent", "lit", "unknown"]
Status = Literal["dark", "pending", "lit", "none"]
ONGOING, RESTORED, MERGED, RETRACTED = "ongoing", "restored", "merged", "retracted"
NEG_INF = float("-inf")
MAX_PROBES = 64
#: a box is out despite lit members when at least this many lost supply together ...
MIN_DARK_AROUND_LIT = 3
#: ... and the lit ones are at most this share of its members
MAX_LIT_SHARE = 0.25
KEEP_FINISHED = 256  # restored / merged / retracted outages kept in memory (the newest)
#: sources that are the group's own device (a breaker, a unit at its head, the transformer's
#: metrology, the terminal's supply): a loss they saw is that group's, whatever the meters' records say
DEVICE_SOURCES = frozenset({"breaker", "branch_unit", "box_terminal", "metrology", "power_monitor"})
#: an open relay explains a meter's loss of supply only when it opened at most this long before
#: the loss began [s]; a loss that starts later, the relay still open, is the meter's own supply
RELAY_EXPLAINS_S = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    judgement_s: float = 3.0  # power-down judgement delay (停电事件判断延时)
    settle_s: float = 90.0  # how long a group may wait for members not heard from
    merge_s: float = 300.0  # dark again within this after a restore: the same outage
    silence_confirm_s: float = 90.0  # a silence of a whole group counts after 2 failed reads or this
    min_silent_group: int = 2  # RS-485 silence needs at least this many members
    record_settle_s: float = 330.0  # power-down records of one outage trickle in for this long
    record_tolerance_s: float = 10.0  # records of one outage agree within this (meter clocks)
    records_grace_s: float = 15.0  # after a records read, how long its records may take to arrive

    def __post_init__(self) -> None:
        names = (
            "judgement_s",
            "settle_s",
            "merge_s",
            "silence_confirm_s",
            "record_settle_s",
            "records_grace_s",
        )
        for name in names:
            if getattr(self, name) < 0:
                raise ValueError(f"outage settings: {name} must be >= 0")
        if self.min_silent_group < 1:
            raise ValueError("outage settings: min_silent_group must be >= 1")


@dataclass(frozen=True, slots=True)
class MeterState:
    kind: Kind
    when: Window | None  # dark / silent: since when
    sources: frozenset[str]
    positive: float | None  # the latest positive evidence
    seen: float  # the latest evidence of this kind
    fails: int = 0  # silent: failed reads since the last positive evidence
    via: frozenset[Group] = frozenset()  # groups whose devices (or silence) also say it is dark


@dataclass(slots=True)
class Verdict:
    status: Status
    meters: frozenset[str] = frozenset()  # members listed in the report
    start: Window | None = None
    sources: frozenset[str] = frozenset()
    unknown: frozenset[str] = frozenset()
    lit: frozenset[str] = frozenset()  # members that answered although the group's device says lost


@dataclass(slots=True)
class Outage:
    """One reported outage; ``revision`` grows with every change the cloud is told about."""

    id: str
    group: Group
    start: Window
    meters: tuple[str, ...]
    sources: tuple[str, ...]
    reported_at: float
    status: str = ONGOING
    end: Window | None = None
    still_dark: tuple[str, ...] | None = None
    still_due: float | None = None
    flaps: int = 0
    merged_into: str | None = None
    lit: tuple[str, ...] = ()
    revision: int = 0
    trigger: float = 0.0  # hal receipt (or judgement deadline) of the evidence behind the last change
    records: dict[str, tuple[float, float | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report body (times UTC epoch seconds)."""
        return {
            "type": "outage",
            "id": self.id,
            "level": self.group.level,
            "target": self.group.target,
            "status": self.status,
            "start": self.start.at,
            "start_resolution_s": round(self.start.resolution, 3),
            "end": None if self.end is None else self.end.at,
            "end_resolution_s": None if self.end is None else round(self.end.resolution, 3),
            "meters": list(self.meters),
            "sources": list(self.sources),
            "reported_at": self.reported_at,
            "still_dark": None if self.still_dark is None else list(self.still_dark),
            "flaps": self.flaps,
            "merged_into": self.merged_into,
            "lit": list(self.lit),
            "revision": self.revision,
            "evidence_received_at": self.trigger,
        }

    def state_json(self) -> dict[str, Any]:
        return {
            **self.to_json(),
            "start_w": _w(self.start),
            "end_w": None if self.end is None else _w(self.end),
            "still_due": self.still_due,
            "records": {m: list(t) for m, t in self.records.items()},
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Outage:
        return cls(
            id=str(d["id"]),
            group=Group(d["level"], str(d["target"])),
            start=Window(*d["start_w"]),
            meters=tuple(d["meters"]),
            sources=tuple(d["sources"]),
            reported_at=float(d["reported_at"]),
            status=str(d["status"]),
            end=None if d.get("end_w") is None else Window(*d["end_w"]),
            still_dark=None if d.get("still_dark") is None else tuple(d["still_dark"]),
            still_due=d.get("still_due"),
            flaps=int(d.get("flaps", 0)),
            merged_into=d.get("merged_into"),
            lit=tuple(d.get("lit") or ()),
            revision=int(d.get("revision", 0)),
            trigger=float(d.get("evidence_received_at") or 0.0),
            records={
                m: (float(t[0]), None if t[1] is None else float(t[1]))
                for m, t in (d.get("records") or {}).items()
            },
        )


@dataclass(slots=True)
class StepResult:
    changed: list[Outage] = field(default_factory=list)
    probes: set[str] = field(default_factory=set)  # meters worth reading now
    record_probes: set[str] = field(default_factory=set)  # meters whose power-down records are due


@dataclass(slots=True)
class _Pool:
    """Power-down records the terminal did not see live, gathered until they settle."""

    entries: list[PowerDownRecord] = field(default_factory=list)

    def due(self, now: float, settle_s: float) -> bool:
        return bool(self.entries) and now >= min(e.received for e in self.entries) + settle_s


class Classifier:
    """Turns evidence into outage reports for one station area."""

    def __init__(
        self, members: Members, settings: Settings | None = None, *, new_id: Callable[[], str] | None = None
    ) -> None:
        self.settings = settings or Settings()
        self.beliefs = Beliefs(members, judgement_s=self.settings.judgement_s)
        self.outages: dict[str, Outage] = {}
        self._pending: dict[Group, float] = {}  # pending group -> since
        self._pool = _Pool()
        self._seq = 0
        self._new_id = new_id or self._next_id
        self._trigger = 0.0
        self._dirty = True
        self._idle = False  # the last step found nothing dark, lost, pending or open (see _quiet)
        self._last_step = NEG_INF
        self.suppressed_relay: set[str] = set()
        self.comms: dict[str, float] = {}  # meter -> silent since (no supply evidence)
        self.comms_retracted = 0  # outages seen only as silence, withdrawn by the meters' records

    @property
    def members(self) -> Members:
        return self.beliefs.members

    def use(self, members: Members) -> None:
        self.beliefs.use(members)
        self._pending.clear()
        self._dirty = True

    def _next_id(self) -> str:
        self._seq += 1
        return f"o{self._seq:06d}"

    # ------------------------------------------------------------------ evidence

    def observe(self, ev: Evidence) -> None:
        """Fold one piece of evidence in; ``step`` then says what changed."""
        if self._idle and not self._dirty and self._refresh(ev):
            # a supplied group sampled supplied again (the metrology unit every few seconds)
            # while nothing is dark, lost, pending or open: only its last-seen time moved, and
            # that time matters only to a loss it could veto
            self.beliefs.observe(ev)
            self._trigger = max(self._trigger, ev.received)
            return
        self.beliefs.observe(ev)
        self._trigger = max(self._trigger, ev.received)
        if isinstance(ev, ReadResult) and ev.ok and not self._dirty:
            b = self.beliefs.meters.get(ev.meter)
            # a plain answer from a meter nobody waits for changes nothing
            self._dirty = (b is not None and (len(b.fails) > 0 or b.back is not None)) or self._awaited(
                ev.meter
            )
        else:
            self._dirty = True

    def _refresh(self, ev: Evidence) -> bool:
        """Whether ``ev`` says a group is supplied that its source already saw supplied."""
        if not isinstance(ev, GroupSupply) or not ev.powered:
            return False
        old = self.beliefs.signals.get(ev.group, {}).get(ev.source)
        return old is not None and old.powered

    def _quiet(self, view: _View, now: float) -> bool:
        """Nothing a supplied sample could change: the time a group was last seen supplied only
        vetoes a loss (a group lost, members dark) or dates a return (an outage open or
        settling), so: no group lost, no meter dark, nothing pending, pooled or open."""
        if self._pending or self._pool.entries:
            return False
        if any(o.still_due is not None or self._recent(o, now) for o in self.outages.values()):
            return False
        if any(not s.powered for per in self.beliefs.signals.values() for s in per.values()):
            return False
        return not view.any_dark()

    def _awaited(self, meter: str) -> bool:
        """Whether an answer from ``meter`` may settle something (an open outage, a pending group)."""
        for o in self.outages.values():
            if (o.status == ONGOING or o.still_due is not None) and self.members.feeds(o.group, meter):
                return True
        return any(self.members.feeds(g, meter) for g in self._pending)

    def observe_all(self, evidence: Iterable[Evidence]) -> None:
        for ev in evidence:
            self.observe(ev)

    # ------------------------------------------------------------------ judging

    def next_wakeup(self) -> float | None:
        """When ``step`` must run again even without new evidence (always after the last step)."""
        s = self.settings
        times: list[float] = []
        if (t := self.beliefs.next_judgement()) is not None:
            times.append(t)
        times += [since + s.settle_s for since in self._pending.values()]
        times += [o.still_due for o in self.outages.values() if o.still_due is not None]
        if self._pool.entries:
            times.append(min(e.received for e in self._pool.entries) + s.record_settle_s)
        times += [since + s.silence_confirm_s for since in self.comms.values()]
        times += [t for o in self.outages.values() if (t := self._silence_verdict_due(o)) is not None]
        times = [t for t in times if t > self._last_step]
        return min(times) if times else None

    def step(self, now: float) -> StepResult:
        """Re-judge at ``now``; the outages whose report changed, and what is worth reading."""
        out = StepResult()
        confirmed = self.beliefs.judge(now)
        due = self.next_wakeup()
        if not self._dirty and not confirmed and (due is None or due > now):
            return out
        self._dirty = False
        self._last_step = now
        trigger = self._trigger
        if confirmed or (due is not None and due <= now):
            trigger = max(trigger, min(now, due if due is not None else now))
        self._corroborate()
        view = _View(self, now)
        selected = self._select(view, now, out)
        self._reconcile(view, selected, now, trigger, out)
        self._place_records(view, now, trigger, out)
        self._relevel_by_records(trigger, out)
        self._place_closed_losses(now, trigger, out)
        self._promote(now, trigger, out)
        self._absorb(now, trigger, out)
        self._withdraw_silences(now, trigger, out)
        self._still_dark(view, now, trigger, out)
        self._comms(view, now)
        self._prune()
        self._idle = self._quiet(view, now)
        return out

    def _recent(self, o: Outage, now: float) -> bool:
        """Still open, or changed recently enough that records or a late group may join it."""
        s = self.settings
        return o.status == ONGOING or (
            o.status == RESTORED and now - o.trigger <= s.record_settle_s + 2 * s.settle_s
        )

    def _with_company(self, outages: list[Outage], now: float) -> list[Outage]:
        """The recent ones among ``outages`` and those that began with one of them (a box reported
        live long ago, a neighbour found by its records only now: the same outage)."""
        recent = [o for o in outages if self._recent(o, now)]
        if not recent:
            return []
        tol = self.settings.record_tolerance_s
        return [
            o for o in outages if self._recent(o, now) or any(_overlap(o.start, r.start, tol) for r in recent)
        ]

    def _prune(self) -> None:
        """Forget the oldest finished outages beyond ``KEEP_FINISHED`` (the cloud has them)."""
        if len(self.outages) <= 2 * KEEP_FINISHED:
            return
        finished = sorted(
            (o for o in self.outages.values() if o.status != ONGOING and o.still_due is None),
            key=lambda o: o.end.at if o.end is not None else o.start.at,
        )
        for o in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.outages[o.id]

    def _corroborate(self) -> None:
        """A sampled loss on a group whose members show their own dark evidence (or fail reads)
        since it began is not a dip: confirm it without waiting for its next sample."""
        for g, per in self.beliefs.signals.items():
            pending = [s for s in per.values() if not s.powered and not s.confirmed]
            if not pending:
                continue
            since = min(s.when.hi for s in pending)
            for mid in self.members.members(g):
                b = self.beliefs.meters.get(mid)
                if b is None:
                    continue
                own = b.dark is not None and b.dark.when.hi >= since
                if own or any(f > since for f in b.fails):
                    self.beliefs.corroborate(g)
                    self._trigger = max(self._trigger, max(s.received for s in pending))
                    break

    # ---- selection

    def _select(self, view: _View, now: float, out: StepResult) -> list[tuple[Group, Verdict]]:
        s = self.settings
        candidates = view.candidates()
        covered: set[str] = set()
        held: set[str] = set()
        selected: list[tuple[Group, Verdict]] = []
        pending_now: set[Group] = set()
        for g in sorted(candidates, key=lambda g: (g.rank, g.target)):
            v = view.verdict(g)
            if v.status == "pending":
                since = self._pending.setdefault(g, now)
                if now < since + s.settle_s:
                    pending_now.add(g)
                    held |= v.meters
                    out.probes |= set(sorted(v.unknown)[:MAX_PROBES])
                    continue
                v = view.verdict(g, expired=True)
            if v.status != "dark" or v.meters <= covered or v.meters <= held:
                continue
            selected.append((g, v))
            covered |= v.meters
        self._pending = {g: t for g, t in self._pending.items() if g in pending_now}
        for mid, st in view.dark_meters():
            if mid in covered or mid in held or "own" not in st.sources:
                continue
            assert st.when is not None
            if _relay_explains(self.beliefs.meters.get(mid), st.when.lo, st.when.hi):
                self.suppressed_relay.add(mid)
                continue  # a prepaid / remote trip, not an outage
            selected.append((Group("meter", mid), Verdict("dark", frozenset((mid,)), st.when, st.sources)))
        return selected

    # ---- reports

    def _reconcile(
        self, view: _View, selected: list[tuple[Group, Verdict]], now: float, trigger: float, out: StepResult
    ) -> None:
        open_by_group = {o.group: o for o in self.outages.values() if o.status == ONGOING}
        kept: set[str] = set()
        for g, v in selected:
            assert v.start is not None
            o = open_by_group.get(g)
            changed = o is None
            if o is None:
                o = self._escalate(g, v, now, trigger, out) or self._reopen(g, v)
            if o is None:
                o = Outage(self._new_id(), g, v.start, (), (), reported_at=now)
                self.outages[o.id] = o
            open_by_group[g] = o
            kept.add(o.id)
            self._update(o, v, trigger, out, force=changed)
        for o in list(open_by_group.values()):
            if o.id in kept or o.status != ONGOING:
                continue
            v = view.verdict(o.group, hi=o.start.hi)
            if v.status in ("dark", "pending"):
                continue  # still dark, reported by a higher outage meanwhile
            end = view.return_window(o)
            if end is not None:
                o.status, o.end = RESTORED, end
                if any(e is not None for _, e in o.records.values()):
                    self._refine(o, self.settings.record_tolerance_s)  # the meters' own records came first
                o.still_dark, o.still_due = None, now + self.settings.settle_s
                out.record_probes |= set(o.meters)
                self._changed(o, trigger, out)
                continue
            lower = [(g, w) for g, w in selected if set(w.meters) & set(o.meters) and g.rank > o.group.rank]
            if lower:  # it was never all dark: it is the lower group's outage
                self._retract(o, lower[0][0], trigger, out)

    def _update(self, o: Outage, v: Verdict, trigger: float, out: StepResult, *, force: bool = False) -> None:
        assert v.start is not None
        meters = tuple(sorted(set(v.meters) | (set(o.meters) if o.revision else set())))
        sources = tuple(sorted({s for s in v.sources if s != "own"} | set(o.sources)))
        start = v.start
        if o.revision and (
            o.records  # power-down records fixed it
            or not _overlap(o.start, v.start, 0.0)  # a new spell of a reopened outage
            or v.start.resolution >= o.start.resolution
        ):
            start = o.start
        # lit: members that kept their supply when the outage was judged at this group (``force``:
        # new, re-levelled or reopened); one answering later has its supply back while the group's
        # own device, polled, still says lost: it is not added then
        lit = tuple(sorted(v.lit if force or not o.revision else v.lit & set(o.lit)))
        if not force and (meters, sources, start, lit) == (o.meters, o.sources, o.start, o.lit):
            return
        o.meters, o.sources, o.start, o.lit = meters, sources, start, lit
        self._changed(o, trigger, out)

    def _escalate(self, g: Group, v: Verdict, now: float, trigger: float, out: StepResult) -> Outage | None:
        """Open outages of groups inside ``g`` that began with it become ``g``'s (the first keeps its id)."""
        assert v.start is not None
        mem = self.members.members(g)
        inside = sorted(
            (
                o
                for o in self.outages.values()
                if o.status == ONGOING
                and o.group != g
                and o.group.rank > g.rank
                and set(o.meters) <= mem
                and now - o.reported_at <= self.settings.settle_s
                and _overlap(o.start, v.start, self.settings.record_tolerance_s)
            ),
            key=lambda o: o.reported_at,
        )
        if not inside:
            return None
        first = inside[0]
        for o in inside[1:]:
            o.status, o.merged_into = MERGED, first.id
            self._changed(o, trigger, out)
        first.group = g
        return first

    def _absorb(self, now: float, trigger: float, out: StepResult) -> None:
        """One outage, one report: outages of groups inside a higher outage's group that began
        with it (reported while the higher group still waited for members, say, or from records)
        are merged into it, however long ago they were reported; their meters are listed there."""
        live = self._with_company([o for o in self.outages.values() if o.status in (ONGOING, RESTORED)], now)
        if len(live) < 2:
            return
        tol = self.settings.record_tolerance_s
        size = {o.id: self.members.size(o.group) for o in live}
        for high in sorted(live, key=lambda o: (-size[o.id], o.group.rank, o.reported_at)):
            if high.status not in (ONGOING, RESTORED):
                continue
            mem = self.members.members(high.group)
            inside = [
                o
                for o in live
                if o is not high
                and o.status in (ONGOING, RESTORED)
                and not (o.status == ONGOING and high.status == RESTORED)  # still dark: its own
                and _within(self.members.members(o.group), o.group, mem, high.group)
                and _overlap(o.start, high.start, tol)
            ]
            if not inside:
                continue
            for o in inside:
                o.status, o.merged_into, o.still_due = MERGED, high.id, None
                self._changed(o, trigger, out)
            high.meters = tuple(sorted({*high.meters, *(m for o in inside for m in o.meters)}))
            high.sources = tuple(sorted({*high.sources, *(s for o in inside for s in o.sources)}))
            for o in inside:
                for m, rec in o.records.items():
                    high.records.setdefault(m, rec)
            self._changed(high, trigger, out)

    def _promote(self, now: float, trigger: float, out: StepResult) -> None:
        """Restored outages that began together and, between them, cover every member of a group
        above them (boxes and meters of one branch, told apart live because the branch waited for
        members not heard from, or found by records) were that group's outage: the first reported
        becomes it, the others merge into it. Ongoing ones are left to the live rules, and so are
        outages seen only as RS-485 silence (they may yet be withdrawn as comms) and groups one
        part already covers alone (a branch with every meter of the area is not the station)."""
        done = self._with_company(
            [o for o in self.outages.values() if o.status == RESTORED and o.end is not None], now
        )
        if len(done) < 2:
            return
        tol = self.settings.record_tolerance_s
        for o in sorted(done, key=lambda o: o.reported_at):
            if o.status != RESTORED:
                continue
            best: tuple[Group, list[Outage]] | None = None
            for a in self.members.ancestors(o.group):  # lowest first: the last that fits is the highest
                mem = self.members.members(a)
                parts = [
                    p
                    for p in done
                    if p.status == RESTORED
                    and self.members.members(p.group) <= mem
                    and _overlap(p.start, o.start, tol)
                    and set(p.sources) != {"rs485"}  # silence alone may yet be withdrawn (comms)
                ]
                covered = frozenset().union(*(self.members.members(p.group) for p in parts))
                alone = any(self.members.members(p.group) >= mem for p in parts)  # no more than one part
                if len(parts) >= 2 and covered >= mem and not alone:
                    best = (a, parts)
            if best is None:
                continue
            group, parts = best
            first = min(parts, key=lambda p: p.reported_at)
            first.group = group
            for p in parts:
                if p is not first:
                    p.status, p.merged_into, p.still_due = MERGED, first.id, None
                    self._changed(p, trigger, out)
                    for m, rec in p.records.items():
                        first.records.setdefault(m, rec)
            first.meters = tuple(sorted({m for p in parts for m in p.meters}))
            first.sources = tuple(sorted({s for p in parts for s in p.sources}))
            first.lit = tuple(sorted({m for p in parts for m in p.lit} - set(first.meters)))
            ends = [p.end for p in parts if p.end is not None]
            first.end = max(ends, key=lambda w: w.hi)  # the group is back when its last part is
            if first.records:
                self._refine(first, tol)
            first.still_dark, first.still_due = None, now
            self._changed(first, trigger, out)

    def _reopen(self, g: Group, v: Verdict) -> Outage | None:
        assert v.start is not None
        prev = [
            o
            for o in self.outages.values()
            if o.group == g
            and o.status == RESTORED
            and o.end is not None
            and o.start.at <= v.start.hi
            and v.start.lo - o.end.hi <= self.settings.merge_s
        ]
        if not prev:
            return None
        o = max(prev, key=lambda o: o.end.at if o.end else NEG_INF)
        o.status, o.end, o.still_dark, o.still_due = ONGOING, None, None, None
        o.flaps += 1
        return o

    def _retract(self, o: Outage, lower: Group, trigger: float, out: StepResult) -> None:
        o.status, o.merged_into = RETRACTED, None
        self._changed(o, trigger, out)

    def _changed(self, o: Outage, trigger: float, out: StepResult) -> None:
        o.revision += 1
        o.trigger = trigger
        if o not in out.changed:
            out.changed.append(o)

    def _still_dark(self, view: _View, now: float, trigger: float, out: StepResult) -> None:
        for o in self.outages.values():
            if o.still_due is None or now < o.still_due or o.end is None:
                continue
            o.still_due = None
            o.still_dark = tuple(m for m in o.meters if view.still_dark(m, o.end.hi))
            self._changed(o, max(trigger, now), out)

    # ---- silence without supply evidence

    def _silence_verdict_due(self, o: Outage) -> float | None:
        """When a restored outage seen only as RS-485 silence can be judged by its meters' records
        (read after it ended, with time for the records to arrive), or None."""
        if o.status != RESTORED or o.end is None or o.records or set(o.sources) - {"rs485"}:
            return None
        read = []
        for mid in o.meters:
            b = self.beliefs.meters.get(mid)
            if b is not None and b.records_read is not None and b.records_read >= o.end.lo:
                read.append(b.records_received if b.records_received is not None else b.records_read)
        if 2 * len(read) < len(o.meters) or not read:
            return None  # most of its meters' records are not read yet
        return max(read) + self.settings.records_grace_s

    def _withdraw_silences(self, now: float, trigger: float, out: StepResult) -> None:
        """Outages seen only as silence whose meters' records hold no power-down: comms, withdrawn."""
        for o in self.outages.values():
            due = self._silence_verdict_due(o)
            if due is None or now < due:
                continue
            o.status, o.still_due = RETRACTED, None
            self.comms_retracted += 1
            self._changed(o, max(trigger, due), out)

    # ---- power-down records

    def _place_records(self, view: _View, now: float, trigger: float, out: StepResult) -> None:
        tol = self.settings.record_tolerance_s
        for rec in self.beliefs.records:
            o = self._outage_of_record(rec, now)
            if o is None:
                self._pool.entries.append(rec)
                continue
            o.records[rec.meter] = (rec.start, rec.end)
            self._refine(o, tol)
            if "meter_record" not in o.sources:
                o.sources = tuple(sorted({*o.sources, "meter_record"}))
            self._changed(o, max(trigger, rec.received), out)
        self.beliefs.records.clear()
        if self._pool.due(now, self.settings.record_settle_s):
            entries, self._pool.entries = self._pool.entries, []
            unplaced = []
            for rec in entries:  # an outage reported meanwhile (a breaker polled late, say) takes it
                o = self._outage_of_record(rec, now)
                if o is None:
                    unplaced.append(rec)
                    continue
                o.records[rec.meter] = (rec.start, rec.end)
                self._refine(o, tol)
                o.sources = tuple(sorted({*o.sources, "meter_record"}))
                self._changed(o, max(trigger, now), out)
            for o in _posthoc(self, view, unplaced):
                self.outages[o.id] = o
                self._changed(o, max(trigger, now), out)

    def _relevel_by_records(self, trigger: float, out: StepResult) -> None:
        """A group reported dark because its parts went dark one after another (two boxes of a
        branch, minutes apart) is not one outage: once power-down records show that members of it
        began apart -- their records are in another outage, at the same time but starting apart --
        it is the outage of the group its own records span (the other part is reported already)."""
        tol = self.settings.record_tolerance_s
        live = [o for o in self.outages.values() if o.status in (ONGOING, RESTORED)]
        for o in live:
            if not o.records or o.group.level == "meter" or not DEVICE_SOURCES.isdisjoint(o.sources):
                continue  # the group's own device saw it lost: the group it is
            mine = set(o.records)
            o_end = o.end.hi if o.end is not None else float("inf")
            apart = {
                m
                for x in live
                if x is not o
                and x.start.lo <= o_end + tol
                and (x.end.hi if x.end is not None else float("inf")) >= o.start.lo - tol
                and not _overlap(x.start, o.start, tol)
                for m in x.records
                if m in o.meters and m not in mine
            }
            if not apart:
                continue
            fits = [
                g
                for m in mine
                for g in self.members.groups_of(m)
                if mine <= self.members.members(g) and self.members.members(g).isdisjoint(apart)
            ]
            if not fits:
                continue
            g = max(fits, key=lambda g: (self.members.size(g), -g.rank))
            if g != o.group:
                o.group = g
                o.meters = tuple(sorted((set(o.meters) & self.members.members(g)) | mine))
                self._changed(o, trigger, out)

    def _place_closed_losses(self, now: float, trigger: float, out: StepResult) -> None:
        """A group's loss judged only when it ended (the terminal was down meanwhile, say): an
        outage already over, unless one of that group is already known for that time."""
        for g, lost, back in self.beliefs.closed_losses:
            known = [
                o
                for o in self.outages.values()
                if o.group == g
                and o.status not in (MERGED, RETRACTED)
                and _overlap(o.start, lost, self.settings.settle_s)
            ]
            if known:
                o = known[0]
                if o.status == ONGOING:
                    o.status, o.end, o.still_dark, o.still_due = (
                        RESTORED,
                        back,
                        None,
                        now + self.settings.settle_s,
                    )
                    self._changed(o, trigger, out)
                continue
            mem = tuple(sorted(self.members.members(g)))
            if not mem:
                continue
            o = Outage(
                self._new_id(), g, lost, mem, ("power_monitor",), reported_at=now, status=RESTORED, end=back
            )
            o.still_due = now + self.settings.settle_s
            self.outages[o.id] = o
            self._changed(o, trigger, out)
        self.beliefs.closed_losses.clear()

    def _outage_of_record(self, rec: PowerDownRecord, now: float) -> Outage | None:
        tol = self.settings.record_tolerance_s
        end = rec.end if rec.end is not None else now
        best: Outage | None = None
        for o in self.outages.values():
            if o.status in (MERGED, RETRACTED) or not self.members.feeds(o.group, rec.meter):
                continue
            o_end = o.end.hi if o.end is not None else now
            if (
                rec.start <= o_end + tol
                and end >= o.start.lo - tol
                and (best is None or o.group.rank > best.group.rank)
            ):
                best = o
        return best

    def _refine(self, o: Outage, tol: float) -> None:
        starts = [s for s, _ in o.records.values()]
        at = statistics.median(starts)
        o.start = Window(at, min(starts), max(starts))
        ends = [e for _, e in o.records.values() if e is not None]
        if o.end is not None and ends:
            at = statistics.median(ends)
            o.end = Window(at, min(ends), max(ends))

    # ---- comms

    def _comms(self, view: _View, now: float) -> None:
        silent = dict(view.silent_meters())
        self.comms = {m: st.when.lo if st.when else now for m, st in silent.items()}

    # ------------------------------------------------------------------ state

    def to_json(self) -> dict[str, Any]:
        keep = [
            o.state_json() for o in self.outages.values() if o.status == ONGOING or o.still_due is not None
        ]
        recent = sorted(
            (o for o in self.outages.values() if o.status == RESTORED and o.still_due is None),
            key=lambda o: o.end.at if o.end else 0.0,
        )[-32:]
        return {
            "seq": self._seq,
            "outages": keep + [o.state_json() for o in recent],
            "beliefs": self.beliefs.to_json(),
            "pool": [[r.meter, r.start, r.end, r.received] for r in self._pool.entries],
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self._seq = int(data.get("seq", 0))
        for d in data.get("outages") or []:
            o = Outage.from_state(d)
            self.outages[o.id] = o
        self.beliefs.load_json(data.get("beliefs") or {})
        self._pool.entries = [PowerDownRecord(m, s, e, r) for m, s, e, r in data.get("pool") or []]
        self._dirty = True


# ---------------------------------------------------------------------- one step's view


class _View:
    """Meter states and group verdicts at one ``now`` (cached for the step)."""

    def __init__(self, c: Classifier, now: float) -> None:
        self.c = c
        self.b = c.beliefs
        self.m = c.members
        self.now = now
        self._states: dict[str, MeterState] = {}
        self._silence: dict[Group, tuple[Window, float]] | None = None
        self._touched_cache: set[str] | None = None

    # ---- meters

    def state(self, mid: str) -> MeterState:
        st = self._states.get(mid)
        if st is None:
            st = self._states[mid] = self._state(mid, with_silence=True)
        return st

    def _state(self, mid: str, *, with_silence: bool) -> MeterState:
        b = self.b.meters.get(mid)
        pos = _positive(b)
        dark: list[tuple[Window, frozenset[str], float, Group | None]] = []
        if b is not None and b.dark is not None:
            dark.append((b.dark.when, frozenset({*b.dark.sources, "own"}), b.dark.when.hi, None))
        groups = self.m.feeders_of(mid)
        for g in groups:
            for s in self.b.signals.get(g, {}).values():
                if s.powered:
                    if s.returned:  # the group came back: so did its members, then
                        pos = max(pos, s.when.hi)
                elif s.confirmed:
                    dark.append((s.when, frozenset({s.source}), s.last_seen, g))
        info = self.m.meters.get(mid)
        if info is not None and info.phase not in PHASES:
            lost = [self.b.lost(Group("phase", p)) for p in PHASES]
            if all(lost):
                w = max((s[0].when for s in lost), key=lambda w: w.hi)
                dark.append(
                    (w, frozenset({"metrology"}), max(s[0].last_seen for s in lost), self.m.station_group)
                )
        if with_silence:
            sil = self.silence()
            for g in groups:
                if g in sil:
                    w, seen = sil[g]
                    dark.append((w, frozenset({"rs485"}), seen, g))
        live = [d for d in dark if d[2] >= pos]
        if live:
            w = min((d[0] for d in live), key=lambda w: (w.resolution, w.hi))
            via = frozenset(d[3] for d in live if d[3] is not None)
            return MeterState(
                "dark",
                w,
                frozenset().union(*(d[1] for d in live)),
                pos if pos > NEG_INF else None,
                max(d[2] for d in live),
                via=via,
            )
        fails = b.failed_after(pos) if b is not None else []
        if fails:
            lo = pos if pos > NEG_INF else fails[0]
            return MeterState(
                "silent", Window.between(lo, fails[0]), frozenset({"rs485"}), None, fails[-1], len(fails)
            )
        if pos > NEG_INF:
            return MeterState("lit", None, frozenset(), pos, pos)
        return MeterState("unknown", None, frozenset(), None, NEG_INF)

    def silence(self) -> dict[Group, tuple[Window, float]]:
        """Boxes and branches whose members all went silent together while their buses answer."""
        if self._silence is not None:
            return self._silence
        s = self.c.settings
        out: dict[Group, tuple[Window, float]] = {}
        silent: dict[str, MeterState] = {}
        for mid, b in self.b.meters.items():
            if b.fails and mid in self.m.meters:
                st = self._state(mid, with_silence=False)
                if st.kind == "silent":
                    silent[mid] = st
        groups = {g for mid in silent for g in self.m.groups_of(mid) if g.level in ("box", "branch")}
        for g in groups:
            mem = self.m.members(g)
            if len(mem) < s.min_silent_group or not mem <= silent.keys():
                continue
            states = [silent[m] for m in mem]
            if not all(
                st.fails >= 2 or self.now - (st.when.hi if st.when else self.now) >= s.silence_confirm_s
                for st in states
            ):
                continue
            began = max(st.when.hi for st in states if st.when is not None)
            ports = {self.m.meters[m].port for m in mem}
            if not all(p is not None and self.b.port_answer.get(p, NEG_INF) > began for p in ports):
                continue  # the bus itself is quiet: comms, not supply
            lo = max(st.when.lo for st in states if st.when is not None)
            hi = min(st.when.hi for st in states if st.when is not None)
            out[g] = (Window.between(min(lo, hi), hi), max(st.seen for st in states))
        self._silence = out
        return out

    def dark_meters(self) -> list[tuple[str, MeterState]]:
        out = []
        for mid in self._touched():
            st = self.state(mid)
            if st.kind == "dark":
                out.append((mid, st))
        return sorted(out)

    def silent_meters(self) -> list[tuple[str, MeterState]]:
        return sorted((m, st) for m in self._touched() if (st := self.state(m)).kind == "silent")

    def _touched(self) -> set[str]:
        """Meters with any dark or failed-read evidence, or fed by a group with a signal."""
        if self._touched_cache is None:
            out = {
                m for m, b in self.b.meters.items() if (b.dark is not None or b.fails) and m in self.m.meters
            }
            for g, per in self.b.signals.items():
                if any(not s.powered for s in per.values()):
                    out |= self.m.members(g)
            self._touched_cache = out
        return self._touched_cache

    def any_dark(self) -> bool:
        return any(self.state(mid).kind == "dark" for mid in self._touched())

    def still_dark(self, mid: str, after: float) -> bool:
        st = self.state(mid)
        return st.kind in ("dark", "silent") and st.seen > after

    # ---- groups

    def candidates(self) -> set[Group]:
        out: set[Group] = set()
        for mid in self._touched():
            if self.state(mid).kind in ("dark", "silent"):
                out.update(self.m.feeders_of(mid))
        for g, per in self.b.signals.items():
            if any(not s.powered and s.confirmed for s in per.values()) and self.m.members(g):
                out.add(g)
        return out

    def verdict(self, g: Group, *, hi: float | None = None, expired: bool = False) -> Verdict:
        mem = self.m.members(g)
        if not mem:
            return Verdict("none")
        own = self.b.lost(g)
        sil = self.silence().get(g)
        dark: dict[str, MeterState] = {}
        silent: set[str] = set()
        rest: list[str] = []
        for mid in mem:
            st = self.state(mid)
            if st.kind == "dark":
                dark[mid] = st
            elif st.kind == "silent":
                silent.add(mid)
            else:
                rest.append(mid)
        if not dark:
            return Verdict("none")
        # a member silent since before the others' loss (an earlier outage, a comms fault), not
        # read since, says nothing about this one: it is unknown (asked for), not counted dark
        began = min(st.when.lo for st in dark.values() if st.when is not None)
        stale = {m for m in silent if self.state(m).seen < began}
        silent -= stale
        rest += sorted(stale)
        ref = hi if hi is not None else min(st.when.hi for st in dark.values() if st.when is not None)
        if self.b.supplied_after(g, ref) is not None:
            return Verdict("lit")
        if not own and not expired and self.b.veto_due(g, ref):
            return Verdict("pending", frozenset(dark) | silent)  # the transformer's next sample decides
        lit = {m for m in rest if (p := self.state(m).positive) is not None and p > ref}
        unknown = frozenset(rest) - lit
        starts = {m: st.when for m, st in dark.items() if st.when is not None}
        if lit and not own and not _box_despite_lit(self.c, g, starts, len(lit), len(mem)):
            return Verdict("lit", lit=frozenset(lit))
        if unknown and not own and not sil:
            if all(any(not mem <= self.m.members(x) for x in st.via) for st in dark.values()):
                return Verdict("none")  # explained by other groups' devices: nothing points at this one
            if expired:
                return Verdict("lit", unknown=unknown)
            return Verdict("pending", frozenset(dark) | silent, unknown=unknown)  # all held back
        windows = [st.when for st in dark.values() if st.when is not None] + [s.when for s in own]
        sources = frozenset().union(*(st.sources for st in dark.values())) | {s.source for s in own}
        if silent:
            sources |= {"rs485"}  # their silence is part of the picture
        meters = frozenset(dark) | silent | (unknown if own or sil else frozenset())
        return Verdict("dark", meters, _combine(windows), sources, unknown, frozenset(lit))

    def return_window(self, o: Outage) -> Window | None:
        """The earliest return evidence for ``o`` after it began."""
        after = o.start.hi
        best: Window | None = None
        for mid in o.meters:
            b = self.b.meters.get(mid)
            if b is None:
                continue
            cands: list[Window] = []
            if b.back is not None and b.back.hi > after:
                cands.append(b.back)
            t = b.first_answer_after(after)
            if t is not None:
                before = [f for f in b.fails if f < t]
                cands.append(Window.between(max(before[-1] if before else after, after), t))
            for w in cands:
                if best is None or w.hi < best.hi:
                    best = w
        for g in (o.group, *self.m.ancestors(o.group)):
            s = self.b.back_signal(g, after)
            if s is not None and (best is None or s.when.hi < best.hi):
                best = s.when
        if best is None:  # only a device watching the whole group says it is supplied
            for g in (o.group, *self.m.ancestors(o.group)):
                if (s := self.b.supplied_after(g, after)) is not None:
                    return Window.between(after, min(s.last_seen, self.now))
        return best


def _positive(b: MeterBelief | None) -> float:
    if b is None:
        return NEG_INF
    pos = b.last_answer if b.last_answer is not None else NEG_INF
    if b.back is not None:
        pos = max(pos, b.back.hi)
    return pos


def _combine(windows: list[Window]) -> Window:
    """One start for a group: what all its members' windows agree on (a precise source wins)."""
    precise = [w for w in windows if w.resolution <= 2.0]
    if precise:
        at = statistics.median(w.at for w in precise)
        return Window(at, min(w.lo for w in precise), max(w.hi for w in precise))
    lo, hi = max(w.lo for w in windows), min(w.hi for w in windows)
    at = statistics.median(w.at for w in windows)
    if lo <= hi:
        return Window(min(max(at, lo), hi), lo, hi)
    return min(windows, key=lambda w: w.resolution)


def _relay_explains(belief: MeterBelief | None, lo: float, hi: float) -> bool:
    """True when the meter's relay opened (and is still open) within ``RELAY_EXPLAINS_S`` before a
    loss of supply that began in ``[lo, hi]``: that loss is the trip, not an outage."""
    opened = None if belief is None else belief.relay_open_since
    return opened is not None and lo - RELAY_EXPLAINS_S <= opened <= hi


def _dark_then(c: Classifier, meters: Iterable[str], start: float, end: float | None) -> set[str]:
    """Those of ``meters`` in an outage already reported that overlaps ``start`` .. ``end``."""
    tol = c.settings.record_tolerance_s
    hi = (end if end is not None else start) + tol
    out: set[str] = set()
    wanted = set(meters)
    for o in c.outages.values():
        if o.status in (MERGED, RETRACTED) or wanted.isdisjoint(o.meters):
            continue
        o_end = o.end.hi if o.end is not None else float("inf")
        if o.start.lo <= hi and o_end >= start - tol:
            out |= wanted & set(o.meters)
    return out


def _box_despite_lit(c: Classifier, g: Group, dark: Mapping[str, Window], lit: int, members: int) -> bool:
    """Whether box ``g`` is out although ``lit`` of its ``members`` kept answering: enough of
    them lost supply together (``dark``: meter -> its start window), on more than one phase (one
    phase lost -- at the transformer, or a box fuse -- leaves the other phases' meters lit: that
    is the phase's outage, not the box's), and the lit ones are few."""
    if g.level != "box" or len(dark) < MIN_DARK_AROUND_LIT or lit > MAX_LIT_SHARE * members:
        return False
    info = c.members.meters
    phases = {p for m in dark if (p := info[m].phase if m in info else None) in PHASES}
    if len(phases) < 2:
        return False
    tol = c.settings.record_tolerance_s
    lo, hi = max(w.lo for w in dark.values()), min(w.hi for w in dark.values())
    if lo > hi + tol:
        return False
    # inside an outage of a group above it, the darkness is that outage's and the lit ones are
    # more likely a stale answer than a meter fed elsewhere
    when = Window.between(min(w.lo for w in dark.values()), max(w.hi for w in dark.values()))
    return not any(
        o.status in (ONGOING, RESTORED)
        and o.group.rank < g.rank
        and dark.keys() <= c.members.members(o.group)
        and _overlap(o.start, when, tol)
        for o in c.outages.values()
    )


def _precise(w: Window) -> bool:
    return w.resolution <= 2.0


def _within(inner: frozenset[str], g: Group, outer: frozenset[str], h: Group) -> bool:
    """Group ``g`` (members ``inner``) lies inside ``h``: fewer of the same members (a sub-branch
    in its branch), or the same members at a lower level (a box that is a whole branch)."""
    return bool(inner) and inner <= outer and (inner != outer or g.rank > h.rank)


def _overlap(a: Window, b: Window, tol: float) -> bool:
    return a.lo <= b.hi + tol and b.lo <= a.hi + tol


def _w(w: Window) -> list[float]:
    return [w.at, w.lo, w.hi]


def _posthoc(c: Classifier, view: _View, entries: list[PowerDownRecord]) -> list[Outage]:
    """Outages nobody saw live, from settled power-down records: clusters of records that agree
    on their times, classified by the highest-level-all-dark rule over the record holders."""
    tol = c.settings.record_tolerance_s
    entries = sorted(entries, key=lambda e: e.start)
    clusters: list[list[PowerDownRecord]] = []
    for e in entries:
        if clusters and abs(e.start - statistics.median(x.start for x in clusters[-1])) <= tol:
            clusters[-1].append(e)
        else:
            clusters.append([e])
    out: list[Outage] = []
    for cl in clusters:
        by_meter = {e.meter: e for e in cl}
        start = statistics.median(e.start for e in cl)
        ends = [e.end for e in cl if e.end is not None]
        end = statistics.median(ends) if ends else None
        dark = set(by_meter)
        covered: set[str] = set()
        for g in sorted({g for m in dark for g in c.members.groups_of(m)}, key=lambda g: (g.rank, g.target)):
            mem = c.members.members(g)
            if not mem or mem <= covered:
                continue
            lit: set[str] = set()
            if not mem <= dark:  # unless a few members kept their supply (not in that box)
                lit = set(mem - dark) - _dark_then(c, mem - dark, start, end)
                windows = {m: Window.exact(by_meter[m].start) for m in mem & dark}
                if not _box_despite_lit(c, g, windows, len(lit), len(mem)):
                    continue
            if g.level == "meter" and _relay_explains(c.beliefs.meters.get(g.target), start, start):
                c.suppressed_relay.add(g.target)
                continue
            covered |= mem
            recs = [by_meter[m] for m in mem if m in by_meter]
            o = Outage(
                c._new_id(),
                g,
                Window(
                    statistics.median(r.start for r in recs),
                    min(r.start for r in recs),
                    max(r.start for r in recs),
                ),
                tuple(sorted(mem - lit)),
                ("meter_record",),
                reported_at=view.now,
                status=RESTORED if end is not None else ONGOING,
                end=None if end is None else Window(end, min(ends), max(ends)),
                still_dark=(),
                lit=tuple(sorted(lit)),
                records={r.meter: (r.start, r.end) for r in recs},
            )
            out.append(o)
    return out


__all__ = [
    "KEEP_FINISHED",
    "MERGED",
    "ONGOING",
    "RESTORED",
    "RETRACTED",
    "Classifier",
    "MeterState",
    "Outage",
    "Settings",
    "StepResult",
    "Verdict",
]
