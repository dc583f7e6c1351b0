"""The station archive (台区档案) the simulator hands the terminal: its world as the utility records it.

Layer: sim. Builds a ``protocols.station.StationModel`` from the simulated station -- every
meter the terminal should read (customers, branch monitoring units, box terminals) with its
transport, protocol, phase, branch, box, customer and tariff; in the physics world also the
transformer, the branches (with their breaker and monitoring unit) and the meter boxes (with
their terminal); the Modbus field devices -- and writes it as the TOML file of
``board.toml [station] file``. The scenario's archive errors are in it as a utility's archive
would have them: meters left out (``Station.unarchived``), foreign meters listed
(``Station.foreign``). What the archive says is not the truth: ``sim.truth`` writes that.

It knows nothing of the terminal's runtime; the format is ``protocols.station``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocols.station import Branch, FieldDevice, Meter, MeterBox, StationModel, Transformer, dumps, loads
from sim.physics.network import BOARD_BRANCH

if TYPE_CHECKING:
    from sim.station import Station
    from sim.world import World

KINDS_BY_TARIFF = {"branch-unit": "branch_unit", "box-terminal": "box_terminal", "assessment": "assessment"}


def station_model(
    station: Station,
    *,
    world: World | None = None,
    devices: Iterable[FieldDevice] = (),
    station_id: str = "",
    name: str = "",
    transformer: Transformer | None = None,
) -> StationModel:
    """The archive of ``station`` (and of ``world``'s branches and boxes when there is one)."""
    where: Mapping[str, Any] = {} if world is None else world.meters
    meters: list[Meter] = []
    for m in station.meters:
        if m.id in station.unarchived:
            continue
        placed = where.get(m.id)
        meter = m.archive_meter(baud=station.settings.baud)
        if placed is not None:
            wrong = m.labels  # the scenario's archive errors: what the utility recorded instead
            meter = replace(
                meter,
                branch=wrong.get("branch", placed.branch) or None,
                box=wrong.get("box", placed.box) or None,
            )
        if world is not None and meter.kind == "assessment":
            meter = replace(meter, ct_ratio=float(world.assessment_ct[1]))  # the CT the utility recorded
        meters.append(meter)
    meters += station.foreign
    devices = tuple(devices)
    branches: list[Branch] = []
    boxes: list[MeterBox] = []
    if world is not None:
        ids = {m.id for m in meters}
        breakers = {d.branch: d.id for d in devices if d.profile == "breaker" and d.branch is not None}
        for rep in world.replicas:
            net = rep.network
            for b, branch in enumerate(net.branches):
                full = rep.prefix + branch
                parent = net.heads[b][3]
                monitor = f"bu-{full}"
                branches.append(
                    Branch(
                        full,
                        breaker=breakers.get(full),
                        monitor=monitor if monitor in ids else None,
                        parent=None if parent < 0 else rep.prefix + net.branches[parent],
                    )
                )
            if any(c.branch not in net.branches for c in net.customers):
                # customers on the distribution board itself (no line between): its own outlets,
                # "F0", a branch with no breaker or unit of ours (``sim.physics.network``)
                branches.append(Branch(rep.prefix + BOARD_BRANCH))
            seen: set[str] = set()
            for c in net.customers:
                box = rep.prefix + c.box
                if box in seen:
                    continue
                seen.add(box)
                terminal = f"bt-{box}"
                boxes.append(
                    MeterBox(
                        box, branch=rep.prefix + c.branch, terminal=terminal if terminal in ids else None
                    )
                )
    if world is not None:
        transformer = _transformer(world, transformer)
    named = {b.id for b in branches}
    listed = tuple(d if d.branch is None or d.branch in named else replace(d, branch=None) for d in devices)
    return StationModel(
        id=station_id,
        name=name,
        transformer=transformer,
        branches=tuple(branches),
        boxes=tuple(boxes),
        meters=tuple(meters),
        devices=listed,
    )


def _transformer(world: World, given: Transformer | None) -> Transformer:
    """The world's transformer: its rating, and the 总表 with the CT ratio the archive records
    (the world's assessment meter when it has one, else the metrology unit, device ``transformer``)."""
    net = world.replicas[0].network
    try:
        rating: float | None = round(float(net.net.trafo.sn_mva.iloc[0]) * 1000.0 * len(world.replicas), 1)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        rating = None
    base = given or Transformer("T1")
    if world.assessment is None:
        return replace(base, rating_kva=rating, meter=base.meter or "transformer")
    return replace(base, rating_kva=rating, meter=world.assessment.id, ct_ratio=float(world.assessment_ct[1]))


def write_station(path: str | os.PathLike[str], model: StationModel) -> None:
    """Write the archive atomically (temp file + rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(dumps(model), encoding="utf-8")
    tmp.replace(target)


def read_station(path: str | os.PathLike[str]) -> StationModel:
    """Read an archive written by ``write_station`` (``StationError`` names the key on bad input)."""
    return loads(Path(path).read_text(encoding="utf-8"), source=str(path))


__all__ = ["read_station", "station_model", "write_station"]
