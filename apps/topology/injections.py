"""When which device sends its signature current (特征电流): a gentle plan, and how detections are
tied back to the injection that caused them.

Layer: apps (topology), pure. Must not talk to meters (``service`` orders and reads) nor know
the identification methods (``evidence.signature_loglik`` weighs the outcome).

Gentle means: only in the off-peak window (local time, default 01:00-05:00, when reading and
load are lightest); one injection at a time per branch, in slots long enough for the 9.6 s
frame and the units' reports (``slot_s``); a device at most once per ``MIN_INTERVAL_S`` (its
own firmware refuses more) and once per night; at most ``per_day`` injections a day. Meters
the identification is least sure of go first, then the ones never injected, then the oldest.

Slots run in parallel across branches (by the branch the terminal believes the meter is on).
A detection by a unit in a slot belongs to the injection of the unit's own branch in that
slot, if there is one (units hear their own branch); otherwise to every injection of the slot
(cross-talk or a wrong archive: the evidence model pays for the ambiguity). A meter whose
believed branch is doubtful is planned alone in its slot, so nothing else can explain what is
heard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from protocols.signature import MIN_INTERVAL_S, Detection

from .inputs import Detection as Heard


@dataclass(frozen=True, slots=True)
class Candidate:
    meter: str
    branch: str | None  # where the terminal believes it is (None: unknown)
    doubt: float  # 0 = sure of it, 1 = nothing known
    last_sent: float | None = None  # UTC epoch of its last injection


@dataclass(frozen=True, slots=True)
class Injection:
    meter: str
    at: datetime  # local time of the send (what the meter is told)
    branch: str | None
    alone: bool  # the only injection in its slot


@dataclass(frozen=True, slots=True)
class Policy:
    window: tuple[time, time] = (time(1, 0), time(5, 0))
    slot_s: float = 30.0
    per_day: int = 400
    doubt_alone: float = 0.5  # at or above this doubt a meter gets a slot to itself


def window_of(day: datetime, policy: Policy) -> tuple[datetime, datetime]:
    """The off-peak window of the night starting on ``day`` (local, naive)."""
    start = datetime.combine(day.date(), policy.window[0])
    end = datetime.combine(day.date(), policy.window[1])
    if end <= start:
        end += timedelta(days=1)
    return start, end


def plan(
    candidates: Sequence[Candidate], *, night: datetime, now_utc: float, policy: Policy, utc_offset_s: float
) -> list[Injection]:
    """The injections of one night's window (``night`` local, naive: its date is used)."""
    start, end = window_of(night, policy)
    slots = max(0, int((end - start).total_seconds() // policy.slot_s))
    eligible = [
        c
        for c in candidates
        if c.last_sent is None or now_utc - c.last_sent >= max(MIN_INTERVAL_S, 12 * 3600.0)
    ]
    order = sorted(eligible, key=lambda c: (-c.doubt, c.last_sent is not None, c.last_sent or 0.0, c.meter))
    order = order[: policy.per_day]
    taken: dict[int, set[str | None]] = {}  # slot -> branches busy in it ("*" = a lone slot)
    out: list[Injection] = []
    next_free = 0
    for c in order:
        alone = c.doubt >= policy.doubt_alone or c.branch is None
        k = next_free if alone else _first_slot(taken, c.branch, slots)
        if alone:
            while k < slots and k in taken:
                k += 1
        if k >= slots:
            continue
        taken.setdefault(k, set()).add("*" if alone else c.branch)
        while next_free in taken:
            next_free += 1
        out.append(Injection(c.meter, start + timedelta(seconds=k * policy.slot_s), c.branch, alone))
    return sorted(out, key=lambda i: (i.at, i.meter))


def _first_slot(taken: Mapping[int, set[str | None]], branch: str | None, slots: int) -> int:
    for k in range(slots):
        busy = taken.get(k)
        if busy is None or ("*" not in busy and branch not in busy):
            return k
    return slots


def attribute(
    injections: Sequence[Injection],
    reports: Mapping[str, Sequence[Detection]],
    unit_branch: Mapping[str, str | None],
    *,
    slot_s: float,
    utc_offset_s: float,
    listening: Sequence[str],
) -> list[Heard]:
    """Tie every unit's detections (``reports``: unit id -> what it heard, its local clock) to
    the injections that caused them; one ``inputs.Detection`` per injection."""
    slots: dict[datetime, list[Injection]] = {}
    for inj in injections:
        slots.setdefault(inj.at, []).append(inj)
    heard: dict[str, set[str]] = {inj.meter: set() for inj in injections}
    for unit, detections in reports.items():
        for d in detections:
            slot = _slot_of(d.at, slots, slot_s)
            if slot is None:
                continue
            own = [i for i in slots[slot] if i.branch is not None and i.branch == unit_branch.get(unit)]
            for inj in own or slots[slot]:
                heard[inj.meter].add(unit)
    out = []
    units = tuple(listening)  # one tuple for the night's detections (every unit: ~80 at 2,400 meters)
    for inj in injections:
        at = (
            inj.at.timestamp()
            if inj.at.tzinfo
            else (inj.at - datetime(1970, 1, 1)).total_seconds() - utc_offset_s
        )
        out.append(Heard(inj.meter, at, tuple(sorted(heard[inj.meter])), units))
    return out


def _slot_of(at: datetime, slots: Mapping[datetime, Sequence[Injection]], slot_s: float) -> datetime | None:
    for start in slots:
        if start - timedelta(seconds=5) <= at < start + timedelta(seconds=slot_s):
            return start
    return None


__all__ = ["Candidate", "Injection", "Policy", "attribute", "plan", "window_of"]
