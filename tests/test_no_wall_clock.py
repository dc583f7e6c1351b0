"""No test measures wall-clock time: speed is ``bench/``'s business, time in tests is virtual.

A test that reads ``time.perf_counter()``/``time.time()``/``time.monotonic()`` (or their
``_ns`` twins, ``process_time``) is timing the machine it runs on, and a hypothesis
``deadline`` is the same assertion in disguise: both pass on an idle laptop and fail on a
loaded CI box. Waits go through the virtual clock (``looptime``, ``sim.vloop``); figures and
ratios are printed by ``bench/`` scripts against a baseline in the same run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
CLOCK_READS = {
    "perf_counter",
    "perf_counter_ns",
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "process_time",
    "process_time_ns",
}


def wall_clock_uses(source: str, name: str) -> Iterator[str]:
    """``name:line what`` for each read of the wall clock and each hypothesis deadline."""
    tree = ast.parse(source, filename=name)
    from_time = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "time"
        for alias in node.names
        if alias.name in CLOCK_READS
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_READS:
            if isinstance(node.value, ast.Name) and node.value.id == "time":
                yield f"{name}:{node.lineno} time.{node.attr}"
        elif isinstance(node, ast.Name) and node.id in from_time and isinstance(node.ctx, ast.Load):
            yield f"{name}:{node.lineno} {node.id}"
        elif isinstance(node, ast.keyword) and node.arg == "deadline" and not _is_none(node.value):
            yield f"{name}:{node.lineno} hypothesis deadline"


def _is_none(value: ast.expr) -> bool:
    return isinstance(value, ast.Constant) and value.value is None


def test_no_test_reads_the_wall_clock() -> None:
    found = [
        use
        for path in sorted(TESTS.rglob("*.py"))
        if path != Path(__file__).resolve()
        for use in wall_clock_uses(path.read_text(encoding="utf-8"), str(path.relative_to(TESTS)))
    ]
    assert found == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import time\nt0 = time.perf_counter()\n", 1),
        ("from time import monotonic as now\nassert now() < 1\n", 1),
        ("from hypothesis import settings\n@settings(deadline=500)\ndef t(): ...\n", 1),
        ("from hypothesis import settings\n@settings(deadline=None)\ndef t(): ...\n", 0),
        ("import time\ntime.sleep(0)\nloop_time = clock.monotonic()\n", 0),
    ],
)
def test_the_guard_finds_clock_reads(source: str, found: int) -> None:
    assert len(list(wall_clock_uses(source, "case.py"))) == found
