"""What a terminal holds for having started: no cryptography unless an app signs.

``cryptography`` costs ~9.5 MB of RSS on the box. The package manager needs it only while it
verifies a package (install, upgrade), board.toml only for a trusted key given as a PEM file,
the ledger only where a signature is made or checked (the billing app). A fresh interpreter
imports the start path of ``ttu run`` and every app but billing, loads a board whose trusted
key is base64 text, and must not have imported it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_the_start_path_without_billing_imports_no_cryptography() -> None:
    out = subprocess.run(
        [sys.executable, "-P", "-c", START], cwd=REPO, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_verifying_a_package_brings_cryptography_in_when_needed() -> None:
    """The lazy import is real: the signature check still runs (and so imports the library)."""
    code = (
        "import sys\n"
        "from protocols.packages.keys import generate_keypair, key_id\n"
        "assert 'cryptography' not in sys.modules\n"
        "private, public = generate_keypair()\n"
        "print(len(key_id(public)), 'cryptography' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    assert out.stdout.split() == ["16", "True"]
