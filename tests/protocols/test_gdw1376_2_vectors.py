"""Every vector of vectors/q1376_2.json (copied from /work/shared/vectors) decodes to its
``expected`` fields and re-encodes byte-exact; negative vectors are rejected with an offset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocols import dlt645
from protocols import gdw1376_2 as q
from protocols.errors import ProtocolError
from protocols.inspect import describe

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors" / "q1376_2.json").read_text())
POSITIVE = [v for v in VECTORS if v["checksum_verified"] and not v["expected"].get("negative_test")]
NEGATIVE = [v for v in VECTORS if v not in POSITIVE]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def test_vector_file_has_both_kinds() -> None:
    assert len(POSITIVE) >= 25
    assert NEGATIVE


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_decode_matches_expected_link_fields(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    exp = vector["expected"]
    frame = q.decode(raw)
    assert frame.length == exp["length_L"] == len(raw)
    assert frame.control == int(exp["control"], 16)
    assert frame.is_up == exp["dir"].startswith("up")
    assert frame.prm == exp["prm"]
    assert frame.comm_mode == exp["comm_mode"]
    assert frame.comm_mode_name == exp["comm_mode_name"]
    assert frame.info.to_bytes() == bytes.fromhex(exp["R"])
    info = frame.info
    assert (info.route_flag, info.module_flag, info.relay_level) == (
        exp["route_flag"],
        exp["comm_module_flag"],
        exp["relay_level"],
    )
    assert (info.channel, info.seq) == (exp["channel"], exp["seq"])
    if isinstance(info, q.UpInfo):
        assert (info.event_flag, info.phase) == (exp["event_flag"], exp["phase"])
    else:
        assert info.reply_bytes == exp["expected_reply_bytes"]
        assert info.rate == exp["rate"]
        assert ("kbit/s" if info.rate_kbps else "bit/s") == exp["rate_unit"]
    assert frame.src == exp.get("A1_src")
    assert frame.dst == exp.get("A3_dst")
    assert frame.afn == int(exp["AFN"], 16)
    assert frame.fn == exp["Fn"]
    assert q.fn_to_dt(frame.fn) == bytes.fromhex(exp["DT"])
    assert frame.unit == bytes.fromhex(exp["data_unit"])
    assert raw[-2] == int(exp["cs"], 16)


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_reencode_is_byte_exact(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = q.decode(raw)
    assert q.encode(frame) == raw
    unit = q.parse_unit(frame)
    assert unit.encode() == frame.unit
    rebuilt = q.make_frame(
        frame.afn,
        frame.fn,
        unit,
        up=frame.is_up,
        prm=bool(frame.prm),
        comm_mode=frame.comm_mode,
        info=frame.info,
        src=frame.src,
        relays=frame.relays,
        dst=frame.dst,
    )
    assert q.encode(rebuilt) == raw


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_framer_finds_the_same_frame_byte_by_byte(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    framer = q.Framer()
    out = [item for i in range(len(raw)) for item in framer.feed(raw[i : i + 1])]
    assert out == [q.decode(raw)]
    assert (framer.pending, framer.errors, framer.skipped) == (0, 0, 0)


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_describe_auto_picks_gdw1376_2(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    out = describe(raw)
    assert out["protocol"] == "gdw1376.2"
    assert out["ok"] and out["roundtrip"]
    assert out["afn"] == int(vector["expected"]["AFN"], 16)
    assert out["fn"] == vector["expected"]["Fn"]
    assert out["seq"] == vector["expected"]["seq"]
    assert out["direction"] == ("up" if vector["expected"]["dir"].startswith("up") else "down")
    assert out["data"]["name"]
    json.dumps(out)  # JSON-ready


def _data(vector_id: str) -> tuple[q.Frame, Any]:
    vector = next(v for v in POSITIVE if v["id"] == vector_id)
    frame = q.decode(bytes.fromhex(vector["hex"]))
    return frame, q.parse_unit(frame)


def test_confirm_and_deny_units() -> None:
    _, confirm = _data("3762-003")
    assert confirm == q.Confirm(status=0, wait_s=2)
    assert not confirm.command_done
    _, deny = _data("3762-005")
    assert deny == q.Deny(7)
    assert deny.reason == "meter address does not exist"


def test_archive_units() -> None:
    assert _data("3762-002")[1] == q.AddNodes((q.ArchiveNode("100000000009", q.DLT698),))
    assert _data("3762-031")[1] == q.DeleteNodes(("000000000006",))
    page = _data("3762-017")[1]
    assert isinstance(page, q.NodePage)
    assert page.total == 3
    assert [n.address for n in page.nodes] == ["000000000006", "000000000100", "111111111111"]
    assert {(n.protocol, n.relay_level, n.signal_quality, n.phase_bits) for n in page.nodes} == {(2, 0, 0, 0)}


def test_query_answers() -> None:
    version = _data("3762-021")[1]
    assert (version.vendor, version.chip, version.date.isoformat(), version.version) == (
        "ZW",
        "10",
        "2016-10-20",
        "2010",
    )
    assert _data("3762-025")[1] == q.MasterAddress("004096000032")
    mode = _data("3762-023")[1]
    assert isinstance(mode, q.RunMode)
    assert (mode.comm_type, mode.route_management, mode.slave_info_mode, mode.periodic_read_mode) == (
        2,
        1,
        1,
        2,
    )
    assert (
        mode.monitor_timeout_s,
        mode.broadcast_timeout_s,
        mode.max_frame_len,
        mode.max_file_packet_len,
    ) == (
        20,
        10,
        2048,
        2048,
    )
    assert (mode.upgrade_wait_s, mode.master_address, mode.max_nodes, mode.current_nodes) == (
        30,
        "020101010000",
        2040,
        1,
    )
    assert (mode.protocol_date.isoformat(), mode.record_date.isoformat()) == ("2016-06-28", "2016-06-27")
    assert mode.vendor.vendor == "ZW" and mode.rates == (0x8000,)
    state = _data("3762-019")[1]
    assert state == q.RouteState(3, 1, 0, 0, 2, 0, (0, 0, 0), (8, 8, 8))


def test_module_led_reading_sequence() -> None:
    request = _data("3762-009")[1]
    assert request == q.ReadRequest(phase=1, address="000000000006", index=2)
    reply_frame, reply = _data("3762-010")
    assert isinstance(reply, q.ReadReply) and reply.flag == 2 and reply.attached == ()
    inner = q.carried(reply)
    assert isinstance(inner, dlt645.Frame)
    assert (inner.address, inner.control, inner.data) == ("000000000006", 0x11, bytes.fromhex("00 01 01 02"))
    assert reply_frame.src == "BBBBBBBBBBBB"
    report = _data("3762-011")[1]
    assert isinstance(report, q.ReadData)
    assert (report.index, report.protocol, report.duration_s) == (1, q.DLT645_2007, 0)
    inner = q.carried(report)
    assert isinstance(inner, dlt645.Frame)
    assert inner.control == 0x91 and inner.data == bytes.fromhex("00 01 01 02 43 20")
    assert _data("3762-012")[1] == q.ReadReply(flag=1)


def test_forward_and_monitor_carry_frames() -> None:
    forward = _data("3762-027")[1]
    inner = q.carried(forward)
    assert isinstance(inner, dlt645.Frame) and inner.is_abnormal and inner.data == b"\x02"
    monitor = _data("3762-006")[1]
    assert isinstance(monitor, q.Monitor)
    assert (monitor.protocol, monitor.delay_related, monitor.attached, len(monitor.frame)) == (3, 0, (), 26)
    assert _data("3762-048")[1].delay_related == 1
    reply = _data("3762-007")[1]
    assert isinstance(reply, q.MonitorReply)
    assert (reply.duration_s, reply.protocol, len(reply.frame)) == (1, 3, 58)
    concurrent = _data("3762-036")[1]
    assert concurrent == q.Concurrent(q.DLT645_2007, b"")


def test_describe_decodes_carried_645_recursively() -> None:
    vector = next(v for v in POSITIVE if v["id"] == "3762-026")
    out = describe(bytes.fromhex(vector["hex"]))
    assert out["src"] == "111111111111" and out["dst"] == "000000000006"
    assert out["inner"]["protocol"] == "dlt645"
    assert out["inner"]["ok"] and out["inner"]["di"] == "0x0201FF00"


@pytest.mark.parametrize("vector", NEGATIVE, ids=_ids(NEGATIVE))
def test_negative_vectors_are_rejected_with_offset(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    with pytest.raises(ProtocolError) as info:
        q.decode(raw)
    assert info.value.protocol == "gdw1376.2"
    assert info.value.offset == len(raw) - 2  # the CS byte
    framer = q.Framer()
    out = framer.feed(raw)
    assert len(out) == 1 and isinstance(out[0], ProtocolError) and out[0].offset == len(raw) - 2
    assert framer.errors == 1
    described = describe(raw)
    assert not described["ok"] and described["offset"] == len(raw) - 2
