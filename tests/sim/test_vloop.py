"""The virtual-time event loop: time jumps only when nothing can run, real sockets and executor
jobs still complete at the virtual instant they belong to, MQTT keep-alive follows the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from sim.broker import EmbeddedBroker
from sim.vloop import VirtualTimeLoop, run_virtual, running_virtual_loop, virtual_paho_time


def test_a_simulated_day_of_timers_moves_time_from_timer_to_timer() -> None:
    async def main() -> tuple[float, list[tuple[str, float]], int]:
        loop = asyncio.get_running_loop()
        order: list[tuple[str, float]] = []

        async def every(name: str, period: float, times: int) -> None:
            for _ in range(times):
                await asyncio.sleep(period)
                order.append((name, loop.time()))

        await asyncio.gather(every("minute", 60.0, 1440), every("quarter", 900.0, 96))
        assert isinstance(loop, VirtualTimeLoop)
        return loop.time(), order, loop.jumps

    now, order, jumps = run_virtual(main)
    assert now == 86400.0
    assert jumps == 1440  # the quarter-hour timers fall on minute ones: time moved 1440 times
    stamps = [t for _, t in order]
    assert stamps == sorted(stamps)  # never backwards, timers in time order
    assert order[:16][-1] == ("minute", 900.0) and ("quarter", 900.0) in order[:17]


def test_time_stands_still_while_anything_can_run() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen = []
        for _ in range(1000):
            await asyncio.sleep(0)  # a ready callback each time: no jump
            seen.append(loop.time())
        await asyncio.sleep(5.0)
        seen.append(loop.time())
        return seen

    seen = run_virtual(main)
    assert set(seen[:-1]) == {0.0} and seen[-1] == 5.0


def test_executor_jobs_finish_at_the_virtual_instant_they_were_started() -> None:
    def slow(n: int) -> tuple[int, str]:
        time.sleep(0.05)  # wall time: the loop must not jump past a timer meanwhile
        return n * 2, threading.current_thread().name

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        loop.call_later(0.01, lambda: fired.append(loop.time()))
        results = [await asyncio.to_thread(slow, n) for n in range(3)]
        at = loop.time()
        await asyncio.sleep(1.0)
        with_error: BaseException | None = None
        try:
            await asyncio.to_thread(int, "not a number")
        except ValueError as err:
            with_error = err
        return {"results": results, "at": at, "fired": fired, "error": with_error}

    out = run_virtual(main)
    assert [r for r, _ in out["results"]] == [0, 2, 4]
    # run in place, on the loop's thread (no thread switch per job; a sqlite connection made by a
    # job stays on the one thread that runs every job)
    assert all(name == threading.current_thread().name for _, name in out["results"])
    assert out["at"] == 0.0  # 0.15 s of wall time inside the jobs cost no virtual time
    assert out["fired"] == [0.01]
    assert isinstance(out["error"], ValueError)


def test_loopback_sockets_flow_without_time_passing() -> None:
    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ticker = asyncio.create_task(asyncio.sleep(3600.0))  # a timer the loop could jump to
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            async with asyncio.timeout(0.5):  # virtual: would expire if the loop jumped
                writer.write(b"hello")
                got = await reader.readexactly(5)
            writer.close()
            await writer.wait_closed()
        finally:
            ticker.cancel()
            server.close()
            await server.wait_closed()
        return got, loop.time()

    got, now = run_virtual(main)
    assert got == b"hello" and now == 0.0


def test_mqtt_keepalive_follows_virtual_time() -> None:
    """Idle for an hour of virtual time: paho (under aiomqtt) keeps its keep-alive on the loop's
    time, so it pings every keep-alive of *virtual* time, as against a broker that enforces it
    (mosquitto; amqtt 0.12 does not), and the connection carries on."""

    async def main() -> tuple[bytes, float, float]:
        async with (
            EmbeddedBroker() as broker,
            aiomqtt.Client(broker.host, broker.port, keepalive=10) as sub,
            aiomqtt.Client(broker.host, broker.port, keepalive=10) as pub,
        ):
            await sub.subscribe("t/#", qos=1)
            await asyncio.sleep(3600.0)
            # paho's own record of its last packet out (its PINGREQ): virtual time
            last_out = float(sub._client._last_msg_out)
            await pub.publish("t/x", b"still here", qos=1)
            async with asyncio.timeout(5.0):
                async for message in sub.messages:
                    return bytes(message.payload), last_out, asyncio.get_running_loop().time()  # type: ignore[arg-type]
        raise AssertionError("no message")

    payload, last_out, now = run_virtual(main)
    assert payload == b"still here" and 3600 <= now < 3610
    assert 3590 <= last_out <= 3600  # a ping within the last keep-alive period of virtual time


def test_paho_time_is_restored_and_only_virtual_loops_are_reported() -> None:
    saved = paho.time_func
    loop = VirtualTimeLoop()
    try:
        with virtual_paho_time(loop):
            assert paho.time_func() == 0.0
        assert paho.time_func is saved

        async def probe() -> bool:
            return running_virtual_loop() is not None

        assert run_virtual(probe) is True
        assert asyncio.run(probe()) is False
    finally:
        loop.close()


def test_timers_due_together_fire_in_the_order_they_were_set() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        noise = []
        for n in range(200):
            loop.call_at(10.0, fired.append, n)
            # other timers come and go, as MQTT reads and timeouts do: they reshape the heap
            noise += [loop.call_at(10.0 - (n % 7) * 0.5, lambda: None) for _ in range(n % 5)]
            if n % 3 == 0 and noise:
                noise.pop(n % len(noise)).cancel()
        await asyncio.sleep(11.0)
        return fired

    assert run_virtual(main) == list(range(200))
