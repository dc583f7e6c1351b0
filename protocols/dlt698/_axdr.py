"""DL/T 698.45 A-XDR ``Data``: every type of PROTOCOLS.md §2.2 as a frozen dataclass, plus DAR codes.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

A ``Data`` is ``tag(1) value``; integers are big-endian; variable lengths (array
count, string length, bit-string bit count) are A-XDR lengths. ``Data(type, value)``
keeps the tag so every value re-encodes byte-exact; the Python value per type::

    null None | array, structure tuple[Data, ...] | bool bool | bit-string BitString
    integer types, enum, OI  int | octet-string, MAC, RN  bytes | visible/UTF8  str
    float32/64 float | date_time DateTime | date Date | time Time | date_time_s DateTimeS
    OAD OAD | ROAD ROAD | OMD OMD | TI TI | TSA TSA | Region Region | Scaler_Unit ScalerUnit
    RSD RSD | CSD OAD|ROAD | MS MS | SID SID | SID_MAC SidMac | COMDCB ComDcb | RCSD tuple[OAD|ROAD, ...]

date_time_s is binary (year uint16 big-endian), never BCD (PROTOCOLS.md §6).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Union

from protocols.dlt698._wire import (
    MAX_DEPTH,
    PROTOCOL,
    Reader,
    check_range,
    put_length,
    put_octets,
    put_sint,
    put_uint,
)
from protocols.errors import EncodeError


class DataType(IntEnum):
    NULL = 0x00
    ARRAY = 0x01
    STRUCTURE = 0x02
    BOOL = 0x03
    BIT_STRING = 0x04
    DOUBLE_LONG = 0x05
    DOUBLE_LONG_UNSIGNED = 0x06
    OCTET_STRING = 0x09
    VISIBLE_STRING = 0x0A
    UTF8_STRING = 0x0C
    INTEGER = 0x0F
    LONG = 0x10
    UNSIGNED = 0x11
    LONG_UNSIGNED = 0x12
    LONG64 = 0x14
    LONG64_UNSIGNED = 0x15
    ENUM = 0x16
    FLOAT32 = 0x17
    FLOAT64 = 0x18
    DATE_TIME = 0x19
    DATE = 0x1A
    TIME = 0x1B
    DATE_TIME_S = 0x1C
    OI = 0x50
    OAD = 0x51
    ROAD = 0x52
    OMD = 0x53
    TI = 0x54
    TSA = 0x55
    MAC = 0x56
    RN = 0x57
    REGION = 0x58
    SCALER_UNIT = 0x59
    RSD = 0x5A
    CSD = 0x5B
    MS = 0x5C
    SID = 0x5D
    SID_MAC = 0x5E
    COMDCB = 0x5F
    RCSD = 0x60

    @property
    def label(self) -> str:
        """The standard's spelling: ``double-long-unsigned``, ``date_time_s``, ``OAD``."""
        return _LABELS[self]


_SPECIAL_LABELS = {
    DataType.UTF8_STRING: "UTF8-string",
    DataType.DATE_TIME: "date_time",
    DataType.DATE_TIME_S: "date_time_s",
    DataType.SCALER_UNIT: "Scaler_Unit",
    DataType.SID_MAC: "SID_MAC",
    **{t: t.name for t in (DataType.OI, DataType.OAD, DataType.ROAD, DataType.OMD, DataType.TI)},
    **{t: t.name for t in (DataType.TSA, DataType.MAC, DataType.RN, DataType.RSD, DataType.CSD)},
    **{t: t.name for t in (DataType.MS, DataType.SID, DataType.COMDCB, DataType.RCSD)},
    DataType.REGION: "Region",
}
# worked out once: a label is asked for every value decoded (an enum's ``name`` is a descriptor)
_LABELS = {t: _SPECIAL_LABELS.get(t, t.name.lower().replace("_", "-")) for t in DataType}

