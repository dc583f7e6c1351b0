"""Q/GDW 1376.2 (Q/GDW 10376.2-2019) link frame: ``Frame``, information field R, encode/decode.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

Wire layout (PROTOCOLS.md §3.2)::

    68 | L(2, LE) | C | R1..R6 | [A1(6) A2(6 x relay level) A3(6)] | AFN | DT1 DT2 | data unit | CS | 16
                    |<------------------------ summed into CS ------------------------>|

* L: length of the WHOLE frame, 68 to 16 inclusive (unlike DL/T 698.45, where L excludes 68/16);
* C: D7 DIR (0 down terminal->module, 1 up), D6 PRM (1 = initiating station), D5..D0 comm mode;
* R: information field, meaning differs by direction (``DownInfo`` / ``UpInfo``);
* A1 source, A2 relays, A3 destination: present only when R1 D2 (communication-module flag) is 1,
  6-byte BCD low byte first; the relay count is the relay level R1 D7..D4;
* DT1 is a one-bit mask and DT2 a group: Fn = DT2 * 8 + bit(DT1) + 1 (F5 = ``10 00``, not ``05 00``);
* CS: sum mod 256 from C through the last data-unit byte.

``Frame.unit`` holds the raw data unit; ``protocols.gdw1376_2.parse_unit`` turns it into a dataclass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from construct import (
    Bytes,
    Checksum,
    Const,
    ConstructError,
    FixedSized,
    GreedyBytes,
    Int8ub,
    Int16ul,
    RawCopy,
    Rebuild,
    Struct,
    this,
)

from protocols.checksums import sum8
from protocols.errors import EncodeError, ProtocolError

PROTOCOL = "gdw1376.2"
START = 0x68
END = 0x16
PREAMBLE = 0xFE
HEADER_LEN = 10  # 68 L L C R1..R6
MIN_FRAME = HEADER_LEN + 5  # + AFN DT1 DT2 CS 16
MAX_FRAME = 0xFFFF
BROADCAST_ADDRESS = "999999999999"

DIR_UP = 0x80
PRM = 0x40
MODE_MASK = 0x3F

COMM_MODES: dict[int, str] = {
    1: "narrowband PLC, centralized routing",
    2: "narrowband PLC, distributed routing",
    3: "HPLC",
    10: "micro-power wireless",
    20: "Ethernet",
}

_ADDRESS_RE = re.compile(r"[0-9A-F]{12}")


def address_to_wire(address: str) -> bytes:
    """12 nameplate digits (most significant first) -> 6 wire bytes (low byte first)."""
    return bytes.fromhex(address)[::-1]


def address_from_wire(raw: bytes | bytearray | memoryview) -> str:
    return bytes(raw)[::-1].hex().upper()


def check_address(address: object, what: str) -> str:
    """Normalised 12-hex-digit address or an ``EncodeError`` naming the field."""
    if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address.upper()):
        raise EncodeError(f"{what} {address!r}: not 12 hex/BCD digits", protocol=PROTOCOL)
    return address.upper()


def fn_to_dt(fn: int) -> bytes:
    """Fn -> DT1 DT2 (``fn_to_dt(10) == b"\\x02\\x01"``)."""
    if not 1 <= fn <= 248:
        raise EncodeError(f"Fn {fn!r}: expected 1..248", protocol=PROTOCOL)
    return bytes([1 << ((fn - 1) % 8), (fn - 1) // 8])


def dt_to_fn(dt1: int, dt2: int) -> int | None:
    """DT1 DT2 -> Fn, or ``None`` when DT1 is not a single bit (1376.2 names one Fn per frame)."""
    if dt1 == 0 or dt1 & (dt1 - 1):
        return None
    return dt2 * 8 + dt1.bit_length()


def _bits(value: int, name: str, width: int) -> int:
    if not isinstance(value, int) or not 0 <= value < (1 << width):
        raise EncodeError(f"{name} {value!r}: expected 0..{(1 << width) - 1}", protocol=PROTOCOL)
    return value


@dataclass(frozen=True, slots=True)
class DownInfo:
    """R of a down frame (terminal -> module), Q/GDW 10376.2-2019 Table 4."""

    route_flag: int = 0  # R1 D0: 0 module routes, 1 bypass routing
    attached_node: int = 0  # R1 D1
    module_flag: int = 0  # R1 D2: 1 = addressed to a slave node, address field present
    conflict_detect: int = 0  # R1 D3
    relay_level: int = 0  # R1 D7..D4
    channel: int = 0  # R2 D3..D0
    ecc: int = 0  # R2 D7..D4 error-correcting code
    reply_bytes: int = 0  # R3 expected reply length
    rate: int = 0  # R4-R5 D14..D0 (0 = default rate)
    rate_kbps: bool = False  # R4-R5 D15: unit 0 bit/s, 1 kbit/s
    seq: int = 0  # R6 frame sequence number, echoed by the reply

    def __post_init__(self) -> None:
        for name, width in (("route_flag", 1), ("attached_node", 1), ("module_flag", 1)):
            _bits(getattr(self, name), name, width)
        _bits(self.conflict_detect, "conflict_detect", 1)
        for name in ("relay_level", "channel", "ecc"):
            _bits(getattr(self, name), name, 4)
        _bits(self.reply_bytes, "reply_bytes", 8)
        _bits(self.rate, "rate", 15)
        _bits(self.seq, "seq", 8)

    def to_bytes(self) -> bytes:
        r1 = self.route_flag | self.attached_node << 1 | self.module_flag << 2 | self.conflict_detect << 3
        rate = self.rate | (0x8000 if self.rate_kbps else 0)
        return (
            bytes([r1 | self.relay_level << 4, self.channel | self.ecc << 4, self.reply_bytes])
            + rate.to_bytes(2, "little")
            + bytes([self.seq])
        )

    @classmethod
    def from_bytes(cls, r: bytes | bytearray) -> DownInfo:
        rate = r[3] | r[4] << 8
        return cls(
            r[0] & 1, r[0] >> 1 & 1, r[0] >> 2 & 1, r[0] >> 3 & 1, r[0] >> 4,
            r[1] & 0x0F, r[1] >> 4, r[2], rate & 0x7FFF, bool(rate & 0x8000), r[5],
        )  # fmt: skip


# Bits of an up R (as a 48-bit little-endian int) that Table 5 leaves reserved: R1 D1, D3,
# R2 D7..D4 and R5 D7..D1. Kept verbatim so every up frame re-encodes byte-exact.
UP_RESERVED_MASK = 0x0A | 0xF0 << 8 | 0xFE << 32


@dataclass(frozen=True, slots=True)
class UpInfo:
    """R of an up frame (module -> terminal), Q/GDW 10376.2-2019 Table 5."""

    route_flag: int = 0  # R1 D0
    module_flag: int = 0  # R1 D2: address field present
    relay_level: int = 0  # R1 D7..D4
    channel: int = 0  # R2 D3..D0
    phase: int = 0  # R3 D3..D0 measured phase: 0 unknown, 1..3
    channel_feature: int = 0  # R3 D7..D4 meter channel feature
    command_quality: int = 0  # R4 D3..D0 signal quality of the command as received
    reply_quality: int = 0  # R4 D7..D4 signal quality of the reply
    event_flag: int = 0  # R5 D0: a slave-node event is pending
    seq: int = 0  # R6, echoes the request's R6
    reserved: int = 0  # reserved bits of R (see UP_RESERVED_MASK), normally 0

    def __post_init__(self) -> None:
        for name in ("route_flag", "module_flag", "event_flag"):
            _bits(getattr(self, name), name, 1)
        for name in ("relay_level", "channel", "phase", "channel_feature", "command_quality"):
            _bits(getattr(self, name), name, 4)
        _bits(self.reply_quality, "reply_quality", 4)
        _bits(self.seq, "seq", 8)
        if not isinstance(self.reserved, int) or self.reserved & ~UP_RESERVED_MASK or self.reserved < 0:
            raise EncodeError(
                f"reserved bits 0x{self.reserved:012X} outside the reserved mask", protocol=PROTOCOL
            )

    def to_bytes(self) -> bytes:
        value = (
            self.route_flag
            | self.module_flag << 2
            | self.relay_level << 4
            | self.channel << 8
            | self.phase << 16
            | self.channel_feature << 20
            | self.command_quality << 24
            | self.reply_quality << 28
            | self.event_flag << 32
            | self.seq << 40
            | self.reserved
        )
        return value.to_bytes(6, "little")

    @classmethod
    def from_bytes(cls, r: bytes | bytearray) -> UpInfo:
        value = int.from_bytes(r, "little")
        return cls(
            r[0] & 1, r[0] >> 2 & 1, r[0] >> 4, r[1] & 0x0F, r[2] & 0x0F, r[2] >> 4,
            r[3] & 0x0F, r[3] >> 4, r[4] & 1, r[5], value & UP_RESERVED_MASK,
        )  # fmt: skip


Info = DownInfo | UpInfo


@dataclass(frozen=True, slots=True)
class Frame:
    """One Q/GDW 1376.2 frame. ``unit`` is the raw data unit after AFN and DT.

    ``src``/``relays``/``dst`` (A1/A2/A3) are present exactly when ``info.module_flag`` is 1,
    and ``len(relays) == info.relay_level``.
    """

    control: int
    info: Info
    afn: int
    fn: int
    unit: bytes = b""
    src: str | None = None
    relays: tuple[str, ...] = ()
    dst: str | None = None

    def __post_init__(self) -> None:
        _bits(self.control, "control", 8)
        if isinstance(self.info, UpInfo) != bool(self.control & DIR_UP):
            raise EncodeError(
                f"control 0x{self.control:02X} says {'up' if self.control & DIR_UP else 'down'} "
                f"but info is {type(self.info).__name__}",
                protocol=PROTOCOL,
            )
        _bits(self.afn, "AFN", 8)
        fn_to_dt(self.fn)
        object.__setattr__(self, "unit", bytes(self.unit))
        if self.info.module_flag:
            if self.src is None or self.dst is None:
                raise EncodeError(
                    "module flag set: source and destination address required", protocol=PROTOCOL
                )
            object.__setattr__(self, "src", check_address(self.src, "source address A1"))
            object.__setattr__(self, "dst", check_address(self.dst, "destination address A3"))
            relays = tuple(check_address(a, "relay address A2") for a in self.relays)
            if len(relays) != self.info.relay_level:
                raise EncodeError(
                    f"{len(relays)} relay addresses for relay level {self.info.relay_level}",
                    protocol=PROTOCOL,
                )
            object.__setattr__(self, "relays", relays)
        elif self.src is not None or self.dst is not None or self.relays:
            raise EncodeError("addresses given but the communication-module flag is 0", protocol=PROTOCOL)
        if self.length > MAX_FRAME:
            raise EncodeError(f"frame of {self.length} bytes exceeds {MAX_FRAME}", protocol=PROTOCOL)

    @property
    def length(self) -> int:
        """L: the whole frame's length on the wire."""
        addresses = 12 + 6 * len(self.relays) if self.info.module_flag else 0
        return MIN_FRAME + addresses + len(self.unit)

    @property
    def is_up(self) -> bool:
        return bool(self.control & DIR_UP)

    @property
    def prm(self) -> int:
        return self.control >> 6 & 1

    @property
    def comm_mode(self) -> int:
        return self.control & MODE_MASK

    @property
    def comm_mode_name(self) -> str:
        return COMM_MODES.get(self.comm_mode, f"reserved_{self.comm_mode}")

    @property
    def seq(self) -> int:
        return self.info.seq


