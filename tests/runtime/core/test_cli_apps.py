"""``ttu apps``: states from a running terminal's status file, else the installed manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime.cli import main

FIXTURES = Path(__file__).parent / "fixture_apps"


def test_lists_installed_manifests_when_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apps", "--state-dir", str(tmp_path), "--apps-dir", str(FIXTURES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "version", "state", "since", "restarts", "last", "error"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"blocker", "crasher", "good", "hanger", "phoenix", "quitter", "slowstart", "sneaky"}
    assert "1.0.0" in rows["good"] and "not running" in rows["good"]


def test_lists_states_of_a_running_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {
        "pid": os.getpid(),
        "running": True,
        "updated": 1_767_225_600.0,
        "apps": [
            {
                "name": "acquisition",
                "version": "1.0.0",
                "state": "running",
                "since": 1_767_225_600.0,
                "restarts": 0,
                "last_error": None,
            },
            {
                "name": "outage",
                "version": "0.3.1",
                "state": "quarantined",
                "since": 1_767_225_700.0,
                "restarts": 4,
                "last_error": "RuntimeError: boom",
            },
        ],
    }
    (tmp_path / "apps.json").write_text(json.dumps(doc))
    assert main(["apps", "--state-dir", str(tmp_path), "--apps-dir", str(FIXTURES)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert out[1].split()[:3] == ["acquisition", "1.0.0", "running"]
    assert out[2].split()[:3] == ["outage", "0.3.1", "quarantined"]
    assert out[2].split()[5:] == ["4", "RuntimeError:", "boom"]


def test_stale_status_file_means_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"pid": os.getpid(), "running": False, "apps": [{"name": "good", "state": "running"}]}
    (tmp_path / "apps.json").write_text(json.dumps(doc))
    assert main(["apps", "--state-dir", str(tmp_path), "--apps-dir", str(FIXTURES)]) == 0
    assert "not running" in capsys.readouterr().out


def test_corrupt_status_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "apps.json").write_text("{not json")
    assert main(["apps", "--state-dir", str(tmp_path)]) == 2
    # (other command groups may print "unavailable" notices while the tree is being built)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ttu: error: ")]
    assert len(errors) == 1
    assert "apps.json: cannot read app status" in errors[0]
