"""Random outage scenarios for a station area: what the outage app is judged on.

Layer: sim, pure (no world, no clock): from the station model (``protocols.station``)
and a seed, a scenario TOML with outages at every level -- station, phase, branch (a breaker
trip or a cable cut), meter box, meter -- of random lengths, dips shorter than the judgement
delay, prepaid relay trips (some inside an outage of their own box), pure communication losses
(a meter, a meter box or a whole bus stops answering with its supply on, at a time no outage
touches those meters) and the knobs asked for (HPLC last-gasp loss, RS-485 frame loss). Events
are spaced so each can be told apart (an outage is over ``gap_s`` before the next begins); the
last ends ``tail_s`` before the run ends, time for its restore and the meters' records. Same
arguments -> same text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protocols.station import Meter, StationModel

WEIGHTS = {"station": 0.08, "phase": 0.1, "branch": 0.27, "box": 0.3, "meter": 0.25}


@dataclass(frozen=True, slots=True)
class Knobs:
    hours: float = 3.0
    lastgasp_loss_pct: float = 0.0
    comms_loss_pct: float = 0.0
    first_s: float = 600.0  # let the terminal read everything once first
    gap_s: float = 420.0
    tail_s: float = 900.0
    dips: float = 0.3  # chance of a dip in each gap
    relay_trips: int = 3
    comms_losses: int = 2  # meters, boxes or buses silent with their supply on


def random_outage_scenario(model: StationModel, *, seed: int, knobs: Knobs | None = None) -> str:
    k = knobs or Knobs()
    rng = np.random.default_rng([seed, 0x0D7A])
    customers = [m for m in model.meters if m.kind == "customer" and m.box]
    boxes = sorted({m.box for m in customers if m.box})
    branches = [b.id for b in model.branches if any(m.branch == b.id for m in customers)]
    phases = sorted({m.phase for m in customers if m.phase in ("A", "B", "C")})
    levels = [lv for lv in WEIGHTS if lv != "phase" or phases]
    weights = np.array([WEIGHTS[lv] for lv in levels])
    lines = [
        "[scenario]",
        f'description = "random outages, seed {seed}"',
        "pv_share = 0.1",
        "",
        "[hplc]",
        f"lastgasp_loss_pct = {k.lastgasp_loss_pct:g}",
        "",
    ]
    if k.comms_loss_pct:
        lines += ["[comms]", f"loss_pct = {k.comms_loss_pct:g}", ""]
    t = k.first_s
    end = k.hours * 3600.0 - k.tail_s
    outages: list[tuple[str, str, float, float]] = []
    while True:
        duration = float(rng.uniform(5.0, 60.0) if rng.random() < 0.2 else rng.uniform(60.0, 1200.0))
        if t + duration > end:
            break
        level = str(rng.choice(levels, p=weights / weights.sum()))
        target = _target(level, rng, boxes=boxes, branches=branches, phases=phases, customers=customers)
        table = ["[[outage]]", f'level = "{level}"', f'target = "{target}"', f'at = "{t:.0f}s"',
                 f'duration = "{duration:.0f}s"']  # fmt: skip
        if level == "branch":
            table.append(f'cause = "{"trip" if rng.random() < 0.7 else "cut"}"')
        lines += [*table, ""]
        outages.append((level, target, t, duration))
        gap = k.gap_s + float(rng.uniform(0, k.gap_s))
        if rng.random() < k.dips:
            level = str(rng.choice(levels, p=weights / weights.sum()))
            target = _target(level, rng, boxes=boxes, branches=branches, phases=phases, customers=customers)
            at = t + duration + gap / 2
            lines += ["[[outage]]", f'level = "{level}"', f'target = "{target}"', f'at = "{at:.0f}s"',
                      f'duration = "{float(rng.uniform(0.5, 2.5)):.1f}s"', ""]  # fmt: skip
        t += duration + gap
    for n in range(k.relay_trips):
        if n % 2 == 0 and outages:  # a prepaid trip inside an outage of its own group
            level, target, at, duration = outages[int(rng.integers(len(outages)))]
            inside = [m for m in customers if target in (m.id, m.box, m.branch, m.phase)]
            meter = (inside or customers)[int(rng.integers(len(inside or customers)))].id
            t_trip = at + duration * float(rng.uniform(0.2, 0.8))
        else:
            meter = customers[int(rng.integers(len(customers)))].id
            t_trip = float(rng.uniform(k.first_s, end))
        lines += ["[[relay]]", f'meter = "{meter}"', 'action = "trip"', f'at = "{t_trip:.0f}s"', ""]
        if rng.random() < 0.5:
            lines += ["[[relay]]", f'meter = "{meter}"', 'action = "close"',
                      f'at = "{min(t_trip + float(rng.uniform(300, 1800)), end):.0f}s"', ""]  # fmt: skip
    lines += _comms_losses(model, outages, rng, k, end)
    return "\n".join(lines)


def _comms_losses(
    model: StationModel,
    outages: list[tuple[str, str, float, float]],
    rng: np.random.Generator,
    k: Knobs,
    end: float,
) -> list[str]:
    """``[[comms_loss]]`` tables at times when no outage touches the silenced meters."""
    customers = [m for m in model.meters if m.kind == "customer"]
    parents = {b.id: b.parent for b in model.branches}

    def in_branch(m: Meter, branch: str) -> bool:
        b, seen = m.branch, set()
        while b and b not in seen:
            if b == branch:
                return True
            seen.add(b)
            b = parents.get(b)
        return False

    def dark(level: str, target: str) -> set[str]:
        return {m.id for m in customers
                if level == "station" or (level == "phase" and m.phase == target)
                or (level == "branch" and in_branch(m, target)) or (level == "box" and m.box == target)
                or (level == "meter" and m.id == target)}  # fmt: skip

    spans = [(dark(level, target), at, at + duration) for level, target, at, duration in outages]
    buses = sorted({m.port for m in model.meters if m.channel == "rs485" and m.port} | {"hplc"})
    boxes = sorted({m.box for m in customers if m.box and m.channel == "rs485"})
    lines: list[str] = []
    for _ in range(k.comms_losses):
        for _attempt in range(50):
            kind = str(rng.choice(["meter", "box", "bus"], p=[0.4, 0.4, 0.2]))
            if kind == "meter":
                target = customers[int(rng.integers(len(customers)))].id
                hit = {target}
            elif kind == "box" and boxes:
                target = boxes[int(rng.integers(len(boxes)))]
                hit = {m.id for m in customers if m.box == target and m.channel == "rs485"}
            else:
                target = buses[int(rng.integers(len(buses)))]
                hit = {m.id for m in customers if (m.port or m.channel) == target}
            duration = float(rng.uniform(600.0, 1800.0))
            if end - duration <= k.first_s:
                break
            at = float(rng.uniform(k.first_s, end - duration))
            # no outage of these meters from a little before until well after (their records)
            busy = any(hit & d and at - 300.0 < t1 and t0 < at + duration + 900.0 for d, t0, t1 in spans)
            if hit and not busy:
                lines += ["[[comms_loss]]", f'target = "{target}"', f'at = "{at:.0f}s"',
                          f'duration = "{duration:.0f}s"', ""]  # fmt: skip
                break
    return lines


def _target(
    level: str,
    rng: np.random.Generator,
    *,
    boxes: Sequence[str],
    branches: Sequence[str],
    phases: Sequence[str],
    customers: Sequence[Meter],
) -> str:
    if level == "station":
        return "station"
    if level == "phase":
        return str(phases[int(rng.integers(len(phases)))])
    if level == "branch":
        return str(branches[int(rng.integers(len(branches)))])
    if level == "box":
        return str(boxes[int(rng.integers(len(boxes)))])
    return customers[int(rng.integers(len(customers)))].id


__all__ = ["WEIGHTS", "Knobs", "random_outage_scenario"]
