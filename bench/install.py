"""Remote install speed: publish-to-running of a 100 KB package over the loopback broker, and rollback.

Not a test: prints figures against the goals. ``.venv/bin/python bench/install.py [--size 100000]
[--chunk-size 32768] [--broker mosquitto]``. A terminal core as ``runtime.terminal`` builds it
for packages (Store, Uplink, Supervisor with the app bridge so installed apps run isolated,
PackageManager, JobRunner) and the cloud side (CloudStub, PackageServer, JobWatcher) talk
through an embedded amqtt (default) or a mosquitto broker on 127.0.0.1, in real time.

Figures:

* publish-to-running: ``app.install`` sent -> the new app RUNNING in its host process
  (transfer, verify, unpack, start; goal <= 2 s); and -> job ``done`` (adds the health
  gate's grace window, ``--grace``);
* rollback: ``app.rollback`` sent -> the previous version RUNNING again (goal <= 1 s), and an
  automatic rollback: the crash of a bad upgrade seen -> the old version RUNNING;
* RSS of the isolated app host next to the runtime's (the isolation engineer's figure).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hal.clock import LoopClock
from protocols.packages.keys import raw_public
from runtime.bus import Bus
from runtime.container.context import AppContextFactory, NamespacedStore
from runtime.container.isolation.bridge import SOCKET_NAME, Bridge, IsolationSettings
from runtime.container.supervisor import AppState, Supervisor
from runtime.packages import pack
from runtime.packages.jobs import JobRunner
from runtime.packages.manager import PackageManager
from runtime.scheduler import MemoryKeyValue, Scheduler
from runtime.store import Store
from runtime.uplink import Backoff, Uplink
from sim.broker import EmbeddedBroker, MosquittoBroker
from sim.cloud import CloudStub
from sim.cloud.transfer import JobWatcher, PackageServer, install_args, new_job_id
from tests.runtime.packages.lifecycle import write_app

GOAL_INSTALL_S = 2.0
GOAL_ROLLBACK_S = 1.0
TERMINAL = "B1"
KEY = bytes(range(32))


def _package(
    root: Path, key: Ed25519PrivateKey, version: str, behaviour: str, size: int
) -> tuple[Path, bytes]:
    folder = write_app(root / "src", "demo", version, behaviour, blob_bytes=max(0, size - 1500))
    out = pack(folder, private_key=key, out=root / f"demo-{version}-{behaviour}.ttuapp")
    return out, out.read_bytes()


async def _running(sup: Supervisor, clock: LoopClock, version: str) -> None:
    async with clock.timeout(30):
        while True:
            try:
                rec = sup.record("demo")
            except Exception:
                await clock.sleep(0.005)
                continue
            if rec.manifest.version == version and rec.state is AppState.RUNNING:
                return
            await clock.sleep(0.005)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ttu-bench-install-", dir="/tmp"))
    key = Ed25519PrivateKey.generate()
    clock = LoopClock()
    pkgs = {
        v: _package(tmp / "pkgs" / f"{v}-{b}", key, v, b, args.size)
        for v, b in (("1.0.0", "good"), ("2.0.0", "good"), ("3.0.0", "crash"))
    }
    broker_cm = MosquittoBroker() if args.broker == "mosquitto" else EmbeddedBroker()
    store = await Store.open(tmp / "s.sqlite", clock=clock)
    out: dict[str, Any] = {"size": len(pkgs["1.0.0"][1])}
    try:
        async with (
            broker_cm as broker,
            Bridge(
                tmp / SOCKET_NAME,
                bus=(bus := Bus(clock=clock)),
                clock=clock,
                settings=IsolationSettings(nice=0),
            ) as bridge,
        ):
            sched = Scheduler(clock=clock, tz="UTC", state=MemoryKeyValue())
            factory = AppContextFactory(
                clock=clock, bus=bus, scheduler=sched, stores=lambda n: NamespacedStore(store, n)
            )
            sup = Supervisor(clock=clock, bus=bus, context_factory=factory, bridge=bridge)
            uplink = Uplink(
                store=store,
                clock=clock,
                terminal_id=TERMINAL,
                broker_url=broker.url,
                client_id=f"ttu-{TERMINAL}",
                command_key=KEY,
                backoff=Backoff(initial=0.1, maximum=1.0),
            )
            manager = PackageManager(
                state_dir=tmp / "state",
                runner=sup,
                store=store,
                clock=clock,
                trusted_keys=[raw_public(key.public_key())],
                capabilities=frozenset({"rs485"}),
                grace_s=args.grace,
            )
            await manager.recover()

            async def report(body: dict[str, Any]) -> None:
                await uplink.send("jobs", body)

            jobs = JobRunner(manager=manager, clock=clock, command_key=KEY, report=report)
            jobs.register(uplink.register_command)
            uplink.register_chunks(jobs.handle_chunk)
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(uplink.run(), name="uplink"),
                    tg.create_task(jobs.run(), name="jobs"),
                    tg.create_task(sched.run(), name="scheduler"),
                ]
                sup_task = tg.create_task(sup.run(), name="supervisor")
                async with CloudStub(
                    broker_url=broker.url, db_path=":memory:", clock=clock, default_key=KEY, terminal=TERMINAL
                ) as stub:
                    server = PackageServer(stub, window=args.window)
                    watcher = JobWatcher(stub)
                    async with clock.timeout(30):
                        while not uplink.connected:
                            await clock.sleep(0.01)

                    async def install(version: str, command: str) -> tuple[float, float, str]:
                        job = new_job_id()
                        data = pkgs[version][1]
                        server.offer(TERMINAL, job, data)
                        progress = watcher.watch(job)
                        t0 = clock.monotonic()
                        cmd = install_args(
                            job, package=data, name="demo", version=version, chunk_size=args.chunk_size
                        )
                        reply = await stub.send_command(TERMINAL, command, cmd)
                        assert reply.ok, reply
                        if version != "3.0.0":
                            await _running(sup, clock, version)
                        t_running = clock.monotonic() - t0
                        async with clock.timeout(60):
                            await progress.done.wait()
                        return t_running, clock.monotonic() - t0, progress.state

                    out["install_running_s"], out["install_done_s"], state = await install(
                        "1.0.0", "app.install"
                    )
                    assert state == "done", state
                    pid = sup.pid("demo")
                    out["host_rss_mb"] = psutil.Process(pid).memory_info().rss / 2**20 if pid else None
                    out["runtime_rss_mb"] = psutil.Process().memory_info().rss / 2**20
                    out["upgrade_running_s"], out["upgrade_done_s"], state = await install(
                        "2.0.0", "app.upgrade"
                    )
                    assert state == "done", state

                    job = new_job_id()
                    progress = watcher.watch(job)
                    t0 = clock.monotonic()
                    reply = await stub.send_command(TERMINAL, "app.rollback", {"job": job, "name": "demo"})
                    assert reply.ok, reply
                    await _running(sup, clock, "1.0.0")
                    out["rollback_running_s"] = clock.monotonic() - t0
                    async with clock.timeout(60):
                        await progress.done.wait()

                    # automatic rollback: 3.0.0 crashes on start; time from its crash to 1.0.0 running
                    crashed_at: list[float] = []

                    async def watch_crash() -> None:
                        async with bus.subscribe("runtime/apps/demo/state") as states:
                            while True:
                                msg = await states.get()
                                body = msg.payload or {}
                                if body.get("version") == "3.0.0" and body.get("state") == "crashed":
                                    crashed_at.append(clock.monotonic())
                                    return

                    watcher_task = tg.create_task(watch_crash(), name="crash-watch")
                    _, _, state = await install("3.0.0", "app.upgrade")
                    assert state == "failed", state
                    await _running(sup, clock, "1.0.0")
                    watcher_task.cancel()
                    out["auto_rollback_s"] = clock.monotonic() - crashed_at[0] if crashed_at else None
                    out["chunks"] = jobs.chunks
                for task in tasks:
                    task.cancel()
                await sup.stop()
                await sup_task
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="package size in bytes (default 100000)")
    parser.add_argument("--chunk-size", type=int, default=32 << 10, help="bytes per chunk (default 32768)")
    parser.add_argument("--window", type=int, default=4, help="chunks in flight (default 4)")
    parser.add_argument("--grace", type=float, default=2.0, help="health-gate grace window, s (default 2)")
    parser.add_argument("--broker", choices=("amqtt", "mosquitto"), default="amqtt")
    args = parser.parse_args()
    r = asyncio.run(bench(args))

    def vs(value: float | None, goal: float) -> str:
        if value is None:
            return "n/a"
        verdict = "OK" if value <= goal else "MISSED"
        return f"{value:6.3f} s  goal <= {goal:g} s  ({value / goal:.2f} x goal) {verdict}"

    print(f"package {r['size']} bytes, chunk {args.chunk_size} B, window {args.window}, broker {args.broker}")
    print(f"install: publish -> running          {vs(r['install_running_s'], GOAL_INSTALL_S)}")
    print(f"install: publish -> done (+grace)    {r['install_done_s']:6.3f} s  (grace {args.grace:g} s)")
    print(f"upgrade: publish -> running          {vs(r['upgrade_running_s'], GOAL_INSTALL_S)}")
    print(f"manual rollback: command -> running  {vs(r['rollback_running_s'], GOAL_ROLLBACK_S)}")
    print(f"auto rollback: crash -> old running  {vs(r['auto_rollback_s'], GOAL_ROLLBACK_S)}")
    if r.get("host_rss_mb"):
        print(
            f"isolated app host RSS {r['host_rss_mb']:.1f} MB, runtime RSS {r['runtime_rss_mb']:.1f} MB "
            f"({r['host_rss_mb'] / r['runtime_rss_mb']:.2f} x)"
        )
    print(f"chunks written {r['chunks']}")


if __name__ == "__main__":
    main()
