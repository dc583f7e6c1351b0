"""Scoring a simulated run's line loss (线损) against an independent back office and the ground truth.

Layer: sim. Reads what a run left behind (``sim.harness.WorldRun``): the master station's database
(the registers and the ``lineloss`` results it stored), the station archive the terminal started
from (``station.toml``) and the truth folder (``branches.csv``, ``faults.csv``). Used by the
end-to-end test and ``bench/lineloss_world.py``. Must not import the line-loss app: the back
office here is computed again from the raw registers, so a figure the app got wrong cannot agree
with it by construction.

* ``back_office(run, date)``: scope -> (supply, sales) from the daily freezes, as a back office does;
* ``physics(run)``: (local date, branch) -> (supply, technical loss) of the simulator's power flow;
* ``reports(run, terminal)``: every anomaly the master station had, and when;
* ``delays(run, terminal, since)``: per injected fault, the days until the master station had it;
* ``unexplained(run, anomalies)``: the anomalies that name no injected fault (false positives).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocols.station import loads
from sim.harness import WorldRun

DAY_S = 86400.0
#: faults.csv kind -> the anomaly kind that reports it
KINDS = {"theft": "theft", "stopped": "meter_stopped", "slow": "meter_slow", "ct_ratio": "ct_ratio"}
#: faults.csv kinds an ``archive`` anomaly reports (a meter missing from the archive, a foreign one)
ARCHIVE_KINDS = ("archive_missing", "archive_foreign")
FORWARD = "daily.energy.active.import.total"
REVERSE = "daily.energy.active.export.total"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def local_date(t: float, tz_s: float) -> str:
    return (datetime.fromtimestamp(t, UTC) + timedelta(seconds=tz_s)).date().isoformat()


def midnight(date: str, tz_s: float) -> float:
    """Epoch of local midnight opening ``date`` (UTC offset ``tz_s``)."""
    return datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp() - tz_s


def back_office(run: WorldRun, date: str, tz_s: float) -> dict[str, tuple[float, float]]:
    """Scope -> (supply, sales) kWh of ``date`` as a back office computes them: the daily freezes
    (同期) the master station stored, register difference x the archive's CT x PT. PV export read
    by the customers' reverse registers counts into the supply, energy sent back through a supply
    meter into the sales (GRID.md §2). Scopes: ``station`` (the 总表 against every customer) and
    every branch with a branch unit (the unit against every customer below it)."""
    model = loads((run.workdir / "station.toml").read_text(encoding="utf-8"))
    t0 = midnight(date, tz_s)
    t1 = t0 + DAY_S

    with run.cloud() as db:

        def day(meter: str, quantity: str) -> float:
            rows = {r.ts: r.value for r in db.readings(device=meter, quantity=quantity, limit=1000)}
            return rows[t1] - rows[t0]

        ratio = {m.id: m.ct_ratio * m.pt_ratio for m in model.meters}
        tr = model.transformer
        if tr is None or tr.meter is None:
            raise ValueError("the archive has no transformer supply meter (总表)")
        if ratio[tr.meter] == 1.0:
            ratio[tr.meter] = tr.ct_ratio * tr.pt_ratio
        customers = [m.id for m in model.meters if m.kind == "customer"]
        branch_of = {m.id: m.branch for m in model.meters}
        parent = {b.id: b.parent for b in model.branches}

        def under(branch: str | None, top: str) -> bool:
            while branch is not None:
                if branch == top:
                    return True
                branch = parent.get(branch)
            return False

        scopes = {"station": (tr.meter, customers)}
        for b in model.branches:
            if b.monitor is not None:
                scopes[b.id] = (b.monitor, [m for m in customers if under(branch_of[m], b.id)])
        out = {}
        for scope, (supply_meter, members) in scopes.items():
            supply = day(supply_meter, FORWARD) * ratio[supply_meter]
            supply += sum(day(m, REVERSE) * ratio[m] for m in members)
            sales = sum(day(m, FORWARD) * ratio[m] for m in members)
            sales += day(supply_meter, REVERSE) * ratio[supply_meter]
            out[scope] = (supply, sales)
    return out


def physics(run: WorldRun, tz_s: float) -> dict[tuple[str, str], tuple[float, float]]:
    """(local date, branch or ``ALL``) -> (supply kWh, technical loss kWh) of the power flow."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    with (run.truth_dir / "branches.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = (local_date(epoch(row["timestamp"]), tz_s), row["branch"])
            acc[key][0] += float(row["supply_kwh"])
            acc[key][1] += float(row["loss_kwh"])
    return {k: (v[0], v[1]) for k, v in acc.items()}


