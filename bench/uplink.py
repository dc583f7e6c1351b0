"""Benchmark: terminal-added latency of urgent messages (send -> on the broker) behind a readings backlog.

Not a test: prints figures and ratios. Usage: .venv/bin/python -P bench/uplink.py [--backlog-min 60]

The terminal comes back from an uplink outage with ``--backlog-min`` minutes of readings in its
outbox (the default board: 242 meters x ~10 quantities every 60 s = ~2,400 readings a minute, in
messages of 200 as the acquisition app sends them). While the backlog drains through a real
mosquitto to the cloud stub in its own process (``ttu cloud serve``: it acks every batch), an
app sends outage reports on an URGENT stream every 20-60 ms. Each report's latency is measured
from the ``uplink.send`` call to its arrival at an MQTT subscriber on the same broker: the
outbox write (fsync), the wait for the sender and the publish. Three runs: no backlog (the
baseline), the backlog with the stream priorities, and the backlog with every stream at the same
priority (streams take turns: a report waits behind one readings batch a turn). Goal: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402

from hal.clock import LoopClock  # noqa: E402
from protocols.cloud import StreamPriority, UpBatch, peek_batch, up_wildcard  # noqa: E402
from runtime.config import load_credentials  # noqa: E402
from runtime.model import Reading  # noqa: E402
from runtime.store import Store  # noqa: E402
from runtime.uplink import Uplink  # noqa: E402
from sim.broker import MosquittoBroker  # noqa: E402

CREDENTIALS = ROOT / "sim" / "credentials.toml"
KEY = load_credentials(CREDENTIALS).command_key
TTU = Path(sys.executable).with_name("ttu")
TERMINAL = "TTU-BENCH"
READINGS_PER_MINUTE = 2420
MESSAGE_READINGS = 200
REPORTS = 150


def readings_body(i: int) -> dict[str, Any]:
    t0 = 1_767_225_600.0 + 60 * (i // 12)
    return {
        "readings": [
            Reading(f"m-{k % 242:04d}", "voltage.a", 220.0 + k / 10, "V", t0).to_json()
            for k in range(MESSAGE_READINGS)
        ]
    }


@contextlib.asynccontextmanager
async def cloud_process(broker_url: str, db: Path) -> Any:
    """The cloud stub in its own process (``ttu cloud serve``), as the master station is."""
    proc = await asyncio.create_subprocess_exec(
        str(TTU), "cloud", "serve", "--broker", broker_url, "--db", str(db), "--key-file", str(CREDENTIALS),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        await proc.wait()


async def run(backlog_messages: int, *, priorities: bool) -> tuple[list[float], float, int]:
    clock = LoopClock()
    with tempfile.TemporaryDirectory(prefix="ttu-bench-uplink-") as tmp:
        async with (
            MosquittoBroker() as broker,
            await Store.open(Path(tmp) / "ttu.sqlite", clock=clock) as store,
            cloud_process(broker.url, Path(tmp) / "cloud.sqlite"),
            aiomqtt.Client(broker.host, broker.port, identifier="bench-observer") as observer,
        ):
            uplink = Uplink(
                store=store, clock=clock, terminal_id=TERMINAL, broker_url=broker.url, client_id=TERMINAL,
                command_key=KEY,
            )  # fmt: skip
            if priorities:
                uplink.declare_stream("outage", priority=StreamPriority.URGENT)
            else:  # everything alike: the old round-robin-ish order
                uplink.declare_stream("readings", priority=StreamPriority.NORMAL)
            for i in range(backlog_messages):
                await uplink.send("readings", readings_body(i))
            await observer.subscribe(up_wildcard(TERMINAL), qos=1)
            sent_at: dict[str, float] = {}
            latencies: list[float] = []
            delivered_readings = 0
            done = asyncio.Event()

            async def observe() -> None:
                nonlocal delivered_readings
                async for message in observer.messages:
                    now = time.perf_counter()
                    payload = message.payload
                    assert isinstance(payload, bytes)
                    if message.topic.value.endswith("/readings"):  # counted, not parsed: cheap
                        span = peek_batch(payload)
                        delivered_readings += 0 if span is None else span[1] - span[0] + 1
                        continue
                    for m in UpBatch.decode(payload).messages:
                        if m.key in sent_at:
                            latencies.append(now - sent_at.pop(m.key))
                    if len(latencies) >= REPORTS:
                        done.set()

            rng = random.Random(1)
            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(observe())
                sender = tg.create_task(uplink.run())
                await uplink.send("warmup", {"hello": True})  # until the cloud (its own process) acks
                async with asyncio.timeout(60):
                    while uplink.statistics()["acks"] == 0:  # noqa: ASYNC110 - polling a counter
                        await asyncio.sleep(0.05)
                started = time.perf_counter()
                for i in range(REPORTS):
                    await asyncio.sleep(rng.uniform(0.02, 0.06))  # a real app's pace: wall time here
                    t = time.perf_counter()
                    key = await uplink.send("outage", {"id": f"o-{i}", "level": "branch"})
                    sent_at[key] = t
                async with asyncio.timeout(120):
                    await done.wait()
                drained_in = time.perf_counter() - started
                sender.cancel()
                watcher.cancel()
            return latencies, drained_in, delivered_readings


def describe(label: str, latencies: list[float], readings: int, seconds: float) -> tuple[float, float]:
    ms = sorted(x * 1000 for x in latencies)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print(
        f"{label:38s}: p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {ms[-1]:7.1f} ms   "
        f"({len(ms)} reports; {readings} readings messages went up meanwhile in {seconds:.1f} s)"
    )
    return p50, p99


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--backlog-min", type=float, default=60.0, help="minutes of readings waiting (default 60)"
    )
    args = parser.parse_args(argv)
    backlog = round(args.backlog_min * READINGS_PER_MINUTE / MESSAGE_READINGS)
    print(
        f"backlog: {args.backlog_min:g} min of readings = {backlog} messages of {MESSAGE_READINGS} readings"
    )
    base = asyncio.run(run(0, priorities=True))
    prio = asyncio.run(run(backlog, priorities=True))
    flat = asyncio.run(run(backlog, priorities=False))
    _, p99_base = describe("no backlog (baseline)", base[0], base[2], base[1])
    _, p99_prio = describe("backlog, outage stream URGENT", prio[0], prio[2], prio[1])
    _, p99_flat = describe("backlog, all streams alike", flat[0], flat[2], flat[1])
    ratio_prio, ratio_flat = p99_prio / p99_base, p99_flat / p99_base
    print(f"p99 ratio backlog/baseline with priorities: {ratio_prio:.2f}; all alike: {ratio_flat:.2f}")
    verdict = "met" if p99_prio <= 100 else "NOT met"
    print(f"goal p99 <= 100 ms with a {args.backlog_min:g}-minute backlog: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
