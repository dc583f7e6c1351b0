"""Byte reader/writer for DL/T 698.45 APDUs: big-endian integers and A-XDR lengths.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

Every read is bounds-checked and fails with a ``ProtocolError`` whose offset is the
position of the byte that could not be read, counted from ``base`` (the caller's
position of ``buf[0]`` in the frame or stream). A-XDR length: ``< 0x80`` one byte,
else ``0x80 | n`` followed by ``n`` big-endian length bytes (``81 nn`` / ``82 nn nn``).
"""

from __future__ import annotations

from protocols.errors import EncodeError, ProtocolError

PROTOCOL = "dlt698"
MAX_DEPTH = 16  # nesting of array/structure/RSD; deeper input is rejected, not recursed into


class Reader:
    """Cursor over ``buf``; ``base`` is added to every reported offset."""

    __slots__ = ("base", "buf", "pos")

    def __init__(self, buf: bytes, *, pos: int = 0, base: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.base = base

    def error(self, reason: str, *, at: int | None = None) -> ProtocolError:
        return ProtocolError(reason, offset=self.base + (self.pos if at is None else at), protocol=PROTOCOL)

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int, what: str = "field") -> bytes:
        if n > len(self.buf) - self.pos:
            raise self.error(f"truncated {what}: need {n} bytes, {len(self.buf) - self.pos} left")
        start = self.pos
        self.pos += n
        return self.buf[start : self.pos]

    def u8(self, what: str = "byte") -> int:
        if self.pos >= len(self.buf):
            raise self.error(f"truncated {what}: need 1 byte, 0 left")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def uint(self, n: int, what: str = "integer") -> int:
        return int.from_bytes(self.take(n, what), "big")

    def sint(self, n: int, what: str = "integer") -> int:
        return int.from_bytes(self.take(n, what), "big", signed=True)

    def length(self, what: str = "length") -> int:
        return self.length_form(what)[0]

    def length_form(self, what: str = "length") -> tuple[int, int]:
        """(length, form): form 0 = one byte, else the number of bytes after the 0x8n byte."""
        at = self.pos
        first = self.u8(what)
        if first < 0x80:
            return first, 0
        n = first & 0x7F
        if n == 0 or n > 2:
            raise self.error(f"{what}: A-XDR length of {n} bytes not supported", at=at)
        return self.uint(n, what), n

    def count(self, what: str, *, min_size: int = 1) -> int:
        """A SEQUENCE OF count, checked against the bytes left so a hostile count cannot loop long."""
        at = self.pos
        n = self.length(f"{what} count")
        if n * min_size > self.left:
            raise self.error(f"{what} count {n} exceeds the {self.left} bytes left", at=at)
        return n

    def optional(self, what: str) -> bool:
        at = self.pos
        flag = self.u8(f"{what} presence flag")
        if flag > 1:
            raise self.error(f"{what} presence flag 0x{flag:02X}: expected 00 or 01", at=at)
        return flag == 1

    def bool(self, what: str = "bool") -> bool:
        at = self.pos
        value = self.u8(what)
        if value > 1:
            raise self.error(f"{what} 0x{value:02X}: expected 00 or 01", at=at)
        return value == 1


def check_range(value: object, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise EncodeError(f"{what} {value!r}: expected an integer in {lo}..{hi}", protocol=PROTOCOL)
    return value


def put_uint(out: bytearray, value: object, n: int, what: str = "integer") -> None:
    out += check_range(value, 0, (1 << (8 * n)) - 1, what).to_bytes(n, "big")


def put_sint(out: bytearray, value: object, n: int, what: str = "integer") -> None:
    half = 1 << (8 * n - 1)
    out += check_range(value, -half, half - 1, what).to_bytes(n, "big", signed=True)


def put_length(out: bytearray, n: int, form: int = 0) -> None:
    """Shortest A-XDR length, or the long form with ``form`` bytes (to re-encode what was received)."""
    if form and n < 1 << (8 * form):
        out.append(0x80 | form)
        out += n.to_bytes(form, "big")
    elif n < 0x80:
        out.append(n)
    elif n <= 0xFF:
        out += bytes((0x81, n))
    elif n <= 0xFFFF:
        out.append(0x82)
        out += n.to_bytes(2, "big")
    else:
        raise EncodeError(f"length {n} exceeds the 65535 an A-XDR length can carry", protocol=PROTOCOL)


def put_octets(out: bytearray, value: object, what: str = "octet-string", form: int = 0) -> None:
    if not isinstance(value, bytes | bytearray):
        raise EncodeError(f"{what} {value!r}: expected bytes", protocol=PROTOCOL)
    put_length(out, len(value), form)
    out += value


__all__ = [
    "MAX_DEPTH",
    "PROTOCOL",
    "Reader",
    "check_range",
    "put_length",
    "put_octets",
    "put_sint",
    "put_uint",
]
