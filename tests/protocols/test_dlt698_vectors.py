"""Every vector of vectors/dlt698.json (copied from /work/shared/vectors) decodes to its ``expected``
fields and re-encodes byte-exact; corrupted copies are rejected with a typed error and offset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocols import dlt698
from protocols.errors import EncodeError, ProtocolError
from protocols.inspect import describe

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors" / "dlt698.json").read_text())
POSITIVE = [v for v in VECTORS if v["checksum_verified"] and not v["expected"].get("negative_test")]
NEGATIVE = [v for v in VECTORS if v not in POSITIVE]
WHOLE = [v for v in POSITIVE if not v["expected"]["fragment"]]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def test_vector_file_is_loaded() -> None:
    assert len(POSITIVE) >= 25


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_decode_matches_expected_structure(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    exp = vector["expected"]
    frame = dlt698.decode(raw)
    assert dlt698.count_preamble(raw) == exp["preamble_fe"]
    assert len(raw) - exp["preamble_fe"] - 2 == exp["length_L"]
    assert frame.control == int(exp["control"], 16)
    assert frame.direction == exp["dir"]
    assert frame.prm == exp["prm"]
    assert (frame.fragment is not None) == exp["fragment"]
    assert frame.scrambled == exp["scrambled"]
    assert frame.function == exp["function_code"]
    assert frame.sa_type.name.lower() == exp["sa_type"]
    assert frame.logical == exp["sa_logic_addr"]
    assert len(frame.sa) // 2 == exp["sa_len"]
    assert frame.sa == exp["sa"]
    assert frame.ca == int(exp["ca"], 16)
    assert frame.apdu == bytes.fromhex(exp["apdu"])
    if frame.fragment is not None:
        assert frame.fragment.seq == exp["fragment_seq"]
        assert frame.fragment.kind.name.lower() == exp["fragment_type"]
    body = raw[exp["preamble_fe"] :]
    hcs_at = 6 + len(frame.sa) // 2
    assert int.from_bytes(body[hcs_at : hcs_at + 2], "little") == int(exp["hcs"], 16)
    assert int.from_bytes(body[-3:-1], "little") == int(exp["fcs"], 16)


def _reserved_bits(frame: dlt698.Frame) -> bool:
    return frame.length_reserved or bool(frame.fragment and frame.fragment.reserved)


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_reencode_is_byte_exact(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = dlt698.decode(raw)
    if _reserved_bits(frame):  # accepted as received, but never encoded (698-003: FRAG bits 12-13)
        with pytest.raises(EncodeError, match="reserved"):
            dlt698.encode(frame)
        return
    assert dlt698.encode(frame, preamble=dlt698.count_preamble(raw)) == raw


@pytest.mark.parametrize("vector", WHOLE, ids=_ids(WHOLE))
def test_apdu_decodes_and_reencodes_byte_exact(vector: dict[str, Any]) -> None:
    apdu_raw = bytes.fromhex(vector["expected"]["apdu"])
    apdu: Any = dlt698.decode_apdu(apdu_raw)  # Any: the fields checked differ per service
    assert apdu.encode() == apdu_raw
    decoded = vector["expected"].get("decoded")
    if decoded is None:
        return
    assert apdu.service.startswith(decoded["service"])
    assert apdu_raw[0] == int(decoded["apdu_tag"], 16)
    piid = decoded.get("piid", decoded.get("piid_acd"))
    if piid is not None:
        assert apdu.piid == int(piid, 16)
    if "oad" in decoded:
        assert str(getattr(apdu, "oad", None) or apdu.result.oad) == decoded["oad"]
    if "oads" in decoded:
        assert [str(o) for o in apdu.oads] == decoded["oads"]
    if "omd" in decoded:
        assert str(apdu.omd) == decoded["omd"]
    if "dar" in decoded:
        assert apdu.dar == decoded["dar"]
        assert dlt698.dar_name(decoded["dar"]) == decoded["dar_name"]


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_framer_finds_the_same_frame_byte_by_byte(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    framer = dlt698.Framer()
    out = [item for i in range(len(raw)) for item in framer.feed(raw[i : i + 1])]
    assert out == [dlt698.decode(raw)]
    assert framer.pending == 0


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_describe_auto_detects_698(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    out = describe(raw)
    assert out["protocol"] == "dlt698" and out["ok"]
    assert out["roundtrip"] is True or "reserved" in out["roundtrip"]
    assert out["sa"] == vector["expected"]["sa"]
    assert out["sa_type"] == vector["expected"]["sa_type"]
    assert out["ca"] == vector["expected"]["ca"]
    decoded = vector["expected"].get("decoded")
    if decoded is not None and "oad" in decoded:
        assert out["oad"] == decoded["oad"]
    json.dumps(out)  # JSON-able


def test_energy_response_is_scaled_to_kwh_and_named() -> None:
    vector = next(v for v in VECTORS if v["id"] == "698-033")
    out = describe(bytes.fromhex(vector["hex"]))
    assert out["service"] == "GET-Response-NormalList"
    assert out["oads"] == ["0x00100200"]
    values = [(d["quantity"], d["value"], d["unit"]) for d in out["data"]]
    assert values == [
        ("energy.active.import.total", 24.75, "kWh"),
        ("energy.active.import.t1", 6.7, "kWh"),
        ("energy.active.import.t2", 8.05, "kWh"),
        ("energy.active.import.t3", 5.84, "kWh"),
        ("energy.active.import.t4", 4.14, "kWh"),
    ]
    assert [d["value"] for d in out["data"]] == vector["expected"]["values_kWh_scaler_-2"]


def test_link_request_fields() -> None:
    raw = bytes.fromhex(next(v for v in VECTORS if v["id"] == "698-007")["hex"])
    apdu = dlt698.decode_apdu(dlt698.decode(raw).apdu)
    assert isinstance(apdu, dlt698.LinkRequest)
    assert (apdu.kind, apdu.heartbeat, str(apdu.time)) == (1, 600, "2017-05-16(w2) 00:21:25.000")


def test_security_wrappers_expose_the_plaintext_apdu() -> None:
    req = dlt698.decode_apdu(dlt698.decode(bytes.fromhex(VECTOR_031)).apdu)
    assert isinstance(req, dlt698.SecurityRequest) and not req.ciphered
    assert req.inner() == dlt698.GetRequestNormal(1, dlt698.OAD.of(0x40010200))
    assert req.verify == dlt698.SidMac(
        dlt698.SID(0x85010203, bytes.fromhex("123456789012")), b"\x12\x34\x56\x78"
    )
    resp = dlt698.decode_apdu(dlt698.decode(bytes.fromhex(VECTOR_013)).apdu)
    assert isinstance(resp, dlt698.SecurityResponse) and resp.mac == bytes.fromhex("32F95634")
    inner = resp.inner()
    assert isinstance(inner, dlt698.GetResponseNormal)
    assert inner.result.data is not None and len(inner.result.data.value) == 4


def test_record_response_rows_follow_the_rcsd() -> None:
    raw = bytes.fromhex(next(v for v in VECTORS if v["id"] == "698-027")["hex"])
    apdu = dlt698.decode_apdu(dlt698.decode(raw).apdu)
    assert isinstance(apdu, dlt698.GetResponseRecord)
    assert apdu.result.rcsd == (dlt698.OAD.of(0x60350200),)
    assert apdu.result.rows is not None and len(apdu.result.rows) == 1
    row = apdu.result.rows[0][0].value
    assert [d.value for d in row][:2] == [1, 2]
    assert str(row[2].value) == "2016-11-11 00:02:00"


def test_connect_request_mechanism() -> None:
    raw = bytes.fromhex(next(v for v in VECTORS if v["id"] == "698-025")["hex"])
    apdu = dlt698.decode_apdu(dlt698.decode(raw).apdu)
    assert isinstance(apdu, dlt698.ConnectRequest)
    assert (apdu.version, apdu.tx_max, apdu.rx_max, apdu.apdu_max, apdu.timeout) == (
        22,
        512,
        1024,
        2000,
        7200,
    )
    assert apdu.mechanism.kind == 2 and len(apdu.mechanism.fields[0]) == 32
    assert apdu.mechanism.fields[1] == bytes.fromhex("3316837B")


def test_identical_apdus_share_the_fcs() -> None:
    """PROTOCOLS.md §2.1: the FCS depends only on the APDU once the HCS is right."""
    a = dlt698.encode(dlt698.Frame(0x43, "100000000009", 0x00, bytes.fromhex("0501070010020000")), preamble=0)
    b = dlt698.encode(dlt698.Frame(0x43, "222222222222", 0x10, bytes.fromhex("0501070010020000")), preamble=0)
    assert a[-3:-1] == b[-3:-1] == bytes.fromhex("0401")


VECTOR_013 = next(v["hex"] for v in VECTORS if v["id"] == "698-013")
VECTOR_031 = next(v["hex"] for v in VECTORS if v["id"] == "698-031")
GOOD = bytes.fromhex(next(v["hex"] for v in VECTORS if v["id"] == "698-034"))


def _corrupt(at: int, value: int) -> bytes:
    raw = bytearray(GOOD)
    raw[at] = value
    return bytes(raw)


@pytest.mark.parametrize(
    ("raw", "offset", "reason"),
    [
        (_corrupt(12, GOOD[12] ^ 0x01), 12, "HCS mismatch"),
        (_corrupt(22, GOOD[22] ^ 0x01), 22, "FCS mismatch"),
        (_corrupt(24, 0x17), 24, "end 0x16"),
        (_corrupt(1, 0x05), 1, "length L=5"),
        (_corrupt(2, 0x40), 2, "unit flag"),
        (GOOD[:-4], len(GOOD) - 4, "truncated"),
        (GOOD + b"\x00", len(GOOD), "trailing"),
        (b"\xfe\xfe\x67" + GOOD[1:], 2, "start 0x68"),
        (b"\xfe\xfe", 2, "no frame"),
    ],
    ids=["hcs", "fcs", "end", "short-L", "L-unit", "truncated", "trailing", "start", "empty"],
)
def test_negative_frames_are_rejected_with_offset(raw: bytes, offset: int, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        dlt698.decode(raw)
    assert info.value.offset == offset
    assert reason in info.value.reason
    assert info.value.protocol == "dlt698"
    out = describe(raw, protocol="dlt698")
    assert out["ok"] is False and out["offset"] == offset


@pytest.mark.parametrize("vector", NEGATIVE, ids=_ids(NEGATIVE))
def test_shared_negative_vectors_are_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        dlt698.decode_apdu(dlt698.decode(bytes.fromhex(vector["hex"])).apdu)


def test_bad_apdu_in_a_good_frame_reports_the_frame_offset() -> None:
    apdu = bytes.fromhex("0501070010")  # OAD cut short
    raw = dlt698.encode(dlt698.Frame(0x43, "100000000009", 0, apdu), preamble=2)
    out = describe(raw)
    assert out["protocol"] == "dlt698" and out["ok"] is False
    assert out["offset"] == 2 + 14 + 3 and "OAD" in out["error"]


def test_auto_detect_still_picks_645() -> None:
    raw = bytes.fromhex("68 86 20 05 00 00 00 68 91 08 33 33 34 33 A8 76 B7 33 E9 16")
    assert describe(raw)["protocol"] == "dlt645"
    tricky = dlt698.encode(
        dlt698.Frame(0x43, "000000680000", 0, bytes.fromhex("0501070010020000")), preamble=0
    )
    assert tricky[7] == 0x68  # looks like 645's second 0x68, but is a valid 698 frame
    out = describe(tricky)
    assert out["protocol"] == "dlt698" and out["ok"]
