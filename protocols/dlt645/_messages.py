"""DL/T 645-2007 application messages: request/response builders and reply parsers.

Layer: protocols (pure codec). Must not import asyncio, serial, hal or runtime.

Builders return a ``Frame`` (encode it with ``protocols.dlt645.encode``). Control
codes follow §1.3: normal reply = request | 80H, abnormal = request | C0H,
follow-up flag +20H. Password arguments are 8 digits ``"LLPPPPPP"``: the
authority level PA followed by the 6-digit password, both as written by people
(``"02000000"`` = level 02, password 000000); operators are 8 digits
``"12345678"``. Both travel low byte first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from protocols.dlt645._di import (
    DATA_ITEMS,
    LOAD_CURVE_DI,
    ActiveReport,
    Fixed,
    SignatureResults,
    di_from_wire,
    di_to_wire,
    encode_values,
)
from protocols.dlt645._formats import Bcd, Stamp, Value
from protocols.dlt645._frame import (
    ABNORMAL,
    BROADCAST_ADDRESS,
    DIR_RESPONSE,
    FOLLOW_UP,
    PROTOCOL,
    WILDCARD_ADDRESS,
    Frame,
    address_from_wire,
    address_to_wire,
)
from protocols.errors import EncodeError, ProtocolError


class Control(IntEnum):
    BROADCAST_TIME = 0x08
    READ_DATA = 0x11
    READ_FOLLOWUP = 0x12
    READ_ADDRESS = 0x13
    WRITE_DATA = 0x14
    WRITE_ADDRESS = 0x15
    FREEZE = 0x16
    CHANGE_BAUD = 0x17
    CHANGE_PASSWORD = 0x18
    MAX_DEMAND_RESET = 0x19
    METER_CLEAR = 0x1A
    EVENT_CLEAR = 0x1B
    RELAY_CONTROL = 0x1C


class RelayAction(IntEnum):
    """N1 of the relay/alarm/keep-power control command (§1.6)."""

    TRIP = 0x1A
    CLOSE_ALLOWED = 0x1B
    DIRECT_CLOSE = 0x1C
    ALARM = 0x2A
    ALARM_RELEASE = 0x2B
    KEEP_POWER = 0x3A
    KEEP_POWER_RELEASE = 0x3B


ERROR_BITS: dict[int, str] = {
    0: "other_error",
    1: "no_requested_data",
    2: "password_error",
    3: "baud_rate_unchangeable",
    4: "year_time_zones_exceeded",
    5: "daily_periods_exceeded",
    6: "tariffs_exceeded",
}

# Rate feature word Z of C=17H.
BAUD_WORD: dict[int, int] = {600: 0x02, 1200: 0x04, 2400: 0x08, 4800: 0x10, 9600: 0x20, 19200: 0x40}

_ADDRESS = re.compile(r"[0-9A]{12}")
_DIGITS = re.compile(r"\d+")


def _address(address: str, *, wildcard: bool = True) -> str:
    text = address.upper() if isinstance(address, str) else ""
    if not _ADDRESS.fullmatch(text) or (not wildcard and "A" in text):
        raise EncodeError(f"address {address!r}: not 12 BCD digits", protocol=PROTOCOL)
    return text


def _digits(value: str, count: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != count or not _DIGITS.fullmatch(value):
        raise EncodeError(f"{what} {value!r}: expected {count} digits", protocol=PROTOCOL)
    return bytes.fromhex(value)[::-1]


def _auth(password: str, operator: str) -> bytes:
    """PA P0 P1 P2 C0 C1 C2 C3."""
    if not isinstance(password, str) or len(password) != 8:
        raise EncodeError(f"password {password!r}: expected 8 digits LLPPPPPP", protocol=PROTOCOL)
    level = _digits(password[:2], 2, "password level")
    return level + _digits(password[2:], 6, "password") + _digits(operator, 8, "operator")


def _payload(di: int, payload: bytes | Sequence[Value]) -> bytes:
    return bytes(payload) if isinstance(payload, bytes | bytearray) else encode_values(di, payload)


def _bcd_byte(value: int, what: str) -> int:
    if not 0 <= value <= 99:
        raise EncodeError(f"{what} {value!r}: expected 0..99", protocol=PROTOCOL)
    return int(f"{value:02d}", 16)


# --- requests ---------------------------------------------------------------------------------


def read_request(address: str, di: int) -> Frame:
    return Frame(_address(address), Control.READ_DATA, di_to_wire(di))


def load_curve_request(address: str, *, start: str | datetime, count: int, di: int = LOAD_CURVE_DI) -> Frame:
    """Read ``count`` 15-min load records from ``start`` (N + mm hh DD MM YY after the DI)."""
    if not 1 <= count <= 99:
        raise EncodeError(f"record count {count!r}: expected 1..99", protocol=PROTOCOL)
    extra = bytes([_bcd_byte(count, "count")]) + Stamp("YYMMDDhhmm").encode(start)
    return Frame(_address(address), Control.READ_DATA, di_to_wire(di) + extra)


def read_followup_request(address: str, di: int, seq: int) -> Frame:
    if not 0 <= seq <= 0xFF:
        raise EncodeError(f"follow-up sequence {seq!r}: expected 0..255", protocol=PROTOCOL)
    return Frame(_address(address), Control.READ_FOLLOWUP, di_to_wire(di) + bytes([seq]))


def read_address_request() -> Frame:
    return Frame(WILDCARD_ADDRESS, Control.READ_ADDRESS, b"")


def write_request(
    address: str,
    di: int,
    data: bytes | Sequence[Value],
    *,
    password: str = "02000000",
    operator: str = "00000000",
) -> Frame:
    payload = di_to_wire(di) + _auth(password, operator) + _payload(di, data)
    return Frame(_address(address), Control.WRITE_DATA, payload)


def write_address_request(new_address: str) -> Frame:
    return Frame(
        WILDCARD_ADDRESS, Control.WRITE_ADDRESS, address_to_wire(_address(new_address, wildcard=False))
    )


def broadcast_time_request(dt: datetime) -> Frame:
    """C=08H to 999999999999: local time ss mm hh DD MM YY (no reply)."""
    return Frame(BROADCAST_ADDRESS, Control.BROADCAST_TIME, Stamp("YYMMDDhhmmss").encode(dt))


def freeze_request(address: str, mm: int, hh: int, DD: int, MM: int) -> Frame:  # noqa: N803 - standard's names
    """C=16H: freeze at mm hh DD MM (99 in a field = every; all 99 = freeze now)."""
    fields = (("minute", mm), ("hour", hh), ("day", DD), ("month", MM))
    data = bytes(_bcd_byte(v, what) for what, v in fields)
    return Frame(_address(address), Control.FREEZE, data)


def change_baud_request(address: str, baud: int) -> Frame:
    try:
        word = BAUD_WORD[baud]
    except KeyError:
        raise EncodeError(f"baud {baud!r}: expected one of {sorted(BAUD_WORD)}", protocol=PROTOCOL) from None
    return Frame(_address(address), Control.CHANGE_BAUD, bytes([word]))


def change_password_request(
    address: str, *, old_password: str, new_password: str, di: int | None = None
) -> Frame:
    """C=18H: DI 04000C(level+1) + old PA P0P1P2 + new PA P0P1P2."""
    old = _auth(old_password, "00000000")[:4]
    new = _auth(new_password, "00000000")[:4]
    di = 0x04000C01 + int(new_password[:2]) if di is None else di
    return Frame(_address(address), Control.CHANGE_PASSWORD, di_to_wire(di) + old + new)


def max_demand_reset_request(
    address: str, *, password: str = "02000000", operator: str = "00000000"
) -> Frame:
    return Frame(_address(address), Control.MAX_DEMAND_RESET, _auth(password, operator))


def meter_clear_request(address: str, *, password: str = "02000000", operator: str = "00000000") -> Frame:
    return Frame(_address(address), Control.METER_CLEAR, _auth(password, operator))


def event_clear_request(
    address: str, event_di: int = 0xFFFFFFFF, *, password: str = "02000000", operator: str = "00000000"
) -> Frame:
    """C=1BH; ``event_di`` FFFFFFFF clears all events."""
    return Frame(_address(address), Control.EVENT_CLEAR, _auth(password, operator) + di_to_wire(event_di))


def relay_control_request(
    address: str,
    action: RelayAction | int,
    valid_until: datetime | str,
    *,
    password: str = "02000000",
    operator: str = "00000000",
) -> Frame:
    """C=1CH: PA P0P1P2 C0..C3 N1 N2 N3..N8 (valid-until ss mm hh DD MM YY)."""
    try:
        n1 = RelayAction(action)
    except ValueError:
        raise EncodeError(f"relay action {action!r}: not an N1 code of §1.6", protocol=PROTOCOL) from None
    data = _auth(password, operator) + bytes([n1, 0]) + Stamp("YYMMDDhhmmss").encode(valid_until)
    return Frame(_address(address), Control.RELAY_CONTROL, data)


# --- responses (what a meter sends) -----------------------------------------------------------


def read_response(
    address: str,
    di: int,
    payload: bytes | Sequence[Value],
    *,
    follow_up: bool = False,
    seq: int | None = None,
) -> Frame:
    """C=91H (B1H with ``follow_up``); with ``seq`` a follow-up reply C=92H/B2H ending in SEQ."""
    control = (Control.READ_DATA if seq is None else Control.READ_FOLLOWUP) | DIR_RESPONSE
    if follow_up:
        control |= FOLLOW_UP
    tail = b"" if seq is None else bytes([seq & 0xFF])
    return Frame(_address(address), control, di_to_wire(di) + _payload(di, payload) + tail)


def abnormal_response(address: str, request_control: int, error_bits: int) -> Frame:
    if not 0 <= error_bits <= 0xFF:
        raise EncodeError(f"error bits {error_bits!r}: not a byte", protocol=PROTOCOL)
    return Frame(_address(address), (request_control & 0x1F) | DIR_RESPONSE | ABNORMAL, bytes([error_bits]))


def ack_response(address: str, request_control: int) -> Frame:
    return Frame(_address(address), (request_control & 0x1F) | DIR_RESPONSE, b"")


def read_address_response(address: str) -> Frame:
    text = _address(address, wildcard=False)
    return Frame(text, Control.READ_ADDRESS | DIR_RESPONSE, address_to_wire(text))


# --- parsers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadResult:
    di: int
    values: tuple[Value, ...]
    unit: str
    item: str
    follow_up: bool
    names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    seq: int | None = None
    known: bool = True


@dataclass(frozen=True, slots=True)
class ErrorReply:
    bits: int
    names: tuple[str, ...]


def _need(frame: Frame, codes: tuple[int, ...], what: str) -> None:
    if frame.code not in codes or frame.is_abnormal:
        raise ProtocolError(f"{what}: unexpected control 0x{frame.control:02X}", protocol=PROTOCOL)


_DESCRIBED: dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}


def _described(di: int) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(unit, element names, element units) of a DI of the table: the same for every reply."""
    found = _DESCRIBED.get(di)
    if found is None:
        row = DATA_ITEMS[di]
        layout = row.layout
        if isinstance(layout, ActiveReport | SignatureResults):
            units: tuple[str, ...] = ("",) * len(layout.element_names())
        else:
            fixed = layout if isinstance(layout, Fixed) else layout.record
            units = tuple(e.unit for e in fixed.elements)
        found = _DESCRIBED[di] = (row.unit, layout.element_names(), units)
    return found


