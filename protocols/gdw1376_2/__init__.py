"""Q/GDW 1376.2 (Q/GDW 10376.2-2019) codec: terminal <-> HPLC/carrier (CCO) module frames.

Layer: protocols (pure codec: bytes <-> frozen dataclasses). Must not import asyncio, serial,
hal, runtime or apps. See PROTOCOLS.md §3.

    >>> from protocols import gdw1376_2 as q
    >>> raw = q.encode(q.make_frame(0x10, 1, seq=5))          # AFN10 F1 query node count
    >>> raw.hex(" ").upper()
    '68 0F 00 43 00 00 00 00 00 05 10 01 00 59 16'
    >>> q.parse_unit(q.decode(bytes.fromhex("68 10 00 83 08 10 00 00 00 00 00 02 00 07 A4 16"))).reason
    'meter address does not exist'
"""

from protocols.gdw1376_2._carried import (
    INNER_NAMES,
    carried,
    carried_frame,
    decode_carried,
    dlt698_decoder,
    inner_name,
)
from protocols.gdw1376_2._describe import describe, to_json, unit_json
from protocols.gdw1376_2._frame import (
    BROADCAST_ADDRESS,
    COMM_MODES,
    FRAME,
    MAX_FRAME,
    MIN_FRAME,
    PROTOCOL,
    DownInfo,
    Frame,
    Info,
    UpInfo,
    address_from_wire,
    address_to_wire,
    check,
    count_preamble,
    decode,
    dt_to_fn,
    encode,
    fn_to_dt,
    frame_at,
)
from protocols.gdw1376_2._framer import DEFAULT_MAX_LENGTH, Framer
from protocols.gdw1376_2._messages import make_frame, parse_unit, unit_offset
from protocols.gdw1376_2._units import *  # noqa: F403 - the unit dataclasses and tables
from protocols.gdw1376_2._units import __all__ as _units_all

__all__ = [
    "BROADCAST_ADDRESS",
    "COMM_MODES",
    "DEFAULT_MAX_LENGTH",
    "FRAME",
    "INNER_NAMES",
    "MAX_FRAME",
    "MIN_FRAME",
    "PROTOCOL",
    "DownInfo",
    "Frame",
    "Framer",
    "Info",
    "UpInfo",
    "address_from_wire",
    "address_to_wire",
    "carried",
    "carried_frame",
    "check",
    "count_preamble",
    "decode",
    "decode_carried",
    "describe",
    "dlt698_decoder",
    "dt_to_fn",
    "encode",
    "fn_to_dt",
    "frame_at",
    "inner_name",
    "make_frame",
    "parse_unit",
    "to_json",
    "unit_json",
    "unit_offset",
    *_units_all,
]
