"""protocols/ is pure: it must never import asyncio, serial, hal, runtime or apps."""

from __future__ import annotations

import ast
from pathlib import Path

import protocols

FORBIDDEN = {"asyncio", "serial", "serial_asyncio_fast", "hal", "runtime", "apps", "sim"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_protocols_import_no_io_or_upper_layers() -> None:
    root = Path(protocols.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert any(f.parent.name == "dlt645" for f in files)
    offenders = {str(f.relative_to(root)): sorted(_imports(f) & FORBIDDEN) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_layering_check_detects_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom hal.interfaces import SerialLink\nfrom . import sibling\n")
    assert _imports(bad) & FORBIDDEN == {"asyncio", "hal"}