def decode_payload(
    di: int, payload: bytes, *, offset: int = 0, follow_up: bool = False, seq: int | None = None
) -> ReadResult:
    """Decode a read payload (after the DI) by the DI table; unknown DIs give the raw hex."""
    row = DATA_ITEMS.get(di)
    if row is None:
        return ReadResult(
            di,
            (payload.hex().upper(),),
            "",
            "unknown data identifier",
            follow_up,
            ("raw",),
            ("",),
            seq,
            known=False,
        )
    values = row.layout.decode(payload, offset)
    unit, names, units = _described(di)
    return ReadResult(di, values, unit, row.item, follow_up, names, units, seq)


def parse_read_response(frame: Frame) -> ReadResult:
    """Values of a normal read reply (C=91H/B1H, or 92H/B2H whose last byte is SEQ)."""
    if not frame.is_response:
        raise ProtocolError("read reply expected, got a request", protocol=PROTOCOL)
    _need(frame, (Control.READ_DATA, Control.READ_FOLLOWUP), "read reply")
    data = frame.data
    seq = None
    if frame.code == Control.READ_FOLLOWUP:
        if len(data) < 5:
            raise ProtocolError("follow-up reply shorter than DI + SEQ", offset=10, protocol=PROTOCOL)
        data, seq = data[:-1], data[-1]
    if len(data) < 4:
        raise ProtocolError(f"read reply of {len(data)} bytes has no DI", offset=10, protocol=PROTOCOL)
    return decode_payload(di_from_wire(data), data[4:], offset=14, follow_up=frame.has_follow_up, seq=seq)


