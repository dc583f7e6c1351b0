"""Every checksum and CRC the meter-side protocols use, in one place.

Layer: protocols (pure functions, no I/O). Must not import asyncio, serial, hal or runtime.

* ``sum8``: arithmetic sum mod 256 — DL/T 645 CS and Q/GDW 1376.2 CS.
* ``crc16_x25``: CRC-16/X-25 (poly 0x1021 reflected, init 0xFFFF, xorout 0xFFFF) — DL/T 698.45
  HCS/FCS. Check value of ``b"123456789"`` is 0x906E.
"""

from __future__ import annotations

from collections.abc import Callable

import crcmod.predefined

_crc16_x25: Callable[[bytes], int] = crcmod.predefined.mkPredefinedCrcFun("x-25")


def sum8(data: bytes | bytearray | memoryview) -> int:
    """Arithmetic sum of all bytes modulo 256."""
    return sum(data) & 0xFF


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X-25 of ``data`` as an int (transmitted low byte first by DL/T 698.45)."""
    return int(_crc16_x25(bytes(data)))


__all__ = ["crc16_x25", "sum8"]
