"""What a terminal holds for having started: no cryptography unless an app signs; it starts
under ``python -OO -X no_debug_ranges``, as the box's service unit (hal/linux/ttu.service) runs it.

``cryptography`` costs ~9.5 MB of RSS on the box. The package manager needs it only while it
verifies a package (install, upgrade), board.toml only for a trusted key given as a PEM file,
the ledger only where a signature is made or checked (the billing app). A fresh interpreter
imports the start path of ``ttu run`` and every app but billing, loads a board whose trusted
key is base64 text, and must not have imported it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

START = """
import base64, sys, tempfile
from pathlib import Path

import runtime.cli.run, runtime.terminal, hal.linux
import apps.acquisition, apps.outage, apps.topology, apps.lineloss
from runtime.config import parse_board
from runtime.packages.manager import PackageManager
from runtime.packages.jobs import JobRunner

key = base64.b64encode(bytes(range(32))).decode()
board = parse_board(
    '[terminal]\\nid = "T1"\\ntimezone = "Asia/Shanghai"\\n[hal]\\nbackend = "sim"\\n'
    f'[packages]\\ntrusted_keys = ["{key}"]\\n',
    root=Path(tempfile.mkdtemp()), apps_dir=Path("apps"),
)
assert board.packages.trusted_keys[0].raw == bytes(range(32))
print(sorted(m for m in sys.modules if m.split(".")[0] == "cryptography"))
"""


def _python(code: str, *flags: str) -> str:
    out = subprocess.run(
        [sys.executable, *flags, "-P", "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    return out.stdout


def test_the_start_path_without_billing_imports_no_cryptography() -> None:
    assert _python(START).strip() == "[]"


def test_the_service_unit_runs_the_terminal_optimized() -> None:
    unit = (REPO / "hal" / "linux" / "ttu.service").read_text(encoding="utf-8")
    assert re.search(r"^Environment=PYTHONOPTIMIZE=2$", unit, re.MULTILINE)
    assert re.search(r"^Environment=PYTHONNODEBUGRANGES=1$", unit, re.MULTILINE)
    assert re.search(r"^ExecStart=\S+/ttu run --board \S+$", unit, re.MULTILINE)


@pytest.mark.parametrize("app", ["acquisition", "billing", "lineloss", "outage", "topology"])
def test_the_terminal_and_every_app_load_under_python_OO(app: str) -> None:
    """-OO drops docstrings and asserts: nothing on the start path may need them."""
    code = (
        "import sys\n"
        "from runtime.cli import build_parser\n"
        "args = build_parser(['run']).parse_args(['run', '--board', 'b.toml'])\n"
        f"import runtime.terminal, hal.linux, apps.{app}\n"
        "from runtime.container.manifest import load_manifest\n"
        "from pathlib import Path\n"
        f"manifest = load_manifest(Path('apps/{app}/app.toml'))\n"
        f"import importlib; importlib.import_module('apps.{app}.service')\n"
        "print(sys.flags.optimize, args.board, manifest.name)\n"
    )
    assert _python(code, "-OO", "-X", "no_debug_ranges").split() == ["2", "b.toml", app]


def test_no_terminal_code_reads_docstrings() -> None:
    """What -OO takes away: a ``__doc__`` read would turn into ``None`` on the box."""
    readers = [
        str(path.relative_to(REPO))
        for top in ("runtime", "apps", "hal", "protocols")
        for path in sorted((REPO / top).rglob("*.py"))
        if re.search(r"__doc__|getdoc\(", path.read_text(encoding="utf-8"))
    ]
    assert readers == []


def test_verifying_a_package_brings_cryptography_in_when_needed() -> None:
    """The lazy import is real: the signature check still runs (and so imports the library)."""
    code = (
        "import sys\n"
        "from protocols.packages.keys import generate_keypair, key_id\n"
        "assert 'cryptography' not in sys.modules\n"
        "private, public = generate_keypair()\n"
        "print(len(key_id(public)), 'cryptography' in sys.modules)\n"
    )
    assert _python(code).split() == ["16", "True"]
