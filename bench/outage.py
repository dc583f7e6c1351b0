"""Benchmark: outage reporting -- right level and target, restores, false reports, and latency.

Not a test. Two parts, printed as tables:

1. **Accuracy** over random scenarios (``sim.scenarios.random_outages``: every level, breaker
   trips and cable cuts, dips, prepaid trips inside outages, a little RS-485 comms loss) on
   several networks (the IEEE European LV feeder and two Kerber networks), each with 0 % and
   10 % of HPLC last gasps lost. Every run is the whole terminal on virtual time
   (``sim.outage_runs.scored_run``); the reports are ``ttu cloud outages --json``, scored against
   ``events.csv``. Prints the confusion matrix by level (true -> reported), the share at the right
   level and target, restores, start/end within resolution, false reports.
2. **Latency** (hal receipt -> MQTT publish) of the outage app in a real Supervisor, store,
   uplink and MQTT broker on the real clock: HPLC power-off / power-on lists of whole branches
   are published on the bus as the hal does (their ``ts`` is the receipt), each report's MQTT
   PUBLISH is timed (``aiomqtt.Client.publish`` wrapped), with an empty outbox and with one hour
   of readings of the station area queued in it. The master station (the cloud stub) runs in a
   process of its own, as it does in the field; the terminal's heap is settled after start-up as
   ``ttu run`` does (``runtime.heap``). Prints p50 / p90 / p99 / max and the machine's load.
3. **Classifier CPU** per HPLC list (``time.process_time``, the app's own work without the
   store, the uplink and the machine's other load): what of the latency is the judging itself.

Goals (issue 9): >= 99 % at the right level and target (>= 95 % with 10 % of last gasps lost),
>= 99 % of restores, no false report, terminal-added latency p99 <= 100 ms, with a backlog too.

    .venv/bin/python -P bench/outage.py [--seeds N] [--first-seed S] [--hours H] [--events N] [--no-accuracy]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hal.clock import LoopClock  # noqa: E402
from hal.errors import CapabilityMissing  # noqa: E402
from hal.interfaces import MetrologySnapshot, PhaseValues  # noqa: E402
from hal.sim import SimPowerMonitor  # noqa: E402
from protocols.cloud import UpBatch  # noqa: E402
from protocols.station import Branch, Meter, MeterBox, StationModel  # noqa: E402
from runtime.bus import Bus  # noqa: E402
from runtime.config import load_credentials  # noqa: E402
from runtime.container import AppContextFactory, NamespacedStore, Supervisor, TerminalInfo  # noqa: E402
from runtime.container.supervisor import AppState  # noqa: E402
from runtime.heap import settle  # noqa: E402
from runtime.scheduler import Scheduler  # noqa: E402
from runtime.station import StationService  # noqa: E402
from runtime.store import Store  # noqa: E402
from runtime.uplink import Uplink  # noqa: E402
from sim.archive import write_station  # noqa: E402
from sim.broker import EmbeddedBroker, MosquittoBroker, mosquitto_binary  # noqa: E402
from sim.cloud.db import CloudDb  # noqa: E402
from sim.cloud.stub import CloudStub  # noqa: E402

if TYPE_CHECKING:
    from sim.outage_score import Score

TZ = ZoneInfo("Asia/Shanghai")
TERMINAL = "TTU-BENCH"
LEVELS = ("station", "phase", "branch", "box", "meter")


# ---------------------------------------------------------------------------------------- accuracy


def networks(folder: Path) -> list[str]:
    """The IEEE European LV feeder and two Kerber networks (pandapower JSON files)."""
    import pandapower as pp
    import pandapower.networks as pn

    out = ["ieee-eu-lv"]
    kerber = (
        ("kerber-dorfnetz", pn.create_kerber_dorfnetz),
        ("kerber-landnetz-kabel-2", pn.create_kerber_landnetz_kabel_2),
    )
    for name, make in kerber:
        path = folder / f"{name}.json"
        pp.to_json(make(), str(path))
        out.append(str(path))
    return out


def accuracy(seeds: int, hours: float, first_seed: int = 1) -> None:
    # the simulator's physics (pandapower, pandas: ~150,000 objects the garbage collector walks)
    # is loaded here, not at the top: the latency part measures a terminal's process, which has none
    from sim.outage_runs import scored_run
    from sim.outage_score import Score
    from sim.scenarios.random_outages import Knobs

    with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
        work = Path(tmp)
        nets = networks(work)
        for loss in (0.0, 10.0):
            total = Score()
            false_filters: list[str] = []
            wall = time.perf_counter()
            runs = 0
            for net in nets:
                for seed in range(first_seed, first_seed + seeds):
                    knobs = Knobs(hours=hours, lastgasp_loss_pct=loss, comms_loss_pct=2.0)
                    run = scored_run(work / f"{Path(net).stem}-{seed}-{loss:g}", network=net, seed=seed,
                                     knobs=knobs, profile="analytics")  # fmt: skip
                    total.add(run.score)
                    false_filters += run.false_on_dips_and_trips
                    runs += 1
                    s = run.score
                    print(f"  {Path(net).stem:<26} seed {seed}  outages {s.outages:2d}  right {s.right:2d}  "
                          f"restored {s.restored:2d}  false {s.false_reports}  duplicate {s.duplicates}",
                          flush=True)  # fmt: skip
                    for m in s.missed:
                        print(f"      not right: {m}")
            print_accuracy(total, loss, runs, len(nets), time.perf_counter() - wall, false_filters)


def print_accuracy(
    s: Score, loss: float, runs: int, nets: int, wall: float, false_filters: list[str]
) -> None:
    print(
        f"\nAccuracy, {loss:g} % of HPLC last gasps lost: {runs} runs on {nets} networks ({wall:.0f} s wall)"
    )
    header = "true \\ reported " + "".join(f"{lv:>9}" for lv in (*LEVELS, "missed"))
    print(header)
    for lv in LEVELS:
        row = s.confusion.get(lv, {})
        if row:
            print(f"{lv:<16}" + "".join(f"{row.get(k, 0):>9}" for k in (*LEVELS, "missed")))
    summary = s.summary()
    rate = summary["right_rate"]
    print(f"outages {s.outages}, at the right level and target {s.right} ({100 * (rate or 0):.1f} %)")
    print(f"restores reported {s.restored} of {s.right} ({100 * (summary['restore_rate'] or 0):.1f} %)")
    print(f"start within resolution {s.start_ok}/{s.right}, end {s.end_ok}/{s.restored}; median error "
          f"start {summary['start_error_median_s']} s, end {summary['end_error_median_s']} s")  # fmt: skip
    print(f"false reports {s.false_reports} (of {s.reports}); on dips / prepaid trips / comms losses: "
          f"{len(false_filters)}; duplicate reports of one outage {s.duplicates}")  # fmt: skip
    for line in s.false + false_filters + s.extra:
        print(f"    {line}")


# ---------------------------------------------------------------------------------------- latency


def bench_station(branches: int = 11, boxes: int = 5, per_box: int = 4) -> StationModel:
    """220 HPLC meters, 11 branches of 5 boxes of 4: a whole branch's power-off list is decisive."""
    meters: list[Meter] = []
    n = 0
    for b in range(1, branches + 1):
        for x in range(1, boxes + 1):
            for _ in range(per_box):
                n += 1
                meters.append(Meter(f"m-{n:04d}", f"{n:012d}", channel="hplc", phase="ABC"[n % 3],
                                    branch=f"F{b}", box=f"F{b}-X{x}"))  # fmt: skip
    return StationModel(
        id="BENCH",
        branches=tuple(Branch(f"F{b}") for b in range(1, branches + 1)),
        boxes=tuple(
            MeterBox(f"F{b}-X{x}", branch=f"F{b}")
            for b in range(1, branches + 1)
            for x in range(1, boxes + 1)
        ),
        meters=tuple(meters),
    )


