"""Tasks an app leaves behind: found, and cancelled when the app stops or crashes.

Layer: runtime. An app's own work runs in its task (``app:<name>``) and the task groups it opens
there, which end with it. But an app may also start a task it never awaits -- a timer, a
background loop made with ``asyncio.create_task`` -- and such a task outlives a crash: it would
go on publishing, sending and holding the hal beside the restarted instance. ``TaskOwner`` marks
every task created while the app's code runs (through a context variable, which every task
inherits from the one that creates it, and a task factory on the loop that reads it) whose
coroutine is the app's own code (defined under the app's package directory), so the supervisor
can cancel what is still running once the app has ended. A task that a shared service starts
lazily on the app's behalf (its coroutine is runtime code) is not the app's and is left alone.

Must not: know what an app is, touch tasks of anyone else, or replace a task factory another
part installed (it wraps it).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import weakref
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_OWNER: contextvars.ContextVar[TaskOwner | None] = contextvars.ContextVar("ttu_task_owner", default=None)


class TaskOwner:
    """The tasks started by one run of one app (weakly held: a finished task is forgotten)."""

    def __init__(self, name: str, root: Path | None) -> None:
        self.name = name
        self._root = None if root is None else str(root.resolve()) + os.sep
        self._tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    @contextmanager
    def running(self) -> Generator[None, None, None]:
        """Within this block (in the app's own task), every task created belongs to this owner."""
        install_task_factory(asyncio.get_running_loop())
        token = _OWNER.set(self)
        try:
            yield
        finally:
            _OWNER.reset(token)

    def live(self) -> list[asyncio.Task[Any]]:
        """The owner's tasks still running (never the calling task)."""
        current = asyncio.current_task()
        return [t for t in self._tasks if not t.done() and t is not current]

    async def cancel_leftovers(self, *, timeout: float) -> int:  # noqa: ASYNC109 (a bound in loop seconds)
        """Cancel the tasks still running and wait up to ``timeout`` for them; return how many."""
        leftovers = self.live()
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=timeout)
        return len(leftovers)

    def _adopt(self, task: asyncio.Task[Any]) -> None:
        code = getattr(task.get_coro(), "cr_code", None)
        if self._root is None or code is None:
            return
        if os.path.abspath(code.co_filename).startswith(self._root):
            self._tasks.add(task)


class _OwnerFactory:
    """A loop's task factory that notes the owner (if any) of every task it makes."""

    def __init__(self, previous: Any) -> None:
        self._previous = previous  # the loop's factory before ours (usually None)

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, /, **kwargs: Any) -> asyncio.Future[Any]:
        task: asyncio.Future[Any]
        if self._previous is not None:
            task = self._previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get("context")
        owner = _OWNER.get() if context is None else context.get(_OWNER)
        if owner is not None and isinstance(task, asyncio.Task):
            owner._adopt(task)
        return task


def install_task_factory(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` note the owner of every task it creates (once per loop; wraps any factory)."""
    previous = loop.get_task_factory()
    if not isinstance(previous, _OwnerFactory):
        loop.set_task_factory(_OwnerFactory(previous))


__all__ = ["TaskOwner", "install_task_factory"]
