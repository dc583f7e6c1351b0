"""Every vector of vectors/dlt645.json (copied from /work/shared/vectors) decodes to its
``expected`` fields and re-encodes byte-exact; negative vectors are rejected with an offset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocols import dlt645
from protocols.errors import ProtocolError
from protocols.inspect import describe

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent / "vectors" / "dlt645.json").read_text())
POSITIVE = [v for v in VECTORS if v["checksum_verified"] and not v["expected"].get("negative_test")]
NEGATIVE = [v for v in VECTORS if v not in POSITIVE]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["id"] for v in vectors]


def test_vector_file_has_both_kinds() -> None:
    assert len(POSITIVE) >= 30
    assert NEGATIVE


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_decode_matches_expected_structure(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    exp = vector["expected"]
    frame = dlt645.decode(raw)
    assert frame.address == exp["address"]
    assert frame.control == int(exp["control"], 16)
    assert frame.function == exp["function"]
    assert frame.is_response == (exp["dir"] == "slave->master")
    assert frame.is_abnormal == exp["abnormal_response"]
    assert frame.has_follow_up == exp["follow_up_frame"]
    assert len(frame.data) == exp["length"]
    if "data_minus_33" in exp:
        assert frame.data == bytes.fromhex(exp["data_minus_33"])
    assert dlt645.count_preamble(raw) == exp.get("preamble_fe", 0)


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_reencode_is_byte_exact(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = dlt645.decode(raw)
    assert dlt645.encode(frame, preamble=dlt645.count_preamble(raw)) == raw


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_framer_finds_the_same_frame(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    framer = dlt645.Framer()
    out = [item for i in range(len(raw)) for item in framer.feed(raw[i : i + 1])]
    assert out == [dlt645.decode(raw)]
    assert framer.pending == 0


def _values(desc: dict[str, Any]) -> list[Any]:
    return [e["value"] for e in desc["values"]]


@pytest.mark.parametrize("vector", POSITIVE, ids=_ids(POSITIVE))
def test_describe_gives_engineering_values(vector: dict[str, Any]) -> None:
    exp = vector["expected"]
    desc = describe(bytes.fromhex(vector["hex"]))
    assert desc["ok"] is True and desc["roundtrip"] is True
    assert desc["protocol"] == "dlt645"
    assert desc["address"] == exp["address"]
    assert desc["control"] == int(exp["control"], 16)
    assert desc["direction"] == ("response" if exp["dir"] == "slave->master" else "request")
    if "di" in exp:
        assert desc["di"] == exp["di"]
    if "value" in exp:
        expected = exp["value"]
        assert desc["value"] == (pytest.approx(expected) if isinstance(expected, float) else expected)
    if "values" in exp:
        assert _values(desc) == [None if v == "FFFF" else pytest.approx(v) for v in exp["values"]]
    if "unit" in exp:
        assert desc["unit"] == exp["unit"]
    if "error_word" in exp:
        assert desc["error_word"] == exp["error_word"]
        assert desc["error_bits"]
    if "datetime" in exp:
        assert desc["datetime"] == exp["datetime"]
    if "baud_bps" in exp:
        assert desc["baud_bps"] == exp["baud_bps"]
    if "valid_until" in exp:
        assert desc["valid_until"] == exp["valid_until"]
        assert desc["n1"] == exp["N1_control_type"]
    if "operator_code" in exp:
        assert desc["operator"] == exp["operator_code"]
    if "address_in_data" in exp:
        assert desc["address_in_data"] == exp["address_in_data"]
    if "mask_zero_bits" in exp:
        zero_bits = [bit for bit in range(96) if not int(desc["value"], 16) >> bit & 1]
        assert zero_bits == exp["mask_zero_bits"]


def test_error_bit_names_of_vectors() -> None:
    by_id = {v["id"]: v for v in VECTORS}
    assert dlt645.parse_error(dlt645.decode(bytes.fromhex(by_id["645-052"]["hex"]))).names == (
        "no_requested_data",
    )
    assert dlt645.parse_error(dlt645.decode(bytes.fromhex(by_id["645-070"]["hex"]))).names == (
        "password_error",
    )


@pytest.mark.parametrize("vector", NEGATIVE, ids=_ids(NEGATIVE))
def test_negative_vectors_are_rejected_with_offset(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    with pytest.raises(ProtocolError) as info:
        dlt645.decode(raw)
    assert info.value.offset is not None and 0 <= info.value.offset < len(raw)
    assert info.value.protocol == "dlt645"
    out = dlt645.Framer().feed(raw)
    assert out and all(isinstance(item, ProtocolError) for item in out)
    desc = describe(raw)
    assert desc["ok"] is False and desc["offset"] == info.value.offset
