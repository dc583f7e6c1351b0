"""The station model file (台区档案) of a simulated station area, as the utility would hand it over.

Layer: sim. Writes the TOML of the station model (the format in /work/coord/issue-12.md §1.3:
``[station]``, ``[transformer]``, ``[[branches]]``, ``[[boxes]]``, ``[[meters]]``,
``[[devices]]``) from a ``sim.world.World`` and its field devices: branches with their breaker,
branch unit and parent branch, meter boxes with their box terminal, every archived meter with
its phase, branch and box (meters missing from the archive are left out, foreign entries are
in, without a place), the Modbus devices. Same world -> byte-identical file. Must not touch the
terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sim.devices.station import DeviceEntry
from sim.world import World

TRANSFORMER_DEVICE = "transformer"  # acquisition's device id of the metrology unit's readings


def station_model(
    world: World, devices: Iterable[DeviceEntry] = ()
) -> dict[str, list[dict[str, Any]] | dict[str, Any]]:
    """The model as plain tables (what the TOML file holds)."""
    devices = list(devices)
    breakers = {d.branch: d.id for d in devices if d.profile == "breaker" and d.branch}
    units = {m.branch: m.id for m in world.branch_units()}
    terminals = {m.box: m.id for m in world.box_terminals()}
    branches: list[dict[str, Any]] = []
    boxes: dict[str, dict[str, Any]] = {}
    for rep in world.replicas:
        net = rep.network
        for b, name in enumerate(net.branches):
            full = rep.prefix + name
            row: dict[str, Any] = {"id": full}
            parent = net.heads[b][3]
            if parent >= 0:
                row["parent"] = rep.prefix + net.branches[parent]
            if full in breakers:
                row["breaker"] = breakers[full]
            if full in units:
                row["monitor"] = units[full]
            branches.append(row)
    meters: list[dict[str, Any]] = []
    unarchived = world.station.unarchived
    for m in world.meters.values():
        if m.id in unarchived:
            continue
        sm = m.station_meter
        row = {"id": m.id, "address": m.meter.address, "protocol": sm.protocol}
        row.update({"channel": "hplc"} if sm.bus == "hplc" else {"channel": "rs485", "port": sm.bus})
        if m.kind == "customer":
            row["kind"] = "customer"
            row["phase"] = m.replica.network.customers[m.customer - m.replica.offset].phase
            row["branch"], row["box"] = m.branch, m.box
            row["customer"] = sm.customer.id
            boxes.setdefault(m.box, {"id": m.box, "branch": m.branch})
        elif m.kind == "box_terminal":
            row.update(kind="box_terminal", phase="ABC", branch=m.branch, box=m.box)
        elif m.kind == "branch_unit":
            row.update(kind="branch_unit", phase="ABC", branch=m.branch)
        else:
            row.update(kind=m.kind, phase="ABC")
        meters.append(row)
    for box, terminal in terminals.items():
        if box in boxes:
            boxes[box]["terminal"] = terminal
    for e in world.station.foreign:  # in the archive, but no meter of ours behind it
        foreign = {
            "id": e.id,
            "address": e.address,
            "protocol": e.protocol,
            "channel": "rs485",
            "port": e.port,
        }
        meters.append({**foreign, "kind": "customer", **({"phase": e.phase} if e.phase else {})})
    return {
        "station": {"id": world.station_id, "name": f"simulated station area ({world.scenario.name})"},
        "transformer": {"id": "T1", "meter": TRANSFORMER_DEVICE},
        "branches": branches,
        "boxes": [boxes[k] for k in sorted(boxes)],
        "meters": meters,
        "devices": [
            {"id": d.id, "profile": d.profile, "port": d.port, "unit_id": d.unit_id}
            | ({"branch": d.branch} if d.branch else {})
            for d in devices
        ],
    }


def dumps_station_model(model: dict[str, Any]) -> str:
    out: list[str] = []
    for table in ("station", "transformer"):
        out.append(f"[{table}]")
        out += [f"{k} = {_value(v)}" for k, v in model[table].items()]
        out.append("")
    for table in ("branches", "boxes", "meters", "devices"):
        for row in model[table]:
            out.append(f"[[{table}]]")
            out += [f"{k} = {_value(v)}" for k, v in row.items()]
            out.append("")
    return "\n".join(out)


def write_station_model(world: World, path: str | Path, devices: Iterable[DeviceEntry] = ()) -> None:
    """Write the model file atomically (temp file + rename)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(dumps_station_model(station_model(world, devices)), encoding="utf-8")
    tmp.replace(target)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)  # a JSON string is a valid TOML basic string


__all__ = ["TRANSFORMER_DEVICE", "dumps_station_model", "station_model", "write_station_model"]
