"""Ground truth of a simulated run, as CSV files in one folder.

Layer: sim. Reads a ``sim.world.World`` (its horizons, meters, events and faults) and writes
plain CSV; must not touch the terminal or the event loop. Same world + same end -> byte-identical
files. Times are ISO 8601 UTC (``2024-06-01T00:15:00Z``); an interval row's timestamp is the
start of its 15-minute step; only steps complete by ``end`` are written.

    topology.csv     meter_id, address, phase, branch, box, channel   (reality: includes meters missing
                     from the archive and the branch units, box empty for those; channel = how the
                     terminal reaches the meter: its RS-485 bus "rs485-N", or "hplc")
    intervals.csv    timestamp, meter_id, energy_kwh, voltage_v   (true net energy the customer drew,
                     theft included; voltage 0 in an outage)
    branches.csv     timestamp, branch, supply_kwh, loss_kwh   (supply at the branch head, loss of the
                     branch and its sub-branches; branch "ALL" = the whole LV network: supply at the
                     transformer LV terminal, all line losses)
    transformer.csv  timestamp, phase, energy_kwh   (true energy at the LV terminal)
    busbar.csv       timestamp, voltage_a, voltage_b, voltage_c, transformer_loss_kwh   (the LV
                     busbar's mean phase voltages in the step and the transformer's own loss,
                     copper + iron, which the station-area statistic does not see)
    events.csv       kind, scope, target, start, end, meters   (outage, dip < 3 s, relay_trip,
                     lastgasp: the HPLC timing model for each HPLC meter an outage hits, start = its
                     STA's first frame, end = the latest CCO report time of that window;
                     terminal_down: the terminal process off after its hold-up ran out, until it
                     booted again; comms_loss: devices that stopped answering with their supply
                     on, scope meter | box | bus). scope = station | phase | branch | box | meter;
                     target = the station model's id (station: the station id, phase: "A" | "B" |
                     "C"); meters = the devices without supply (comms_loss: without
                     communication), ";"-separated
    faults.csv       kind, target, start, end, value, detail   (every injected fault)
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from pathlib import Path

from sim.world import World

__all__ = ["TRUTH_FILES", "iso", "write_truth"]

TRUTH_FILES = (
    "topology.csv",
    "intervals.csv",
    "branches.csv",
    "transformer.csv",
    "busbar.csv",
    "events.csv",
    "faults.csv",
)


def iso(t: float | None) -> str:
    if t is None or math.isinf(t):
        return ""
    return datetime.fromtimestamp(round(t, 3), UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{round(t * 1000) % 1000:03d}Z" if round(t * 1000) % 1000 else "Z"
    )


def _num(x: float) -> str:
    return f"{x:.6f}"


def write_truth(world: World, folder: str | Path, *, end: float) -> Path:
    """Write the CSV files (``TRUTH_FILES``) for the run from ``world.start`` to ``end``; returns
    the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    hz0 = world.grid.horizon
    net = world.grid.network
    first = int((world.start - hz0.start) // hz0.step_s)
    last = min(int((end - hz0.start) // hz0.step_s), hz0.steps)  # exclusive: complete steps only
    steps = range(first, max(first, last))
    hours = hz0.step_s / 3600.0
    stamps = [iso(hz0.start + k * hz0.step_s) for k in steps]

    rows: list[list[str]] = []
    for m in world.meters.values():
        phase = net.customers[m.customer].phase if m.customer >= 0 else "ABC"
        rows.append([m.id, m.meter.address, phase, m.branch, m.box, m.channel])
    _write(out / "topology.csv", ["meter_id", "address", "phase", "branch", "box", "channel"], rows)

    rows = []
    customers = world.customers()
    for j, k in enumerate(steps):
        for m in customers:
            rows.append(
                [
                    stamps[j],
                    m.id,
                    _num(hz0.p_kw[k, m.customer] * hours),
                    f"{hz0.voltage_v[k, m.customer]:.2f}",
                ]
            )
    _write(out / "intervals.csv", ["timestamp", "meter_id", "energy_kwh", "voltage_v"], rows)

    rows = []
    below = [
        [b] + [s for s in range(len(net.branches)) if _under(net.heads, s, b)]
        for b in range(len(net.branches))
    ]
    for j, k in enumerate(steps):
        rows.append(
            [
                stamps[j],
                "ALL",
                _num(float(hz0.trafo_p[k].sum()) * hours),
                _num(float(hz0.line_loss[k]) * hours),
            ]
        )
        for b, name in enumerate(net.branches):
            supply = float(hz0.branch_p[k, below[b]].sum()) * hours
            loss = float(hz0.branch_loss[k, below[b]].sum()) * hours
            rows.append([stamps[j], name, _num(supply), _num(loss)])
    _write(out / "branches.csv", ["timestamp", "branch", "supply_kwh", "loss_kwh"], rows)

    rows = []
    for j, k in enumerate(steps):
        per_phase = hz0.trafo_p[k] * hours
        rows += [[stamps[j], ph, _num(float(per_phase[p]))] for p, ph in enumerate("ABC")]
    _write(out / "transformer.csv", ["timestamp", "phase", "energy_kwh"], rows)

    rows = [
        [stamps[j], *(f"{float(v):.2f}" for v in hz0.trafo_v[k]), _num(float(hz0.trafo_loss[k]) * hours)]
        for j, k in enumerate(steps)
    ]
    _write(
        out / "busbar.csv", ["timestamp", "voltage_a", "voltage_b", "voltage_c", "transformer_loss_kwh"], rows
    )

    rows = []
    for e in sorted(world.events, key=lambda e: (e.start, e.kind, e.target)):
        if e.start < end:
            rows.append([e.kind, e.scope, e.target, iso(e.start), iso(e.end), ";".join(e.meters)])
    _write(out / "events.csv", ["kind", "scope", "target", "start", "end", "meters"], rows)

    rows = [
        [
            str(f["kind"]),
            str(f["target"]),
            iso(f["start"]),
            iso(f["end"]),
            f"{f['value']:g}",
            str(f["detail"]),
        ]  # type: ignore[arg-type, str-format]
        for f in world.faults
    ]
    _write(out / "faults.csv", ["kind", "target", "start", "end", "value", "detail"], rows)
    return out


def _under(heads: tuple[tuple[int, int, bool, int], ...], s: int, b: int) -> bool:
    """True if branch ``s`` splits off (directly or not) from branch ``b``."""
    p = heads[s][3]
    while p >= 0:
        if p == b:
            return True
        p = heads[p][3]
    return False


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