DAR: MappingProxyType[int, str] = MappingProxyType(
    {
        0: "success",
        1: "hardware fault",
        2: "temporarily failed",
        3: "read/write denied",
        4: "object undefined",
        5: "interface class mismatch",
        6: "object does not exist",
        7: "type mismatch",
        8: "out of range",
        9: "data block unavailable",
        10: "fragmented transfer cancelled",
        11: "not in fragmented transfer",
        12: "block-write cancelled",
        13: "not in block-write",
        14: "invalid block number",
        15: "password error / unauthorized",
        16: "comm rate cannot change",
        17: "year zones exceeded",
        18: "day periods exceeded",
        19: "tariffs exceeded",
        20: "security authentication mismatch",
        21: "duplicate recharge",
        22: "ESAM verification failed",
        23: "security authentication failed",
        24: "customer number mismatch",
        25: "recharge count error",
        26: "purchase exceeds hoarding limit",
        27: "address abnormal",
        28: "symmetric decryption error",
        29: "asymmetric decryption error",
        30: "signature error",
        31: "meter suspended",
        32: "time-tag invalid",
        33: "request timeout",
        34: "ESAM P1P2 incorrect",
        35: "ESAM LC incorrect",
        100: "proxy read succeeded",
        255: "other",
    }
)


def dar_name(code: int) -> str:
    return DAR.get(code, f"unknown DAR {code}")


# --- composite values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OAD:
    """Object attribute descriptor: OI(2) + attribute byte (bits 0-4 id, 5-7 feature) + element index."""

    oi: int
    attr: int
    index: int = 0

    @classmethod
    def of(cls, value: int | str) -> OAD:
        """``OAD.of(0x00100200)`` or ``OAD.of("0x00100200")``."""
        n = int(value, 16) if isinstance(value, str) else value
        check_range(n, 0, 0xFFFFFFFF, "OAD")
        return cls(n >> 16, (n >> 8) & 0xFF, n & 0xFF)

    @property
    def value(self) -> int:
        return (self.oi << 16) | (self.attr << 8) | self.index

    @property
    def attr_id(self) -> int:
        return self.attr & 0x1F

    @property
    def feature(self) -> int:
        return self.attr >> 5

    def __str__(self) -> str:
        return f"0x{self.value:08X}"


@dataclass(frozen=True, slots=True)
class OMD:
    """Object method descriptor: OI(2) + method id + operation mode."""

    oi: int
    method: int
    mode: int = 0

    @classmethod
    def of(cls, value: int | str) -> OMD:
        n = int(value, 16) if isinstance(value, str) else value
        check_range(n, 0, 0xFFFFFFFF, "OMD")
        return cls(n >> 16, (n >> 8) & 0xFF, n & 0xFF)

    @property
    def value(self) -> int:
        return (self.oi << 16) | (self.method << 8) | self.mode

    def __str__(self) -> str:
        return f"0x{self.value:08X}"


@dataclass(frozen=True, slots=True)
class ROAD:
    """Record OAD: an OAD (e.g. a freeze object) and the related column OADs."""

    oad: OAD
    related: tuple[OAD, ...] = ()


CSD = Union[OAD, ROAD]  # noqa: UP007 - a runtime alias used in isinstance-free annotations


@dataclass(frozen=True, slots=True)
class BitString:
    """``bits`` significant bits, stored MSB-first in ``data`` (ceil(bits / 8) bytes)."""

    bits: int
    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) != (self.bits + 7) // 8:
            raise EncodeError(
                f"bit-string of {self.bits} bits needs {(self.bits + 7) // 8} bytes", protocol=PROTOCOL
            )

    def bit(self, i: int) -> bool:
        """Bit ``i`` counted from the first transmitted bit (MSB of data[0])."""
        return bool(self.data[i // 8] & (0x80 >> (i % 8)))


@dataclass(frozen=True, slots=True)
class DateTime:
    """date_time (10 bytes); 0xFF / 0xFFFF fields mean "not specified"."""

    year: int
    month: int
    day: int
    weekday: int
    hour: int
    minute: int
    second: int
    milliseconds: int = 0

    def __str__(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}(w{self.weekday}) "
            f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}.{self.milliseconds:03d}"
        )