def parse_error(frame: Frame) -> ErrorReply:
    if not (frame.is_response and frame.is_abnormal):
        raise ProtocolError(f"abnormal reply expected, got control 0x{frame.control:02X}", protocol=PROTOCOL)
    if len(frame.data) != 1:
        raise ProtocolError(
            f"abnormal reply with {len(frame.data)} data bytes, expected 1", offset=9, protocol=PROTOCOL
        )
    bits = frame.data[0]
    names = tuple(ERROR_BITS.get(bit, f"bit{bit}") for bit in range(8) if bits >> bit & 1)
    return ErrorReply(bits, names)


def parse_read_address_response(frame: Frame) -> str:
    _need(frame, (Control.READ_ADDRESS,), "read-address reply")
    if len(frame.data) != 6:
        raise ProtocolError("read-address reply must carry 6 address bytes", offset=9, protocol=PROTOCOL)
    return address_from_wire(frame.data)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    di: int
    extra: bytes  # load-curve parameters (N + start) or follow-up SEQ
    seq: int | None = None


def parse_read_request(frame: Frame) -> ReadRequest:
    """What a meter is asked for by C=11H / 12H."""
    _need(frame, (Control.READ_DATA, Control.READ_FOLLOWUP), "read request")
    if frame.is_response or len(frame.data) < 4:
        raise ProtocolError("read request must carry a DI", offset=10, protocol=PROTOCOL)
    di = di_from_wire(frame.data)
    extra = frame.data[4:]
    if frame.code == Control.READ_FOLLOWUP:
        if len(extra) != 1:
            raise ProtocolError("follow-up request must end in one SEQ byte", offset=14, protocol=PROTOCOL)
        return ReadRequest(di, extra, extra[0])
    return ReadRequest(di, extra)


