"""Scoring outage reports against the ground truth of a simulated run.

Layer: sim. Pure: takes the truth (``events.csv`` rows), the station model (``station.toml`` as a
dict) and the reports as the master station lists them (``ttu cloud outages --json``), and
says how many outages were reported at the right level and target, restored, timed right, and
which reports were false. Used by the end-to-end tests and ``bench/outage.py``. Must not know
how the reports were made.

Matching, per truth outage (kind "outage"): a report is *at the right level and target* when
``level``/``target`` are equal, or when the reported group feeds exactly the same customer
meters as the true one (a branch with a single box, a box with a single meter: no evidence
tells them apart, GRID.md §3 reports the highest such level). A report found for an outage
whose meters overlap but whose group differs counts in the confusion matrix as that level. A
report matching nothing true (no overlap in meters and time with any outage) is *false*; one
that overlaps a true outage another report already stands for is a *duplicate* (a fragment:
the outage was to be one report at its highest level, GRID.md §3).
Several truth outages of the same group inside one report's interval (repeated switching
merged into one report) all count as found by it.

Timing: the start (end) is *within resolution* when it is inside ``tolerance_s`` of the truth
(by default the judgement delay plus an HPLC aggregation window: what the evidence resolves
before the meters' own records refine it).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from protocols.station import StationModel

LEVELS = ("station", "phase", "branch", "box", "meter")


def epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(slots=True)
class Groups:
    """Customer meters fed by each group of the station model (``station.toml`` as a dict)."""

    members: dict[tuple[str, str], frozenset[str]]

    @classmethod
    def from_model(cls, model: StationModel) -> Groups:
        station = model.id or "station"
        parents = {b.id: b.parent for b in model.branches}
        out: dict[tuple[str, str], set[str]] = {("station", station): set()}
        for m in model.meters:
            if m.kind != "customer":
                continue
            mid = m.id
            out[("station", station)].add(mid)
            out.setdefault(("meter", mid), set()).add(mid)
            if m.phase in ("A", "B", "C"):
                out.setdefault(("phase", m.phase), set()).add(mid)
            if m.box:
                out.setdefault(("box", m.box), set()).add(mid)
            branch = m.branch
            seen: set[str] = set()
            while branch and branch not in seen:
                seen.add(branch)
                out.setdefault(("branch", str(branch)), set()).add(mid)
                branch = parents.get(branch)
        return cls({k: frozenset(v) for k, v in out.items()})

    def of(self, level: str, target: str) -> frozenset[str]:
        return self.members.get((level, target), frozenset())


@dataclass(frozen=True, slots=True)
class TrueOutage:
    level: str
    target: str
    start: float
    end: float | None
    meters: frozenset[str]


@dataclass(slots=True)
class Score:
    outages: int = 0
    right: int = 0  # reported at the right level and target
    restored: int = 0  # ... with an end
    start_ok: int = 0
    end_ok: int = 0
    false_reports: int = 0
    reports: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # true level -> reported -> n
    start_errors: list[float] = field(default_factory=list)
    end_errors: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    duplicates: int = 0  # reports on a true outage's meters that are not its one report (fragments)
    extra: list[str] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for name in ("outages", "right", "restored", "start_ok", "end_ok", "false_reports", "reports"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.duplicates += other.duplicates
        for lv, row in other.confusion.items():
            mine = self.confusion.setdefault(lv, {})
            for k, n in row.items():
                mine[k] = mine.get(k, 0) + n
        self.start_errors += other.start_errors
        self.end_errors += other.end_errors
        self.missed += other.missed
        self.false += other.false
        self.extra += other.extra

    @property
    def right_rate(self) -> float | None:
        return self.right / self.outages if self.outages else None

    @property
    def restore_rate(self) -> float | None:
        return self.restored / self.right if self.right else None

    def summary(self) -> dict[str, Any]:
        med = statistics.median
        return {
            "outages": self.outages,
            "right_level_and_target": self.right,
            "right_rate": self.right_rate,
            "restored": self.restored,
            "restore_rate": self.restore_rate,
            "start_within_resolution": self.start_ok,
            "end_within_resolution": self.end_ok,
            "start_error_median_s": med(self.start_errors) if self.start_errors else None,
            "end_error_median_s": med(self.end_errors) if self.end_errors else None,
            "reports": self.reports,
            "false_reports": self.false_reports,
            "duplicate_reports": self.duplicates,
            "confusion": self.confusion,
        }


def true_outages(events: Iterable[Mapping[str, str]], groups: Groups) -> list[TrueOutage]:
    out = []
    for e in events:
        if e.get("kind") != "outage":
            continue
        start = epoch(e["start"])
        assert start is not None
        truth_meters = frozenset(m for m in (e.get("meters") or "").split(";") if m)
        customers = groups.of(e["scope"], e["target"]) or truth_meters
        out.append(TrueOutage(e["scope"], e["target"], start, epoch(e.get("end")), customers))
    return out


def score(
    events: Iterable[Mapping[str, str]],
    reports: Sequence[Mapping[str, Any]],
    groups: Groups,
    *,
    tolerance_s: float = 66.0,
    until: float | None = None,
) -> Score:
    """Score ``reports`` (``ttu cloud outages --json``) against the truth ``events``.

    ``until``: outages that began after it (too late for the terminal to report) are left out.
    """
    truth = [t for t in true_outages(events, groups) if until is None or t.start <= until]
    rep = []
    for r in reports:
        start = epoch(r.get("start"))
        if start is None:
            continue
        mem = groups.of(str(r.get("level")), str(r.get("target"))) or frozenset(r.get("meters") or ())
        rep.append((r, start, epoch(r.get("end")), mem))
    s = Score(outages=len(truth), reports=len(rep))
    used: set[int] = set()
    for t in truth:
        row = s.confusion.setdefault(t.level, {})
        t_end = t.end if t.end is not None else float("inf")
        best: tuple[int, Any, float, float | None, frozenset[str]] | None = None
        for i, (r, start, end, mem) in enumerate(rep):
            r_end = end if end is not None else float("inf")
            if start > t_end + tolerance_s or r_end < t.start - tolerance_s:
                continue  # not the same time
            same = (r.get("level"), r.get("target")) == (t.level, t.target) or (mem and mem == t.meters)
            if same and (best is None or abs(start - t.start) < abs(best[2] - t.start)):
                best = (i, r, start, end, mem)
        if best is None:
            overlapping = [
                (i, r) for i, (r, start, end, mem) in enumerate(rep)
                if mem & t.meters and start <= t_end + tolerance_s
                and (end if end is not None else float("inf")) >= t.start - tolerance_s
            ]  # fmt: skip
            level = str(overlapping[0][1].get("level")) if overlapping else "missed"
            used.update(i for i, _ in overlapping)
            row[level] = row.get(level, 0) + 1
            s.missed.append(f"{t.level} {t.target} at {t.start:.0f}: reported as {level}")
            continue
        i, r, start, end, _ = best
        used.add(i)
        row[t.level] = row.get(t.level, 0) + 1
        s.right += 1
        err = abs(start - t.start)
        s.start_errors.append(err)
        s.start_ok += err <= tolerance_s
        if end is not None and t.end is not None:
            s.restored += 1
            # a merged report ends with the last outage it covers
            e_err = min(abs(end - t.end), abs(end - _last_end(truth, t, end, tolerance_s)))
            s.end_errors.append(e_err)
            s.end_ok += e_err <= tolerance_s
    for i, (r, start, end, mem) in enumerate(rep):
        if i in used:
            continue
        on_truth = any(
            (mem & t.meters or (r.get("level"), r.get("target")) == (t.level, t.target))
            and start <= (t.end or float("inf")) + tolerance_s
            and (end if end is not None else float("inf")) >= t.start - tolerance_s
            for t in truth
        )
        if not on_truth:
            s.false_reports += 1
            s.false.append(f"{r.get('level')} {r.get('target')} at {start:.0f}")
        else:
            s.duplicates += 1  # on a true outage that another report already stands for
            s.extra.append(f"{r.get('level')} {r.get('target')} at {start:.0f}")
    return s


def _last_end(truth: list[TrueOutage], t: TrueOutage, end: float, tol: float) -> float:
    same = [x.end for x in truth if (x.level, x.target) == (t.level, t.target) and x.end is not None]
    near = [e for e in same if abs(e - end) <= tol]
    return near[0] if near else (t.end if t.end is not None else end)


def false_for(
    events: Iterable[Mapping[str, str]], reports: Sequence[Mapping[str, Any]], kinds: Sequence[str]
) -> list[str]:
    """Reports that fall on a non-outage event of ``kinds`` (dip, relay_trip, comms_loss) and on no
    outage: the report names the event's target or one of its meters, and starts near it (or, for
    a longer event such as a comms loss, while it lasts)."""
    ev = list(events)
    outages = [(epoch(e["start"]), epoch(e.get("end"))) for e in ev if e["kind"] == "outage"]
    out = []
    for r in reports:
        start = epoch(r.get("start"))
        if start is None:
            continue
        for e in ev:
            if e["kind"] not in kinds:
                continue
            t0 = epoch(e["start"]) or 0.0
            t1 = epoch(e.get("end")) or t0
            named = set(r.get("meters") or []) | {str(r.get("target"))}
            hit = e["target"] in named or bool(set((e.get("meters") or "").split(";")) & named - {""})
            covered = any(a is not None and a - 66 <= start <= (b or float("inf")) + 66 for a, b in outages)
            if hit and t0 - 66 <= start <= max(t0, t1) + 66 and not covered:
                out.append(f"{r.get('level')} {r.get('target')} at {start:.0f} on a {e['kind']}")
    return out


__all__ = ["LEVELS", "Groups", "Score", "TrueOutage", "epoch", "false_for", "score", "true_outages"]
