"""A terminal that dies says so; a run that failed says so; a speed the wire cannot keep is refused.

Issue 14 reproductions 1 and 2: a terminal killed by one MQTT message went on "running" in
``ttu sim`` (``meters online -/242``, exit 0), and ``ttu sim --speed 600`` quarantined the
acquisition app and still wrote a report and exited 0.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

from runtime.cli import main
from runtime.cli.run import EXIT_DIED
from runtime.config import load_board
from runtime.container import LoopWatchdog
from sim.cli import render_summary, wire_speed_limit
from sim.runner import SimOptions, failures, run_for

REPO = Path(__file__).resolve().parents[2]
START = 1_767_225_600.0


async def _dies(self: Any) -> None:
    raise RuntimeError("watchdog device went away")


def test_ttu_sim_refuses_a_speed_the_wire_model_cannot_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = load_board(REPO / "board.toml")
    fastest = math.floor(wire_speed_limit(board, 0.05))
    assert 10 <= fastest < 600  # the default board runs at its [sim] speed, not at x600
    code = main(["sim", "--speed", "600", "--duration", "2h", "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"at most x{fastest}" in err and "--speed" in err
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_ttu_run_exits_nonzero_with_the_reason_when_the_terminal_dies(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = tmp_path / "board.toml"
    board.write_text('[terminal]\nid = "T-1"\ntimezone = "UTC"\n\n[hal]\nbackend = "linux"\n')
    monkeypatch.setattr(LoopWatchdog, "run", _dies)
    with caplog.at_level(logging.CRITICAL, logger="ttu.terminal"):
        code = main(["run", "--board", str(board)])
    assert code == EXIT_DIED
    err = capsys.readouterr().err
    assert "terminal stopped: loop-watchdog failed: RuntimeError: watchdog device went away" in err
    logged = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert logged and logged[0].exc_info is not None  # the cause, with its traceback


@pytest.mark.slow
async def test_ttu_sim_notices_a_dead_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amqtt_broker: Any
) -> None:
    board = load_board(REPO / "board.toml")
    options = SimOptions(
        board=board, workdir=tmp_path / "run", speed=30.0, meters_per_bus=1, seed=3, start=START,
        duration_s=3600.0, broker_url=amqtt_broker.url,
    )  # fmt: skip
    monkeypatch.setattr(LoopWatchdog, "run", _dies)
    rendered: list[str] = []

    async def tick(run: Any) -> None:
        rendered.append(render_summary(await run.summary(), run))

    report = await run_for(options, on_tick=tick, tick_s=30.0)
    assert (
        "loop-watchdog" in report["terminal_died"] and "watchdog device went away" in report["terminal_died"]
    )
    assert any(f.startswith("the terminal died") for f in report["failures"])
    assert report["simulated_seconds"] < 600  # it stopped at once, not after the hour
    assert "TERMINAL DIED" in rendered[-1]


def test_a_run_fails_when_an_app_ends_quarantined_or_nothing_reached_the_cloud() -> None:
    ok = {"terminal_died": None, "cloud": {"readings": 12}}
    assert failures(ok, [{"name": "acquisition", "state": "running"}]) == []
    quarantined = [{"name": "acquisition", "state": "quarantined", "last_error": "AppNotReady: ..."}]
    assert failures(ok, quarantined) == ["app acquisition ended quarantined: AppNotReady: ..."]
    assert failures({"terminal_died": None, "cloud": {"readings": 0}}, []) == ["no reading reached the cloud"]


def test_ttu_sim_exit_status_follows_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sim.cli

    async def fake_main(options: Any, **_: Any) -> dict[str, Any]:
        return {"failures": ["no reading reached the cloud"]}

    monkeypatch.setattr(sim.cli, "_main", fake_main)
    report = tmp_path / "r.json"
    code = main(["sim", "--duration", "1m", "--workdir", str(tmp_path / "run"), "--report", str(report)])
    assert code == 1
    assert "FAILED: no reading reached the cloud" in capsys.readouterr().err
