"""Keeping a task cancellable across awaits that may drop its cancellation.

Python 3.11's ``asyncio.wait_for`` returns the awaited result when that result and a
``Task.cancel()`` arrive in the same loop iteration: the ``CancelledError`` is never raised
(CPython gh-86296; 3.12 rebuilt ``wait_for`` on ``asyncio.timeout``). aiomqtt waits for every
CONNACK, PUBACK and SUBACK with ``wait_for``, so a publisher cancelled just as its
acknowledgement comes in carries on -- and a loop that then waits for more work is a task
nobody can stop (a ``TaskGroup`` exit hangs on it).

Layer: hal (a loop utility below runtime): the terminal's uplink and the simulator's cloud
stub both publish through aiomqtt.

``keep_cancel`` runs such an await in a task of its own and waits with ``asyncio.wait``,
which never swallows: a cancellation always reaches the caller, whatever the inner await
does with its copy. (``Task.cancelling()`` alone cannot stand in: 3.11's ``TaskGroup`` leaves
it raised after a child fails while the group is exiting.)

An await that cannot run in a task of its own -- entering ``aiomqtt.Client``, whose CONNACK
wait is such a ``wait_for`` and whose connection belongs to the caller's ``async with`` --
is bracketed instead: ``cancel_requests()`` before it, ``raise_if_cancelled_since(n)`` after
it. Only the difference counts, so a count some ``TaskGroup`` left raised does not matter.

Must not: swallow, delay or invent a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def keep_cancel(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro``; a cancellation of the caller is raised even if ``coro`` swallows it."""
    inner = asyncio.ensure_future(coro)
    try:
        await asyncio.wait({inner})
    except asyncio.CancelledError:
        inner.cancel()
        await asyncio.wait({inner})  # it ends on the cancel, or with the result it swallowed it for
        if not inner.cancelled():
            inner.exception()  # retrieved: the caller stops either way
        raise
    return inner.result()


def cancel_requests() -> int:
    """The running task's pending cancellation requests (``Task.cancelling()``; 0 outside a task)."""
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def raise_if_cancelled_since(requests: int) -> None:
    """Raise ``CancelledError`` if the running task was asked to stop since ``cancel_requests()``
    returned ``requests``: the await in between returned normally, so it swallowed the request."""
    if cancel_requests() > requests:
        raise asyncio.CancelledError


__all__ = ["cancel_requests", "keep_cancel", "raise_if_cancelled_since"]
