"""DL/T 645-2007 link frame: the ``Frame`` dataclass, its construct definition, encode/decode.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

Wire layout (PROTOCOLS.md §1.2)::

    [FE..FE] 68 A0 A1 A2 A3 A4 A5 68  C  L  DATA(L bytes, each +33H)  CS  16
             |<------------------- summed into CS ------------------->|

* A0..A5: address, BCD, low byte first (``AA`` bytes are wildcards, 99..99 is broadcast);
* C: D7 direction (1 = meter->master), D6 abnormal reply, D5 follow-up frame, D4..D0 function;
* L: length of DATA (at most 200 by the standard's read limit);
* CS: sum mod 256 from the first 68 up to, not including, CS.

``Frame.data`` always holds DATA with the +33H offset already removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from construct import (
    Adapter,
    Bytes,
    Checksum,
    Const,
    ConstructError,
    Int8ub,
    RawCopy,
    Rebuild,
    Struct,
    len_,
    this,
)

from protocols.checksums import sum8
from protocols.errors import EncodeError, ProtocolError

PROTOCOL = "dlt645"
START = 0x68
END = 0x16
PREAMBLE = 0xFE
OFFSET = 0x33
MAX_DATA = 200
HEADER_LEN = 10  # 68 + 6 address + 68 + C + L
MIN_FRAME = HEADER_LEN + 2
BROADCAST_ADDRESS = "999999999999"
WILDCARD_ADDRESS = "AAAAAAAAAAAA"

DIR_RESPONSE = 0x80
ABNORMAL = 0x40
FOLLOW_UP = 0x20
FUNCTION_MASK = 0x1F

FUNCTIONS: dict[int, str] = {
    0x08: "broadcast_time_sync",
    0x11: "read_data",
    0x12: "read_followup",
    0x13: "read_address",
    0x14: "write_data",
    0x15: "write_address",
    0x16: "freeze",
    0x17: "change_baud_rate",
    0x18: "change_password",
    0x19: "max_demand_reset",
    0x1A: "meter_clear",
    0x1B: "event_clear",
    0x1C: "relay_control",
}

_ADDRESS_RE = re.compile(r"[0-9A-F]{12}")


_PLUS33 = bytes((b + OFFSET) & 0xFF for b in range(256))  # bytes.translate tables: one C pass
_MINUS33 = bytes((b - OFFSET) & 0xFF for b in range(256))


def _offset33(data: bytes, delta: int) -> bytes:
    if delta == OFFSET:
        return data.translate(_PLUS33)
    if delta == -OFFSET:
        return data.translate(_MINUS33)
    return bytes((b + delta) & 0xFF for b in data)


def address_to_wire(address: str) -> bytes:
    """12 nameplate digits (most significant first) -> 6 wire bytes (low byte first)."""
    return bytes.fromhex(address)[::-1]


def address_from_wire(raw: bytes) -> str:
    return raw[::-1].hex().upper()


@dataclass(frozen=True, slots=True)
class Frame:
    """One DL/T 645 frame; ``data`` is the DATA field with +33H removed."""

    address: str
    control: int
    data: bytes = b""

    def __post_init__(self) -> None:
        address = self.address.upper() if isinstance(self.address, str) else self.address
        if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address):
            raise EncodeError(f"address {self.address!r}: not 12 hex/BCD digits", protocol=PROTOCOL)
        object.__setattr__(self, "address", address)
        if not 0 <= self.control <= 0xFF:
            raise EncodeError(f"control {self.control!r}: not a byte", protocol=PROTOCOL)
        if len(self.data) > MAX_DATA:
            raise EncodeError(f"data field of {len(self.data)} bytes exceeds {MAX_DATA}", protocol=PROTOCOL)
        object.__setattr__(self, "data", bytes(self.data))

    @property
    def code(self) -> int:
        """Function code D4..D0."""
        return self.control & FUNCTION_MASK

    @property
    def function(self) -> str:
        return FUNCTIONS.get(self.code, f"unknown_0x{self.code:02X}")

    @property
    def is_response(self) -> bool:
        return bool(self.control & DIR_RESPONSE)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ABNORMAL)

    @property
    def has_follow_up(self) -> bool:
        return bool(self.control & FOLLOW_UP)

    @property
    def is_broadcast(self) -> bool:
        return self.address == BROADCAST_ADDRESS


class _Plus33(Adapter):  # type: ignore[misc]
    """Every DATA byte travels +33H (mod 256)."""

    def _decode(self, obj: bytes, context: Any, path: str) -> bytes:
        return _offset33(obj, -OFFSET)

    def _encode(self, obj: bytes, context: Any, path: str) -> bytes:
        return _offset33(obj, OFFSET)


class _Address(Adapter):  # type: ignore[misc]
    """6 BCD bytes, low byte first <-> 12 digits, most significant first."""

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return address_from_wire(obj)

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        return address_to_wire(obj)


BODY = Struct(
    "start1" / Const(bytes([START])),
    "address" / _Address(Bytes(6)),
    "start2" / Const(bytes([START])),
    "control" / Int8ub,
    "length" / Rebuild(Int8ub, len_(this.data)),
    "data" / _Plus33(Bytes(this.length)),
)

FRAME = Struct(
    "body" / RawCopy(BODY),
    "cs" / Checksum(Int8ub, sum8, this.body.data),
    "end" / Const(bytes([END])),
)


def encode(frame: Frame, *, preamble: int = 4) -> bytes:
    """Wire bytes of ``frame`` with ``preamble`` wake-up FE bytes in front.

    The bytes ``FRAME.build`` makes (``build`` below), assembled by hand: a ``Frame`` is already
    valid (12 digits, a control byte, at most 200 data bytes), so nothing is left for construct
    to refuse, and this runs on every request and reply (``tests/protocols/test_frame_fast_paths``
    holds both paths byte-identical)."""
    if not 0 <= preamble <= 16:
        raise EncodeError(f"preamble {preamble}: expected 0..16 FE bytes", protocol=PROTOCOL)
    data = frame.data
    body = b"%c%s%c%c%c%s" % (
        START,
        address_to_wire(frame.address),
        START,
        frame.control,
        len(data),
        data.translate(_PLUS33),
    )
    return b"\xfe" * preamble + body + bytes((sum(body) & 0xFF, END))


def build(frame: Frame, *, preamble: int = 4) -> bytes:
    """``encode`` through the construct definition ``FRAME`` (the declared wire format)."""
    if not 0 <= preamble <= 16:
        raise EncodeError(f"preamble {preamble}: expected 0..16 FE bytes", protocol=PROTOCOL)
    body = {"address": frame.address, "control": frame.control, "data": frame.data}
    try:
        raw: bytes = FRAME.build({"body": {"value": body}})
    except ConstructError as err:
        raise EncodeError(f"cannot encode frame: {err}", protocol=PROTOCOL) from err
    return bytes([PREAMBLE]) * preamble + raw


def check_header(buf: bytes | bytearray, start: int) -> int | ProtocolError | None:
    """The end index (exclusive) the frame whose first 68 is at ``buf[start]`` claims, once its
    header (second 68, L) checks out; ``None`` when more bytes are needed; else the error."""
    n = len(buf)
    if start + 7 < n and buf[start + 7] != START:
        return ProtocolError(
            f"second 0x68 expected, got 0x{buf[start + 7]:02X}", offset=start + 7, protocol=PROTOCOL
        )
    if start + HEADER_LEN > n:
        return None
    length = buf[start + 9]
    if length > MAX_DATA:
        return ProtocolError(f"length L={length} exceeds {MAX_DATA}", offset=start + 9, protocol=PROTOCOL)
    return start + MIN_FRAME + length


def check_body(buf: bytes | bytearray, start: int, end: int) -> ProtocolError | None:
    """CS and the end 16 of the whole frame ``buf[start:end]`` (header already checked)."""
    cs_at = end - 2
    calc = sum8(memoryview(buf)[start:cs_at])
    if buf[cs_at] != calc:
        return ProtocolError(
            f"checksum mismatch: frame says 0x{buf[cs_at]:02X}, computed 0x{calc:02X}",
            offset=cs_at,
            protocol=PROTOCOL,
        )
    if buf[end - 1] != END:
        return ProtocolError(
            f"end 0x16 expected, got 0x{buf[end - 1]:02X}", offset=end - 1, protocol=PROTOCOL
        )
    return None


def check(buf: bytes | bytearray, start: int) -> int | ProtocolError | None:
    """Validate the frame whose first 68 is at ``buf[start]``.

    Returns the end index (exclusive) of a valid frame, ``None`` when more bytes are
    needed, or a ``ProtocolError`` whose offset is the index of the offending byte.
    The same checks as the streaming ``Framer``, so both reject the same things.
    """
    end = check_header(buf, start)
    if end is None or isinstance(end, ProtocolError):
        return end
    if end > len(buf):
        return None
    return check_body(buf, start, end) or end


def frame_at(buf: bytes | bytearray, start: int) -> Frame:
    """Hand-written fast path: the Frame of an already ``check``-ed frame at ``start``."""
    length = buf[start + 9]
    return Frame(
        address_from_wire(bytes(buf[start + 1 : start + 7])),
        buf[start + 8],
        _offset33(bytes(buf[start + HEADER_LEN : start + HEADER_LEN + length]), -OFFSET),
    )


def count_preamble(raw: bytes) -> int:
    n = 0
    while n < len(raw) and raw[n] == PREAMBLE:
        n += 1
    return n


def decode(raw: bytes) -> Frame:
    """Decode exactly one whole frame (any number of leading FE); anything else is a ProtocolError."""
    start = count_preamble(raw)
    if start >= len(raw):
        raise ProtocolError("no frame: input is empty or only FE preamble", offset=start, protocol=PROTOCOL)
    if raw[start] != START:
        raise ProtocolError(f"start 0x68 expected, got 0x{raw[start]:02X}", offset=start, protocol=PROTOCOL)
    result = check(raw, start)
    if result is None:
        need = MIN_FRAME + (raw[start + 9] if start + 9 < len(raw) else 0)
        raise ProtocolError(
            f"truncated frame: {len(raw) - start} of at least {need} bytes",
            offset=len(raw),
            protocol=PROTOCOL,
        )
    if isinstance(result, ProtocolError):
        raise result
    if result != len(raw):
        raise ProtocolError(
            f"{len(raw) - result} trailing bytes after the frame", offset=result, protocol=PROTOCOL
        )
    return frame_at(raw, start)


def parse(raw: bytes) -> Frame:
    """``decode`` through the construct definition ``FRAME`` (the declared wire format)."""
    start = count_preamble(raw)
    try:
        parsed = FRAME.parse(bytes(raw[start:]))
    except ConstructError as err:
        raise ProtocolError(f"malformed frame: {err}", offset=start, protocol=PROTOCOL) from err
    body = parsed.body.value
    return Frame(body.address, body.control, body.data)


__all__ = [
    "BROADCAST_ADDRESS",
    "FRAME",
    "FUNCTIONS",
    "MAX_DATA",
    "PROTOCOL",
    "WILDCARD_ADDRESS",
    "Frame",
    "address_from_wire",
    "address_to_wire",
    "build",
    "check",
    "check_body",
    "check_header",
    "count_preamble",
    "decode",
    "encode",
    "frame_at",
    "parse",
]
