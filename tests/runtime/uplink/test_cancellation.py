"""The uplink stops when told to, even when its PUBACK (or CONNACK) and the stop arrive together.

Python 3.11's ``asyncio.wait_for`` (which aiomqtt uses for every acknowledgement) then
returns the PUBACK and drops the cancellation; a sender that goes back to waiting for work
would never end and the terminal's shutdown would hang (hal.cancellation). The client
here is aiomqtt's shape with ``wait_for`` on a PUBACK the test releases at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hal.cancellation import cancel_requests, keep_cancel, raise_if_cancelled_since
from hal.clock import LoopClock
from runtime.store import Store
from runtime.uplink import Uplink

from .helpers import KEY, TERMINAL


class AckRaceClient:
    """Publishes on ``ttu/T1/up/...`` wait for a PUBACK the test gives; all else is acked at once."""

    def __init__(self) -> None:
        self.held: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
        self.returned: list[str] = []  # topics whose publish() returned

    async def __aenter__(self) -> AckRaceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def publish(
        self, topic: str, payload: bytes | None = None, qos: int = 0, retain: bool = False
    ) -> None:
        puback: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if "/up/" in topic:
            self.held.put_nowait(puback)
        else:
            puback.set_result(None)
        await asyncio.wait_for(puback, 10)  # as aiomqtt.Client._wait_for does
        self.returned.append(topic)

    async def subscribe(self, *args: Any, **kwargs: Any) -> None:
        return None

    @property
    def messages(self) -> AsyncIterator[Any]:
        async def never() -> AsyncIterator[Any]:
            await asyncio.Event().wait()
            yield None

        return never()


class ConnackRaceClient(AckRaceClient):
    """Entering waits for a CONNACK the test gives, with ``wait_for`` as aiomqtt's ``__aenter__``."""

    def __init__(self) -> None:
        super().__init__()
        self.connacks: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
        self.exited = False

    async def __aenter__(self) -> ConnackRaceClient:
        connack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connacks.put_nowait(connack)
        await asyncio.wait_for(connack, 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.exited = True


def _uplink_over(client: AckRaceClient, store: Store, clock: LoopClock) -> Uplink:
    """An uplink whose MQTT client is ``client`` (no broker)."""
    uplink = Uplink(
        store=store,
        clock=clock,
        terminal_id=TERMINAL,
        broker_url="mqtt://127.0.0.1:1",
        client_id=f"ttu-{TERMINAL}",
        command_key=KEY,
    )
    uplink._client = lambda: client  # type: ignore[method-assign,assignment,return-value]
    return uplink


def _task(name: str) -> asyncio.Task[Any]:
    return next(t for t in asyncio.all_tasks() if t.get_name() == name)


@pytest.mark.looptime
async def test_a_stop_arriving_with_the_puback_still_stops_the_uplink(tmp_path: Path) -> None:
    clock = LoopClock(start=1_767_225_600.0)
    store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
    try:
        client = AckRaceClient()
        uplink = _uplink_over(client, store, clock)
        await uplink.send("events", {"kind": "test"})
        run = asyncio.create_task(uplink.run(), name="uplink")
        async with clock.timeout(5):
            puback = await client.held.get()  # the batch is on its way; the sender waits for its PUBACK
        sender = _task(f"uplink-sender-{TERMINAL}")
        run.cancel()
        for _ in range(100):  # the session's TaskGroup passes the stop on to the sender ...
            if sender.cancelling():
                break
            await asyncio.sleep(0)
        assert sender.cancelling()
        puback.set_result(None)  # ... and the PUBACK comes in before the sender runs again
        done, _ = await asyncio.wait({run}, timeout=30)
        assert done == {run}, "the uplink did not stop"
        assert run.cancelled()
        assert any("/up/" in t for t in client.returned)  # the race happened: publish() returned
        # the PUBACK came but the stop won: the row stays pending and is sent again (at least once)
        assert await store.outbox_backlog() == {"events": 1}
    finally:
        await store.close()


@pytest.mark.looptime
async def test_keep_cancel_passes_results_and_real_errors_through() -> None:
    async def value() -> int:
        return 7

    async def boom() -> None:
        raise ValueError("boom")

    assert await keep_cancel(value()) == 7
    with pytest.raises(ValueError, match="boom"):
        await keep_cancel(boom())


@pytest.mark.looptime
async def test_keep_cancel_raises_a_cancellation_the_inner_await_swallowed() -> None:
    entered = asyncio.Event()

    async def stubborn() -> int:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return 5  # what 3.11's wait_for does when the result came with the cancel
        return 0

    caller = asyncio.create_task(keep_cancel(stubborn()))
    await entered.wait()
    caller.cancel()
    done, _ = await asyncio.wait({caller}, timeout=5)
    assert done == {caller} and caller.cancelled()


@pytest.mark.looptime
async def test_a_stop_arriving_with_the_connack_still_stops_the_uplink(tmp_path: Path) -> None:
    clock = LoopClock(start=1_767_225_600.0)
    store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
    try:
        client = ConnackRaceClient()
        uplink = _uplink_over(client, store, clock)
        run = asyncio.create_task(uplink.run(), name="uplink")
        async with clock.timeout(5):
            connack = await client.connacks.get()  # connecting: waiting for the broker's CONNACK
        run.cancel()
        connack.set_result(None)  # the CONNACK comes in before the uplink runs again
        done, _ = await asyncio.wait({run}, timeout=30)
        assert done == {run}, "the uplink did not stop"
        assert run.cancelled()
        assert client.exited  # the connection it had made is closed again
        assert client.returned == []  # no session started: not even "online" was published
    finally:
        await store.close()


@pytest.mark.looptime
async def test_raise_if_cancelled_since_raises_only_a_request_made_since() -> None:
    outcome: list[str] = []

    async def connect(result: asyncio.Future[None]) -> None:
        requests = cancel_requests()
        await asyncio.wait_for(result, 10)  # 3.11 returns the result and drops a cancel that came with it
        outcome.append("returned")
        raise_if_cancelled_since(requests)
        outcome.append("carried on")

    loop = asyncio.get_running_loop()
    calm: asyncio.Future[None] = loop.create_future()
    task = asyncio.create_task(connect(calm))
    await asyncio.sleep(0)
    calm.set_result(None)
    await task
    assert outcome == ["returned", "carried on"]

    outcome.clear()
    raced: asyncio.Future[None] = loop.create_future()
    task = asyncio.create_task(connect(raced))
    await asyncio.sleep(0)
    task.cancel()
    raced.set_result(None)
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done == {task} and task.cancelled()
    assert outcome in (["returned"], [])  # swallowed then raised (3.11) or raised at once (3.12+)