@dataclass(frozen=True, slots=True)
class LoadCurveQuery:
    count: int
    start: str


def parse_load_curve_query(extra: bytes) -> LoadCurveQuery:
    """N + mm hh DD MM YY following DI 06000001 in a read request."""
    if len(extra) != 6:
        raise ProtocolError(
            f"load-curve query of {len(extra)} bytes, expected 6", offset=14, protocol=PROTOCOL
        )
    count = Bcd(1, 0).decode(extra[:1], 14)
    start = Stamp("YYMMDDhhmm").decode(extra[1:], 15)
    if not isinstance(count, int) or not isinstance(start, str):
        raise ProtocolError("load-curve query: count or start time not present", offset=14, protocol=PROTOCOL)
    return LoadCurveQuery(count, start)


@dataclass(frozen=True, slots=True)
class Authorized:
    """Password level + password + operator of a write/control/clear command."""

    password: str  # "LLPPPPPP"
    operator: str

    @classmethod
    def parse(cls, raw: bytes, offset: int) -> Authorized:
        if len(raw) < 8:
            raise ProtocolError("password and operator fields truncated", offset=offset, protocol=PROTOCOL)
        return cls(raw[0:1].hex().upper() + raw[1:4][::-1].hex().upper(), raw[4:8][::-1].hex().upper())


