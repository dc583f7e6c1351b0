"""Smoke tests of the installed ``ttu`` command as a user runs it (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from sim.broker import EmbeddedBroker

REPO = Path(__file__).resolve().parents[2]
TTU = Path(sys.executable).with_name("ttu")
VECTOR = "68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16"  # read 00010000 by wildcard (645-002)
REPORT_KEYS = (
    "readings_sent",
    "readings_received_by_cloud",
    "reading_success_rate",
    "cycle_seconds",
    "wire_bound_seconds",
    "errors",
)


async def ttu(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:  # noqa: ASYNC109
    proc = await asyncio.create_subprocess_exec(
        str(TTU), *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_repo_board() -> None:
    code, out, err = await ttu("check", "--board", str(REPO / "board.toml"))
    assert code == 0, err
    assert "OK" in out


async def test_frame_decode_vector() -> None:
    code, out, err = await ttu("frame", "decode", VECTOR)
    assert code == 0, err
    decoded = json.loads(out)
    assert decoded["ok"] is True and decoded["protocol"] == "dlt645"
    assert decoded["di"] == "0x00010000" and decoded["address"] == "AAAAAAAAAAAA"
    code, out, _ = await ttu("frame", "decode", VECTOR.replace("AE 16", "AF 16"))
    assert code != 0 and "checksum" in out


async def test_sim_writes_report(tmp_path: Path, amqtt_broker: EmbeddedBroker) -> None:
    report = tmp_path / "report.json"
    args = ["sim", "--duration", "2m", "--speed", "30", "--meters-per-bus", "1"]
    args += ["--workdir", str(tmp_path / "run"), "--report", str(report), "--broker", amqtt_broker.url]
    code, _, err = await ttu(*args, timeout=60.0)
    assert code == 0, err[-2000:]
    data = json.loads(report.read_text())
    missing = [k for k in REPORT_KEYS if k not in data]
    assert not missing, missing
    assert data["readings_sent"] > 0
    assert data["readings_received_by_cloud"] == data["readings_sent"]
    assert isinstance(data["errors"], dict)
