"""DL/T 645-2007 value formats: BCD numbers, dates, digit strings, ASCII, bit words.

Layer: protocols (pure codec). Must not import asyncio, serial, hal or runtime.

Every field is transmitted low byte first (after the link layer removed +33H).
Numbers are BCD with an implied decimal point (``XXX.X`` = 2 bytes, one decimal);
signed formats carry the sign in bit 7 of the most significant byte
(sign-magnitude, not two's complement). A field filled with FF means "not
supported / not present" and decodes to ``None`` (and ``None`` encodes to FF).

Decoded values are JSON-friendly and re-encode to the same bytes:

=============== ============================= ==========================
format          wire (transmission order)     decoded value
=============== ============================= ==========================
``Bcd``         low byte first                float (int when 0 decimals)
``Stamp``       e.g. mm hh DD MM YY           ``"2015-10-09 00:00"``
``Digits``      low byte first                ``"000012345678"``
``Ascii``       low byte first, 00-padded     ``"220V"``
``Word``        bit 0 = bit 0 of first byte   int
=============== ============================= ==========================
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Protocol, TypeAlias

from protocols.errors import EncodeError, ProtocolError

PROTOCOL = "dlt645"

Value: TypeAlias = "float | int | str | tuple[Value, ...] | None"


class Format(Protocol):
    @property
    def size(self) -> int: ...

    def decode(self, raw: bytes, offset: int = 0) -> Value: ...

    def encode(self, value: Value) -> bytes: ...

    @property
    def spec(self) -> str: ...


def _bad(reason: str, offset: int) -> ProtocolError:
    return ProtocolError(reason, offset=offset, protocol=PROTOCOL)


def _bcd_digits(raw: bytes, offset: int) -> str:
    """Most-significant-first digit string of low-byte-first BCD ``raw``."""
    text = raw[::-1].hex()
    if not text.isdigit():
        raise _bad(f"not BCD: {raw.hex(' ').upper()}", offset)
    return text


def _bcd_bytes(number: int, size: int, what: str) -> bytes:
    text = f"{number:0{size * 2}d}"
    if number < 0 or len(text) > size * 2:
        raise EncodeError(f"{what}: {number} does not fit {size} BCD bytes", protocol=PROTOCOL)
    return bytes.fromhex(text)[::-1]


@dataclass(frozen=True, slots=True)
class Bcd:
    """``size`` BCD bytes with ``decimals`` implied decimals, optionally sign-magnitude."""

    size: int
    decimals: int
    signed: bool = False

    @property
    def spec(self) -> str:
        digits = self.size * 2
        whole = "X" * (digits - self.decimals)
        frac = "." + "X" * self.decimals if self.decimals else ""
        return ("±" if self.signed else "") + whole + frac

    def decode(self, raw: bytes, offset: int = 0) -> Value:
        if raw == b"\xff" * self.size:
            return None
        negative = False
        if self.signed and raw[-1] & 0x80:
            negative = True
            raw = raw[:-1] + bytes([raw[-1] & 0x7F])
        number = int(_bcd_digits(raw, offset))
        if self.decimals == 0 and not self.signed:
            return number
        value: float = round(number / 10**self.decimals, self.decimals)
        return -value if negative else value

    def encode(self, value: Value) -> bytes:
        if value is None:
            return b"\xff" * self.size
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EncodeError(f"{self.spec}: expected a number, got {value!r}", protocol=PROTOCOL)
        if not math.isfinite(value):
            raise EncodeError(f"{self.spec}: {value!r} is not finite", protocol=PROTOCOL)
        negative = math.copysign(1.0, value) < 0
        if negative and not self.signed:
            raise EncodeError(
                f"{self.spec}: negative value {value!r} in an unsigned field", protocol=PROTOCOL
            )
        magnitude = round(abs(value) * 10**self.decimals)
        raw = bytearray(_bcd_bytes(magnitude, self.size, self.spec))
        if self.signed:
            if raw[-1] & 0x80:
                raise EncodeError(f"{self.spec}: {value!r} out of range", protocol=PROTOCOL)
            if negative:
                raw[-1] |= 0x80
        return bytes(raw)


# Stamp layouts, written most significant first as in the standard's tables.
_STAMP_TEXT = {
    "YYMMDDhhmmss": "20{YY}-{MM}-{DD} {hh}:{mm}:{ss}",
    "YYMMDDhhmm": "20{YY}-{MM}-{DD} {hh}:{mm}",
    "YYMMDDWW": "20{YY}-{MM}-{DD} w{W}",
    "hhmmss": "{hh}:{mm}:{ss}",
    "mmhhDDMM": "{MM}-{DD} {hh}:{mm}",
}


@functools.cache
def _fields(layout: str) -> tuple[str, ...]:
    return tuple(re.findall(r"YY|MM|DD|WW|hh|mm|ss", layout))


@functools.cache
def _stamp_pattern(layout: str) -> re.Pattern[str]:
    """The text form of ``layout`` as a regex with one named group per field."""
    pattern = re.escape(_STAMP_TEXT[layout])
    pattern = pattern.replace(r"\{", "{").replace(r"\}", "}")
    return re.compile(
        re.sub(r"\{(\w+)\}", lambda m: rf"(?P<{m[1]}>\d{{{'1,2' if m[1] == 'W' else 2}}})", pattern)
    )


@dataclass(frozen=True, slots=True)
class Stamp:
    """A date/time of BCD fields; ``layout`` is most significant first (``YYMMDDhhmm``).

    On the wire the fields run the other way (``mm hh DD MM YY``). Weekday ``WW``
    keeps whatever the meter sent, so ``"2016-01-11 w1"`` round-trips exactly.
    """

    layout: str

    @property
    def size(self) -> int:
        return len(_fields(self.layout))

    @property
    def spec(self) -> str:
        return self.layout

    def decode(self, raw: bytes, offset: int = 0) -> Value:
        if raw == b"\xff" * self.size:
            return None
        digits = _bcd_digits(raw, offset)
        parts = {name: digits[2 * i : 2 * i + 2] for i, name in enumerate(_fields(self.layout))}
        parts["W"] = str(int(parts.get("WW", "0")))
        return _STAMP_TEXT[self.layout].format(**parts)

    def encode(self, value: Value | datetime | date | time) -> bytes:
        if value is None:
            return b"\xff" * self.size
        if isinstance(value, datetime | date | time):
            value = self._from_datetime(value)
        if not isinstance(value, str):
            raise EncodeError(f"{self.layout}: expected text or datetime, got {value!r}", protocol=PROTOCOL)
        match = _stamp_pattern(self.layout).fullmatch(value)
        if match is None:
            raise EncodeError(f"{self.layout}: {value!r} does not match {_STAMP_TEXT[self.layout]!r}")
        groups = match.groupdict()
        groups["WW"] = f"{int(groups.get('W', '0')):02d}"
        digits = "".join(groups[name] for name in _fields(self.layout))
        return bytes.fromhex(digits)[::-1]

    def _from_datetime(self, value: datetime | date | time) -> str:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
        else:
            moment = datetime(2000, 1, 1, value.hour, value.minute, value.second)
        if not 2000 <= moment.year <= 2099:
            raise EncodeError(f"{self.layout}: year {moment.year} outside 2000..2099", protocol=PROTOCOL)
        parts = {
            "YY": f"{moment.year % 100:02d}",
            "MM": f"{moment.month:02d}",
            "DD": f"{moment.day:02d}",
            "hh": f"{moment.hour:02d}",
            "mm": f"{moment.minute:02d}",
            "ss": f"{moment.second:02d}",
            "W": str((moment.weekday() + 1) % 7),  # DL/T 645: 0 = Sunday
        }
        return _STAMP_TEXT[self.layout].format(**parts)


@dataclass(frozen=True, slots=True)
class Digits:
    """A digit string (address, meter number), low byte first on the wire."""

    size: int

    @property
    def spec(self) -> str:
        return "N" * (self.size * 2)

    def decode(self, raw: bytes, offset: int = 0) -> Value:
        if raw == b"\xff" * self.size:
            return None
        return raw[::-1].hex().upper()

    def encode(self, value: Value) -> bytes:
        if value is None:
            return b"\xff" * self.size
        if not isinstance(value, str) or not re.fullmatch(rf"[0-9A-Fa-f]{{{self.size * 2}}}", value):
            raise EncodeError(
                f"{self.spec}: expected {self.size * 2} digits, got {value!r}", protocol=PROTOCOL
            )
        return bytes.fromhex(value)[::-1]


@dataclass(frozen=True, slots=True)
class Ascii:
    """ASCII text, transmitted low byte first and padded with 00 (e.g. rated voltage)."""

    size: int

    @property
    def spec(self) -> str:
        return f"ASCII{self.size}"

    def decode(self, raw: bytes, offset: int = 0) -> Value:
        text = raw[::-1].rstrip(b"\x00")
        try:
            return text.decode("ascii")
        except UnicodeDecodeError as err:
            raise _bad(f"not ASCII: {raw.hex(' ').upper()}", offset) from err

    def encode(self, value: Value) -> bytes:
        if not isinstance(value, str):
            raise EncodeError(f"{self.spec}: expected text, got {value!r}", protocol=PROTOCOL)
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError as err:
            raise EncodeError(f"{self.spec}: {value!r} is not ASCII", protocol=PROTOCOL) from err
        if len(data) > self.size:
            raise EncodeError(f"{self.spec}: {value!r} longer than {self.size}", protocol=PROTOCOL)
        return data.ljust(self.size, b"\x00")[::-1]


@dataclass(frozen=True, slots=True)
class Word:
    """A bit word; bit 0 is bit 0 of the first transmitted byte. ``bits`` names the set bits."""

    size: int
    bits: MappingProxyType[int, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def spec(self) -> str:
        return f"bits{self.size * 8}"

    def decode(self, raw: bytes, offset: int = 0) -> Value:
        return int.from_bytes(raw, "little")

    def encode(self, value: Value) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * self.size):
            raise EncodeError(f"{self.spec}: expected an int of {self.size * 8} bits, got {value!r}")
        return value.to_bytes(self.size, "little")

    def names(self, value: int) -> tuple[str, ...]:
        return tuple(self.bits.get(bit, f"bit{bit}") for bit in range(self.size * 8) if value >> bit & 1)


__all__ = ["Ascii", "Bcd", "Digits", "Format", "Stamp", "Value", "Word"]
