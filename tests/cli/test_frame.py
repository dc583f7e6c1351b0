"""``ttu frame decode`` through the real dispatcher."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from runtime.cli import main

VOLTAGE_REPLY = "FE FE FE FE 68 43 10 00 11 34 00 68 91 06 33 34 34 35 CA 55 EE 16"
BAD_CS = "FE FE FE FE 68 43 10 00 11 34 00 68 D1 06 33 34 34 35 CA 55 EE 16"
ABNORMAL = "68 06 00 00 00 00 00 68 D1 01 35 DD 16"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["frame", "decode", *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def test_decodes_one_frame(capsys: pytest.CaptureFixture[str]) -> None:
    code, [obj] = _run(capsys, VOLTAGE_REPLY)
    assert code == 0
    assert obj["ok"] is True and obj["roundtrip"] is True
    assert (obj["protocol"], obj["address"], obj["control"], obj["function"]) == (
        "dlt645",
        "003411001043",
        0x91,
        "read_data",
    )
    assert (obj["direction"], obj["abnormal"], obj["follow_up"]) == ("response", False, False)
    assert (obj["di"], obj["value"], obj["unit"]) == ("0x02010100", 229.7, "V")


def test_several_frames_one_line_each_and_exit_1_on_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, objs = _run(capsys, "--protocol", "dlt645", VOLTAGE_REPLY, BAD_CS, ABNORMAL)
    assert code == 1
    assert [o["ok"] for o in objs] == [True, False, True]
    assert "checksum" in objs[1]["error"] and objs[1]["offset"] == 20
    assert objs[2]["error_bits"] == ["no_requested_data"]


def test_compact_and_prefixed_hex(capsys: pytest.CaptureFixture[str]) -> None:
    code, [a, b] = _run(
        capsys, ABNORMAL.replace(" ", ""), "0x68,0x06,0x00,0x00,0x00,0x00,0x00,0x68,0xD1,0x01,0x35,0xDD,0x16"
    )
    assert code == 0 and a == b


def test_not_hex_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    code, [obj] = _run(capsys, "68 zz")
    assert code == 1 and obj["ok"] is False and "not hex" in obj["error"]


def test_unrecognised_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    code, [obj] = _run(capsys, "01 02 03")
    assert code == 1 and obj["ok"] is False and obj["offset"] == 0


def test_reads_frames_from_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{VOLTAGE_REPLY}\n\n{ABNORMAL}\n"))
    code, objs = _run(capsys, "-")
    assert code == 0 and [o["function"] for o in objs] == ["read_data", "read_data"]


def test_unknown_protocol_choice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frame", "decode", "--protocol", "modbus", ABNORMAL]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "--protocol 'modbus': one of auto, dlt645, dlt698, gdw1376.2" in out.err
