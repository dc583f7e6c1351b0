"""DL/T 698.45 APDUs and A-XDR data: round trips of every service and type, a synthetic
REPORT-Notification frame, fragment split/reassembly, object-table scaling."""

from __future__ import annotations

import pytest

from protocols import dlt698
from protocols.dlt698 import OAD, OMD, Data, DataType
from protocols.errors import EncodeError, ProtocolError

D = Data
T = DataType
DTS = dlt698.DateTimeS(2024, 5, 6, 7, 8, 9)
TAG = dlt698.TimeTag(DTS, dlt698.TI(1, 5))
ENERGY = D(T.ARRAY, tuple(D(T.DOUBLE_LONG_UNSIGNED, v) for v in (2475, 670, 805, 584, 414)))
MS_ALL = dlt698.MS(1)
TSA = dlt698.TSA.of("000000000001")

EVERY_TYPE = [
    D(T.NULL),
    D(T.STRUCTURE, (D(T.BOOL, True), D(T.ARRAY, ()))),
    D(T.BIT_STRING, dlt698.BitString(16, b"\x80\x01")),
    D(T.DOUBLE_LONG, -(2**31)),
    D(T.DOUBLE_LONG_UNSIGNED, 2**32 - 1),
    D(T.OCTET_STRING, bytes(200)),
    D(T.VISIBLE_STRING, "220V"),
    D(T.UTF8_STRING, "台区"),
    D(T.INTEGER, -128),
    D(T.LONG, -32768),
    D(T.UNSIGNED, 255),
    D(T.LONG_UNSIGNED, 65535),
    D(T.LONG64, -(2**63)),
    D(T.LONG64_UNSIGNED, 2**64 - 1),
    D(T.ENUM, 3),
    D(T.FLOAT32, 1.5),
    D(T.FLOAT64, -2.25),
    D(T.DATE_TIME, dlt698.DateTime(2017, 5, 16, 2, 0, 21, 25, 999)),
    D(T.DATE, dlt698.Date(2017, 5, 16, 2)),
    D(T.TIME, dlt698.Time(23, 59, 58)),
    D(T.DATE_TIME_S, DTS),
    D(T.OI, 0x4000),
    D(T.OAD, OAD.of(0x00100201)),
    D(T.ROAD, dlt698.ROAD(OAD.of(0x50040200), (OAD.of(0x00100200), OAD.of(0x00200200)))),
    D(T.OMD, OMD.of(0x40007F00)),
    D(T.TI, dlt698.TI(1, 15)),
    D(T.TSA, TSA),
    D(T.MAC, b"\x01\x02\x03\x04"),
    D(T.RN, bytes(16)),
    D(T.REGION, dlt698.Region(2, D(T.LONG_UNSIGNED, 1), D(T.LONG_UNSIGNED, 9))),
    D(T.SCALER_UNIT, dlt698.ScalerUnit(-2, 32)),
    *[
        D(T.RSD, rsd)
        for rsd in (
            dlt698.RSD(0),
            dlt698.RSD(1, (OAD.of(0x20210200), D(T.DATE_TIME_S, DTS))),
            dlt698.RSD(
                2,
                (OAD.of(0x20210200), D(T.DATE_TIME_S, DTS), D(T.DATE_TIME_S, DTS), D(T.TI, dlt698.TI(1, 15))),
            ),
            dlt698.RSD(3, ((OAD.of(0x20210200), D(T.NULL), D(T.NULL), D(T.NULL)),)),
            dlt698.RSD(4, (DTS, MS_ALL)),
            dlt698.RSD(5, (DTS, dlt698.MS(3, (TSA,)))),
            dlt698.RSD(6, (DTS, DTS, dlt698.TI(1, 15), dlt698.MS(2, (1, 2)))),
            dlt698.RSD(7, (DTS, DTS, dlt698.TI(2, 1), dlt698.MS(4, (1, 300)))),
            dlt698.RSD(8, (DTS, DTS, dlt698.TI(3, 1), MS_ALL)),
            dlt698.RSD(9, (1,)),
            dlt698.RSD(10, (1, dlt698.MS(5, (dlt698.Region(0, D(T.UNSIGNED, 1), D(T.UNSIGNED, 5)),)))),
        )
    ],
    D(T.CSD, OAD.of(0x00100200)),
    D(T.CSD, dlt698.ROAD(OAD.of(0x50020200), (OAD.of(0x20000200),))),
    D(T.MS, dlt698.MS(0)),
    D(T.SID, dlt698.SID(0x85010203, b"\x12\x34")),
    D(T.SID_MAC, dlt698.SidMac(dlt698.SID(1, b""), b"\xaa\xbb\xcc\xdd")),
    D(T.COMDCB, dlt698.ComDcb(3, 2, 3, 1, 0)),
    D(T.RCSD, (OAD.of(0x40010200), dlt698.ROAD(OAD.of(0x50040200), (OAD.of(0x00100200),)))),
]