class Metrology:
    """A healthy transformer: every phase has voltage (the phase groups are known supplied)."""

    def __init__(self, clock: LoopClock) -> None:
        self.clock = clock

    async def snapshot(self) -> MetrologySnapshot:
        v, z = PhaseValues(230.0, 230.0, 230.0), PhaseValues(0.0, 0.0, 0.0)
        return MetrologySnapshot(self.clock.now(), v, z, z, z, z, 50.0, None, None)


class Hal:
    def __init__(self, clock: LoopClock) -> None:
        self._power = SimPowerMonitor(holdup_s=30.0, since=clock.now())
        self._metrology = Metrology(clock)

    def power(self) -> SimPowerMonitor:
        return self._power

    def metrology(self) -> Metrology:
        return self._metrology

    def rs485(self, name: str) -> Any:
        raise CapabilityMissing(name)

    def hplc(self) -> Any:
        raise CapabilityMissing("hplc")

    def slot(self, name: str) -> Any:
        raise CapabilityMissing(name)

    def watchdog(self) -> Any:
        raise CapabilityMissing("watchdog")


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[EmbeddedBroker | MosquittoBroker]:
    b: EmbeddedBroker | MosquittoBroker = MosquittoBroker() if mosquitto_binary() else EmbeddedBroker()
    async with b:
        yield b


