"""``ttu keys new|show`` and ``ttu app pack|verify``, registered on a fresh parser."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest

from runtime.cli import app as app_cli
from runtime.cli import keys as keys_cli
from runtime.config._final import decode_trusted_key
from runtime.errors import TerminalError
from runtime.packages import BadKey, load_private_key, load_public_key
from tests.runtime.packages.helpers import make_app

BOARD = """\
[terminal]
id = "ttu-test"
timezone = "Asia/Shanghai"

[hal]
backend = "sim"

[[rs485]]
name = "rs485-1"
device = "/dev/null"

[packages]
trusted_keys = [{keys}]
"""


def ttu(*argv: str) -> int:
    """What ``runtime.cli.main`` does, with only these two groups registered."""
    parser = argparse.ArgumentParser(prog="ttu")
    sub = parser.add_subparsers(dest="command")
    keys_cli.register(sub)
    app_cli.register(sub)
    args = parser.parse_args([str(a) for a in argv])
    try:
        code: int = args.handler(args)
    except TerminalError as err:
        print(f"ttu: error: {err}")
        return 2
    return code


def test_keys_new_writes_0600_key_and_board_form_pub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "pub.pem"
    assert ttu("keys", "new", key) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = (tmp_path / "pub.pem.pub").read_text().strip()
    raw = decode_trusted_key(text, root=tmp_path)  # what board.toml's trusted_keys accepts
    assert raw == load_private_key(key).public_key().public_bytes_raw()
    out = capsys.readouterr().out
    assert f'trusted_keys = ["{text}"]' in out
    assert ttu("keys", "new", key) == 2  # never overwrites
    assert "exists" in capsys.readouterr().out
    assert ttu("keys", "show", key) == 0
    assert text in capsys.readouterr().out


def test_private_key_with_open_permissions_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert ttu("keys", "new", key) == 0
    key.chmod(0o644)
    with pytest.raises(BadKey, match="too open"):
        load_private_key(key)
    with pytest.raises(BadKey, match="private key"):
        load_public_key(key)


def test_pack_then_verify_with_key_and_board(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k.pem"
    ttu("keys", "new", key)
    pub = tmp_path / "k.pem.pub"
    folder = make_app(tmp_path / "src")
    out = tmp_path / "demo-1.2.0.ttuapp"
    capsys.readouterr()
    assert ttu("app", "pack", folder, "--key", key, "--out", out) == 0
    assert capsys.readouterr().out.strip() == str(out)

    assert ttu("app", "verify", out, "--key", pub, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["name"], doc["version"], doc["hal"]) == ("demo", "1.2.0", ["rs485"])

    board = tmp_path / "board.toml"
    (tmp_path / "apps").mkdir()
    board.write_text(BOARD.format(keys=f'"{pub.read_text().strip()}"'))
    assert ttu("app", "verify", out, "--board", board) == 0
    assert "ok: demo 1.2.0" in capsys.readouterr().out

    assert ttu("app", "verify", out, "--board", board, "--capabilities", "hplc") == 2
    assert "missing_capability" in capsys.readouterr().out

    board.write_text(BOARD.format(keys=""))
    assert ttu("app", "verify", out, "--board", board) == 2
    assert "unknown_key" in capsys.readouterr().out


def test_verify_reports_a_tampered_package_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k.pem"
    ttu("keys", "new", key)
    out = tmp_path / "p.ttuapp"
    ttu("app", "pack", make_app(tmp_path), "--key", key, "--out", out)
    out.write_bytes(b"garbage" + out.read_bytes())  # zipfile itself would tolerate prepended data
    capsys.readouterr()
    assert ttu("app", "verify", out, "--key", f"{key}.pub") == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttu: error: ")


def test_unknown_capability_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k.pem"
    ttu("keys", "new", key)
    out = tmp_path / "p.ttuapp"
    ttu("app", "pack", make_app(tmp_path), "--key", key, "--out", out)
    assert ttu("app", "verify", out, "--key", f"{key}.pub", "--capabilities", "teleport") == 2
    assert "unknown teleport" in capsys.readouterr().out
