"""Uplink against real brokers (embedded amqtt and mosquitto): order, commands, outage, reboot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from protocols.cloud import MAX_MESSAGE_BYTES, Command
from runtime.errors import CommandError, MessageTooLarge
from runtime.model import Event, Reading
from runtime.store import Store
from runtime.uplink import Backoff, Uplink
from sim.broker import EmbeddedBroker, MosquittoBroker

from .helpers import KEY, TERMINAL, Cloud, TcpProxy, cloud_peer, eventually

T0 = 1_767_225_600.0


def make_uplink(store: Store, clock: LoopClock, url: str, **kw: Any) -> Uplink:
    return Uplink(
        store=store,
        clock=clock,
        terminal_id=TERMINAL,
        broker_url=url,
        client_id=f"ttu-{TERMINAL}",
        command_key=KEY,
        **kw,
    )


@asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[Uplink]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(uplink.run(), name="uplink")
        try:
            yield uplink
        finally:
            task.cancel()


def reading(i: int) -> dict[str, Any]:
    return {
        "readings": [Reading("m1", "energy.active.import.total", float(i), "kWh", T0 + 900 * i).to_json()]
    }


def assert_in_order_exactly_once(cloud: Cloud, stream: str, count: int) -> None:
    unique = cloud.unique(stream)
    assert [m.seq for m in unique] == list(range(1, count + 1))
    assert [m.key for m in unique] == [f"{TERMINAL}:{stream}:{s}" for s in range(1, count + 1)]


async def test_messages_arrive_in_order(broker: EmbeddedBroker | MosquittoBroker, tmp_path: Path) -> None:
    clock = LoopClock(start=T0)
    async with (
        await Store.open(tmp_path / "s.db", clock=clock) as store,
        cloud_peer(broker.host, broker.port) as cloud,
    ):
        uplink = make_uplink(store, clock, broker.url, batch_max=40)
        for i in range(50):  # queued before the uplink even runs
            await uplink.send("readings", reading(i))
        async with running(uplink):
            for i in range(50, 120):
                await uplink.send("readings", reading(i))
                if i % 10 == 0:
                    await uplink.send("events", Event("meter.power_down", "m1", T0 + i).to_json())
            await cloud.wait(
                lambda: len(cloud.unique("readings")) == 120 and len(cloud.unique("events")) == 7
            )
            assert_in_order_exactly_once(cloud, "readings", 120)
            assert_in_order_exactly_once(cloud, "events", 7)
            assert cloud.unique("readings")[5].body == reading(5)
            assert max(len(b.messages) for b in cloud.batches) <= 40
            assert "online" in cloud.states
            await eventually(lambda: uplink.statistics()["published_messages"] == 127, clock)
            await eventually(lambda: uplink.statistics()["backlog"] == {}, clock)  # every row acked
            stats = uplink.statistics()
            assert stats["connected"] is True and stats["backlog"] == {}
        assert await store.outbox_backlog() == {}
        await cloud.wait(lambda: cloud.states[-1] == "offline")  # a clean stop says so itself


def test_backoff_is_jittered_exponential_and_capped() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    bases = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert all(b / 2 <= d <= b for d, b in zip(delays, bases, strict=True))
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next_delay() <= 1.0


async def test_commands(broker: EmbeddedBroker | MosquittoBroker, tmp_path: Path) -> None:
    clock = LoopClock(start=T0)
    state: dict[str, Any] = {"limit": 10, "calls": 0}

    def validate(args: dict[str, Any]) -> None:
        if not isinstance(args.get("limit"), int) or not 0 < args["limit"] < 100:
            raise ValueError("args.limit: must be an integer in 1..99")

    async def set_limit(args: dict[str, Any]) -> dict[str, Any]:
        state["calls"] += 1
        state["limit"] = args["limit"]
        return {"limit": state["limit"]}

    async def refuse(args: dict[str, Any]) -> dict[str, Any]:
        raise CommandError("busy", "try later")

    async def crash(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    async with (
        await Store.open(tmp_path / "s.db", clock=clock) as store,
        cloud_peer(broker.host, broker.port) as cloud,
    ):
        uplink = make_uplink(store, clock, broker.url)
        uplink.register_command("limit.set", set_limit, validate=validate)
        uplink.register_command("refuse", refuse)
        uplink.register_command("crash", crash)
        async with running(uplink):
            await cloud.wait(lambda: "online" in cloud.states)

            await cloud.command("c-1", "ping", {}, clock.now())
            (r,) = await cloud.reply_to("c-1")
            assert r.ok and isinstance(r.result, dict) and abs(r.result["pong"] - clock.now()) < 60

            await cloud.command("c-2", "limit.set", {"limit": 42}, clock.now())
            (r,) = await cloud.reply_to("c-2")
            assert r.ok and r.result == {"limit": 42} and state == {"limit": 42, "calls": 1}

            async def rejected(cmd_id: str, code: str) -> None:
                (reply,) = await cloud.reply_to(cmd_id)
                assert (reply.ok, reply.code) == (False, code), reply
                assert reply.message

            await cloud.publish_raw(b"{not json")
            await rejected("", "bad_json")
            await cloud.publish_raw(b'{"v": 1, "id": "c-3", "args": {}, "ts": 0}')  # no name
            await rejected("c-3", "bad_command")
            await cloud.publish_raw(
                Command("c-4", "limit.set", {"limit": 5}, clock.now()).encode()
            )  # unsigned
            await rejected("c-4", "unauthenticated")
            await cloud.command("c-5", "limit.set", {"limit": 6}, clock.now(), key=b"wrong key")
            await rejected("c-5", "unauthenticated")
            await cloud.command("c-6", "limit.set", {"limit": 7}, clock.now() - 3600)
            await rejected("c-6", "expired")
            await cloud.command("c-7", "limit.set", {"limit": 8}, clock.now() + 3600)
            await rejected("c-7", "expired")
            await cloud.command("c-8", "no.such", {}, clock.now())
            await rejected("c-8", "unknown_command")
            await cloud.command("c-9", "limit.set", {"limit": 1000}, clock.now())
            await rejected("c-9", "bad_args")
            await cloud.command("c-10", "refuse", {}, clock.now())
            await rejected("c-10", "busy")
            await cloud.command("c-11", "crash", {}, clock.now())
            await rejected("c-11", "failed")
            assert state == {"limit": 42, "calls": 1}  # nothing rejected reached the handler

            # a replayed id gets the cached reply, not a second execution
            await cloud.command("c-2", "limit.set", {"limit": 42}, clock.now())
            first, again = await cloud.reply_to("c-2", count=2)
            assert again == first and state["calls"] == 1

            await cloud.command("c-12", "uplink.stats", {}, clock.now())
            (r,) = await cloud.reply_to("c-12")
            assert r.ok and r.result is not None and r.result["connected"] is True
            stats = uplink.statistics()
            assert stats["commands_ok"] == 3 and stats["commands_replayed"] == 1
            assert stats["commands_rejected"] == {
                "bad_args": 1,
                "bad_command": 1,
                "bad_json": 1,
                "busy": 1,
                "expired": 2,
                "failed": 1,
                "unauthenticated": 2,
                "unknown_command": 1,
            }

    # the replay cache outlives a reboot
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        uplink = make_uplink(store, clock, broker.url)
        uplink.register_command("limit.set", set_limit, validate=validate)
        cmd = Command("c-2", "limit.set", {"limit": 42}, clock.now())
        from protocols.cloud import sign_command

        await uplink.handle_command(sign_command(cmd, KEY).encode())
        assert state["calls"] == 1


async def test_outage_then_reboot(broker: EmbeddedBroker | MosquittoBroker, tmp_path: Path) -> None:
    """An hour without the broker: nothing is lost, order holds, and a reboot delivers the rest."""
    clock = LoopClock(start=T0, speed=3600.0)  # backoff waits of 60 s take 1/60 s of wall time
    proxy = TcpProxy(broker.host, broker.port)
    await proxy.start()
    try:
        async with cloud_peer(broker.host, broker.port) as cloud:
            async with await Store.open(tmp_path / "s.db", clock=clock) as store:
                uplink = make_uplink(store, clock, proxy.url)
                async with running(uplink):
                    for i in range(20):
                        await uplink.send("readings", reading(i))
                    await cloud.wait(lambda: len(cloud.unique("readings")) == 20)

                    await proxy.cut()
                    outage_start = clock.now()
                    n = 20
                    while clock.now() - outage_start < 3600:  # records keep coming during the outage
                        await uplink.send("readings", reading(n))
                        await uplink.send("events", Event("meter.power_down", "m1", clock.now()).to_json())
                        n += 1
                        await clock.sleep(60)
                    assert uplink.statistics()["connected"] is False
                    assert uplink.statistics()["backlog"]["readings"] > 0
                    await cloud.wait(lambda: "offline" in cloud.states)  # the will

                    await proxy.start()  # same port: the broker is reachable again
                    await cloud.wait(lambda: len(cloud.unique("readings")) == n)
                    await cloud.wait(lambda: len(cloud.unique("events")) == n - 20)
                    assert_in_order_exactly_once(cloud, "readings", n)
                    assert_in_order_exactly_once(cloud, "events", n - 20)
                    assert uplink.statistics()["reconnects"] >= 1

                    # second outage once everything is acknowledged, then the terminal reboots before
                    # the broker comes back
                    await eventually(lambda: uplink.statistics()["backlog"] == {}, clock)
                    await proxy.cut()
                    for i in range(n, n + 15):
                        await uplink.send("readings", reading(i))
                assert (await store.outbox_backlog())["readings"] == 15

            async with await Store.open(tmp_path / "s.db", clock=clock) as store:
                rebooted = make_uplink(store, clock, broker.url)
                async with running(rebooted):
                    await cloud.wait(lambda: len(cloud.unique("readings")) == n + 15)
                    assert_in_order_exactly_once(cloud, "readings", n + 15)
                    assert cloud.unique("readings")[-1].body == reading(n + 14)
                    await eventually(lambda: rebooted.statistics()["backlog"] == {}, clock)
    finally:
        await proxy.close()


@pytest.mark.parametrize("url", ["http://x", "mqtt://", "mqtt://host:notaport"])
def test_bad_broker_url_is_a_config_error(url: str, tmp_path: Path) -> None:
    from runtime.errors import ConfigError
    from runtime.uplink import parse_broker_url

    with pytest.raises(ConfigError, match="broker_url"):
        parse_broker_url(url)


def backlog_body(i: int) -> dict[str, Any]:
    rows = [Reading(f"m-{k:04d}", "voltage.a", 220.0 + k, "V", T0 + 60 * i).to_json() for k in range(150)]
    return {"readings": rows}  # ~16 KiB: an hour of a station area's readings is ~700 of these


async def test_an_urgent_report_overtakes_a_readings_backlog(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    clock = LoopClock(start=T0)
    async with (
        await Store.open(tmp_path / "s.db", clock=clock) as store,
        cloud_peer(mosquitto_broker.host, mosquitto_broker.port) as cloud,
    ):
        uplink = make_uplink(store, clock, mosquitto_broker.url)
        uplink.declare_stream("outage", priority="urgent")
        for i in range(300):  # the backlog an uplink outage left (~5 MiB)
            await uplink.send("readings", backlog_body(i))
        async with running(uplink):
            await cloud.wait(lambda: len(cloud.unique("readings")) > 0)
            await uplink.send("outage", {"id": "o-1", "level": "branch", "target": "F2"})
            await cloud.wait(lambda: len(cloud.unique("outage")) == 1)
            readings_before = len(cloud.unique("readings"))
            await cloud.wait(lambda: len(cloud.unique("readings")) == 300)
            await eventually(lambda: uplink.statistics()["backlog"] == {}, clock)
    # it went out with the first batches (at most one window of 1 MiB of readings ahead), not last
    assert readings_before < 100
    assert_in_order_exactly_once(cloud, "readings", 300)


class _LongBackoff(Backoff):
    """The first retry after a short wait, every later one after an hour."""

    calls = 0

    def next_delay(self) -> float:
        self.calls += 1
        delay = self._next
        self._next = self.maximum
        return delay


async def test_an_urgent_message_cuts_a_long_reconnect_backoff_short(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """A last gasp has seconds of hold-up: it must not wait out an hour of reconnect backoff."""
    clock = LoopClock(start=T0)
    proxy = TcpProxy(mosquitto_broker.host, mosquitto_broker.port)
    await proxy.start()
    try:
        async with (
            await Store.open(tmp_path / "s.db", clock=clock) as store,
            cloud_peer(mosquitto_broker.host, mosquitto_broker.port) as cloud,
        ):
            backoff = _LongBackoff(initial=0.05, maximum=3600.0)
            uplink = make_uplink(store, clock, proxy.url, backoff=backoff)
            uplink.declare_stream("outage", priority="urgent")
            async with running(uplink):
                await uplink.send("readings", reading(0))
                await cloud.wait(lambda: len(cloud.unique("readings")) == 1)
                await proxy.cut()
                await eventually(lambda: backoff.calls == 2, clock)  # one retry failed: an hour to the next
                await proxy.start()  # the broker is back
                await uplink.send("readings", reading(1))  # bulk: waits for the retry
                await uplink.send("outage", {"id": "o-1", "level": "station", "target": "S"})
                await cloud.wait(lambda: len(cloud.unique("outage")) == 1)  # bounded by WAIT_S, not an hour
                await cloud.wait(lambda: len(cloud.unique("readings")) == 2)
                assert uplink.statistics()["early_reconnects"] == 1
    finally:
        await proxy.close()


async def test_a_message_larger_than_a_batch_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    clock = LoopClock(start=T0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        uplink = make_uplink(store, clock, "mqtt://127.0.0.1:1")
        with pytest.raises(MessageTooLarge, match="over"):
            await uplink.send("topology", {"result": "x" * MAX_MESSAGE_BYTES})
        assert await store.outbox_backlog() == {}
        assert await uplink.send("topology", {"result": "x" * (MAX_MESSAGE_BYTES - 100)})


async def test_the_uplink_socket_sends_small_messages_at_once() -> None:
    """paho leaves Nagle's algorithm on: an outage report written behind a batch would wait for the
    broker's TCP ACK. ``send_at_once`` turns it off on the connected socket (and leaves a client
    without a TCP socket alone)."""
    import socket

    import aiomqtt

    from runtime.uplink import send_at_once

    async with EmbeddedBroker() as broker, aiomqtt.Client(broker.host, broker.port) as client:
        sock = client._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # paho's default
        send_at_once(client)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    send_at_once(object())  # type: ignore[arg-type]  # a test double without paho: no error