@pytest.mark.parametrize("data", EVERY_TYPE, ids=[f"{d.type.label}-{i}" for i, d in enumerate(EVERY_TYPE)])
def test_every_data_type_round_trips(data: Data) -> None:
    raw = data.encode()
    assert raw[0] == data.type.value
    assert Data.decode(raw) == data
    assert Data.decode(raw).encode() == raw


def test_date_time_s_is_binary_not_bcd() -> None:
    assert D(T.DATE_TIME_S, dlt698.DateTimeS(2017, 6, 5, 10, 24, 12)).encode().hex() == "1c07e106050a180c"


def test_long_lengths_use_the_long_form_and_keep_a_received_one() -> None:
    assert D(T.OCTET_STRING, bytes(200)).encode()[:3] == b"\x09\x81\xc8"
    assert D(T.OCTET_STRING, bytes(300)).encode()[:4] == b"\x09\x82\x01\x2c"
    raw = bytes.fromhex("0A820007") + b"NO TEST"
    assert Data.decode(raw) == D(T.VISIBLE_STRING, "NO TEST")
    assert Data.decode(raw).encode() == raw


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (D(T.UNSIGNED, 256), "unsigned"),
        (D(T.LONG, "x"), "long"),
        (D(T.VISIBLE_STRING, "é"), "visible-string"),
        (D(T.ARRAY, [D(T.NULL)]), "array"),
        (D(T.RSD, dlt698.RSD(11)), "selector 11"),
        (D(T.TSA, dlt698.TSA(b"\x05\x01")), "TSA"),
    ],
)
def test_unencodable_values_raise_encode_error(data: Data, reason: str) -> None:
    with pytest.raises(EncodeError, match=reason):
        data.encode()


