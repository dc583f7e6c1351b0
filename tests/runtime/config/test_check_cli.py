"""``ttu check``: exit codes and output, through the real dispatcher."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.errors import ConfigError

from .conftest import MINIMAL, REPO

OK_LINE = (
    "{board}: OK — terminal TTU-SIM-0001, backend sim, 4 RS-485 ports, HPLC, metrology, 2 slots, "
    "5 apps enabled"
)


@pytest.fixture
def no_manifest_checker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend runtime.container.manifest does not exist (whatever its state in the tree)."""
    monkeypatch.setitem(sys.modules, "runtime.container.manifest", None)
    yield


def fake_checker(monkeypatch: pytest.MonkeyPatch, errors: list[ConfigError], seen: list[Path]) -> None:
    module = types.ModuleType("runtime.container.manifest")

    def check_manifests(apps_dir: Path) -> list[ConfigError]:
        seen.append(Path(apps_dir))
        return errors

    module.check_manifests = check_manifests  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runtime.container.manifest", module)


def test_repo_board_is_ok(
    apps_dir: Path, capsys: pytest.CaptureFixture[str], no_manifest_checker: None
) -> None:
    board = str(REPO / "board.toml")
    assert main(["check", "--board", board, "--apps-dir", str(apps_dir)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [OK_LINE.format(board=board)]
    assert "note: app manifests not checked" in err


def test_bad_board_prints_one_line_per_error_and_exits_1(
    write_board: Callable[..., Path],
    apps_dir: Path,
    capsys: pytest.CaptureFixture[str],
    no_manifest_checker: None,
) -> None:
    text = (
        MINIMAL.replace("Asia/Shanghai", "Nowhere")
        + '\n[[rs485]]\nname = "rs485-1"\ndevice = "x"\nbaud = 2401\n'
    )
    board = write_board(text)
    assert main(["check", "--board", str(board), "--apps-dir", str(apps_dir)]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        f"{board}: terminal.timezone: unknown time zone 'Nowhere' (use an IANA name such as 'Asia/Shanghai')",
        f"{board}: rs485[0].baud: 2401 is not a standard rate (1200, 2400, 4800, 9600, 19200)",
    ]


def test_missing_board_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_manifest_checker: None
) -> None:
    board = tmp_path / "nope.toml"
    assert main(["check", "--board", str(board)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{board}: file not found"]


def test_manifest_errors_are_reported_too(
    write_board: Callable[..., Path],
    apps_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Path] = []
    bad = ConfigError("version", "missing required key", source=str(apps_dir / "acquisition" / "app.toml"))
    fake_checker(monkeypatch, [bad], seen)
    board = write_board(MINIMAL + "\n[apps.acquisition]\n")
    assert main(["check", "--board", str(board), "--apps-dir", str(apps_dir)]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        f"{board}: OK — terminal T1, backend sim, 0 RS-485 ports, 0 slots, 1 app enabled",
        f"{apps_dir}/acquisition/app.toml: version: missing required key",
    ]
    assert seen == [apps_dir]


def test_clean_manifests(
    write_board: Callable[..., Path],
    apps_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Path] = []
    fake_checker(monkeypatch, [], seen)
    board = write_board(MINIMAL)
    # Without --apps-dir the board's own default (apps/ next to it) is checked.
    assert main(["check", "--board", str(board)]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[-1] == f"{board.parent / 'apps'}: app manifests OK"
    assert seen == [board.parent / "apps"]
