"""Random outage scenarios for a station area: what the outage app is judged on.

Layer: sim, pure (no world, no clock): from the station model (``protocols.station``)
and a seed, a scenario TOML with outages at every level -- station, phase, branch (a breaker
trip or a cable cut), meter box, meter -- of random lengths, dips shorter than the judgement
delay, prepaid relay trips (some inside an outage of their own box), and the knobs asked for
(HPLC last-gasp loss, RS-485 comms loss). Events are spaced so each can be told apart (an
outage is over ``gap_s`` before the next begins); the last ends ``tail_s`` before the run ends,
time for its restore and the meters' records. Same arguments -> same text.
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
    return "\n".join(lines)


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
