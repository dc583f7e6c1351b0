"""JSON description of one 1376.2 frame for ``ttu frame decode`` (``protocols.inspect`` row).

Layer: protocols (pure function, no I/O). Must not import asyncio, serial, hal or runtime.

Never raises for bad input: a frame that fails returns ``{"ok": false, "error", "offset"}``. The
carried frame is described by a callback (``protocols.inspect`` passes its own ``describe``), so
this module needs no knowledge of which inner codecs exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from protocols.errors import ProtocolError
from protocols.gdw1376_2._carried import carried_frame, inner_name
from protocols.gdw1376_2._frame import PROTOCOL, Frame, UpInfo, count_preamble, decode, encode
from protocols.gdw1376_2._messages import parse_unit
from protocols.gdw1376_2._units import (
    DENY_REASONS,
    DEVICE_TYPES,
    PROTOCOL_TYPES,
    READ_FLAGS,
    Deny,
    NodeEvent,
    NodeInfo,
    NoUnit,
    PhaseNode,
    RawUnit,
    ReadReply,
    TopologyNode,
    Unit,
)

Description = dict[str, Any]
InnerDescriber = Callable[[bytes, str], Description | None]

# Derived values worth showing beside a dataclass's own fields.
_EXTRA: dict[type, tuple[str, ...]] = {
    NodeInfo: ("relay_level", "signal_quality", "phase_bits", "protocol"),
    PhaseNode: ("phase_bits", "three_phase"),
    TopologyNode: ("level", "role"),
}


def to_json(value: Any) -> Any:
    """Dataclasses, bytes, dates and tuples -> JSON-ready values (bytes as spaced hex)."""
    if isinstance(value, bytes):
        return value.hex(" ").upper()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out.update({name: to_json(getattr(value, name)) for name in _EXTRA.get(type(value), ())})
        return out
    return value


def unit_json(frame: Frame, unit: Unit) -> Description:
    name = f"AFN{frame.afn:02X} F{frame.fn} {unit.NAME}" if isinstance(unit, NoUnit | RawUnit) else unit.NAME
    out: Description = {"name": name, **to_json(unit)}
    protocol = getattr(unit, "protocol", None)
    if isinstance(protocol, int):
        out["protocol_name"] = PROTOCOL_TYPES.get(protocol, f"reserved_{protocol}")
    if isinstance(unit, Deny):
        out["reason"] = DENY_REASONS.get(unit.code, f"reserved_{unit.code}")
    elif isinstance(unit, ReadReply):
        out["flag_name"] = READ_FLAGS.get(unit.flag, f"reserved_{unit.flag}")
    elif isinstance(unit, NodeEvent):
        out["device_type_name"] = DEVICE_TYPES.get(unit.device_type, f"reserved_{unit.device_type}")
        power = unit.power
        if power is not None:
            out["power"] = {"kind": power.kind, "kind_name": power.kind_name, "nodes": to_json(power.nodes)}
    for prop in ("command_done", "comm_type", "route_management", "periodic_read_mode", "reason"):
        if hasattr(type(unit), prop) and isinstance(getattr(type(unit), prop), property):
            out[prop] = getattr(unit, prop)
    return out


def _info(frame: Frame) -> Description:
    info: Description = to_json(frame.info)
    if isinstance(frame.info, UpInfo):
        info["reserved"] = f"0x{frame.info.reserved:012X}"
    else:
        info["rate_unit"] = "kbit/s" if frame.info.rate_kbps else "bit/s"
    info["raw"] = frame.info.to_bytes().hex(" ").upper()
    return info


def describe(raw: bytes, *, inner: InnerDescriber | None = None) -> Description:
    out: Description = {"protocol": PROTOCOL}
    try:
        frame = decode(raw)
    except ProtocolError as err:
        return {**out, "ok": False, "error": err.reason, "offset": err.offset}
    preamble = count_preamble(raw)
    out.update(
        ok=True,
        roundtrip=encode(frame) == raw[preamble:],
        length=frame.length,
        control=frame.control,
        direction="up" if frame.is_up else "down",
        prm=frame.prm,
        comm_mode=frame.comm_mode,
        comm_mode_name=frame.comm_mode_name,
        info=_info(frame),
        seq=frame.seq,
        afn=frame.afn,
        fn=frame.fn,
    )
    if preamble:
        out["preamble"] = preamble
    if frame.src is not None:
        out.update(src=frame.src, dst=frame.dst)
        if frame.relays:
            out["relays"] = list(frame.relays)
    out["unit"] = frame.unit.hex(" ").upper()
    try:
        unit = parse_unit(frame)
    except ProtocolError as err:
        offset = None if err.offset is None else err.offset + preamble
        return {**out, "ok": False, "error": err.reason, "offset": offset}
    out["data"] = unit_json(frame, unit)
    found = carried_frame(unit)
    if found is not None:
        protocol, frame_bytes = found
        name = inner_name(protocol)
        described = inner(frame_bytes, name) if inner is not None else None
        out["inner"] = described if described is not None else {"protocol": name, "raw": to_json(frame_bytes)}
    return out


__all__ = ["Description", "InnerDescriber", "describe", "to_json", "unit_json"]
