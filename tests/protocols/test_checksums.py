"""Known-answer tests for protocols.checksums."""

from __future__ import annotations

import pytest

from protocols.checksums import crc16_x25, sum8


def test_crc16_x25_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E


def test_crc16_x25_empty_and_types() -> None:
    assert crc16_x25(b"") == 0x0000
    assert crc16_x25(bytearray(b"123456789")) == crc16_x25(memoryview(b"123456789")) == 0x906E


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"123456789", 0xDD),
        (bytes([0xFF, 0x02]), 0x01),
        # DL/T 645 vector 645-022 (PROTOCOLS.md §1.2): CS over 68..data is E9H
        (bytes.fromhex("68 86 20 05 00 00 00 68 91 08 33 33 34 33 A8 76 B7 33"), 0xE9),
    ],
)
def test_sum8(data: bytes, expected: int) -> None:
    assert sum8(data) == expected
