"""The suite's leak guard (``tests/conftest.py``) fails a test that leaves an open file, a file in
the working folder, a child process, a thread or a task behind, and passes one that cleans up.

Each case runs in its own pytest process (``pytester``) with the suite's conftest, so a leak
the guard must catch there never reaches this run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]

CONFTEST = """
from tests.conftest import _check_no_leaks, pytest_runtest_call, pytest_sessionstart
"""

CASES = {
    "open_file": """
def test_it(tmp_path):
    global kept
    kept = open(tmp_path / "x", "w")
""",
    "file_in_working_folder": """
from pathlib import Path
def test_it():
    Path("var").mkdir(exist_ok=True)
    Path("var/left.sqlite").write_text("x")
""",
    "child_process": """
import subprocess, sys
def test_it():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
""",
    "thread": """
import threading
stop = threading.Event()
def test_it():
    threading.Thread(target=stop.wait, args=(60,), daemon=False).start()
def teardown_module():
    stop.set()
""",
}

SAYS = {
    "open_file": "test left files open",
    "file_in_working_folder": "test left files in the working folder",
    "child_process": "test left child processes running",
    "thread": "test left threads running",
}

CLEAN = """
import subprocess, sys, threading
from pathlib import Path
def test_it(tmp_path):
    with open(tmp_path / "x", "w") as f:
        f.write("kept in tmp_path, closed")
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
"""


def run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_case=body)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "--rootdir", str(pytester.path))


@pytest.mark.parametrize("leak", sorted(CASES))
def test_a_test_that_leaks_fails(
    pytester: pytest.Pytester, leak: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = run(pytester, CASES[leak])
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 1, result.stdout.str()
    assert SAYS[leak] in result.stdout.str()


def test_a_test_that_cleans_up_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = run(pytester, CLEAN)
    assert result.parseoutcomes() == {"passed": 1}, result.stdout.str()