class MasterStation:
    """The cloud stub in a process of its own: decoding and storing an hour of readings is the
    master station's work, not the terminal's, and must not run on the terminal's event loop."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def stop(self) -> None:
        """Close its stdin (it stops) and wait; what it stored is in its database then."""
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def master_station(url: str, db: Path) -> AsyncIterator[MasterStation]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-P", __file__, "--serve-cloud", url, str(db),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    station = MasterStation(proc)
    try:
        assert proc.stdout is not None
        line = await proc.stdout.readline()  # "ready": connected and subscribed
        if line.strip() != b"ready":
            raise RuntimeError(f"the cloud stub did not start: {line!r}")
        yield station
    finally:
        await station.stop()


async def serve_cloud(url: str, db: str) -> None:
    """The child's side of ``master_station``: serve until stdin closes."""
    key = load_credentials(ROOT / "sim" / "credentials.toml").command_key
    async with CloudStub(broker_url=url, db_path=db, clock=LoopClock(), default_key=key):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def backlog_rows(model: StationModel, start: float, hours: float = 1.0) -> list[dict[str, Any]]:
    """One hour of 1-minute realtime snapshots of every meter, as acquisition sends them."""
    quantities = ("energy.active.import.total", "voltage.a", "current.a", "power.active.total")
    rows: list[dict[str, Any]] = []
    for k in range(int(hours * 60)):
        ts = start + 60.0 * k
        for m in model.meters:
            rows += [{"device": m.id, "quantity": q, "value": 230.1, "unit": "", "ts": ts, "quality": "good"}
                     for q in quantities]  # fmt: skip
    return rows


