"""Which tasks are an app's to cancel when it ends (``runtime.container.tasks``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runtime.container.tasks import TaskOwner

HERE = Path(__file__).parent  # coroutines defined in this file play the app's code


async def _forever() -> None:
    await asyncio.Event().wait()


async def _spawner(into: list[asyncio.Task[None]]) -> None:
    into.append(asyncio.create_task(_forever(), name="grandchild"))
    await asyncio.Event().wait()


async def test_the_tasks_an_app_left_running_are_cancelled_and_no_one_elses() -> None:
    owner = TaskOwner("app", HERE)
    grandchildren: list[asyncio.Task[None]] = []
    with owner.running():
        timer = asyncio.create_task(_forever(), name="timer")
        spawner = asyncio.create_task(_spawner(grandchildren), name="spawner")
        # a task a shared service starts lazily while serving the app runs library code: not the app's
        service = asyncio.create_task(asyncio.Event().wait(), name="service")
    outsider = asyncio.create_task(_forever(), name="outsider")  # started by no app
    await asyncio.sleep(0)
    assert {t.get_name() for t in owner.live()} == {"timer", "spawner", "grandchild"}

    assert await owner.cancel_leftovers(timeout=1.0) == 3
    assert timer.cancelled() and spawner.cancelled() and grandchildren[0].cancelled()
    assert not service.done() and not outsider.done()
    assert owner.live() == []
    service.cancel()
    outsider.cancel()
    await asyncio.wait({service, outsider})


async def test_an_owner_without_code_of_its_own_claims_nothing() -> None:
    owner = TaskOwner("builtin", None)
    with owner.running():
        task = asyncio.create_task(_forever())
    await asyncio.sleep(0)
    assert owner.live() == []
    task.cancel()
    await asyncio.wait({task})