def reports(run: WorldRun, terminal: str) -> list[tuple[float, str, str, str]]:
    """Every anomaly the master station had, as (when, kind, target, branch): an early finding at
    its ``found_at``, one listed by a day message at that message's ``computed_at``."""
    out = []
    with run.cloud() as db:
        stored = db.results("lineloss", terminal=terminal, limit=100_000)
    for r in stored:
        body = r.body
        if body.get("type") == "anomaly":
            items, when = [body], float(body["found_at"])
        elif body.get("type") == "day":
            items, when = list(body["anomalies"]), float(body["computed_at"])
        else:
            continue
        out += [(when, str(a["kind"]), str(a["target"]), str(a.get("branch") or "")) for a in items]
    return sorted(out)


def first_reports(run: WorldRun, terminal: str) -> dict[tuple[str, str], float]:
    """(kind, target) -> when the master station first had it."""
    first: dict[tuple[str, str], float] = {}
    for when, kind, target, _ in reports(run, terminal):
        first.setdefault((kind, target), when)
    return first


def unexplained(run: WorldRun, anomalies: list[dict[str, object]]) -> set[tuple[str, str]]:
    """(kind, target) of the anomalies that name no injected fault of ``faults.csv``. A theft
    located to a section only (its target a branch or box, not a meter) is explained when a
    theft was injected on that branch; an ``archive`` anomaly when it names a meter the run left
    out of the archive or fed from the neighbouring transformer (by id or address)."""
    faults = run.truth("faults.csv")
    topology = run.truth("topology.csv")
    branch_of = {r["meter_id"]: r["branch"] for r in topology}
    address = {r["meter_id"]: r["address"] for r in topology}
    expected = {(KINDS[f["kind"]], f["target"]) for f in faults if f["kind"] in KINDS}
    for f in faults:
        if f["kind"] in ARCHIVE_KINDS:  # named by meter id or by the address the carrier heard
            expected |= {("archive", f["target"]), ("archive", address.get(f["target"], f["target"]))}
    thief_branches = {branch_of.get(f["target"]) for f in faults if f["kind"] == "theft"}
    out = set()
    for a in anomalies:
        key = (str(a["kind"]), str(a["target"]))
        if key in expected:
            continue
        if key[0] == "theft" and key[1] not in branch_of and a.get("branch") in thief_branches:
            continue
        out.add(key)
    return out


@dataclass(frozen=True, slots=True)
class Delay:
    """One injected fault and how long the master station waited for it, in days (None: never).
    ``branch_days``: until an anomaly of its kind was located to the fault's branch."""

    kind: str  # faults.csv kind
    target: str
    branch: str
    days: float | None
    branch_days: float | None


def delays(run: WorldRun, terminal: str, since: float) -> list[Delay]:
    """Per fault of ``faults.csv`` that line loss reports: days from its start (or ``since``, the
    first whole day the terminal saw, whichever is later) to the master station having it."""
    seen = reports(run, terminal)
    branch_of = {r["meter_id"]: r["branch"] for r in run.truth("topology.csv")}
    out = []
    for f in run.truth("faults.csv"):
        if f["kind"] not in KINDS:
            continue
        kind, target = KINDS[f["kind"]], f["target"]
        branch = branch_of.get(target, "")
        start = max(epoch(f["start"]), since)
        exact = [w for w, k, t, _ in seen if (k, t) == (kind, target)]
        located = [w for w, k, _, b in seen if k == kind and branch and b == branch]
        out.append(
            Delay(
                f["kind"],
                target,
                branch,
                (exact[0] - start) / DAY_S if exact else None,
                (located[0] - start) / DAY_S if located else None,
            )
        )
    return out


__all__ = [
    "ARCHIVE_KINDS",
    "DAY_S",
    "KINDS",
    "Delay",
    "back_office",
    "delays",
    "epoch",
    "first_reports",
    "local_date",
    "midnight",
    "physics",
    "reports",
    "unexplained",
]
