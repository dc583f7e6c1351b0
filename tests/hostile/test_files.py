"""Malformed board.toml and archive files: a clear error naming the file and the key, never a
traceback; a running terminal whose archive file goes bad keeps reading its meters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.container.supervisor import AppState
from sim.broker import EmbeddedBroker

from .rig import REPO, Attack, station

GOOD = (REPO / "board.toml").read_text()

BAD_BOARDS = [
    ("not TOML at all", "[terminal\nid = ", "invalid TOML"),
    ("binary garbage", "\x00\xff\xfe" * 100, "board.toml"),
    ("wrong type", GOOD.replace('id = "TTU-SIM-0001"', "id = 5"), "terminal.id"),
    ("unknown key", GOOD.replace("[hal]", "[hal]\nturbo = true"), "hal.turbo"),
    ("baud as text", GOOD.replace("baud = 2400", 'baud = "fast"', 1), "rs485[0].baud"),
    ("no terminal", GOOD.replace("[terminal]", "[terminus]"), "terminal"),
    ("deep nesting", GOOD + "\nx = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
]


@pytest.mark.parametrize(("case", "text", "named"), BAD_BOARDS, ids=[c[0] for c in BAD_BOARDS])
def test_a_malformed_board_is_a_one_line_error_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, text: str, named: str
) -> None:
    board = tmp_path / "board.toml"
    board.write_text(text, encoding="utf-8", errors="surrogateescape")
    for command in (["check", "--board", str(board)], ["run", "--board", str(board)]):
        code = main(command)
        out, err = capsys.readouterr()
        err = out + err
        assert code != 0, case
        assert "Traceback" not in err
        assert named in err, (case, err[:500])


@pytest.mark.parametrize(
    ("case", "text"),
    [
        ("not TOML", "[[meters]\nid = 'm-1'\naddress = 12\n"),
        ("deep nesting", "x = " + "[" * 5000 + "]" * 5000 + "\n"),
        ("wrong types", "[[meters]]\nid = 5\naddress = true\n"),
    ],
)
async def test_a_station_archive_gone_bad_keeps_the_last_good_model(
    tmp_path: Path, amqtt_broker: EmbeddedBroker, case: str, text: str
) -> None:
    async with station(tmp_path, amqtt_broker.url) as run:
        parts = run.terminal.parts
        assert parts is not None
        service = parts.station
        meters, version = len(service.model.meters), service.version
        errors = service.statistics()["file_errors"]
        attack = await Attack.begin(run)
        await asyncio.to_thread(service.file.write_text, text)  # a bad edit on the box
        await service.reload_file()
        stats = service.statistics()
        assert stats["file_errors"] == errors + 1, case
        assert "refused" in (stats["last_error"] or ""), case
        assert (len(service.model.meters), service.version) == (meters, version)  # nothing lost
        assert parts.supervisor.state("acquisition") is AppState.RUNNING
        await attack.still_reading()