@dataclass(frozen=True, slots=True)
class Date:
    year: int
    month: int
    day: int
    weekday: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}(w{self.weekday})"


@dataclass(frozen=True, slots=True)
class Time:
    hour: int
    minute: int
    second: int

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"


@dataclass(frozen=True, slots=True)
class DateTimeS:
    """date_time_s (7 bytes): binary year uint16 BE, month, day, hour, minute, second."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int

    def __str__(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d} "
            f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        )


@dataclass(frozen=True, slots=True)
class TI:
    """Time interval: unit (0 s, 1 min, 2 h, 3 day, 4 month, 5 year) + long-unsigned count."""

    unit: int
    interval: int


@dataclass(frozen=True, slots=True)
class TSA:
    """Target server address: ``content`` = AF-like flag byte (bits 0-3 len-1) + address bytes."""

    content: bytes

    @classmethod
    def of(cls, address: str, *, kind: int = 0, logical: int = 0) -> TSA:
        raw = bytes.fromhex(address)[::-1]
        return cls(bytes([(kind << 6) | (logical << 4) | (len(raw) - 1)]) + raw)

    @property
    def address(self) -> str:
        return self.content[1:][::-1].hex().upper()


@dataclass(frozen=True, slots=True)
class Region:
    """unit 0 [start,end) 1 (start,end] 2 [start,end] 3 (start,end)."""

    unit: int
    start: Data
    end: Data


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    scaler: int
    unit: int


@dataclass(frozen=True, slots=True)
class MS:
    """Meter set: 0 none, 1 all, 2 user types, 3 addresses (TSA), 4 config indices, 5-7 Regions."""

    choice: int
    items: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class RSD:
    """Row selection descriptor; ``params`` per selector (see ``_RSD_FIELDS``); selector 3 holds
    a tuple of selector-2 parameter tuples."""

    selector: int
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class SID:
    ident: int
    attach: bytes


@dataclass(frozen=True, slots=True)
class SidMac:
    sid: SID
    mac: bytes


@dataclass(frozen=True, slots=True)
class ComDcb:
    """Serial settings: baud enum, parity enum, data bits enum, stop bits enum, flow-control enum."""

    baud: int
    parity: int
    data_bits: int
    stop_bits: int
    flow: int


@dataclass(frozen=True, slots=True)
class Data:
    """One typed A-XDR value (see the module docstring for the Python type per ``type``)."""

    type: DataType
    value: Any = None
    # Bytes of a long-form length as received (0 = shortest form); kept so re-encoding is
    # byte-exact (vector 698-021 sends a 7-char string as ``82 00 07``). Not part of equality.
    length_form: int = field(default=0, compare=False, repr=False)

    def encode(self) -> bytes:
        out = bytearray()
        write_data(out, self)
        return bytes(out)

    @classmethod
    def decode(cls, raw: bytes, *, base: int = 0) -> Data:
        r = Reader(raw, base=base)
        data = read_data(r)
        if r.left:
            raise r.error(f"{r.left} trailing bytes after Data")
        return data


# --- readers ----------------------------------------------------------------------------------


def read_oad(r: Reader) -> OAD:
    b = r.take(4, "OAD")
    return OAD((b[0] << 8) | b[1], b[2], b[3])


def read_omd(r: Reader) -> OMD:
    b = r.take(4, "OMD")
    return OMD((b[0] << 8) | b[1], b[2], b[3])


def read_road(r: Reader) -> ROAD:
    oad = read_oad(r)
    n = r.count("ROAD related OADs", min_size=4)
    return ROAD(oad, tuple(read_oad(r) for _ in range(n)))


def read_csd(r: Reader) -> CSD:
    at = r.pos
    choice = r.u8("CSD choice")
    if choice == 0:
        return read_oad(r)
    if choice == 1:
        return read_road(r)
    raise r.error(f"CSD choice {choice}: expected 0 (OAD) or 1 (ROAD)", at=at)


def read_rcsd(r: Reader) -> tuple[CSD, ...]:
    n = r.count("RCSD", min_size=5)
    return tuple(read_csd(r) for _ in range(n))


def read_tsa(r: Reader) -> TSA:
    at = r.pos
    content = r.take(r.length("TSA length"), "TSA")
    if not content or (content[0] & 0x0F) + 2 != len(content):
        raise r.error("TSA: flag byte's address length disagrees with the octet-string length", at=at)
    return TSA(content)


def read_date_time_s(r: Reader) -> DateTimeS:
    b = r.take(7, "date_time_s")
    return DateTimeS((b[0] << 8) | b[1], b[2], b[3], b[4], b[5], b[6])


def read_date_time(r: Reader) -> DateTime:
    b = r.take(10, "date_time")
    return DateTime((b[0] << 8) | b[1], b[2], b[3], b[4], b[5], b[6], b[7], (b[8] << 8) | b[9])


def read_ti(r: Reader) -> TI:
    b = r.take(3, "TI")
    return TI(b[0], (b[1] << 8) | b[2])


def read_region(r: Reader, depth: int) -> Region:
    unit = r.u8("Region unit")
    return Region(unit, read_data(r, depth + 1), read_data(r, depth + 1))


def read_ms(r: Reader, depth: int = 0) -> MS:
    at = r.pos
    choice = r.u8("MS choice")
    if choice in (0, 1):
        return MS(choice)
    if choice == 2:
        n = r.count("MS user types")
        return MS(choice, tuple(r.u8("user type") for _ in range(n)))
    if choice == 3:
        n = r.count("MS addresses", min_size=2)
        return MS(choice, tuple(read_tsa(r) for _ in range(n)))
    if choice == 4:
        n = r.count("MS indices", min_size=2)
        return MS(choice, tuple(r.uint(2, "config index") for _ in range(n)))
    if choice in (5, 6, 7):
        n = r.count("MS regions", min_size=3)
        return MS(choice, tuple(read_region(r, depth) for _ in range(n)))
    raise r.error(f"MS choice {choice}: expected 0..7", at=at)


def _selector2(r: Reader, depth: int) -> tuple[Any, ...]:
    return (read_oad(r), read_data(r, depth + 1), read_data(r, depth + 1), read_data(r, depth + 1))


def read_rsd(r: Reader, depth: int = 0) -> RSD:
    at = r.pos
    sel = r.u8("RSD selector")
    if sel == 0:
        return RSD(0)
    if sel == 1:
        return RSD(1, (read_oad(r), read_data(r, depth + 1)))
    if sel == 2:
        return RSD(2, _selector2(r, depth))
    if sel == 3:
        n = r.count("RSD selector-3 items", min_size=7)
        return RSD(3, tuple(_selector2(r, depth) for _ in range(n)))
    if sel in (4, 5):
        return RSD(sel, (read_date_time_s(r), read_ms(r, depth)))
    if sel in (6, 7, 8):
        return RSD(sel, (read_date_time_s(r), read_date_time_s(r), read_ti(r), read_ms(r, depth)))
    if sel == 9:
        return RSD(9, (r.u8("last n"),))
    if sel == 10:
        return RSD(10, (r.u8("last n"), read_ms(r, depth)))
    raise r.error(f"RSD selector {sel}: expected 0..10", at=at)


def read_sid(r: Reader) -> SID:
    return SID(r.uint(4, "SID identifier"), r.take(r.length("SID attach length"), "SID attach"))


def _string(r: Reader, what: str) -> bytes:  # length-prefixed bytes inside composite types
    return r.take(r.length(f"{what} length"), what)


def _decode_text(r: Reader, raw: bytes, at: int, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as err:
        raise r.error(f"{codec} string is not valid: {err.reason}", at=at) from err


def _read_value(r: Reader, t: DataType, depth: int) -> Any:
    if t is DataType.NULL:
        return None
    if t is DataType.BOOL:
        return r.bool()
    fixed = _INTS.get(t)
    if fixed is not None:
        return r.sint(fixed[0], t.label) if fixed[1] else r.uint(fixed[0], t.label)
    if t is DataType.FLOAT32:
        return float(struct.unpack(">f", r.take(4, "float32"))[0])
    if t is DataType.FLOAT64:
        return float(struct.unpack(">d", r.take(8, "float64"))[0])
    if t is DataType.DATE_TIME:
        return read_date_time(r)
    if t is DataType.DATE:
        b = r.take(5, "date")
        return Date((b[0] << 8) | b[1], b[2], b[3], b[4])
    if t is DataType.TIME:
        b = r.take(3, "time")
        return Time(b[0], b[1], b[2])
    if t is DataType.DATE_TIME_S:
        return read_date_time_s(r)
    if t is DataType.OAD:
        return read_oad(r)
    if t is DataType.ROAD:
        return read_road(r)
    if t is DataType.OMD:
        return read_omd(r)
    if t is DataType.TI:
        return read_ti(r)
    if t is DataType.TSA:
        return read_tsa(r)
    if t is DataType.REGION:
        return read_region(r, depth)
    if t is DataType.SCALER_UNIT:
        return ScalerUnit(r.sint(1, "scaler"), r.u8("unit"))
    if t is DataType.RSD:
        return read_rsd(r, depth)
    if t is DataType.CSD:
        return read_csd(r)
    if t is DataType.MS:
        return read_ms(r, depth)
    if t is DataType.SID:
        return read_sid(r)
    if t is DataType.SID_MAC:
        return SidMac(read_sid(r), _string(r, "MAC"))
    if t is DataType.COMDCB:
        b = r.take(5, "COMDCB")
        return ComDcb(b[0], b[1], b[2], b[3], b[4])
    if t is DataType.RCSD:
        return read_rcsd(r)
    raise AssertionError(t)  # pragma: no cover - every DataType has a branch


_INTS: dict[DataType, tuple[int, bool]] = {
    DataType.DOUBLE_LONG: (4, True),
    DataType.DOUBLE_LONG_UNSIGNED: (4, False),
    DataType.INTEGER: (1, True),
    DataType.LONG: (2, True),
    DataType.UNSIGNED: (1, False),
    DataType.LONG_UNSIGNED: (2, False),
    DataType.LONG64: (8, True),
    DataType.LONG64_UNSIGNED: (8, False),
    DataType.ENUM: (1, False),
    DataType.OI: (2, False),
}
_TYPES: dict[int, DataType] = {t.value: t for t in DataType}


def read_data(r: Reader, depth: int = 0) -> Data:
    if depth > MAX_DEPTH:
        raise r.error(f"Data nested deeper than {MAX_DEPTH} levels")
    at = r.pos
    tag = r.u8("Data type")
    t = _TYPES.get(tag)
    if t is None:
        raise r.error(f"unknown Data type 0x{tag:02X}", at=at)
    if t in _VARIABLE:
        return _read_variable(r, t, depth)
    return Data(t, _read_value(r, t, depth))


_VARIABLE = frozenset(
    {
        DataType.ARRAY,
        DataType.STRUCTURE,
        DataType.BIT_STRING,
        DataType.OCTET_STRING,
        DataType.MAC,
        DataType.RN,
        DataType.VISIBLE_STRING,
        DataType.UTF8_STRING,
    }
)


def _read_variable(r: Reader, t: DataType, depth: int) -> Data:
    at = r.pos
    n, form = r.length_form(f"{t.label} length")
    value: Any
    if t in (DataType.ARRAY, DataType.STRUCTURE):
        if n > r.left:
            raise r.error(f"{t.label} count {n} exceeds the {r.left} bytes left", at=at)
        value = tuple(read_data(r, depth + 1) for _ in range(n))
    elif t is DataType.BIT_STRING:
        value = BitString(n, r.take((n + 7) // 8, "bit-string"))
    else:
        raw = r.take(n, t.label)
        if t is DataType.VISIBLE_STRING:
            value = _decode_text(r, raw, at, "ascii")
        elif t is DataType.UTF8_STRING:
            value = _decode_text(r, raw, at, "utf-8")
        else:
            value = raw
    return Data(t, value, form)


# --- writers ----------------------------------------------------------------------------------


def _expect(value: object, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise EncodeError(f"{what}: {value!r} is not a {kind}", protocol=PROTOCOL)
    return value


def write_oad(out: bytearray, oad: object) -> None:
    o = _expect(oad, OAD, "OAD")
    put_uint(out, o.oi, 2, "OI")
    put_uint(out, o.attr, 1, "OAD attribute")
    put_uint(out, o.index, 1, "OAD index")


def write_omd(out: bytearray, omd: object) -> None:
    o = _expect(omd, OMD, "OMD")
    put_uint(out, o.oi, 2, "OI")
    put_uint(out, o.method, 1, "OMD method")
    put_uint(out, o.mode, 1, "OMD mode")


def write_road(out: bytearray, road: object) -> None:
    r = _expect(road, ROAD, "ROAD")
    write_oad(out, r.oad)
    put_length(out, len(r.related))
    for oad in r.related:
        write_oad(out, oad)


def write_csd(out: bytearray, csd: object) -> None:
    if isinstance(csd, OAD):
        out.append(0)
        write_oad(out, csd)
    elif isinstance(csd, ROAD):
        out.append(1)
        write_road(out, csd)
    else:
        raise EncodeError(f"CSD {csd!r}: expected OAD or ROAD", protocol=PROTOCOL)


def write_rcsd(out: bytearray, rcsd: object) -> None:
    items = _expect(rcsd, tuple, "RCSD")
    put_length(out, len(items))
    for csd in items:
        write_csd(out, csd)


def write_tsa(out: bytearray, tsa: object) -> None:
    t = _expect(tsa, TSA, "TSA")
    if not 2 <= len(t.content) <= 17 or (t.content[0] & 0x0F) + 2 != len(t.content):
        raise EncodeError(f"TSA {t.content.hex()}: flag length disagrees with address", protocol=PROTOCOL)
    put_octets(out, t.content, "TSA")


def write_date_time_s(out: bytearray, v: object) -> None:
    d = _expect(v, DateTimeS, "date_time_s")
    put_uint(out, d.year, 2, "year")
    for part in (d.month, d.day, d.hour, d.minute, d.second):
        put_uint(out, part, 1, "date_time_s field")


def write_date_time(out: bytearray, v: object) -> None:
    d = _expect(v, DateTime, "date_time")
    put_uint(out, d.year, 2, "year")
    for part in (d.month, d.day, d.weekday, d.hour, d.minute, d.second):
        put_uint(out, part, 1, "date_time field")
    put_uint(out, d.milliseconds, 2, "milliseconds")


def write_ti(out: bytearray, v: object) -> None:
    ti = _expect(v, TI, "TI")
    put_uint(out, ti.unit, 1, "TI unit")
    put_uint(out, ti.interval, 2, "TI interval")


def write_region(out: bytearray, v: object) -> None:
    reg = _expect(v, Region, "Region")
    put_uint(out, reg.unit, 1, "Region unit")
    write_data(out, reg.start)
    write_data(out, reg.end)


def write_ms(out: bytearray, v: object) -> None:
    ms = _expect(v, MS, "MS")
    put_uint(out, ms.choice, 1, "MS choice")
    if ms.choice in (0, 1):
        return
    put_length(out, len(ms.items))
    for item in ms.items:
        if ms.choice == 2:
            put_uint(out, item, 1, "MS user type")
        elif ms.choice == 3:
            write_tsa(out, item)
        elif ms.choice == 4:
            put_uint(out, item, 2, "MS index")
        elif ms.choice in (5, 6, 7):
            write_region(out, item)
        else:
            raise EncodeError(f"MS choice {ms.choice}: expected 0..7", protocol=PROTOCOL)


def write_rsd(out: bytearray, v: object) -> None:
    rsd = _expect(v, RSD, "RSD")
    p = rsd.params
    put_uint(out, rsd.selector, 1, "RSD selector")
    try:
        if rsd.selector == 0:
            return
        if rsd.selector == 1:
            write_oad(out, p[0])
            write_data(out, p[1])
        elif rsd.selector in (2, 3):
            groups = (p,) if rsd.selector == 2 else p
            if rsd.selector == 3:
                put_length(out, len(groups))
            for g in groups:
                write_oad(out, g[0])
                for d in g[1:4]:
                    write_data(out, d)
        elif rsd.selector in (4, 5):
            write_date_time_s(out, p[0])
            write_ms(out, p[1])
        elif rsd.selector in (6, 7, 8):
            write_date_time_s(out, p[0])
            write_date_time_s(out, p[1])
            write_ti(out, p[2])
            write_ms(out, p[3])
        elif rsd.selector == 9:
            put_uint(out, p[0], 1, "last n")
        elif rsd.selector == 10:
            put_uint(out, p[0], 1, "last n")
            write_ms(out, p[1])
        else:
            raise EncodeError(f"RSD selector {rsd.selector}: expected 0..10", protocol=PROTOCOL)
    except (IndexError, TypeError) as err:
        raise EncodeError(f"RSD selector {rsd.selector}: bad parameters {p!r}", protocol=PROTOCOL) from err


def write_sid(out: bytearray, v: object) -> None:
    sid = _expect(v, SID, "SID")
    put_uint(out, sid.ident, 4, "SID identifier")
    put_octets(out, sid.attach, "SID attach")


def _write_value(out: bytearray, t: DataType, v: Any, form: int = 0) -> None:
    if t is DataType.NULL:
        if v is not None:
            raise EncodeError(f"null Data carries {v!r}", protocol=PROTOCOL)
    elif t in (DataType.ARRAY, DataType.STRUCTURE):
        items = _expect(v, tuple, t.label)
        put_length(out, len(items), form)
        for item in items:
            write_data(out, item)
    elif t is DataType.BOOL:
        out.append(1 if _expect(v, bool, "bool") else 0)
    elif t is DataType.BIT_STRING:
        bs = _expect(v, BitString, "bit-string")
        put_length(out, bs.bits, form)
        out += bs.data
    elif t in _INTS:
        size, signed = _INTS[t]
        (put_sint if signed else put_uint)(out, v, size, t.label)
    elif t in (DataType.OCTET_STRING, DataType.MAC, DataType.RN):
        put_octets(out, v, t.label, form)
    elif t in (DataType.VISIBLE_STRING, DataType.UTF8_STRING):
        text = _expect(v, str, t.label)
        try:
            raw = text.encode("ascii" if t is DataType.VISIBLE_STRING else "utf-8")
        except UnicodeEncodeError as err:
            raise EncodeError(f"{t.label} {text!r}: {err.reason}", protocol=PROTOCOL) from err
        put_octets(out, raw, t.label, form)
    elif t in (DataType.FLOAT32, DataType.FLOAT64):
        number = _expect(v, (float, int), t.label)
        try:
            out += struct.pack(">f" if t is DataType.FLOAT32 else ">d", number)
        except OverflowError as err:
            raise EncodeError(f"{t.label} {number!r} out of range", protocol=PROTOCOL) from err
    elif t is DataType.DATE:
        d = _expect(v, Date, "date")
        put_uint(out, d.year, 2, "year")
        for part in (d.month, d.day, d.weekday):
            put_uint(out, part, 1, "date field")
    elif t is DataType.TIME:
        tm = _expect(v, Time, "time")
        for part in (tm.hour, tm.minute, tm.second):
            put_uint(out, part, 1, "time field")
    elif t is DataType.SCALER_UNIT:
        su = _expect(v, ScalerUnit, "Scaler_Unit")
        put_sint(out, su.scaler, 1, "scaler")
        put_uint(out, su.unit, 1, "unit")
    elif t is DataType.SID_MAC:
        sm = _expect(v, SidMac, "SID_MAC")
        write_sid(out, sm.sid)
        put_octets(out, sm.mac, "MAC")
    elif t is DataType.COMDCB:
        c = _expect(v, ComDcb, "COMDCB")
        for part in (c.baud, c.parity, c.data_bits, c.stop_bits, c.flow):
            put_uint(out, part, 1, "COMDCB field")
    else:
        _WRITERS[t](out, v)


_WRITERS: dict[DataType, Callable[[bytearray, object], None]] = {
    DataType.DATE_TIME: write_date_time,
    DataType.DATE_TIME_S: write_date_time_s,
    DataType.OAD: write_oad,
    DataType.ROAD: write_road,
    DataType.OMD: write_omd,
    DataType.TI: write_ti,
    DataType.TSA: write_tsa,
    DataType.REGION: write_region,
    DataType.RSD: write_rsd,
    DataType.CSD: write_csd,
    DataType.MS: write_ms,
    DataType.SID: write_sid,
    DataType.RCSD: write_rcsd,
}


def write_data(out: bytearray, data: object) -> None:
    d = _expect(data, Data, "Data")
    t = d.type if isinstance(d.type, DataType) else _TYPES.get(d.type)
    if t is None:
        raise EncodeError(f"unknown Data type {d.type!r}", protocol=PROTOCOL)
    out.append(t.value)
    _write_value(out, t, d.value, d.length_form)


# --- JSON view --------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A JSON-able view of a Data tree or composite value (for ``describe`` and logs)."""
    if isinstance(value, Data):
        if value.type in (DataType.ARRAY, DataType.STRUCTURE):
            return {value.type.label: [plain(item) for item in value.value]}
        return {value.type.label: plain(value.value)}
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, OAD | OMD | DateTime | DateTimeS | Date | Time):
        return str(value)
    if isinstance(value, ROAD):
        return {"ROAD": str(value.oad), "related": [str(o) for o in value.related]}
    if isinstance(value, TSA):
        return value.address
    if isinstance(value, BitString):
        return {"bits": value.bits, "hex": value.data.hex().upper()}
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    if isinstance(value, TI | Region | ScalerUnit | MS | RSD | SID | SidMac | ComDcb):
        return {name: plain(getattr(value, name)) for name in value.__slots__}
    return value


__all__ = [
    "CSD",
    "DAR",
    "MS",
    "OAD",
    "OMD",
    "ROAD",
    "RSD",
    "SID",
    "TI",
    "TSA",
    "BitString",
    "ComDcb",
    "Data",
    "DataType",
    "Date",
    "DateTime",
    "DateTimeS",
    "Region",
    "ScalerUnit",
    "SidMac",
    "Time",
    "dar_name",
    "plain",
    "read_csd",
    "read_data",
    "read_date_time",
    "read_date_time_s",
    "read_oad",
    "read_omd",
    "read_rcsd",
    "read_rsd",
    "read_ti",
    "read_tsa",
    "write_csd",
    "write_data",
    "write_date_time",
    "write_date_time_s",
    "write_oad",
    "write_omd",
    "write_rcsd",
    "write_rsd",
    "write_ti",
    "write_tsa",
]