@dataclass(frozen=True, slots=True)
class WriteRequest:
    di: int
    auth: Authorized
    payload: bytes


def parse_write_request(frame: Frame) -> WriteRequest:
    _need(frame, (Control.WRITE_DATA,), "write request")
    if frame.is_response or len(frame.data) < 12:
        raise ProtocolError(
            "write request must carry DI, password and operator", offset=10, protocol=PROTOCOL
        )
    return WriteRequest(di_from_wire(frame.data), Authorized.parse(frame.data[4:12], 14), frame.data[12:])


@dataclass(frozen=True, slots=True)
class RelayCommand:
    auth: Authorized
    action: RelayAction | int
    valid_until: str | None


def parse_relay_control(frame: Frame) -> RelayCommand:
    _need(frame, (Control.RELAY_CONTROL,), "relay control")
    if frame.is_response or len(frame.data) != 16:
        raise ProtocolError(
            f"relay control data of {len(frame.data)} bytes, expected 16", offset=9, protocol=PROTOCOL
        )
    n1 = frame.data[8]
    action: RelayAction | int = RelayAction(n1) if n1 in RelayAction._value2member_map_ else n1
    until = Stamp("YYMMDDhhmmss").decode(frame.data[10:16], 20)
    return RelayCommand(
        Authorized.parse(frame.data[:8], 10), action, until if isinstance(until, str) else None
    )


def parse_broadcast_time(frame: Frame) -> str:
    _need(frame, (Control.BROADCAST_TIME,), "broadcast time")
    if len(frame.data) != 6:
        raise ProtocolError("broadcast time must carry ss mm hh DD MM YY", offset=9, protocol=PROTOCOL)
    value = Stamp("YYMMDDhhmmss").decode(frame.data, 10)
    if not isinstance(value, str):
        raise ProtocolError("broadcast time is FF-filled", offset=10, protocol=PROTOCOL)
    return value


def parse_baud(frame: Frame) -> int | None:
    """Baud rate named by a C=17H request or reply (None for an unknown word)."""
    _need(frame, (Control.CHANGE_BAUD,), "change baud")
    if len(frame.data) != 1:
        raise ProtocolError("change-baud frame must carry one Z byte", offset=9, protocol=PROTOCOL)
    return {word: baud for baud, word in BAUD_WORD.items()}.get(frame.data[0])


__all__ = [
    "BAUD_WORD",
    "ERROR_BITS",
    "Authorized",
    "Control",
    "ErrorReply",
    "LoadCurveQuery",
    "ReadRequest",
    "ReadResult",
    "RelayAction",
    "RelayCommand",
    "WriteRequest",
    "abnormal_response",
    "ack_response",
    "broadcast_time_request",
    "change_baud_request",
    "change_password_request",
    "decode_payload",
    "event_clear_request",
    "freeze_request",
    "load_curve_request",
    "max_demand_reset_request",
    "meter_clear_request",
    "parse_baud",
    "parse_broadcast_time",
    "parse_error",
    "parse_load_curve_query",
    "parse_read_address_response",
    "parse_read_request",
    "parse_relay_control",
    "parse_write_request",
    "read_address_request",
    "read_address_response",
    "read_followup_request",
    "read_request",
    "read_response",
    "relay_control_request",
    "write_address_request",
    "write_request",
]
