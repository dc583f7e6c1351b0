"""Small byte reader/writer helpers for 1376.2 data units.

Layer: protocols (pure helpers, no I/O). Must not import asyncio, serial, hal or runtime.

``Reader`` raises a ``ProtocolError`` whose offset points at the offending byte of the whole
frame (the data unit's own offset is passed in as ``base``), so a malformed unit is reported
exactly like a malformed frame.
"""

from __future__ import annotations

import datetime as dt

from protocols.errors import EncodeError, ProtocolError
from protocols.gdw1376_2._frame import PROTOCOL, address_from_wire, address_to_wire, check_address


class Reader:
    def __init__(self, data: bytes, *, base: int = 0, what: str = "data unit") -> None:
        self.data = data
        self.pos = 0
        self.base = base
        self.what = what

    def error(self, reason: str, at: int | None = None) -> ProtocolError:
        return ProtocolError(
            f"{self.what}: {reason}", offset=self.base + (self.pos if at is None else at), protocol=PROTOCOL
        )

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.error(f"{field} needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "little")

    def address(self, field: str) -> str:
        return address_from_wire(self.take(6, field))

    def bcd(self, n: int, field: str) -> list[int]:
        """n BCD bytes, each as 0..99, in wire order."""
        at = self.pos
        raw = self.take(n, field)
        out = []
        for i, b in enumerate(raw):
            if b >> 4 > 9 or b & 0x0F > 9:
                raise self.error(f"{field}: byte 0x{b:02X} is not BCD", at=at + i)
            out.append((b >> 4) * 10 + (b & 0x0F))
        return out

    def date(self, field: str) -> dt.date:
        """3 BCD bytes DD MM YY (low byte first) -> date in 2000..2099."""
        at = self.pos
        day, month, year = self.bcd(3, field)
        try:
            return dt.date(2000 + year, month, day)
        except ValueError as err:
            raise self.error(f"{field}: {err}", at=at) from err

    def datetime(self, field: str) -> dt.datetime:
        """6 BCD bytes ss mm hh DD MM YY -> naive local datetime."""
        at = self.pos
        second, minute, hour, day, month, year = self.bcd(6, field)
        try:
            return dt.datetime(2000 + year, month, day, hour, minute, second)
        except ValueError as err:
            raise self.error(f"{field}: {err}", at=at) from err

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.error(f"{len(self.data) - self.pos} unexpected trailing bytes")


def u8(value: int, field: str) -> bytes:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise EncodeError(f"{field} {value!r}: expected 0..255", protocol=PROTOCOL)
    return bytes([value])


def u16(value: int, field: str) -> bytes:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise EncodeError(f"{field} {value!r}: expected 0..65535", protocol=PROTOCOL)
    return value.to_bytes(2, "little")


def address(value: str, field: str) -> bytes:
    return address_to_wire(check_address(value, field))


def _bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def date(value: dt.date, field: str) -> bytes:
    if not 2000 <= value.year <= 2099:
        raise EncodeError(f"{field} {value}: year outside 2000..2099", protocol=PROTOCOL)
    return bytes([_bcd(value.day), _bcd(value.month), _bcd(value.year - 2000)])


def datetime(value: dt.datetime, field: str) -> bytes:
    if not 2000 <= value.year <= 2099:
        raise EncodeError(f"{field} {value}: year outside 2000..2099", protocol=PROTOCOL)
    parts = (value.second, value.minute, value.hour, value.day, value.month, value.year - 2000)
    return bytes(_bcd(p) for p in parts)


def sized(frame: bytes, field: str, *, width: int = 1) -> bytes:
    """A length-prefixed carried frame (1- or 2-byte length)."""
    if len(frame) >= 1 << (8 * width):
        raise EncodeError(
            f"{field} of {len(frame)} bytes does not fit a {width}-byte length", protocol=PROTOCOL
        )
    return len(frame).to_bytes(width, "little") + bytes(frame)


__all__ = ["Reader", "address", "date", "datetime", "sized", "u8", "u16"]
