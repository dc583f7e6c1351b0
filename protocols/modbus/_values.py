"""Register words <-> engineering values, and contiguous block planning for a profile's reads.

Layer: protocols (pure). Must not import asyncio, serial, hal, runtime or pymodbus.

Modbus carries 16-bit words big-endian on the wire; 32-bit values take two words whose
order differs between vendors (``word_order``: "big" = high word first, ABCD; "little" =
low word first, CDAB). Bit tables (coil, discrete) carry one bool per address.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from protocols.errors import EncodeError, ProtocolError
from protocols.modbus._profile import BIT_TABLES, Register, Table

#: protocol limits per request (Modbus Application Protocol V1.1b3 §6.1-6.4)
MAX_REGISTERS = 125
MAX_BITS = 2000
_RANGES = {
    "u16": (0, 0xFFFF),
    "i16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "i32": (-0x80000000, 0x7FFFFFFF),
}


def _raw(reg: Register, words: Sequence[int]) -> int | float:
    if len(words) != reg.words:
        raise ProtocolError(f"{reg.name}: {len(words)} words for a {reg.type}", protocol="modbus")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise ProtocolError(f"{reg.name}: register word out of 0..65535", protocol="modbus")
    ordered = list(words) if reg.word_order == "big" else list(reversed(words))
    data = b"".join(w.to_bytes(2, "big") for w in ordered)
    fmt = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f"}[reg.type]
    value: int | float = struct.unpack(fmt, data)[0]
    return value


def decode_value(reg: Register, words: Sequence[int | bool]) -> float | bool:
    """The engineering value of ``reg`` from its raw words (or its one bit)."""
    if reg.is_bit:
        if len(words) != 1:
            raise ProtocolError(f"{reg.name}: expected one bit, got {len(words)}", protocol="modbus")
        return bool(words[0])
    raw = _raw(reg, [int(w) for w in words])
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ProtocolError(f"{reg.name}: f32 value is not finite ({raw})", protocol="modbus")
    value = raw * reg.scale
    # keep the decimal the scale implies (0.1 x 2303 = 230.3, not 230.29999999999998)
    digits = max(0, -math.floor(math.log10(abs(reg.scale)))) if reg.type != "f32" else 6
    return round(value, digits + 3) if reg.scale != 1 else float(value)


def encode_value(reg: Register, value: float | bool) -> list[int] | list[bool]:
    """Raw words (or the one bit) that carry ``value`` in ``reg``; EncodeError if out of range."""
    if reg.is_bit:
        return [bool(value)]
    if (reg.min is not None and value < reg.min) or (reg.max is not None and value > reg.max):
        raise EncodeError(f"{reg.name}: {value} outside {reg.min}..{reg.max}", protocol="modbus")
    scaled = float(value) / reg.scale
    if reg.type == "f32":
        data = struct.pack(">f", scaled)
    else:
        raw = round(scaled)
        lo, hi = _RANGES[reg.type]
        if not lo <= raw <= hi:
            raise EncodeError(f"{reg.name}: {value} does not fit a {reg.type}", protocol="modbus")
        data = raw.to_bytes(2 * reg.words, "big", signed=reg.type.startswith("i"))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if reg.word_order == "big" else list(reversed(words))


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` addresses of ``table`` from ``start``, covering ``points``."""

    table: Table
    start: int
    count: int
    points: tuple[Register, ...]

    def decode(self, values: Sequence[int | bool]) -> dict[str, float | bool]:
        """Engineering values of every point from the block's raw values (``count`` of them)."""
        if len(values) < self.count:
            raise ProtocolError(
                f"{self.table} {self.start}+{self.count}: reply carries {len(values)} values",
                protocol="modbus",
            )
        out: dict[str, float | bool] = {}
        for reg in self.points:
            at = reg.address - self.start
            out[reg.name] = decode_value(reg, values[at : at + reg.words])
        return out


def plan_blocks(points: Iterable[Register], *, max_gap: int = 0) -> list[Block]:
    """Cover ``points`` with as few reads as the protocol allows.

    Points of one table whose addresses are contiguous (or at most ``max_gap`` unused
    addresses apart: reading a hole is cheaper than a second exchange, but some devices
    answer ILLEGAL DATA ADDRESS for holes, hence the default 0) share one request, up to
    125 registers or 2000 bits.
    """
    blocks: list[Block] = []
    by_table: dict[str, list[Register]] = {}
    for reg in points:
        by_table.setdefault(reg.table, []).append(reg)
    for table, regs in sorted(by_table.items()):
        limit = MAX_BITS if table in BIT_TABLES else MAX_REGISTERS
        group: list[Register] = []
        end = -1
        for reg in sorted(regs, key=lambda r: r.address):
            reg_end = reg.address + reg.words
            if group and (reg.address - end > max_gap or reg_end - group[0].address > limit):
                blocks.append(Block(group[0].table, group[0].address, end - group[0].address, tuple(group)))
                group = []
            group.append(reg)
            end = max(end, reg_end) if len(group) > 1 else reg_end
        if group:
            blocks.append(Block(group[0].table, group[0].address, end - group[0].address, tuple(group)))
    return blocks


def describe(points: Mapping[str, Register], values: Mapping[str, float | bool]) -> dict[str, object]:
    """Values with their meanings (enum text, set bit names) for logs and events."""
    out: dict[str, object] = {}
    for name, value in values.items():
        meaning = points[name].meaning(value) if name in points else None
        out[name] = value if meaning is None else {"value": value, "meaning": meaning}
    return out


__all__ = ["MAX_BITS", "MAX_REGISTERS", "Block", "decode_value", "describe", "encode_value", "plan_blocks"]
