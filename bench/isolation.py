"""Cost of process isolation: RSS per app host, start-to-ready time, bus round trip in-process vs isolated.

Not a test: prints figures and ratios. ``.venv/bin/python bench/isolation.py [--rounds N]``.
Runs the ``keeper`` fixture app (bus, store, a responder) once in-process and once
isolated, in real time, and reports:

* RSS of the runtime process and of one isolated app host (psutil, after ready);
* start-to-ready of the isolated app (STARTING -> RUNNING, clock seconds);
* bus request/reply round trip to the app's responder, median and p95;
* one DL/T 645 read on an RS-485 port (a virtual meter answering at once on a memory
  link, so wire time is out of the figure) timed inside the ``reader`` fixture app: in-process on the real
  ``Rs485Port`` vs isolated through the hal proxy; the difference is the bridge's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contextlib import AsyncExitStack

from hal.clock import LoopClock
from hal.errors import CapabilityMissing
from hal.interfaces import SerialSettings
from hal.rs485 import Rs485Port
from hal.sim import MemoryLink, memory_link_pair
from protocols import dlt645
from runtime.bus import Bus
from runtime.container.context import AppContextFactory, NamespacedStore, TerminalInfo
from runtime.container.isolation.bridge import SOCKET_NAME, Bridge, IsolationSettings
from runtime.container.manifest import load_manifest
from runtime.container.supervisor import AppState, Supervisor
from runtime.scheduler import MemoryKeyValue, Scheduler
from runtime.store import Store
from sim.loads import HouseholdProfile
from sim.meters import VirtualMeter
from sim.meters.responder import MeterResponder

APP = Path(__file__).resolve().parent.parent / "tests/runtime/isolation/fixture_apps/keeper/app.toml"
READER = Path(__file__).resolve().parent.parent / "tests/runtime/isolation/fixture_apps/reader/app.toml"
METER = "000000000001"


class _Hal:
    """A board with RS-485 ports only."""

    def __init__(self, ports: dict[str, Rs485Port]) -> None:
        self.ports = ports

    def rs485(self, name: str) -> Rs485Port:
        return self.ports[name]

    def __getattr__(self, cap: str) -> Any:
        def missing(*_: object) -> NoReturn:
            raise CapabilityMissing(f"no {cap} on the bench board")

        return missing


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


async def measure_rs485(isolated: bool, rounds: int) -> dict[str, float]:
    """Median / p95 seconds of one proxied (or in-process) DL/T 645 read, timed in the app."""
    tmp = Path(tempfile.mkdtemp(prefix="ttu-bench-", dir="/tmp"))
    clock = LoopClock()
    bus = Bus(clock=clock)
    settings = SerialSettings(baud=115200)
    meter = VirtualMeter(METER, profile=HouseholdProfile.for_customer(1, 0), start=clock.now() - 86400)
    meter.advance(clock.now())
    responder = MeterResponder(meter)

    async def answer(link: MemoryLink) -> None:
        """The virtual meter's replies at once: no byte timing, so what is left is software cost."""
        framer = dlt645.Framer()
        async with link:
            while True:
                for frame in framer.feed(await link.read()):
                    reply = None if isinstance(frame, Exception) else responder.handle(frame, now=clock.now())
                    if reply is not None:
                        await link.write(reply)

    meters_end, terminal_end = memory_link_pair(settings, names=("meters", "rs485-1"))
    try:
        async with AsyncExitStack() as stack:
            tg = await stack.enter_async_context(asyncio.TaskGroup())
            # No inter-frame gap: its sub-ms sleep would round up to the loop's timer resolution.
            gapless = Rs485Port(terminal_end, clock=clock, name="rs485-1", inter_frame_gap=0.0)
            port = await stack.enter_async_context(gapless)
            serving = tg.create_task(answer(meters_end), name="bench-meter")
            stack.callback(serving.cancel)
            sched = Scheduler(clock=clock, tz="UTC", state=MemoryKeyValue())
            info = TerminalInfo(id="TTU-BENCH", tz=ZoneInfo("UTC"), root=tmp, rs485_ports=("rs485-1",))
            factory = AppContextFactory(
                clock=clock, bus=bus, scheduler=sched, hal=_Hal({"rs485-1": port}), terminal=info
            )
            bridge = await stack.enter_async_context(
                Bridge(
                    tmp / SOCKET_NAME, bus=bus, clock=clock, settings=IsolationSettings(nice=0), terminal=info
                )
            )
            sup = Supervisor(clock=clock, bus=bus, context_factory=factory, bridge=bridge)
            sup.add(load_manifest(READER), isolated=isolated)
            task = tg.create_task(sup.run(), name="bench-supervisor")
            async with clock.timeout(30):
                await sup.wait_state("reader", AppState.RUNNING)
            async with bus.subscribe("reader/bench/reply") as replies:
                bus.publish("reader/bench", {"address": METER, "rounds": rounds})
                async with clock.timeout(600):
                    times = sorted((await replies.get()).payload)
            await sup.stop()
            await task
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"median_us": statistics.median(times) * 1e6, "p95_us": times[int(len(times) * 0.95) - 1] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=300, help="RS-485 reads per side")
    args = parser.parse_args()
    inproc = asyncio.run(measure(False, args.rounds))
    iso = asyncio.run(measure(True, args.rounds))
    rs_in = asyncio.run(measure_rs485(False, args.reads))
    rs_iso = asyncio.run(measure_rs485(True, args.reads))
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

    print(f"RS-485 read median in-process  {rs_in['median_us']:8.1f} us  (p95 {rs_in['p95_us']:.1f})")
    print(
        f"RS-485 read median proxied     {rs_iso['median_us']:8.1f} us  (p95 {rs_iso['p95_us']:.1f})  "
        f"({rs_iso['median_us'] / rs_in['median_us']:.2f} x, "
        f"+{rs_iso['median_us'] - rs_in['median_us']:.0f} us per transaction)"
    )


if __name__ == "__main__":
    main()