# --- construct definition (encode path; reads like §3.2) -------------------------------------


def _address_len(ctx: Any) -> int:
    r1 = ctx.info[0]
    return 12 + 6 * (r1 >> 4) if r1 & 0x04 else 0


BODY = Struct(
    "control" / Int8ub,
    "info" / Bytes(6),
    "addresses" / Bytes(_address_len),
    "afn" / Int8ub,
    "dt" / Bytes(2),
    "unit" / GreedyBytes,
)

FRAME = Struct(
    "start" / Const(bytes([START])),
    "length" / Rebuild(Int16ul, lambda ctx: len(ctx.body["data"]) + 5),
    "body" / RawCopy(FixedSized(this.length - 5, BODY)),
    "cs" / Checksum(Int8ub, sum8, this.body.data),
    "end" / Const(bytes([END])),
)


def _addresses(frame: Frame) -> bytes:
    if not frame.info.module_flag:
        return b""
    assert frame.src is not None and frame.dst is not None  # guaranteed by Frame
    return b"".join(address_to_wire(a) for a in (frame.src, *frame.relays, frame.dst))


def encode(frame: Frame) -> bytes:
    """Wire bytes of ``frame`` (no preamble: 1376.2 UART frames carry none).

    The bytes ``FRAME.build`` makes (``build`` below), assembled by hand: a ``Frame`` is already
    valid (its length within ``MAX_FRAME``), and this runs on every exchange with the module
    (``tests/protocols/test_frame_fast_paths`` holds both paths byte-identical)."""
    body = b"%c%s%s%c%s%s" % (
        frame.control,
        frame.info.to_bytes(),
        _addresses(frame),
        frame.afn,
        fn_to_dt(frame.fn),
        frame.unit,
    )
    return b"\x68" + (len(body) + 5).to_bytes(2, "little") + body + bytes((sum(body) & 0xFF, END))


