"""Cost of process isolation: RSS per app host, start-to-ready time, bus round trip in-process vs isolated.

Not a test: prints figures and ratios. ``.venv/bin/python bench/isolation.py [--rounds N]``.
Runs the ``keeper`` fixture app (bus, store, a responder) once in-process and once
isolated, in real time, and reports:

* RSS of the runtime process and of one isolated app host (psutil, after ready);
* start-to-ready of the isolated app (STARTING -> RUNNING, clock seconds);
* bus request/reply round trip to the app's responder, median and p95.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.bus import Bus
from runtime.clock import LoopClock
from runtime.container.bridge import SOCKET_NAME, Bridge, IsolationSettings
from runtime.container.context import AppContextFactory, NamespacedStore
from runtime.container.manifest import load_manifest
from runtime.container.supervisor import AppState, Supervisor
from runtime.scheduler import MemoryKeyValue, Scheduler
from runtime.store import Store

APP = Path(__file__).resolve().parent.parent / "tests/runtime/isolation/fixture_apps/keeper/app.toml"


async def _round_trips(bus: Bus, clock: LoopClock, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        t0 = clock.monotonic()
        await bus.request("keeper/ask", {"q": i}, timeout=10)
        out.append(clock.monotonic() - t0)
    return out


async def measure(isolated: bool, rounds: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="ttu-bench-", dir="/tmp"))
    clock = LoopClock()
    bus = Bus(clock=clock)
    store = await Store.open(tmp / "s.sqlite", clock=clock)
    sched = Scheduler(clock=clock, tz="UTC", state=MemoryKeyValue())
    factory = AppContextFactory(
        clock=clock, bus=bus, scheduler=sched, stores=lambda n: NamespacedStore(store, n)
    )
    settings = IsolationSettings(nice=0)
    try:
        async with Bridge(tmp / SOCKET_NAME, bus=bus, clock=clock, settings=settings) as bridge:
            sup = Supervisor(clock=clock, bus=bus, context_factory=factory, bridge=bridge)
            sup.add(load_manifest(APP), isolated=isolated)
            t0 = clock.monotonic()
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(sup.run())
                async with clock.timeout(30):
                    await sup.wait_state("keeper", AppState.RUNNING)
                ready_s = clock.monotonic() - t0
                trips = await _round_trips(bus, clock, rounds)
                me = psutil.Process()
                pid = sup.pid("keeper")
                host_rss = psutil.Process(pid).memory_info().rss if pid else 0
                await sup.stop()
                await task
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    trips.sort()
    return {
        "ready_s": ready_s,
        "rtt_median_us": statistics.median(trips) * 1e6,
        "rtt_p95_us": trips[int(len(trips) * 0.95) - 1] * 1e6,
        "runtime_rss_mb": me.memory_info().rss / 2**20,
        "host_rss_mb": host_rss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    inproc = asyncio.run(measure(False, args.rounds))
    iso = asyncio.run(measure(True, args.rounds))
    print(f"runtime RSS                    {iso['runtime_rss_mb']:8.1f} MB")
    print(
        f"isolated app host RSS          {iso['host_rss_mb']:8.1f} MB  "
        f"({iso['host_rss_mb'] / iso['runtime_rss_mb']:.2f} x the runtime's)"
    )
    print(f"start-to-ready  in-process     {inproc['ready_s'] * 1e3:8.1f} ms")
    print(
        f"start-to-ready  isolated       {iso['ready_s'] * 1e3:8.1f} ms  "
        f"({iso['ready_s'] / inproc['ready_s']:.0f} x)"
    )
    print(
        f"request RTT median in-process  {inproc['rtt_median_us']:8.1f} us  (p95 {inproc['rtt_p95_us']:.1f})"
    )
    print(
        f"request RTT median isolated    {iso['rtt_median_us']:8.1f} us  (p95 {iso['rtt_p95_us']:.1f})  "
        f"({iso['rtt_median_us'] / inproc['rtt_median_us']:.0f} x)"
    )


if __name__ == "__main__":
    main()
