"""Shared fixtures. Every test must leave no task, thread, file or child process behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.brokers"]


@pytest.fixture(autouse=True)
def _check_no_leaks() -> Iterator[None]:
    threads_before = {t.ident for t in threading.enumerate()}
    yield
    try:
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