def build(frame: Frame) -> bytes:
    """``encode`` through the construct definition ``FRAME`` (the declared wire format)."""
    addresses = _addresses(frame)
    body = {
        "control": frame.control,
        "info": frame.info.to_bytes(),
        "addresses": addresses,
        "afn": frame.afn,
        "dt": fn_to_dt(frame.fn),
        "unit": frame.unit,
    }
    try:
        data = BODY.build(body)
        raw: bytes = FRAME.build({"body": {"data": data}})
    except ConstructError as err:
        raise EncodeError(f"cannot encode frame: {err}", protocol=PROTOCOL) from err
    return raw


# --- hand-written decode path (shared by decode() and the Framer) ------------------------------


def check_header(
    buf: bytes | bytearray, start: int, *, max_length: int = MAX_FRAME
) -> int | ProtocolError | None:
    """The end index (exclusive) the frame whose 68 is at ``buf[start]`` claims once its L (and
    the address field the module flag announces) checks out; ``None`` when more bytes are
    needed; else the error. L above ``max_length`` is rejected as soon as it is in."""
    n = len(buf)
    if start + 3 > n:
        return None
    length = buf[start + 1] | buf[start + 2] << 8
    if length < MIN_FRAME:
        return ProtocolError(
            f"length L={length} below the minimum {MIN_FRAME}", offset=start + 1, protocol=PROTOCOL
        )
    if length > max_length:
        return ProtocolError(f"length L={length} exceeds {max_length}", offset=start + 1, protocol=PROTOCOL)
    if start + 5 > n:
        return None
    if buf[start + 4] & 0x04:
        need = MIN_FRAME + 12 + 6 * (buf[start + 4] >> 4)
        if length < need:
            return ProtocolError(
                f"length L={length} too short for the address field the module flag announces (>= {need})",
                offset=start + 1,
                protocol=PROTOCOL,
            )
    return start + length


