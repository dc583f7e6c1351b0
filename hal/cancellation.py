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
does with its copy. (``Task.cancelling()`` cannot stand in: 3.11's ``TaskGroup`` leaves it
raised after a child fails while the group is exiting.)

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


__all__ = ["keep_cancel"]
