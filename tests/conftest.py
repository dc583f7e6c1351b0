"""Shared fixtures. Every test must leave no task, thread, file or child process behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

pytest_plugins = ["tests.brokers", "tests.simworld"]


def _open_files() -> dict[int, str]:
    """This process's open file descriptors and what they point at (not stdin/out/err, which
    pytest's capture points at a new file in every phase)."""
    out: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        if int(name) <= 2:
            continue
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def _children() -> dict[int, str]:
    out: dict[int, str] = {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE:
                out[child.pid] = " ".join(child.cmdline())[:200]
    return out


def _files_in(folder: Path) -> set[Path]:
    """What the working folder holds (top level) and everything under its ``var/``."""
    if not folder.is_dir():
        return set()
    found = {p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in _CACHES}
    var = folder / "var"
    if var.is_dir():
        found |= set(var.rglob("*"))
    return found


_CACHES = {"__pycache__", "ttu.egg-info"}


def _stop(pids: list[int]) -> None:
    """Kill what a test left running, so that one leak does not fail the tests after it."""
    procs = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5)


@dataclass(frozen=True)
class _Snapshot:
    """What the process holds just before a test body runs (after every fixture is set up, so a
    session fixture a test is the first to use does not count as the test's leak)."""

    files: dict[int, str]
    children: dict[int, str]
    cwd: Path
    folder: set[Path]

    @classmethod
    def take(cls, cwd: Path) -> _Snapshot:
        return cls(_open_files(), _children(), cwd, _files_in(cwd))


_BEFORE = pytest.StashKey[_Snapshot]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Make the main thread's default event loop now: looptime asks the policy for it in the
    first test that runs, and its selector and self-pipe are the process's, not that test's."""
    asyncio.get_event_loop_policy().get_event_loop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    item.stash[_BEFORE] = _Snapshot.take(item.config.invocation_params.dir)
    return (yield)


@pytest.fixture(autouse=True)
def _check_no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves tasks, threads, open files, files in the working folder or child
    processes behind (pymodbus test/conftest.py ``_check_system_health``). Files and processes
    count from just before the test body to after its fixtures are torn down."""
    threads_before = {t.ident for t in threading.enumerate()}
    yield
    before = request.node.stash.get(_BEFORE, None)
    if before is None:  # setup failed: the body never ran
        return
    children = {pid: cmd for pid, cmd in _children().items() if pid not in before.children}
    if children:
        _stop(list(children))
        pytest.fail(f"test left child processes running (killed now): {children}")
    gc.collect()  # what only the garbage still holds is closed by now
    opened = {fd: target for fd, target in _open_files().items() if before.files.get(fd) != target}
    assert not opened, f"test left files open: {opened}"
    left = sorted(str(p.relative_to(before.cwd)) for p in _files_in(before.cwd) - before.folder)
    assert not left, f"test left files in the working folder {before.cwd}: {left}"
    try:  # after the file checks: asking the policy for a loop may make one (and its files)
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is not None and not loop.is_closed() and not loop.is_running():
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        assert not pending, f"test left tasks running: {pending}"
    leaked = [
        t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive() and not t.daemon
    ]
    assert not leaked, f"test left threads running: {leaked}"


HANG_DUMP_MARGIN_S = 5.0  # dump the asyncio tasks this long before pytest-timeout fires


def _dump_tasks(nodeid: str) -> None:
    """Print every unfinished asyncio task's stack: pytest-timeout shows only thread stacks,
    which for a hung coroutine test is just the event loop's select()."""
    tasks = [t for t in list(asyncio.tasks._all_tasks) if not t.done()]  # every loop's tasks
    print(f"\n+++ {nodeid}: about to time out; {len(tasks)} asyncio tasks pending +++", file=sys.stderr)
    for task in tasks:
        print(f"--- {task!r}", file=sys.stderr)
        with contextlib.suppress(Exception):  # the loop thread may change a task while we read it
            task.print_stack(limit=12, file=sys.stderr)


@pytest.fixture(autouse=True)
def _dump_tasks_before_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    timeout = float(request.config.getini("timeout") or 0)
    marker = request.node.get_closest_marker("timeout")
    if marker is not None and marker.args:
        timeout = float(marker.args[0])
    if timeout <= HANG_DUMP_MARGIN_S:
        yield
        return
    timer = threading.Timer(timeout - HANG_DUMP_MARGIN_S, _dump_tasks, args=(request.node.nodeid,))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


# A pty delivers bytes through the kernel's tty flip buffer, which a kernel worker pushes a
# little later: bytes written to one side are not always readable on the next select().
# looptime fast-forwards the clock to the next timer after 42 empty polls, so a reply timeout
# could expire while the reply is still inside the kernel. Once a test opens a pty, its looptime
# loop therefore waits a few real milliseconds several times before it may jump (kernel workers
# lag on a loaded machine). Tests without ptys are untouched.
PTY_GRACE_S = 0.003
PTY_GRACE_EVERY = 40  # empty polls between two real waits
PTY_NOOP_CYCLES = 200  # looptime's empty polls before a jump once a pty is open: five waits, ~15 ms


def _install_pty_grace(loop: asyncio.AbstractEventLoop) -> None:
    if not getattr(loop, "looptime_on", False):
        return  # only a loop whose time looptime compacts can jump past bytes still in the kernel
    attr = "_LoopTimeEventLoop__original_select"
    original = getattr(loop, attr, None)
    if original is None or getattr(original, "pty_grace", False):
        return
    empty = 0

    def select(timeout: float | None = None) -> list[object]:
        nonlocal empty
        ready: list[object] = original(timeout=timeout)
        if ready or timeout != 0:
            empty = 0
            return ready
        empty += 1
        if empty % PTY_GRACE_EVERY == 0:
            ready = original(timeout=PTY_GRACE_S)
        return ready

    select.pty_grace = True  # type: ignore[attr-defined]
    setattr(loop, attr, select)
    noop = "_LoopTimeEventLoop__noop_cycles"
    if getattr(loop, noop, PTY_NOOP_CYCLES) < PTY_NOOP_CYCLES:
        setattr(loop, noop, PTY_NOOP_CYCLES)


@pytest.fixture(autouse=True)
def _pty_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    real_openpty = os.openpty

    def openpty() -> tuple[int, int]:
        with contextlib.suppress(RuntimeError):
            _install_pty_grace(asyncio.get_running_loop())
        return real_openpty()

    monkeypatch.setattr(os, "openpty", openpty)
