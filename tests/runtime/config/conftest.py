"""Fixtures for board.toml tests: a stub apps folder and a writer for small boards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

GOOD_KEY = "00112233445566778899aabbccddeeff"

MINIMAL = """\
[terminal]
id = "T1"
timezone = "Asia/Shanghai"

[hal]
backend = "sim"
"""


@pytest.fixture
def apps_dir(tmp_path: Path) -> Path:
    """An apps folder with stub manifests for the apps the boards under test name."""
    root = tmp_path / "apps"
    for name in ("acquisition", "topology", "billing", "outage", "lineloss"):
        (root / name).mkdir(parents=True)
        (root / name / "app.toml").write_text(f'name = "{name}"\n', encoding="utf-8")
    return root


@pytest.fixture
def write_board(tmp_path: Path) -> Callable[[str], Path]:
    """Write ``text`` as board.toml in a fresh folder with a valid credentials file next to it."""

    def write(text: str, *, name: str = "board.toml") -> Path:
        folder = tmp_path / "board"
        folder.mkdir(exist_ok=True)
        (folder / "credentials.toml").write_text(f'command_key = "{GOOD_KEY}"\n', encoding="utf-8")
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
