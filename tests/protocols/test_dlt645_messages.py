"""Request/response builders, parsers and value formats of protocols.dlt645.

Frames of the vector file are reused where they exist; the freeze (16H) and follow-up
(12H/B1H/B2H) frames are SYNTHETIC: no public capture exists (PROTOCOLS.md §5), so
their expected bytes are built here from the format of §1.2/§1.3 by ``_reference``,
an independent little encoder (own +33H and CS arithmetic).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from protocols import dlt645
from protocols.dlt645 import Frame, RelayAction
from protocols.errors import EncodeError, ProtocolError


def _reference(address: str, control: int, data: bytes, *, preamble: int = 0) -> bytes:
    """Independent encoder used to build synthetic vectors from §1.2."""
    body = bytes([0x68]) + bytes.fromhex(address)[::-1] + bytes([0x68, control, len(data)])
    body += bytes((b + 0x33) % 256 for b in data)
    return b"\xfe" * preamble + body + bytes([sum(body) % 256, 0x16])


BUILDERS = [
    (
        "645-006 read",
        dlt645.read_request("000072007201", 0x02010300),
        "68 01 72 00 72 00 00 68 11 04 33 36 34 35 9C 16",
    ),
    ("645-008 read address", dlt645.read_address_request(), "68 AA AA AA AA AA AA 68 13 00 DF 16"),
    (
        "645-009 baud",
        dlt645.change_baud_request("201901120001", 2400),
        "68 01 00 12 01 19 20 68 17 01 3B 70 16",
    ),
    (
        "645-029 broadcast time",
        dlt645.broadcast_time_request(datetime(2019, 12, 7, 16, 28, 0)),
        "68 99 99 99 99 99 99 68 08 06 33 5B 49 3A 45 4C 16 16",
    ),
    (
        "645-065 relay trip",
        dlt645.relay_control_request(
            "111111111111",
            RelayAction.TRIP,
            datetime(2018, 5, 12, 15, 41, 24),
            password="00000000",
            operator="00000000",
        ),
        "68 11 11 11 11 11 11 68 1C 10 33 33 33 33 33 33 33 33 4D 33 57 74 48 45 38 4B 55 16",
    ),
    (
        "645-074 write reset word",
        dlt645.write_request(
            "000000003304",
            0x04001503,
            [((1 << 96) - 1) & ~(1 << 14) & ~(1 << 18)],
            password="02000000",
            operator="12345678",
        ),
        "68 04 33 00 00 00 00 68 14 18 36 48 33 37 35 33 33 33 AB 89 67 45"
        " 32 F2 2E 32 32 32 32 32 32 32 32 32 DD 16",
    ),
    ("645-066 relay ack", dlt645.ack_response("111111111111", 0x1C), "68 11 11 11 11 11 11 68 9C 00 D2 16"),
    ("645-075 write ack", dlt645.ack_response("000000003304", 0x14), "68 04 33 00 00 00 00 68 94 00 9B 16"),
    (
        "645-052 abnormal",
        dlt645.abnormal_response("000000000006", 0x11, 0x02),
        "68 06 00 00 00 00 00 68 D1 01 35 DD 16",
    ),
    (
        "645-044 read reply",
        dlt645.read_response("123456789012", 0x00010000, [123456.78]),
        "68 12 90 78 56 34 12 68 91 08 33 33 34 33 AB 89 67 45 CC 16",
    ),
    (
        "645-056 voltage block with absent phases",
        dlt645.read_response("201000000012", 0x0201FF00, [225.6, None, None]),
        "68 12 00 00 00 10 20 68 91 0A 33 32 34 35 89 55 32 32 32 32 21 16",
    ),
    (
        "645-057 date",
        dlt645.read_response("201000000012", 0x04000101, ["2016-01-11 w1"]),
        "68 12 00 00 00 10 20 68 91 08 34 34 33 37 34 44 34 49 72 16",
    ),
    # --- synthetic, built from the format by _reference ---
    ("synthetic freeze now", dlt645.freeze_request("000012345678", 99, 99, 99, 99), None),
    ("synthetic freeze daily 00:00", dlt645.freeze_request("999999999999", 0, 0, 99, 99), None),
    ("synthetic follow-up request", dlt645.read_followup_request("000012345678", 0x06000001, 1), None),
    ("synthetic write address", dlt645.write_address_request("000012345678"), None),
    (
        "synthetic change password",
        dlt645.change_password_request("000012345678", old_password="02000000", new_password="04123456"),
        None,
    ),
    (
        "synthetic demand reset",
        dlt645.max_demand_reset_request("000012345678", password="02000000", operator="12345678"),
        None,
    ),
    ("synthetic meter clear", dlt645.meter_clear_request("000012345678"), None),
    ("synthetic event clear", dlt645.event_clear_request("000012345678"), None),
    (
        "synthetic load curve",
        dlt645.load_curve_request("000012345678", start="2024-03-05 01:15", count=4),
        None,
    ),
]

SYNTHETIC_EXPECTED = {
    "synthetic freeze now": _reference("000012345678", 0x16, bytes.fromhex("99 99 99 99")),
    "synthetic freeze daily 00:00": _reference("999999999999", 0x16, bytes.fromhex("00 00 99 99")),
    "synthetic follow-up request": _reference("000012345678", 0x12, bytes.fromhex("01 00 00 06 01")),
    "synthetic write address": _reference("AAAAAAAAAAAA", 0x15, bytes.fromhex("78 56 34 12 00 00")),
    "synthetic change password": _reference(
        "000012345678", 0x18, bytes.fromhex("05 0C 00 04 02 00 00 00 04 56 34 12")
    ),
    "synthetic demand reset": _reference("000012345678", 0x19, bytes.fromhex("02 00 00 00 78 56 34 12")),
    "synthetic meter clear": _reference("000012345678", 0x1A, bytes.fromhex("02 00 00 00 00 00 00 00")),
    "synthetic event clear": _reference(
        "000012345678", 0x1B, bytes.fromhex("02 00 00 00 00 00 00 00 FF FF FF FF")
    ),
    "synthetic load curve": _reference("000012345678", 0x11, bytes.fromhex("01 00 00 06 04 15 01 05 03 24")),
}


@pytest.mark.parametrize(("name", "frame", "hex_"), BUILDERS, ids=[b[0] for b in BUILDERS])
def test_builder_encodes_exactly(name: str, frame: Frame, hex_: str | None) -> None:
    expected = bytes.fromhex(hex_) if hex_ is not None else SYNTHETIC_EXPECTED[name]
    assert dlt645.encode(frame, preamble=0) == expected
    assert dlt645.decode(expected) == frame
    assert dlt645.encode(frame) == b"\xfe" * 4 + expected


def test_synthetic_followup_replies() -> None:
    """Synthetic: B1H (more follows), then 92H/B2H follow-up replies ending in SEQ."""
    address = "000012345678"
    record = ("2024-03-05 01:15", 1234.56, 0.0, 230.1, None, None, 5.123, None, None, 1.1786, 0.998)
    first = dlt645.read_response(address, 0x06000001, [record] * 5, follow_up=True)
    assert first.control == 0xB1 and first.has_follow_up and len(first.data) == 4 + 5 * 33
    middle = dlt645.read_response(address, 0x06000001, [record], follow_up=True, seq=1)
    last = dlt645.read_response(address, 0x06000001, [record], seq=2)
    assert (middle.control, last.control) == (0xB2, 0x92)
    assert dlt645.encode(last, preamble=0) == _reference(
        address, 0x92, dlt645.di_to_wire(0x06000001) + dlt645.encode_values(0x06000001, [record]) + b"\x02"
    )
    parsed = [dlt645.parse_read_response(dlt645.decode(dlt645.encode(f))) for f in (first, middle, last)]
    assert [p.follow_up for p in parsed] == [True, True, False]
    assert [p.seq for p in parsed] == [None, 1, 2]
    assert parsed[2].values == (record,)
    assert parsed[0].names[0] == "time" and "energy.active.import.total" in parsed[0].names


def test_load_curve_query_roundtrip() -> None:
    frame = dlt645.load_curve_request("000012345678", start=datetime(2024, 3, 5, 1, 15), count=4)
    req = dlt645.parse_read_request(frame)
    assert req.di == dlt645.LOAD_CURVE_DI
    assert dlt645.parse_load_curve_query(req.extra) == dlt645.LoadCurveQuery(4, "2024-03-05 01:15")


def test_parse_write_and_relay_requests() -> None:
    write = dlt645.parse_write_request(
        dlt645.write_request("000000003304", 0x04001001, [12.5], password="02123456", operator="12345678")
    )
    assert write.di == 0x04001001 and write.auth == dlt645.Authorized("02123456", "12345678")
    assert dlt645.decode_payload(write.di, write.payload).values == (12.5,)
    cmd = dlt645.parse_relay_control(
        dlt645.relay_control_request("111111111111", RelayAction.KEEP_POWER, "2030-01-02 03:04:05")
    )
    assert cmd.action is RelayAction.KEEP_POWER and cmd.valid_until == "2030-01-02 03:04:05"


def test_read_address_roundtrip() -> None:
    frame = dlt645.read_address_response("000010604867")
    assert frame.control == 0x93 and dlt645.parse_read_address_response(frame) == "000010604867"


@pytest.mark.parametrize(
    ("di", "values"),
    [
        (0x00000000, (-12.34,)),
        (0x0001FF00, (100.0, 10.0, 20.0, 30.0, 40.0)),
        (0x0202FF00, (1.5, -0.25, None)),
        (0x0203FF00, (-1.2345, 0.5, 0.5, -2.2345)),
        (0x02060000, (-0.5,)),
        (0x02800002, (49.98,)),
        (0x02800007, (-5.5,)),
        (0x04000402, ("000012345678",)),
        (0x04000404, ("220V",)),
        (0x04000503, (0b1_0000_0101_0000,)),
        (0x04001501, ((1 << 10) | (1 << 69), (1, 2))),
        (0x03110000, (17,)),
        (0x03110003, ("2024-01-02 03:04:05", "2024-01-02 04:05:06")),
        (0x05060101, (1.0, 0.25, 0.25, 0.25, 0.25)),
        (0x05060005, ("2024-01-02 00:00",)),
        (0x04001005, (2.0,)),
        (0x03050000, (3, 125)),
    ],
)
def test_table_values_roundtrip(di: int, values: tuple[object, ...]) -> None:
    frame = dlt645.read_response("000012345678", di, values)  # type: ignore[arg-type]
    result = dlt645.parse_read_response(dlt645.decode(dlt645.encode(frame)))
    assert result.di == di and result.values == values and result.item


def test_signed_formats_are_sign_magnitude() -> None:
    payload = dlt645.encode_values(0x02020100, [-1.5])
    assert payload == bytes([0x00, 0x15, 0x80])  # 001.500 A with bit 7 of the top byte set
    assert dlt645.encode_values(0x00000000, [-0.0]) == bytes([0, 0, 0, 0x80])


def test_status_words_decode_to_named_bits() -> None:
    assert dlt645.STATUS_WORD_3.names(0x1050) == ("relay_open", "relay_command_open", "keep_power")
    assert dlt645.REPORT_EVENTS[69].name == "power_down" and dlt645.REPORT_EVENTS[69].count_di == 0x03110000
    assert dlt645.REPORT_EVENTS[18].record_di == 0x12010101


def test_unknown_di_gives_raw_payload() -> None:
    result = dlt645.parse_read_response(dlt645.read_response("000012345678", 0x0F0F0F0F, b"\x01\x02"))
    assert not result.known and result.values == ("0102",)


@pytest.mark.parametrize(
    "make",
    [
        lambda: dlt645.read_request("12345678901", 0x00010000),
        lambda: dlt645.read_request("12345678901B", 0x00010000),
        lambda: dlt645.read_request("000012345678", 1 << 32),
        lambda: dlt645.change_baud_request("000012345678", 300),
        lambda: dlt645.freeze_request("000012345678", 100, 0, 0, 0),
        lambda: dlt645.relay_control_request("000012345678", 0x99, "2030-01-02 03:04:05"),
        lambda: dlt645.write_request("000012345678", 0x04001001, [1.0], password="2", operator="0"),
        lambda: dlt645.encode_values(0x02010100, [-1.0]),
        lambda: dlt645.encode_values(0x02010100, [1000.0]),
        lambda: dlt645.encode_values(0x12345678, [1.0]),
        lambda: dlt645.broadcast_time_request(datetime(1999, 1, 1)),
        lambda: Frame("000012345678", 0x11, bytes(201)),
    ],
)
def test_bad_arguments_raise_encode_error(make: object) -> None:
    with pytest.raises(EncodeError):
        make()  # type: ignore[operator]


def test_parsers_reject_wrong_frames() -> None:
    with pytest.raises(ProtocolError):
        dlt645.parse_read_response(dlt645.read_request("000012345678", 0x00010000))
    with pytest.raises(ProtocolError):
        dlt645.parse_error(dlt645.ack_response("000012345678", 0x11))
    with pytest.raises(ProtocolError, match="not BCD"):
        dlt645.parse_read_response(dlt645.read_response("000012345678", 0x02010100, b"\x1a\x22"))
    with pytest.raises(ProtocolError, match="expected 2"):
        dlt645.parse_read_response(dlt645.read_response("000012345678", 0x02010100, b"\x22"))


def test_frame_properties() -> None:
    frame = Frame("aaaaaaaaaaaa", 0xB2, b"")
    assert frame.address == "AAAAAAAAAAAA"
    assert (frame.function, frame.is_response, frame.is_abnormal, frame.has_follow_up) == (
        "read_followup",
        True,
        False,
        True,
    )
