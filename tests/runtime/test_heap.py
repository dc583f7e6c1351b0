"""runtime.heap: ``ttu run`` freezes its start-up heap once its apps have started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import runtime.terminal
from runtime import heap

REPO = Path(__file__).resolve().parents[2]


def test_settle_collects_then_freezes_what_is_left() -> None:
    # in a fresh interpreter: freezing the test session's heap would keep its garbage forever
    code = (
        "import gc, runtime.heap as h\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a; del a, b  # a cycle, garbage\n"
        "n = h.settle()\n"
        "print(n, gc.get_freeze_count() == n, gc.collect())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, check=True, text=True)
    frozen, same, collected_after = done.stdout.split()
    assert int(frozen) > 1000 and same == "True"
    assert collected_after == "0"  # the cycle went before the freeze; nothing frozen is walked again


async def test_ttu_run_settles_the_heap_after_the_apps_have_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runtime.container.supervisor import AppState

    calls: list[list[str]] = []

    class Supervisor:
        def __init__(self) -> None:
            self.states = {"a": AppState.STARTING, "b": AppState.LOADED}
            self.waited: list[str] = []

        def status(self) -> list[dict[str, str]]:
            return [{"name": n} for n in self.states]

        async def wait_state(self, name: str, *states: AppState) -> AppState:
            assert AppState.RUNNING in states and AppState.CRASHED in states
            self.waited.append(name)
            return AppState.RUNNING

    supervisor = Supervisor()
    monkeypatch.setattr(heap, "settle", lambda: calls.append(list(supervisor.waited)) or 7)
    await runtime.terminal._settle_heap(supervisor)  # type: ignore[arg-type]
    assert calls == [["a", "b"]]  # after waiting for every app, once


def test_give_back_returns_the_free_pages_between_live_blocks() -> None:
    # in a fresh interpreter: 64 MB of 4 kB blocks (malloc's heap, not pymalloc), all but every
    # 64th freed: the free pages sit between live blocks, so only a trim can give them back
    code = (
        "import runtime.heap as h\n"
        "def rss():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1])\n"
        "blocks = [bytearray(4096) for _ in range(16384)]\n"
        "kept = blocks[::64]\n"
        "del blocks\n"
        "before = rss()\n"
        "print(h.give_back(), before - rss())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, check=True, text=True)
    trimmed, freed_kb = done.stdout.split()
    if trimmed == "False":
        pytest.skip("this C library has no malloc_trim")
    assert int(freed_kb) > 40 * 1024, f"gave back {freed_kb} kB of ~63 MB free"
