"""Human/JSON description of one captured frame: the engine of ``ttu frame decode``.

Layer: protocols (pure function, no I/O). Must not import asyncio, serial, hal or runtime.

``describe(raw)`` never raises for bad input: it returns ``{"ok": false, "error",
"offset"}``. ``protocol="auto"`` asks every known codec whether the bytes look like
its frame (``_DESCRIBERS``): DL/T 645 by its second 0x68 at offset 7, DL/T 698.45 by an L
that spans exactly to the final 0x16, Q/GDW 1376.2 by an L that is the whole frame; a
candidate whose checksums fail yields to the next row.

Only the codec a frame is described with is imported (``ttu frame decode`` of a DL/T 645
frame must not pay for DL/T 698.45's APDU tables): the recognisers here read bytes only,
and each row names the module that describes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Description = dict[str, Any]
_PREAMBLE = 0xFE  # wake-up bytes any of the three may lead with
_START = 0x68


@dataclass(frozen=True, slots=True)
class _Describer:
    name: str  # the codec's PROTOCOL (tests/protocols/test_inspect_lazy.py checks they agree)
    looks_like: Callable[[bytes], bool]  # bytes only: no codec imported
    describe: Callable[[bytes], Description]  # imports its codec


def _preamble(raw: bytes) -> int:
    n = 0
    while n < len(raw) and raw[n] == _PREAMBLE:
        n += 1
    return n


def _dlt645_looks_like(raw: bytes) -> bool:
    start = _preamble(raw)
    return len(raw) > start + 7 and raw[start] == _START and raw[start + 7] == _START


def _dlt698_looks_like(raw: bytes) -> bool:
    """68, then L and AF such that the frame ends where the header says (not 645's 68 at +7)."""
    start = _preamble(raw)
    if len(raw) < start + 12 or raw[start] != _START:
        return False
    length = (raw[start + 1] | (raw[start + 2] << 8)) & 0x3FFF
    return length + 2 == len(raw) - start and raw[-1] == 0x16


def _gdw1376_2_looks_like(raw: bytes) -> bool:
    # 68 L(2, LE) ... 16 where L is the WHOLE frame (DL/T 698.45's L excludes 68 and 16).
    start = _preamble(raw)
    return (
        len(raw) - start >= 15
        and raw[start] == _START
        and raw[start + 1] | raw[start + 2] << 8 == len(raw) - start
    )


def _describe_carried(raw: bytes, protocol: str) -> Description | None:
    """Describe a frame carried inside another; ``None`` when no codec of that name is known."""
    if protocol != "auto" and protocol not in PROTOCOLS:
        return None
    return describe(raw, protocol=protocol)


def describe_dlt645(raw: bytes) -> Description:
    from protocols.dlt645._describe import describe_dlt645 as describe_645

    return describe_645(raw)


def describe_dlt698(raw: bytes) -> Description:
    from protocols.dlt698._describe import describe_dlt698 as describe_698

    return describe_698(raw)


def describe_gdw1376_2(raw: bytes) -> Description:
    from protocols import gdw1376_2

    return gdw1376_2.describe(raw, inner=_describe_carried)


_DESCRIBERS: tuple[_Describer, ...] = (
    _Describer("dlt645", _dlt645_looks_like, describe_dlt645),
    _Describer("dlt698", _dlt698_looks_like, describe_dlt698),
    _Describer("gdw1376.2", _gdw1376_2_looks_like, describe_gdw1376_2),
)

PROTOCOLS: tuple[str, ...] = tuple(d.name for d in _DESCRIBERS)


def describe(raw: bytes, *, protocol: str = "auto") -> Description:
    """The JSON object of ``ttu frame decode`` for one frame."""
    if protocol != "auto":
        for describer in _DESCRIBERS:
            if describer.name == protocol:
                return describer.describe(raw)
        return {"protocol": protocol, "ok": False, "error": f"unknown protocol {protocol!r}", "offset": None}
    first: Description | None = None
    for describer in _DESCRIBERS:
        if describer.looks_like(raw):
            result = describer.describe(raw)
            if result["ok"]:
                return result
            first = first or result
    if first is not None:
        return first
    return {
        "protocol": None,
        "ok": False,
        "error": f"no known protocol ({', '.join(PROTOCOLS)}) recognises this frame",
        "offset": 0,
    }


__all__ = ["PROTOCOLS", "Description", "describe", "describe_dlt645", "describe_dlt698", "describe_gdw1376_2"]