def check_body(buf: bytes | bytearray, start: int, end: int) -> ProtocolError | None:
    """CS and the end 16 of the whole frame ``buf[start:end]`` (header already checked)."""
    cs_at = end - 2
    calc = sum8(memoryview(buf)[start + 3 : cs_at])
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


def check(buf: bytes | bytearray, start: int, *, max_length: int = MAX_FRAME) -> int | ProtocolError | None:
    """Validate the frame whose 68 is at ``buf[start]``.

    Returns the end index (exclusive) of a frame with a good L, CS and 16, ``None`` when more
    bytes are needed, or a ``ProtocolError`` whose offset is the index of the offending byte.
    """
    end = check_header(buf, start, max_length=max_length)
    if end is None or isinstance(end, ProtocolError):
        return end
    if end > len(buf):
        return None
    return check_body(buf, start, end) or end


def frame_at(buf: bytes | bytearray, start: int) -> Frame:
    """The Frame of an already ``check``-ed frame at ``start``; ProtocolError for a bad DT."""
    length = buf[start + 1] | buf[start + 2] << 8
    control = buf[start + 3]
    r = buf[start + 4 : start + 10]
    info: Info = UpInfo.from_bytes(r) if control & DIR_UP else DownInfo.from_bytes(r)
    pos = start + HEADER_LEN
    src = dst = None
    relays: tuple[str, ...] = ()
    if info.module_flag:
        src = address_from_wire(buf[pos : pos + 6])
        relays = tuple(
            address_from_wire(buf[pos + 6 * (i + 1) : pos + 6 * (i + 2)]) for i in range(info.relay_level)
        )
        pos += 6 * (info.relay_level + 1)
        dst = address_from_wire(buf[pos : pos + 6])
        pos += 6
    afn = buf[pos]
    fn = dt_to_fn(buf[pos + 1], buf[pos + 2])
    if fn is None or fn > 248:
        raise ProtocolError(
            f"DT1=0x{buf[pos + 1]:02X} DT2=0x{buf[pos + 2]:02X}: DT1 must be a single bit, Fn <= 248",
            offset=pos + 1,
            protocol=PROTOCOL,
        )
    unit = bytes(buf[pos + 3 : start + length - 2])
    try:
        return Frame(control, info, afn, fn, unit, src, relays, dst)
    except EncodeError as err:  # only reachable through an address with non-hex digits (impossible)
        raise ProtocolError(err.reason, offset=start, protocol=PROTOCOL) from err