async def latency(events: int, *, backlog: bool) -> dict[str, Any]:
    clock = LoopClock()
    model = bench_station()
    published: dict[tuple[str, int], float] = {}
    original = aiomqtt.Client.publish

    async def timed(self: aiomqtt.Client, topic: str, payload: Any = None, *args: Any, **kwargs: Any) -> Any:
        t = clock.now()
        if isinstance(payload, bytes | bytearray) and "/up/outage" in str(topic):
            with contextlib.suppress(Exception):
                for m in UpBatch.decode(bytes(payload)).messages:
                    published.setdefault((str(m.body["id"]), int(m.body["revision"])), t)
        return await original(self, topic, payload, *args, **kwargs)

    key = load_credentials(ROOT / "sim" / "credentials.toml").command_key
    with tempfile.TemporaryDirectory(prefix="bench-outage-latency-") as tmp:
        work = Path(tmp)
        write_station(work / "station.toml", model)
        aiomqtt.Client.publish = timed  # type: ignore[method-assign]
        try:
            async with broker() as mqtt, contextlib.AsyncExitStack() as stack:
                cloud = await stack.enter_async_context(master_station(mqtt.url, work / "cloud.sqlite"))
                store = await Store.open(work / "ttu.sqlite", clock=clock)
                stack.push_async_callback(store.close)
                if backlog:
                    rows = backlog_rows(model, clock.now() - 3600.0)
                    for i in range(0, len(rows), 200):
                        await store.outbox_append(
                            "readings", {"readings": rows[i : i + 200]}, terminal=TERMINAL
                        )
                bus = Bus(clock=clock)
                station = StationService(store=store, bus=bus, clock=clock, file=work / "station.toml")
                await station.start()
                uplink = Uplink(store=store, clock=clock, terminal_id=TERMINAL, broker_url=mqtt.url,
                                client_id=TERMINAL, command_key=key)  # fmt: skip
                scheduler = Scheduler(clock=clock, tz=TZ, state=NamespacedStore(store, "scheduler"))
                factory = AppContextFactory(
                    clock=clock, bus=bus, scheduler=scheduler,
                    stores=lambda name: NamespacedStore(store, name),
                    uplinks=lambda name: uplink,  # type: ignore[arg-type,return-value]
                    hal=Hal(clock),  # type: ignore[arg-type]
                    terminal=TerminalInfo(id=TERMINAL, tz=TZ, root=work), station=station,
                )  # fmt: skip
                supervisor = Supervisor(clock=clock, bus=bus, context_factory=factory)
                config = {"outage": {"probe": False, "metrology_interval_s": 1.0}}
                supervisor.load(ROOT / "apps", configs=config, enabled=["outage"])
                tg = await stack.enter_async_context(asyncio.TaskGroup())
                sup = tg.create_task(supervisor.run(), name="bench-supervisor")
                async with clock.timeout(30):
                    await supervisor.wait_state("outage", AppState.RUNNING)
                await clock.sleep(2.0)  # the app has heard the metrology unit and its supply
                settle()  # as `ttu run` does once its apps have started (runtime.heap)
                # the uplink comes back (after an hour away, with the backlog): the events come now
                up = tg.create_task(uplink.run(), name="bench-uplink")
                async with clock.timeout(30):
                    while not uplink.connected:
                        await clock.sleep(0.005)
                backlog_left: list[int] = []
                branches = [b.id for b in model.branches]
                members = {b: [m.address for m in model.meters if m.branch == b] for b in branches}
                for k in range(events):
                    b = branches[k % len(branches)]
                    kind = "power_off" if (k // len(branches)) % 2 == 0 else "power_on"
                    now = clock.now()
                    bus.publish(f"hplc/event/{kind}", {"kind": kind, "addresses": members[b], "ts": now,
                                                       "payload": "", "extra": {}})  # fmt: skip
                    backlog_left.append((await store.outbox_backlog()).get("readings", 0))
                    await clock.sleep(0.02 if backlog else 0.15)
                await clock.sleep(2.0)
                await cloud.stop()
                reports = CloudDb(work / "cloud.sqlite", readonly=True).results("outage", limit=100_000)
                await supervisor.stop()
                await sup
                up.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await up
        finally:
            aiomqtt.Client.publish = original  # type: ignore[method-assign]
            gc.unfreeze()  # this run's objects are collectable again (the next run settles anew)
    lat: list[float] = []
    for r in reports:
        t = published.get((str(r.body["id"]), int(r.body["revision"])))
        received = r.body.get("evidence_received_at")
        if t is not None and isinstance(received, int | float) and received > 0:
            lat.append(1000.0 * (t - received))
    if "--debug" in sys.argv:
        worst = lat.index(max(lat)) if lat else None
        print("    first 10:", [round(x, 1) for x in lat[:10]], "max at", worst)
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else lat * 99
    return {
        "events": events,
        "reports": len(lat),
        "p50_ms": statistics.median(lat) if lat else None,
        "p90_ms": q[89] if lat else None,
        "p99_ms": q[98] if lat else None,
        "max_ms": max(lat) if lat else None,
        "backlog_at_events": (min(backlog_left), max(backlog_left)) if backlog_left else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds", type=int, default=2, help="random scenarios per network and loss (default 2)"
    )
    parser.add_argument("--first-seed", type=int, default=1, help="the first scenario seed (default 1)")
    parser.add_argument("--hours", type=float, default=3.0, help="simulated hours per scenario (default 3)")
    parser.add_argument("--events", type=int, default=200, help="evidence messages in the latency part")
    parser.add_argument("--no-accuracy", action="store_true", help="only the latency part")
    parser.add_argument("--rounds", type=int, default=1, help="latency runs of each kind (default 1)")
    parser.add_argument("--debug", action="store_true", help="print the first latencies of each run")
    parser.add_argument("--serve-cloud", nargs=2, metavar=("URL", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_cloud:  # the master station's process of the latency part
        asyncio.run(serve_cloud(*args.serve_cloud))
        return
    if not args.no_accuracy:
        accuracy(args.seeds, args.hours, args.first_seed)
    print("\nLatency, hal receipt -> MQTT publish (the outage app, a real store, uplink and broker):")
    for _ in range(args.rounds):
        for backlog in (False, True):
            load = os.getloadavg()[0]
            out = asyncio.run(latency(args.events, backlog=backlog))
            label = "one hour of readings queued" if backlog else "empty outbox"
            shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}
            where = f"load average {load:.1f}, {os.cpu_count()} CPUs"
            print(f"  {label:<28} " + json.dumps(shown) + f"  ({where})")
    print("\nClassifier CPU per HPLC list of a whole branch (translate + step, process time):")
    print("  " + json.dumps(classifier_cpu()))


def classifier_cpu(lists: int = 400) -> dict[str, Any]:
    """CPU time of ``Translator.carrier`` + ``Classifier.step`` per HPLC list of a whole branch."""
    from apps.outage.classify import Classifier
    from apps.outage.collect import Translator
    from apps.outage.evidence import GroupSupply, Window
    from apps.outage.members import Group, from_station

    model = bench_station()
    members = from_station(model)
    classifier, translator = Classifier(members), Translator(members)
    branches = [b.id for b in model.branches]
    addresses = {b: [m.address for m in model.meters if m.branch == b] for b in branches}
    now = time.time()
    cpu: list[float] = []
    for k in range(lists):
        b = branches[k % len(branches)]
        kind = "power_off" if (k // len(branches)) % 2 == 0 else "power_on"
        now += 5.0
        for p in "ABC":  # the metrology unit: every phase live
            classifier.observe(GroupSupply(Group("phase", p), True, Window.exact(now), now, "metrology"))
        t0 = time.process_time()
        payload = {"kind": kind, "addresses": addresses[b], "ts": now, "payload": "", "extra": {}}
        classifier.observe_all(translator.carrier(kind, payload))
        classifier.step(now)
        cpu.append((time.process_time() - t0) * 1000.0)
    cpu.sort()
    return {
        "lists": lists,
        "meters": len(model.meters),
        "p50_ms": round(statistics.median(cpu), 2),
        "p99_ms": round(cpu[max(0, int(0.99 * len(cpu)) - 1)], 2),
        "max_ms": round(cpu[-1], 2),
    }


if __name__ == "__main__":
    main()