@pytest.mark.parametrize(
    ("raw", "offset", "reason"),
    [
        ("07", 0, "unknown Data type"),
        ("0600", 1, "truncated"),
        ("0105" + "00" * 3, 1, "count 5"),
        ("0A02FFFE", 1, "ascii"),
        ("03 02", 1, "bool"),
        ("5A 0B", 1, "selector 11"),
        ("5B 02", 1, "CSD choice"),
        ("01 01" * 20 + "00", 34, "nested deeper"),
    ],
)
def test_bad_data_is_a_protocol_error_with_offset(raw: str, offset: int, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        Data.decode(bytes.fromhex(raw))
    assert info.value.offset == offset
    assert reason in info.value.reason


RESULT = dlt698.ResultNormal(OAD.of(0x00100200), data=ENERGY)
FAILED = dlt698.ResultNormal(OAD.of(0x20000200), dar=6)
RECORD = dlt698.ResultRecord(
    OAD.of(0x30110200),
    (OAD.of(0x201E0200), OAD.of(0x20200200)),
    rows=((D(T.DATE_TIME_S, DTS), D(T.DATE_TIME_S, DTS)),),
)
GET_RECORD = dlt698.GetRecord(OAD.of(0x30110200), dlt698.RSD(9, (1,)), (OAD.of(0x201E0200),))
FOLLOW = dlt698.FollowReport(
    1, (dlt698.ResultNormal(OAD.of(0x20150200), data=D(T.BIT_STRING, dlt698.BitString(32, bytes(4)))),)
)
ALL_APDUS: list[dlt698.Apdu] = [
    dlt698.LinkRequest(0, 1, 600, dlt698.DateTime(2017, 5, 16, 2, 0, 21, 25, 0)),
    dlt698.LinkResponse(0, 0x80, *(dlt698.DateTime(2024, 1, 1, 1, 0, 0, 0, 0),) * 3),
    dlt698.ConnectRequest(
        1, 0x16, bytes(8), bytes(16), 512, 512, 1, 2000, 7200, dlt698.ConnectMechanism(1, ("pw",))
    ),
    dlt698.ConnectRequest(
        1, 0x16, bytes(8), bytes(16), 512, 512, 1, 2000, 7200, dlt698.ConnectMechanism(0), TAG
    ),
    dlt698.ConnectResponse(1, b"0" * 32, 0x16, bytes(8), bytes(16), 512, 512, 1, 2000, 7200, 0, (b"r", b"s")),
    dlt698.ReleaseRequest(2),
    dlt698.ReleaseResponse(2, 0),
    dlt698.ReleaseNotification(2, DTS, DTS),
    dlt698.GetRequestNormal(7, OAD.of(0x00100200), TAG),
    dlt698.GetRequestNormalList(7, (OAD.of(0x00100200), OAD.of(0x20000200))),
    dlt698.GetRequestRecord(7, GET_RECORD),
    dlt698.GetRequestRecordList(7, (GET_RECORD, GET_RECORD)),
    dlt698.GetRequestNext(7, 3),
    dlt698.GetRequestMD5(7, OAD.of(0x60120300)),
    dlt698.GetResponseNormal(7, RESULT, FOLLOW, TAG),
    dlt698.GetResponseNormalList(7, (RESULT, FAILED)),
    dlt698.GetResponseRecord(7, RECORD),
    dlt698.GetResponseRecordList(7, (RECORD, dlt698.ResultRecord(OAD.of(0x30110200), (), dar=4))),
    dlt698.GetResponseNext(7, False, 1, 1, (RESULT,)),
    dlt698.GetResponseNext(7, True, 2, 2, (RECORD,)),
    dlt698.GetResponseNext(7, True, 2, 0, 9),
    dlt698.GetResponseMD5(7, OAD.of(0x60120300), digest=bytes(16)),
    dlt698.SetRequestNormal(8, OAD.of(0x40000200), D(T.DATE_TIME_S, DTS)),
    dlt698.SetRequestNormalList(8, ((OAD.of(0x40000200), D(T.DATE_TIME_S, DTS)),)),
    dlt698.SetResponseNormal(8, OAD.of(0x40000200), 0),
    dlt698.SetResponseNormalList(8, ((OAD.of(0x40000200), 3),)),
    dlt698.ActionRequestNormal(9, OMD.of(0x40007F00), D(T.DATE_TIME_S, DTS)),
    dlt698.ActionRequestNormalList(9, ((OMD.of(0x80008100), D(T.NULL)),)),
    dlt698.ActionResponseNormal(9, OMD.of(0x40007F00), 0, D(T.UNSIGNED, 1)),
    dlt698.ActionResponseNormalList(9, ((OMD.of(0x80008100), 0, None),)),
    dlt698.ReportNotificationList(1, (RESULT,)),
    dlt698.ReportNotificationRecordList(1, (RECORD,)),
    dlt698.ReportResponseList(1, (OAD.of(0x33200200),)),
    dlt698.ReportResponseRecordList(1, (OAD.of(0x30110200),)),
    dlt698.ProxyGetRequestList(3, 60, ((TSA, 10, (OAD.of(0x00100200),)),)),
    dlt698.ProxyGetRequestRecord(3, 60, TSA, GET_RECORD),
    dlt698.ProxyTransCommandRequest(
        3, OAD.of(0xF2010201), dlt698.ComDcb(3, 2, 3, 1, 0), 500, 10, b"\x68\x16"
    ),
    dlt698.ProxyGetResponseList(3, ((TSA, (RESULT,)),)),
    dlt698.ProxyGetResponseRecord(3, TSA, RECORD),
    dlt698.ProxyTransCommandResponse(3, OAD.of(0xF2010201), reply=b"\x68\x16"),
    dlt698.ProxyTransCommandResponse(3, OAD.of(0xF2010201), dar=33),
    dlt698.ProxyOpaque(0x09, 3, b"\x01\x02\x03"),
    dlt698.SecurityRequest(False, bytes.fromhex("0501014001020000"), 1, bytes(16)),
    dlt698.SecurityRequest(True, b"\xde\xad", 2, (bytes(16), b"\x01\x02\x03\x04")),
    dlt698.SecurityRequest(False, bytes.fromhex("0501014001020000"), 3, dlt698.SID(1, b"\x01")),
    dlt698.SecurityResponse(2, dar=22),
    dlt698.SecurityResponse(1, payload=b"\x00", mac=b"\x01\x02\x03\x04"),
    dlt698.ErrorResponse(1, 2),
    dlt698.ErrorResponse(1, 255, from_server=False),
]


@pytest.mark.parametrize("apdu", ALL_APDUS, ids=[f"{a.service}-{i}" for i, a in enumerate(ALL_APDUS)])
def test_every_apdu_round_trips(apdu: dlt698.Apdu) -> None:
    raw = apdu.encode()
    back = dlt698.decode_apdu(raw)
    assert back == apdu
    assert back.encode() == raw
    assert type(apdu).decode(raw) == apdu


def test_wire_layout_of_get_request_normal_and_response() -> None:
    assert dlt698.GetRequestNormal(7, OAD.of(0x00100200)).encode().hex() == "0501070010020000"
    raw = dlt698.GetResponseNormal(7, dlt698.ResultNormal(OAD.of(0x40010200), dar=6)).encode()
    assert raw.hex() == "8501074001020000060000"


@pytest.mark.parametrize(
    ("raw", "offset", "reason"),
    [
        ("", 0, "APDU tag"),
        ("42", 0, "unknown APDU tag 0x42"),
        ("0509", 1, "choice 9 not supported"),
        ("050107001002", 3, "truncated OAD"),
        ("05010700100200", 7, "TimeTag presence"),
        ("0501070010020002", 7, "TimeTag presence flag 0x02"),
        ("05010700100200" + "00" + "FF", 8, "trailing"),
        ("8501070010020002", 7, "Get-Result choice 2"),
    ],
)
def test_bad_apdus_are_rejected_with_offset(raw: str, offset: int, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        dlt698.decode_apdu(bytes.fromhex(raw), base=0)
    assert info.value.offset == offset
    assert reason in info.value.reason


def test_type_specific_decode_rejects_another_service() -> None:
    with pytest.raises(ProtocolError, match="GET-Request-Normal is not a SetRequestNormal"):
        dlt698.SetRequestNormal.decode(dlt698.GetRequestNormal(1, OAD.of(0x40010200)).encode())


def test_synthetic_report_notification_power_down_event() -> None:
    """SYNTHETIC (no public 88H frame with valid CRCs exists, PROTOCOLS.md §5): a meter reports the
    new-event list 33200200 = [30110200] with REPORT-Notification-List (C=83H), built from §2.2/§2.3;
    the terminal answers REPORT-Response-List with the same PIID and OAD, then reads the record."""
    events = D(T.ARRAY, (D(T.OAD, OAD.of(0x30110200)),))
    note = dlt698.ReportNotificationList(0x03, (dlt698.ResultNormal(OAD.of(0x33200200), data=events),))
    apdu = note.encode()
    assert apdu.hex(" ").upper() == "88 01 03 01 33 20 02 00 01 01 01 51 30 11 02 00 00 00"
    raw = dlt698.encode(dlt698.Frame(dlt698.CONTROL_SERVER_REPORT, "000000000001", 0, apdu), preamble=4)
    frame = dlt698.decode(raw)
    assert frame.direction == "server->client" and frame.prm == 0 and frame.function == 3
    assert dlt698.decode_apdu(frame.apdu) == note
    assert note.response() == dlt698.ReportResponseList(0x03, (OAD.of(0x33200200),))
    assert note.response().encode().hex() == "080103013320020000"
    from protocols.inspect import describe

    out = describe(raw)
    assert out["service"] == "REPORT-Notification-List" and out["oads"] == ["0x33200200"]
    assert out["data"] == [{"name": "new_events", "type": "array", "value": [{"OAD": "0x30110200"}]}]


def test_synthetic_report_notification_record_list() -> None:
    """SYNTHETIC: power-down record (3011) reported as REPORT-Notification-RecordList (88 02)."""
    note = dlt698.ReportNotificationRecordList(0x04, (RECORD,))
    raw = dlt698.encode(dlt698.Frame(0x83, "000000000001", 0, note.encode()), preamble=0)
    assert dlt698.decode_apdu(dlt698.decode(raw).apdu) == note
    assert note.response() == dlt698.ReportResponseRecordList(0x04, (OAD.of(0x30110200),))


VECTOR_FRAGMENTS = [
    "68 14 00 A3 05 02 00 00 00 00 00 10 76 75 05 01 05 01 15 D6 D1 16",
    "68 14 00 A3 05 02 00 00 00 00 00 10 76 75 06 F1 F1 01 02 5A 30 16",
    "68 13 00 A3 05 02 00 00 00 00 00 10 90 D5 07 41 00 00 04 FC 16",
]


def test_vector_fragments_reassemble_to_the_get_request() -> None:
    r = dlt698.Reassembler()
    frames = [dlt698.decode(bytes.fromhex(h)) for h in VECTOR_FRAGMENTS]
    assert r.add(frames[0]) is None and r.add(frames[1]) is None
    apdu = r.add(frames[2])
    assert apdu == bytes.fromhex("05 01 15 F1 01 02 00 00")
    assert dlt698.decode_apdu(apdu) == dlt698.GetRequestNormal(0x15, OAD.of(0xF1010200))
    assert (r.completed, r.abandoned, r.in_progress) == (1, 0, False)


def test_ack_matches_vector_698_005() -> None:
    ack = dlt698.ack_for(dlt698.decode(bytes.fromhex(VECTOR_FRAGMENTS[0])))
    assert (
        dlt698.encode(ack, preamble=0).hex(" ").upper()
        == "68 11 00 63 05 02 00 00 00 00 00 10 06 5C 05 81 E7 17 16"
    )


def test_split_and_reassemble_round_trip() -> None:
    apdu = dlt698.GetResponseNormal(1, RESULT).encode()
    frame = dlt698.Frame(0xC3, "000000000001", 0, apdu)
    parts = dlt698.split(frame, 7, first_seq=4094)
    assert [p.fragment.kind for p in parts if p.fragment] == [
        dlt698.FragmentType.START,
        *[dlt698.FragmentType.MIDDLE] * (len(parts) - 2),
        dlt698.FragmentType.END,
    ]
    assert [p.fragment.seq for p in parts if p.fragment][:3] == [4094, 4095, 0]  # wraps at 12 bits
    r = dlt698.Reassembler()
    out = [r.add(dlt698.decode(dlt698.encode(p))) for p in parts]
    assert out[-1] == apdu and out[:-1] == [None] * (len(parts) - 1)


@pytest.mark.parametrize(
    ("order", "reason"),
    [((0, 2), "gap"), ((0, 1, 1), "duplicate"), ((1,), "without a start"), ((0, 1, 0), "abandons")],
)
def test_reassembler_rejects_gaps_duplicates_and_orphans(order: tuple[int, ...], reason: str) -> None:
    parts = dlt698.split(dlt698.Frame(0xC3, "000000000001", 0, bytes(range(30))), 10)
    r = dlt698.Reassembler()
    with pytest.raises(ProtocolError, match=reason):
        for i in order:
            r.add(parts[i])


def test_reassembler_bounds_the_apdu() -> None:
    parts = dlt698.split(dlt698.Frame(0xC3, "000000000001", 0, bytes(30)), 10)
    r = dlt698.Reassembler(max_apdu=15)
    r.add(parts[0])
    with pytest.raises(ProtocolError, match="exceeds 15"):
        r.add(parts[1])


@pytest.mark.parametrize(
    ("oad", "data", "expected"),
    [
        (
            0x20000200,
            D(T.ARRAY, tuple(D(T.LONG_UNSIGNED, v) for v in (2201, 2199, 2300))),
            [220.1, 219.9, 230.0],
        ),
        (
            0x20010200,
            D(T.ARRAY, tuple(D(T.DOUBLE_LONG, v) for v in (1340, -2340, 3340))),
            [1.34, -2.34, 3.34],
        ),
        (
            0x20040200,
            D(T.ARRAY, tuple(D(T.DOUBLE_LONG, v) for v in (12345, 4000, 4000, 4345))),
            [1.2345, 0.4, 0.4, 0.4345],
        ),
        (0x20050201, D(T.DOUBLE_LONG, -5000), [-0.5]),
        (0x200A0200, D(T.ARRAY, (D(T.LONG, 998),)), [0.998]),
        (0x200F0200, D(T.LONG_UNSIGNED, 5001), [50.01]),
        (0x00100201, D(T.DOUBLE_LONG_UNSIGNED, 2475), [24.75]),
        (0x00100400, D(T.ARRAY, (D(T.LONG64_UNSIGNED, 247512),)), [24.7512]),
        (
            0x202C0200,
            D(T.STRUCTURE, (D(T.DOUBLE_LONG_UNSIGNED, 12345), D(T.DOUBLE_LONG_UNSIGNED, 7))),
            [123.45, 7],
        ),
    ],
)
def test_object_table_applies_scaler_and_units(oad: int, data: Data, expected: list[float]) -> None:
    named = dlt698.values(OAD.of(oad), data)
    assert named is not None
    assert [n["value"] for n in named] == expected


def test_object_table_names_quantities_in_their_normalized_units() -> None:
    named = dlt698.values(OAD.of(0x20040200), D(T.ARRAY, (D(T.DOUBLE_LONG, 12345),)))
    assert named == [
        {"quantity": "power.active.total", "type": "double-long", "value": 1.2345, "unit": "kW", "raw": 12345}
    ]
    assert dlt698.values(OAD.of(0x12340200), D(T.NULL)) is None
