"""Frames carried inside 1376.2 data units (DL/T 645, DL/T 698.45), decoded recursively.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

DL/T 698.45 support is optional: ``protocols.dlt698`` is imported lazily, and only used when it
exposes ``decode(raw)``; otherwise 698 frames stay raw bytes (``carried`` returns ``None``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from protocols import dlt645
from protocols.errors import ProtocolError
from protocols.gdw1376_2._units import DLT645_1997, DLT645_2007, DLT698, TRANSPARENT, Unit

# Wire protocol-type byte -> the ``protocols.inspect`` name of the carried codec.
INNER_NAMES: dict[int, str] = {DLT645_1997: "dlt645", DLT645_2007: "dlt645", DLT698: "dlt698"}


def _dlt698() -> Any:
    try:
        return importlib.import_module("protocols.dlt698")
    except Exception:  # absent or half-written package (another codec): fall back to raw bytes
        return None


def dlt698_decoder() -> Callable[[bytes], Any] | None:
    """``protocols.dlt698.decode`` if that package is present and usable, else ``None``."""
    decode = getattr(_dlt698(), "decode", None)
    return decode if callable(decode) else None


def inner_name(protocol: int) -> str:
    """``protocols.inspect`` name of the codec for a carried protocol type ("auto" if unknown)."""
    if protocol == DLT698:
        name = getattr(_dlt698(), "PROTOCOL", None)
        return name if isinstance(name, str) and name else INNER_NAMES[DLT698]
    return INNER_NAMES.get(protocol, "auto")


def carried_frame(unit: Unit) -> tuple[int, bytes] | None:
    """(protocol type, frame bytes) of the frame a unit carries, if it carries one."""
    frame = getattr(unit, "frame", b"")
    if not isinstance(frame, bytes) or not frame:
        return None
    protocol = getattr(unit, "protocol", TRANSPARENT)
    return (protocol if isinstance(protocol, int) else TRANSPARENT), frame


def decode_carried(protocol: int, raw: bytes) -> Any:
    """Decode a carried frame by its protocol type byte.

    645-1997/2007 -> ``dlt645.Frame``; 698.45 -> whatever ``protocols.dlt698.decode`` returns
    (``None`` when that codec is not available); transparent -> the first codec that accepts it,
    else ``None``. A malformed frame of a declared protocol raises ``ProtocolError``.
    """
    if protocol in (DLT645_1997, DLT645_2007):
        return dlt645.decode(raw)
    decode698 = dlt698_decoder()
    if protocol == DLT698:
        return None if decode698 is None else decode698(raw)
    for decoder in (dlt645.decode, decode698):
        if decoder is None:
            continue
        try:
            return decoder(raw)
        except ProtocolError:
            continue
    return None


def carried(unit: Unit) -> Any:
    """The decoded frame ``unit`` carries (see ``decode_carried``), or ``None``."""
    found = carried_frame(unit)
    return None if found is None else decode_carried(*found)


__all__ = ["INNER_NAMES", "carried", "carried_frame", "decode_carried", "dlt698_decoder", "inner_name"]
