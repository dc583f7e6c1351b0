"""DL/T 698.45 link frame: the ``Frame`` dataclass, its construct definition, encode/decode.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

Wire layout (PROTOCOLS.md §2.1)::

    [FE..FE] 68 | L(2) | C | AF | SA(1..16) | CA | HCS(2) | [FRAG(2)] APDU | FCS(2) | 16
                |<-------- HCS over --------->|
                |<----------------------- FCS over ------------------>|
                |<------------------------ L counts ------------------------->|

* L: little-endian; bits 0-13 = bytes from L to FCS inclusive (frame length - 2);
  bit 14 = length unit flag (kilobytes; rejected: no meter uses it), bit 15 reserved (kept);
* C: D7 DIR (1 = sent by the server), D6 PRM (1 = exchange started by the client),
  D5 fragment flag, D3 scrambling flag, D2..D0 function (1 link management, 3 user data);
* AF: bits 0-3 SA length - 1 (counting the extended logical address byte), bit 4 logical
  address 0/1, bit 5 extended logical address: the first SA byte is then the logical address
  (2..255), bits 6-7 type (0 single, 1 wildcard, 2 group, 3 broadcast: SA is one byte AA).
  This is DL/T 698.45-2017 as the fusion-terminal and meter firmware in public code implement
  it (CEPRI container apps: ``OOP_AF_U {len:4, oldvxd:1, flag:1 "has extended logical address",
  type:2}``; HPLC STA firmware skips one more SA byte when AF bit 5 is set). Older peers read
  bits 4-5 as one 2-bit logical address 0..3 (Q/GDW 698, ``dlt698_rs``); their frames differ
  only when bit 5 is set, and are accepted where the 2017 reading is impossible (a one-byte SA
  with bit 5: nothing would be left of the address) as that logical address. Encoding always
  writes the 2017 form;
* SA: BCD, low byte first (``AA`` nibbles are wildcards); CA: client address;
* HCS/FCS: CRC-16/X-25, low byte first;
* FRAG (only when C.D5 = 1): little-endian word, bits 0-11 sequence number, bits 12-13
  reserved, bits 14-15 type (0 start, 1 end, 2 ack, 3 middle).

Liberal in, strict out: a decoded frame keeps reserved bits as received (L bit 15, FRAG bits
12-13) and a broadcast address of any length, but ``encode`` refuses to write a reserved bit,
a broadcast SA other than ``AA`` or an extended logical address below 2 (peers refuse them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from construct import (
    Bytes,
    Checksum,
    Const,
    ConstructError,
    Int8ub,
    Int16ul,
    RawCopy,
    Struct,
    this,
)

from protocols.checksums import crc16_x25
from protocols.dlt698._wire import PROTOCOL
from protocols.errors import EncodeError, ProtocolError

START = 0x68
END = 0x16
PREAMBLE = 0xFE
MIN_LENGTH = 10  # L(2) C AF SA(1) CA HCS(2) FCS(2)
MAX_LENGTH = 0x3FFF
LENGTH_MASK = 0x3FFF
LENGTH_UNIT_KB = 0x4000
LENGTH_RESERVED = 0x8000

DIR_SERVER = 0x80
PRM = 0x40
FRAGMENTED = 0x20
SCRAMBLED = 0x08
FUNCTION_MASK = 0x07

CONTROL_CLIENT_REQUEST = 0x43  # DIR 0, PRM 1, user data
CONTROL_SERVER_RESPONSE = 0xC3  # DIR 1, PRM 1, user data
CONTROL_SERVER_LINK = 0x81  # DIR 1, PRM 0, link management (LINK-Request)
CONTROL_SERVER_REPORT = 0x83  # DIR 1, PRM 0, user data (REPORT-Notification)
CONTROL_CLIENT_LINK = 0x01  # DIR 0, PRM 0, link management (LINK-Response)
CONTROL_CLIENT_REPORT = 0x03  # DIR 0, PRM 0, user data (REPORT-Response)

FUNCTIONS = {1: "link_management", 3: "user_data"}


class AddressType(IntEnum):
    SINGLE = 0
    WILDCARD = 1
    GROUP = 2
    BROADCAST = 3


class FragmentType(IntEnum):
    START = 0
    END = 1
    ACK = 2
    MIDDLE = 3


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    seq: int
    kind: FragmentType
    reserved: int = 0  # bits 12-13 as received

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= 0xFFF:
            raise EncodeError(f"fragment sequence {self.seq}: expected 0..4095", protocol=PROTOCOL)
        if not 0 <= self.reserved <= 3:
            raise EncodeError(f"fragment reserved bits {self.reserved}: expected 0..3", protocol=PROTOCOL)
        object.__setattr__(self, "kind", FragmentType(self.kind))

    @property
    def word(self) -> int:
        return self.seq | (self.reserved << 12) | (int(self.kind) << 14)

    @classmethod
    def from_word(cls, word: int) -> FragmentHeader:
        return cls(word & 0xFFF, FragmentType(word >> 14), (word >> 12) & 3)


_SA_RE = re.compile(r"(?:[0-9A-F]{2}){1,16}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One DL/T 698.45 link frame. ``sa`` is written most significant digit first (nameplate order);
    ``apdu`` is the APDU (or, in a fragmented frame, this fragment's piece of it)."""

    control: int
    sa: str
    ca: int = 0
    apdu: bytes = b""
    sa_type: AddressType = AddressType.SINGLE
    logical_address: int = 0  # AF bit 4
    ext_logical: int | None = None  # AF bit 5 set: the extended logical address byte
    fragment: FragmentHeader | None = None
    length_reserved: bool = False  # L bit 15 as received

    def __post_init__(self) -> None:
        sa = self.sa.upper() if isinstance(self.sa, str) else self.sa
        if not isinstance(sa, str) or not _SA_RE.fullmatch(sa):
            raise EncodeError(f"server address {self.sa!r}: not 2..32 hex/BCD digits", protocol=PROTOCOL)
        object.__setattr__(self, "sa", sa)
        if not 0 <= self.control <= 0xFF:
            raise EncodeError(f"control {self.control!r}: not a byte", protocol=PROTOCOL)
        if not 0 <= self.ca <= 0xFF:
            raise EncodeError(f"client address {self.ca!r}: not a byte", protocol=PROTOCOL)
        if self.logical_address not in (0, 1):
            raise EncodeError(
                f"logical address bit {self.logical_address!r}: expected 0 or 1", protocol=PROTOCOL
            )
        if self.ext_logical is not None and not 0 <= self.ext_logical <= 0xFF:
            raise EncodeError(f"extended logical address {self.ext_logical!r}: not a byte", protocol=PROTOCOL)
        if len(sa) // 2 + (self.ext_logical is not None) > 16:
            raise EncodeError("server address field longer than 16 bytes", protocol=PROTOCOL)
        object.__setattr__(self, "sa_type", AddressType(self.sa_type))
        if bool(self.control & FRAGMENTED) != (self.fragment is not None):
            raise EncodeError("control fragment flag (D5) and fragment header disagree", protocol=PROTOCOL)
        object.__setattr__(self, "apdu", bytes(self.apdu))

    @property
    def function(self) -> int:
        return self.control & FUNCTION_MASK

    @property
    def from_server(self) -> bool:
        return bool(self.control & DIR_SERVER)

    @property
    def prm(self) -> int:
        return (self.control >> 6) & 1

    @property
    def scrambled(self) -> bool:
        return bool(self.control & SCRAMBLED)

    @property
    def direction(self) -> str:
        return "server->client" if self.from_server else "client->server"

    @property
    def af(self) -> int:
        ext = self.ext_logical is not None
        return (
            (int(self.sa_type) << 6)
            | (int(ext) << 5)
            | (self.logical_address << 4)
            | (len(self.sa) // 2 + int(ext) - 1)
        )

    @property
    def logical(self) -> int:
        """The logical address: the extended byte when present, else AF bit 4."""
        return self.ext_logical if self.ext_logical is not None else self.logical_address

    @property
    def sa_wire(self) -> bytes:
        raw = bytes.fromhex(self.sa)[::-1]
        return raw if self.ext_logical is None else bytes([self.ext_logical]) + raw


def _body(ctx: Any) -> int:
    return int(ctx.head.value.length & LENGTH_MASK) - len(ctx.head.data) - 4


_HEAD = Struct(
    "length" / Int16ul,
    "control" / Int8ub,
    "af" / Int8ub,
    "sa" / Bytes((this.af & 0x0F) + 1),
    "ca" / Int8ub,
)

FRAME = Struct(
    "start" / Const(bytes([START])),
    "head" / RawCopy(_HEAD),
    "hcs" / Checksum(Int16ul, crc16_x25, this.head.data),
    "body" / Bytes(_body),
    "fcs"
    / Checksum(Int16ul, crc16_x25, lambda ctx: ctx.head.data + ctx.hcs.to_bytes(2, "little") + ctx.body),
    "end" / Const(bytes([END])),
)


def _refuse_reserved(frame: Frame) -> None:
    """Never encode what a peer must refuse (see the module docstring)."""
    if frame.length_reserved:
        raise EncodeError("L bit 15 is reserved", protocol=PROTOCOL)
    if frame.fragment is not None and frame.fragment.reserved:
        raise EncodeError("fragment word bits 12-13 are reserved", protocol=PROTOCOL)
    if frame.sa_type is AddressType.BROADCAST and frame.sa != "AA":
        raise EncodeError(
            f"broadcast server address {frame.sa}: must be the single byte AA", protocol=PROTOCOL
        )
    if frame.ext_logical is not None and frame.ext_logical < 2:
        raise EncodeError(
            f"extended logical address {frame.ext_logical}: 0 and 1 are AF bit 4, the byte carries 2..255",
            protocol=PROTOCOL,
        )


def _checked_parts(frame: Frame, preamble: int) -> tuple[bytes, bytes, int]:
    """(SA on the wire, fragment word + APDU, L) of a frame both encoders may write, or why not."""
    if not 0 <= preamble <= 16:
        raise EncodeError(f"preamble {preamble}: expected 0..16 FE bytes", protocol=PROTOCOL)
    _refuse_reserved(frame)
    sa = frame.sa_wire
    body = (b"" if frame.fragment is None else frame.fragment.word.to_bytes(2, "little")) + frame.apdu
    length = 2 + 1 + 1 + len(sa) + 1 + 2 + len(body) + 2
    if length > MAX_LENGTH:
        raise EncodeError(f"frame of {length} bytes exceeds L's {MAX_LENGTH}", protocol=PROTOCOL)
    return sa, body, length


def encode(frame: Frame, *, preamble: int = 4) -> bytes:
    """Wire bytes of ``frame`` with ``preamble`` wake-up FE bytes in front.

    The bytes ``FRAME.build`` makes (``build`` below), assembled by hand once the frame passed
    the checks construct cannot make (reserved bits, L's range): it runs on every request and
    reply (``tests/protocols/test_frame_fast_paths`` holds both paths byte-identical). Never
    writes L bit 15 (``_refuse_reserved``)."""
    sa, body, length = _checked_parts(frame, preamble)
    head = b"%s%c%c%s%c" % (length.to_bytes(2, "little"), frame.control, frame.af, sa, frame.ca)
    head += crc16_x25(head).to_bytes(2, "little")
    head += body
    return b"\xfe" * preamble + b"\x68" + head + crc16_x25(head).to_bytes(2, "little") + b"\x16"


def build(frame: Frame, *, preamble: int = 4) -> bytes:
    """``encode`` through the construct definition ``FRAME`` (the declared wire format)."""
    sa, body, length = _checked_parts(frame, preamble)
    head = {
        "length": length | (LENGTH_RESERVED if frame.length_reserved else 0),
        "control": frame.control,
        "af": frame.af,
        "sa": sa,
        "ca": frame.ca,
    }
    try:
        raw: bytes = FRAME.build({"head": {"value": head}, "body": body})
    except ConstructError as err:
        raise EncodeError(f"cannot encode frame: {err}", protocol=PROTOCOL) from err
    return bytes([PREAMBLE]) * preamble + raw


def _header_end(buf: bytes | bytearray, start: int) -> int:
    """Index just past CA (where the HCS starts)."""
    return start + 6 + (buf[start + 4] & 0x0F) + 1


def check_header(
    buf: bytes | bytearray, start: int, *, max_length: int = MAX_LENGTH
) -> int | ProtocolError | None:
    """The end index (exclusive) the frame whose 68 is at ``buf[start]`` claims once its header
    (L range, HCS, fragment word room) checks out; ``None`` when more bytes are needed; else
    the error. A declared length above ``max_length`` is rejected as soon as L is in."""
    n = len(buf)
    if start + 3 > n:
        return None
    word = buf[start + 1] | (buf[start + 2] << 8)
    length = word & LENGTH_MASK
    if word & LENGTH_UNIT_KB:
        return ProtocolError(
            "L unit flag (bit 14, kilobytes) not supported", offset=start + 2, protocol=PROTOCOL
        )
    if length < MIN_LENGTH or length > max_length:
        return ProtocolError(
            f"length L={length} outside {MIN_LENGTH}..{max_length}", offset=start + 1, protocol=PROTOCOL
        )
    if start + 5 > n:
        return None
    hcs_at = _header_end(buf, start)
    if hcs_at + 4 > start + 1 + length:
        return ProtocolError(
            f"length L={length} too short for a {hcs_at - start - 1}-byte header",
            offset=start + 1,
            protocol=PROTOCOL,
        )
    if hcs_at + 2 > n:
        return None
    hcs = buf[hcs_at] | (buf[hcs_at + 1] << 8)
    calc = crc16_x25(memoryview(buf)[start + 1 : hcs_at])
    if hcs != calc:
        return ProtocolError(
            f"HCS mismatch: frame says 0x{hcs:04X}, computed 0x{calc:04X}", offset=hcs_at, protocol=PROTOCOL
        )
    end = start + length + 2
    if buf[start + 3] & FRAGMENTED and end - 3 - (hcs_at + 2) < 2:
        return ProtocolError("fragment flag set but no fragment header", offset=hcs_at + 2, protocol=PROTOCOL)
    return end


def check_body(buf: bytes | bytearray, start: int, end: int) -> ProtocolError | None:
    """FCS and the end 16 of the whole frame ``buf[start:end]`` (header already checked)."""
    fcs_at = end - 3
    fcs = buf[fcs_at] | (buf[fcs_at + 1] << 8)
    calc = crc16_x25(memoryview(buf)[start + 1 : fcs_at])
    if fcs != calc:
        return ProtocolError(
            f"FCS mismatch: frame says 0x{fcs:04X}, computed 0x{calc:04X}", offset=fcs_at, protocol=PROTOCOL
        )
    if buf[end - 1] != END:
        return ProtocolError(
            f"end 0x16 expected, got 0x{buf[end - 1]:02X}", offset=end - 1, protocol=PROTOCOL
        )
    return None


def check(buf: bytes | bytearray, start: int, *, max_length: int = MAX_LENGTH) -> int | ProtocolError | None:
    """Validate the frame whose 68 is at ``buf[start]``.

    Returns the end index (exclusive) of a valid frame, ``None`` when more bytes are needed,
    or a ``ProtocolError`` whose offset is the index of the offending byte. The header is
    checked (L range, HCS) as soon as it is in, so noise is rejected without waiting for L bytes.
    The same checks as the streaming ``Framer``, so both reject the same things.
    """
    end = check_header(buf, start, max_length=max_length)
    if end is None or isinstance(end, ProtocolError):
        return end
    if end > len(buf):
        return None
    return check_body(buf, start, end) or end


def _frame(word: int, control: int, af: int, sa: bytes, ca: int, body: bytes) -> Frame:
    ext = None
    logical = (af >> 4) & 1
    if af & 0x20:
        if len(sa) > 1:  # DL/T 698.45-2017: the first SA byte is the extended logical address
            ext, sa = sa[0], sa[1:]
        else:  # nothing would be left of the address: an older peer's 2-bit logical address
            ext, logical = (af >> 4) & 3, 0
    fragment = None
    if control & FRAGMENTED:
        fragment = FragmentHeader.from_word(body[0] | (body[1] << 8))
        body = body[2:]
    return Frame(
        control,
        sa[::-1].hex().upper(),
        ca,
        body,
        AddressType(af >> 6),
        logical,
        ext,
        fragment,
        bool(word & LENGTH_RESERVED),
    )


def frame_at(buf: bytes | bytearray, start: int) -> Frame:
    """Hand-written fast path: the Frame of an already ``check``-ed frame at ``start``."""
    word = buf[start + 1] | (buf[start + 2] << 8)
    hcs_at = _header_end(buf, start)
    end = start + (word & LENGTH_MASK) + 2
    af = buf[start + 4]
    return _frame(
        word,
        buf[start + 3],
        af,
        bytes(buf[start + 5 : hcs_at - 1]),
        buf[hcs_at - 1],
        bytes(buf[hcs_at + 2 : end - 3]),
    )


def count_preamble(raw: bytes) -> int:
    n = 0
    while n < len(raw) and raw[n] == PREAMBLE:
        n += 1
    return n


def decode(raw: bytes, *, max_length: int = MAX_LENGTH) -> Frame:
    """Decode exactly one whole frame (any number of leading FE); anything else is a ProtocolError."""
    start = count_preamble(raw)
    if start >= len(raw):
        raise ProtocolError("no frame: input is empty or only FE preamble", offset=start, protocol=PROTOCOL)
    if raw[start] != START:
        raise ProtocolError(f"start 0x68 expected, got 0x{raw[start]:02X}", offset=start, protocol=PROTOCOL)
    result = check(raw, start, max_length=max_length)
    if result is None:
        raise ProtocolError(f"truncated frame: {len(raw) - start} bytes", offset=len(raw), protocol=PROTOCOL)
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
    head = parsed.head.value
    return _frame(head.length, head.control, head.af, head.sa, head.ca, parsed.body)


__all__ = [
    "CONTROL_CLIENT_LINK",
    "CONTROL_CLIENT_REPORT",
    "CONTROL_CLIENT_REQUEST",
    "CONTROL_SERVER_LINK",
    "CONTROL_SERVER_REPORT",
    "CONTROL_SERVER_RESPONSE",
    "FRAME",
    "FUNCTIONS",
    "MAX_LENGTH",
    "AddressType",
    "FragmentHeader",
    "FragmentType",
    "Frame",
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
