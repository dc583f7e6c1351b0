"""Frame <-> data-unit glue: ``parse_unit`` and the ``make_frame`` builder.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.
"""

from __future__ import annotations

from protocols.errors import EncodeError
from protocols.gdw1376_2._frame import DIR_UP, HEADER_LEN, PRM, PROTOCOL, DownInfo, Frame, Info, UpInfo
from protocols.gdw1376_2._units import UNITS, RawUnit, Unit, decode_unit

HPLC = 3


def unit_offset(frame: Frame) -> int:
    """Offset of the data unit from the frame's 68 (for error offsets)."""
    addresses = 12 + 6 * len(frame.relays) if frame.info.module_flag else 0
    return HEADER_LEN + addresses + 3


def parse_unit(frame: Frame) -> Unit:
    """The frame's data unit as a dataclass (``RawUnit`` for an unmodelled AFN/Fn).

    A malformed unit of a modelled AFN/Fn raises ``ProtocolError`` with the offset of the bad byte
    counted from the frame's 68.
    """
    return decode_unit(frame.afn, frame.fn, frame.is_up, frame.unit, base=unit_offset(frame))


def make_frame(
    afn: int,
    fn: int,
    unit: Unit | None = None,
    *,
    up: bool = False,
    prm: bool | None = None,
    comm_mode: int = HPLC,
    seq: int = 0,
    info: Info | None = None,
    src: str | None = None,
    relays: tuple[str, ...] = (),
    dst: str | None = None,
) -> Frame:
    """Build a frame around ``unit``.

    PRM defaults to 1 for down frames (terminal requests) and 0 for up frames (module replies);
    pass ``prm=True`` for a module-initiated report (AFN06, AFN14 F1 up). Without ``info`` the R
    field carries only the module flag (set when addresses are given), relay level and ``seq``.
    The unit class must be the one registered for (afn, fn, direction), or ``RawUnit``.
    """
    unit = unit if unit is not None else UNITS.get((afn, fn, up), RawUnit)()
    expected = UNITS.get((afn, fn, up), RawUnit)
    if type(unit) is not expected and not isinstance(unit, RawUnit):
        raise EncodeError(
            f"AFN{afn:02X} F{fn} {'up' if up else 'down'} carries {expected.__name__}, "
            f"not {type(unit).__name__}",
            protocol=PROTOCOL,
        )
    if not 0 <= comm_mode <= 0x3F:
        raise EncodeError(f"comm mode {comm_mode}: expected 0..63", protocol=PROTOCOL)
    flag = 1 if src is not None or dst is not None else 0
    if info is None:
        info = (
            UpInfo(module_flag=flag, relay_level=len(relays), seq=seq)
            if up
            else DownInfo(module_flag=flag, relay_level=len(relays), seq=seq)
        )
    initiating = (not up) if prm is None else prm
    control = (DIR_UP if up else 0) | (PRM if initiating else 0) | comm_mode
    return Frame(control, info, afn, fn, unit.encode(), src, relays, dst)


__all__ = ["make_frame", "parse_unit", "unit_offset"]