def count_preamble(raw: bytes | bytearray) -> int:
    n = 0
    while n < len(raw) and raw[n] == PREAMBLE:
        n += 1
    return n


def decode(raw: bytes | bytearray) -> Frame:
    """Decode exactly one whole frame (leading FE tolerated); anything else is a ProtocolError."""
    start = count_preamble(raw)
    if start >= len(raw):
        raise ProtocolError("no frame: input is empty or only FE preamble", offset=start, protocol=PROTOCOL)
    if raw[start] != START:
        raise ProtocolError(f"start 0x68 expected, got 0x{raw[start]:02X}", offset=start, protocol=PROTOCOL)
    result = check(raw, start)
    if result is None:
        need = raw[start + 1] | raw[start + 2] << 8 if start + 3 <= len(raw) else MIN_FRAME
        raise ProtocolError(
            f"truncated frame: {len(raw) - start} of {max(need, MIN_FRAME)} bytes",
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


__all__ = [
    "BROADCAST_ADDRESS",
    "COMM_MODES",
    "FRAME",
    "MAX_FRAME",
    "MIN_FRAME",
    "PROTOCOL",
    "DownInfo",
    "Frame",
    "Info",
    "UpInfo",
    "address_from_wire",
    "address_to_wire",
    "build",
    "check",
    "check_address",
    "count_preamble",
    "decode",
    "dt_to_fn",
    "encode",
    "fn_to_dt",
    "frame_at",
]
