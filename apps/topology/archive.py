"""The station as the archive has it, turned into what the identification works on.

Layer: apps (topology), pure. Reads a station model (``protocols.station.StationModel``: meters,
branches, boxes, each fact with its provenance) and must not change it (corrections go through
``ctx.station.propose``). Kinds: customer meters are identified; branch monitoring units and box
terminals are the instruments (``Branch.monitor``, ``MeterBox.terminal``); the assessment meter
and field devices take no part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .inputs import BoxInfo, BranchInfo, Fact, MeterInfo

CUSTOMER = "customer"


@dataclass(frozen=True)
class Archive:
    meters: tuple[MeterInfo, ...]
    branches: tuple[BranchInfo, ...]
    boxes: tuple[BoxInfo, ...]
    units: tuple[str, ...]  # device ids of branch units and box terminals
    addresses: dict[str, str]  # device id -> address (meters and units)
    protocols: dict[str, str]  # device id -> "dlt645" | "dlt698"
    channels: dict[str, str]  # device id -> "rs485" | "hplc"
    version: int = 0


def _fact(record: Any, name: str, facts: dict[Fact, Fact]) -> Fact:
    """The archive's fact ``name`` of ``record``; equal facts are one object (``facts``: the
    ones made so far -- thousands of meters say "phase A, from the archive")."""
    value = getattr(record, name, None)
    if value is None:
        fact = Fact(None, "none")
    else:
        source_of = getattr(record, "source_of", None)
        prov = source_of(name) if callable(source_of) else None
        source = str(getattr(prov, "source", "archive") or "archive")
        confidence = getattr(prov, "confidence", None)
        fact = Fact(
            str(value), source if source in ("archive", "identified", "confirmed") else "archive", confidence
        )
    return facts.setdefault(fact, fact)


def from_model(model: Any) -> Archive:
    """The identification's view of a station model (duck-typed on ``protocols.station``)."""
    meters: list[MeterInfo] = []
    addresses: dict[str, str] = {}
    protocols: dict[str, str] = {}
    channels: dict[str, str] = {}
    facts: dict[Fact, Fact] = {}
    for m in getattr(model, "meters", ()):
        addresses[m.id] = m.address
        protocols[m.id] = getattr(m, "protocol", "dlt645") or "dlt645"
        channels[m.id] = getattr(m, "channel", "rs485") or "rs485"
        if (getattr(m, "kind", CUSTOMER) or CUSTOMER) != CUSTOMER:
            continue
        meters.append(
            MeterInfo(
                m.id,
                m.address,
                channels[m.id],
                _fact(m, "phase", facts),
                _fact(m, "branch", facts),
                _fact(m, "box", facts),
            )
        )
    branches = tuple(
        BranchInfo(b.id, getattr(b, "parent", None), getattr(b, "monitor", None))
        for b in getattr(model, "branches", ())
    )
    boxes = tuple(
        BoxInfo(x.id, getattr(x, "branch", None), getattr(x, "terminal", None))
        for x in getattr(model, "boxes", ())
    )
    units = tuple(
        sorted({b.monitor for b in branches if b.monitor} | {x.terminal for x in boxes if x.terminal})
    )
    return Archive(
        tuple(meters),
        branches,
        boxes,
        units,
        addresses,
        protocols,
        channels,
        int(getattr(model, "version", 0) or 0),
    )


def with_carrier(archive: Archive, phases: dict[str, str], network: set[str] | None) -> tuple[MeterInfo, ...]:
    """The meters with what the carrier module says: its phase (AFN10 F31) and, for HPLC meters,
    whether it hears them at all (AFN10 F21; None when the module was not asked)."""
    out = []
    for m in archive.meters:
        cco = phases.get(m.address)
        heard = None if network is None or m.channel != "hplc" else m.address in network
        out.append(MeterInfo(m.id, m.address, m.channel, m.phase, m.branch, m.box, cco, heard))
    return tuple(out)


def unit_branches(archive: Archive) -> dict[str, str | None]:
    """Unit device id -> the branch it belongs to (a branch unit's own; a box terminal's box's)."""
    out: dict[str, str | None] = {b.monitor: b.id for b in archive.branches if b.monitor}
    for x in archive.boxes:
        if x.terminal:
            out[x.terminal] = x.branch
    return out


def devices(archive: Archive, extra: Sequence[str] = ()) -> list[str]:
    """Every device whose curves the identification needs."""
    return sorted({m.id for m in archive.meters} | set(archive.units) | set(extra))


__all__ = ["Archive", "devices", "from_model", "unit_branches", "with_carrier"]
