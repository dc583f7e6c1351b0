"""Every reading reaches the master station exactly once, through what fails in the field (issue 14,
reproduction 6: a broker outage lost readings the terminal believed delivered).

Real parts: a mosquitto process (no persistence) SIGKILLed and restarted on the same port mid-run,
the cloud stub stopped and started again mid-run (its persistent session keeps what the broker
holds meanwhile), and a master station that accepts smaller batches than the terminal sends (it
nacks them ``too_large``; the terminal splits them). The terminal's ``Uplink`` and ``Store`` and
the ``CloudStub`` are the production ones. At the end every outbox row is at the cloud exactly
once, no seq is missing, and the terminal only forgot rows the cloud acknowledged.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from runtime.model import Reading
from runtime.store import Store
from runtime.uplink import Backoff, Uplink
from sim.broker import MosquittoBroker, mosquitto_binary
from sim.cloud.stub import CloudStub

KEY = b"delivery-test-key"
TERMINAL = "TTU-E2E"
T0 = 1_767_225_600.0
READINGS_PER_MESSAGE = 60  # ~6 KiB bodies: batches reach the byte limit, not the count
WAIT_S = 90.0

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed")


def body(i: int) -> dict[str, Any]:
    rows = [
        Reading(f"m-{k:04d}", "energy.active.import.total", i + k / 100, "kWh", T0 + 900 * i).to_json()
        for k in range(READINGS_PER_MESSAGE)
    ]
    return {"readings": rows}


def stub(broker: MosquittoBroker, db: Path, clock: LoopClock, *, max_batch_bytes: int) -> CloudStub:
    return CloudStub(
        broker_url=broker.url, db_path=db, clock=clock, default_key=KEY, terminal=TERMINAL,
        max_batch_bytes=max_batch_bytes,
    )  # fmt: skip


async def until(predicate: Callable[[], Any], clock: LoopClock, what: str) -> None:
    """Poll a condition (sync or async) until it holds, bounded by WAIT_S of real time."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                result = predicate()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await clock.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def cloud_messages(cloud: CloudStub) -> int:
    return (await cloud.statistics()).get(TERMINAL, {}).get("messages", 0)


async def test_every_reading_once_through_broker_kill_stub_restart_and_oversize(tmp_path: Path) -> None:
    clock = LoopClock(start=T0)
    db = tmp_path / "cloud.sqlite"
    sent = 0
    async with MosquittoBroker() as broker, await Store.open(tmp_path / "ttu.sqlite", clock=clock) as store:
        uplink = Uplink(
            store=store, clock=clock, terminal_id=TERMINAL, broker_url=broker.url, client_id=TERMINAL,
            command_key=KEY, ack_timeout_s=3.0, backoff=Backoff(initial=0.2, maximum=1.0),
        )  # fmt: skip

        async def send(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                await uplink.send("readings", body(sent))
                sent += 1

        # the master station takes batches of 64 KiB at most; the terminal sends up to 256 KiB
        small = 64 << 10
        cloud = await stub(broker, db, clock, max_batch_bytes=small).__aenter__()
        try:
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(uplink.run(), name="uplink")
                await send(60)  # ~360 KiB backlog: the first batches are nacked too_large, then split
                await until(lambda: cloud_messages(cloud), clock, "a first delivery")

                broker._proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]  # no persistence: it forgets all
                await broker.stop()
                await send(60)  # into the outbox while there is no broker
                await broker.start()  # same port
                await until(lambda: uplink.statistics()["connects"] >= 2, clock, "the uplink to reconnect")
                await until(lambda: cloud.connections >= 2, clock, "the stub to reconnect")

                await cloud.__aexit__(None, None, None)  # the master station restarts...
                await send(60)  # ...while the broker holds its session's messages
                cloud = await stub(broker, db, clock, max_batch_bytes=small).__aenter__()
                await send(20)

                await until(lambda: not uplink.statistics()["backlog"], clock, "every row acknowledged")
                runner.cancel()
            stats = uplink.statistics()
            holes = await cloud.holes()
            per_terminal = (await cloud.statistics())[TERMINAL]
            readings = (await cloud.counts())["readings"]
            rejected = per_terminal["rejected"]
        finally:
            await cloud.__aexit__(None, None, None)
        assert await store.outbox_backlog() == {}  # forgotten only once the cloud had it
    assert sent == 200
    assert per_terminal["messages"] == sent  # every message once (the key is unique at the cloud)
    assert readings == sent * READINGS_PER_MESSAGE
    assert holes == {}  # no seq missing
    assert stats["nacks"] >= 1 and rejected >= 1  # the oversize batches were refused, then split
    assert stats["resends"] >= 1 and stats["bad_acks"] == 0
