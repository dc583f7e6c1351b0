"""Data units: encode/decode round trips for every modelled unit, the synthetic AFN06 F5
power-off/power-on reports (PROTOCOLS.md §3.5: no public capture exists), Fn <-> DT, builders."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols import dlt645
from protocols import gdw1376_2 as q
from protocols.errors import EncodeError, ProtocolError
from protocols.inspect import describe

METER = dlt645.encode(dlt645.read_request("000012345678", 0x00010000), preamble=2)
VENDOR = q.VendorVersion("ZW", "10", dt.date(2016, 10, 20), "2010")

UNITS: list[tuple[int, int, bool, q.Unit]] = [
    (0x00, 1, True, q.Confirm(status=0xFFFFFFFF, wait_s=300)),
    (0x00, 1, False, q.Confirm()),
    (0x00, 2, True, q.Deny(111)),
    (0x01, 1, False, q.NoUnit()),
    (0x02, 1, False, q.Forward(q.DLT645_2007, METER)),
    (0x03, 1, True, VENDOR),
    (0x03, 4, True, q.MasterAddress("004096000032")),
    (0x03, 10, True, q.RunMode(bytes.fromhex("B2 2F 01 00 00 00"), 90, 10, 2048, 512, 30, "020101010000",
                               2040, 17, dt.date(2019, 6, 28), dt.date(2019, 6, 27), VENDOR, (0x8000, 9600))),
    (0x05, 1, False, q.MasterAddress("1234567890AB")),
    (0x05, 2, False, q.EventReport(1)),
    (0x05, 3, False, q.StartBroadcast(q.DLT645_2007, METER)),
    (0x06, 1, True, q.NodeReport((
        q.ReportedNode("000000000006", 2, 1),
        q.ReportedNode("000000000007", 3, 2),
    ))),
    (0x06, 2, True, q.ReadData(5, q.DLT645_2007, 3, METER)),
    (0x06, 3, True, q.RouteChange(1)),
    (0x06, 4, True, q.DeviceReport((
        q.DeviceNode("000000000009", 2, 7, 0, 3, (q.AttachedNode("000000000010", 2),)),
    ))),
    (0x06, 5, True, q.NodeEvent(1, q.DLT645_2007, METER)),
    (0x10, 1, True, q.NodeCount(12, 2040)),
    (0x10, 2, False, q.NodeQuery(1, 10)),
    (0x10, 2, True, q.NodePage(2, (
        q.NodeInfo.of("000000000006", relay_level=1, signal_quality=9, phase_bits=4),
    ))),
    (0x10, 4, True, q.RouteState(3, 1, 0, 0, 2, 0, (0, 1, 2), (8, 8, 8))),
    (0x10, 21, False, q.NodeQuery(1, 5)),
    (0x10, 21, True, q.Topology(9, 1, (q.TopologyNode("000000000006", 2, 1, 0x21),))),
    (0x10, 31, True, q.PhaseInfo(9, 1, (q.PhaseNode("000000000006", 0x0F),))),
    (0x11, 1, False, q.AddNodes((q.ArchiveNode("000000000006"), q.ArchiveNode("100000000009", q.DLT698)))),
    (0x11, 2, False, q.DeleteNodes(("000000000006",))),
    (0x11, 5, False, q.StartRegistration(dt.datetime(2024, 5, 17, 13, 45, 0), 30, 2, 8)),
    (0x11, 6, False, q.NoUnit()),
    (0x12, 3, False, q.NoUnit()),
    (0x13, 1, False, q.Monitor(q.DLT645_2007, METER, delay_related=1, attached=("000000000011",))),
    (0x13, 1, True, q.MonitorReply(2, q.DLT645_2007, METER)),
    (0x14, 1, True, q.ReadRequest(2, "000000000006", 3)),
    (0x14, 1, False, q.ReadReply(2, METER, 0, ("000000000011", "000000000012"))),
    (0x14, 2, True, q.NoUnit()),
    (0x14, 2, False, q.Clock(dt.datetime(2024, 12, 31, 23, 59, 58))),
    (0x14, 3, True, q.DelayRequest("000000000006", 4, METER)),
    (0x14, 3, False, q.DelayCorrected(METER)),
    (0xF1, 1, False, q.Concurrent(q.DLT645_2007, METER)),
    (0xF1, 1, True, q.Concurrent(q.DLT645_2007, b"")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("afn", "fn", "up", "unit"), UNITS, ids=[f"{a:02X}F{f}{'up' if u else 'dn'}" for a, f, u, _ in UNITS]
)
def test_unit_round_trips_through_a_whole_frame(afn: int, fn: int, up: bool, unit: q.Unit) -> None:
    addressed = afn in (0x02, 0x13, 0x14, 0xF1) and not (afn == 0x14 and fn != 1 and not up)
    frame = q.make_frame(
        afn, fn, unit, up=up, seq=7,
        src="111111111111" if addressed else None, dst="000000000006" if addressed else None,
    )  # fmt: skip
    raw = q.encode(frame)
    again = q.decode(raw)
    assert again == frame
    assert q.parse_unit(again) == unit
    out = describe(raw)
    assert out["ok"] and out["roundtrip"] and out["protocol"] == "gdw1376.2"


def test_carried_645_frames_are_decoded_recursively() -> None:
    unit = q.MonitorReply(2, q.DLT645_2007, METER)
    inner = q.carried(unit)
    assert isinstance(inner, dlt645.Frame) and inner.address == "000012345678"
    assert q.carried(q.Forward(q.TRANSPARENT, METER)) == inner  # transparent: sniffed
    assert q.carried(q.Forward(q.TRANSPARENT, b"\x01\x02")) is None
    assert q.carried(q.Concurrent(q.DLT645_2007, b"")) is None
    with pytest.raises(ProtocolError):
        q.carried(q.Forward(q.DLT645_2007, METER[:-2] + b"\x00\x16"))


def test_carried_698_follows_the_dlt698_codec_when_present() -> None:
    raw698 = bytes.fromhex("68 17 00 43 05 09 00 00 00 00 10 00 DA AD 05 01 07 00 10 02 00 00 04 01 16")
    decode698 = q.dlt698_decoder()
    if decode698 is None:
        assert q.carried(q.Forward(q.DLT698, raw698)) is None
    else:
        assert q.carried(q.Forward(q.DLT698, raw698)) == decode698(raw698)


# --- synthetic AFN06 F5 power-off / power-on reports (built from PROTOCOLS.md §3.5) -------------

SYNTHETIC_POWER_OFF_METERS = (
    # SYNTHETIC, not captured: device type 01 meter, protocol 04, event 01 power-off, two meters.
    # L = 31 = 1FH; CS = sum(C..last data byte) mod 256 = 03H, worked out by hand from §3.2.
    "68 1F 00 C3 00 00 00 00 01 09 06 10 00 01 04 0D 01 06 00 00 00 00 00 07 00 00 00 00 00 03 16"
)


def test_synthetic_power_off_report_of_two_meters() -> None:
    event = q.PowerEvent(q.POWER_OFF, (q.PowerNode("000000000006"), q.PowerNode("000000000007")))
    unit = q.NodeEvent.power_report(event, device_type=1)
    frame = q.make_frame(0x06, 5, unit, up=True, prm=True, seq=9, info=q.UpInfo(event_flag=1, seq=9))
    raw = q.encode(frame)
    assert raw == bytes.fromhex(SYNTHETIC_POWER_OFF_METERS)
    assert raw[3] == 0xC3 and raw[10:13] == b"\x06\x10\x00"  # up, PRM=1, HPLC; AFN06, DT F5 = 10 00
    parsed = q.parse_unit(q.decode(raw))
    assert isinstance(parsed, q.NodeEvent)
    assert (parsed.device_type, parsed.protocol, len(parsed.content)) == (1, q.POWER_EVENT, 13)
    assert parsed.power == event and parsed.power.kind_name == "power-off"
    out = describe(raw)
    assert out["data"]["power"]["kind_name"] == "power-off"
    assert [n["address"] for n in out["data"]["power"]["nodes"]] == ["000000000006", "000000000007"]


def test_synthetic_power_on_report_of_a_collector_carries_a_state_byte_per_address() -> None:
    event = q.PowerEvent(q.POWER_ON, (q.PowerNode("000000000021", True), q.PowerNode("000000000022", False)))
    unit = q.NodeEvent.power_report(event, device_type=0)
    assert unit.content == bytes.fromhex("02 21 00 00 00 00 00 01 22 00 00 00 00 00 00")
    raw = q.encode(q.make_frame(0x06, 5, unit, up=True, prm=True))
    assert q.parse_unit(q.decode(raw)).power == event  # type: ignore[attr-defined]
    with pytest.raises(EncodeError):
        q.NodeEvent.power_report(q.PowerEvent(q.POWER_ON, (q.PowerNode("000000000021"),)), device_type=0)


def test_malformed_power_event_is_a_protocol_error_pointing_into_the_frame() -> None:
    unit = q.NodeEvent(1, q.POWER_EVENT, bytes.fromhex("01 06 00 00 00 00"))  # 5 address bytes
    frame = q.make_frame(0x06, 5, unit, up=True, prm=True)
    with pytest.raises(ProtocolError) as info:
        q.parse_unit(frame)
    assert info.value.offset is not None and q.unit_offset(frame) < info.value.offset < frame.length
    assert not describe(q.encode(frame))["ok"]


def test_status_word_event_carries_the_meter_frame() -> None:
    unit = q.NodeEvent(1, q.DLT645_2007, METER)
    assert isinstance(q.carried(unit), dlt645.Frame)
    assert q.NodeEvent(1, q.REFUSED_NODE, b"\x01").frame == b""


# --- link-layer details -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "dt_hex"), [(1, "01 00"), (5, "10 00"), (8, "80 00"), (10, "02 01"), (200, "80 18")]
)
def test_fn_dt_mapping(fn: int, dt_hex: str) -> None:
    assert q.fn_to_dt(fn) == bytes.fromhex(dt_hex)
    dt1, dt2 = bytes.fromhex(dt_hex)
    assert q.dt_to_fn(dt1, dt2) == fn


def test_dt1_with_several_bits_is_rejected_at_its_offset() -> None:
    raw = bytearray(q.encode(q.make_frame(0x10, 1)))
    raw[11] = 0x03
    raw[-2] = sum(raw[3:-2]) & 0xFF
    with pytest.raises(ProtocolError) as info:
        q.decode(bytes(raw))
    assert info.value.offset == 11


def test_unknown_fn_is_kept_raw_not_an_error() -> None:
    frame = q.make_frame(0x03, 12, q.RawUnit(b"\x01\x02\x03"), up=True)
    unit = q.parse_unit(q.decode(q.encode(frame)))
    assert unit == q.RawUnit(b"\x01\x02\x03")
    out = describe(q.encode(frame))
    assert out["ok"] and out["data"]["data"] == "01 02 03"


def test_relay_addresses_follow_the_relay_level() -> None:
    frame = q.make_frame(
        0x13, 1, q.Monitor(q.DLT645_2007, METER), src="111111111111", relays=("000000000001", "000000000002"),
        dst="000000000006",
    )  # fmt: skip
    raw = q.encode(frame)
    assert raw[4] == 0x24  # module flag + relay level 2
    assert q.decode(raw).relays == ("000000000001", "000000000002")
    assert describe(raw)["relays"] == ["000000000001", "000000000002"]


def test_down_info_bits_round_trip() -> None:
    info = q.DownInfo(1, 1, 1, 1, 15, 15, 15, 255, 0x7FFF, True, 255)
    assert info.to_bytes() == bytes.fromhex("FF FF FF FF FF FF")
    assert q.DownInfo.from_bytes(info.to_bytes()) == info


def test_frame_refuses_inconsistent_fields() -> None:
    with pytest.raises(EncodeError):
        q.Frame(0x43, q.UpInfo(), 0x10, 1)  # down control, up info
    with pytest.raises(EncodeError):
        q.Frame(0x43, q.DownInfo(module_flag=1), 0x10, 1)  # no addresses
    with pytest.raises(EncodeError):
        q.Frame(0x43, q.DownInfo(), 0x10, 1, src="000000000001", dst="000000000002")
    with pytest.raises(EncodeError):
        q.make_frame(0x10, 1, q.Deny(1))  # wrong unit for AFN10 F1
    with pytest.raises(EncodeError):
        q.Forward(q.DLT645_2007, b"\x00" * 256).encode()
