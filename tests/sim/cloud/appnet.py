"""A terminal core with uplink + package jobs, and the cloud side, on a real broker (real time).

``terminal()`` assembles what ``runtime.terminal`` assembles for packages (Store, Uplink,
Supervisor, PackageManager, JobRunner, chunk handler) without the hal, so a test can stop it
and start a new one on the same state folder (a reboot). ``cloud()`` is the CloudStub with a
PackageServer and a JobWatcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hal.clock import LoopClock
from runtime.bus import Bus
from runtime.container.context import AppContextFactory, NamespacedStore
from runtime.packages.jobs import JobRunner
from runtime.packages.manager import PackageManager
from runtime.scheduler import Scheduler
from runtime.store import Store
from runtime.uplink import Backoff, Uplink
from sim.cloud import CloudStub
from sim.cloud.catalog import Catalog
from sim.cloud.transfer import JobProgress, JobWatcher, PackageServer
from tests.runtime.packages.lifecycle import FolderSupervisor, new_manager

TERMINAL = "T1"
COMMAND_KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
WAIT_S = 30.0


@dataclass
class Term:
    clock: LoopClock
    store: Store
    uplink: Uplink
    supervisor: FolderSupervisor
    manager: PackageManager
    jobs: JobRunner


@asynccontextmanager
async def terminal(
    broker_url: str, state_dir: Path, key: Ed25519PrivateKey, *, grace_s: float = 0.3, stall_s: float = 1.0
) -> AsyncIterator[Term]:
    clock = LoopClock()
    store = await Store.open(state_dir.parent / f"{state_dir.name}.sqlite", clock=clock)
    try:
        uplink = Uplink(
            store=store,
            clock=clock,
            terminal_id=TERMINAL,
            broker_url=broker_url,
            client_id=f"ttu-{TERMINAL}",
            command_key=COMMAND_KEY,
            backoff=Backoff(initial=0.1, maximum=0.5),
        )
        bus = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz="Asia/Shanghai", state=NamespacedStore(store, "scheduler"))
        factory = AppContextFactory(
            clock=clock, bus=bus, scheduler=scheduler, stores=lambda name: NamespacedStore(store, name)
        )
        sup = FolderSupervisor(clock=clock, bus=bus, context_factory=factory)
        manager = new_manager(state_dir, sup, store, clock, key, grace_s)
        recovered = await manager.recover()
        manager.load_installed()

        async def report(body: dict[str, Any]) -> None:
            await uplink.send("jobs", body)

        jobs = JobRunner(
            manager=manager,
            clock=clock,
            command_key=COMMAND_KEY,
            report=report,
            stall_s=stall_s,
            recovered=recovered,
        )
        jobs.register(uplink.register_command)
        uplink.register_chunks(jobs.handle_chunk)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(uplink.run(), name="uplink"),
                tg.create_task(scheduler.run(), name="scheduler"),
                tg.create_task(jobs.run(), name="package-jobs"),
            ]
            sup_task = tg.create_task(sup.run(), name="supervisor")
            await asyncio.sleep(0)  # let the supervisor's run() begin before any stop()
            try:
                async with clock.timeout(WAIT_S):
                    while not uplink.connected:
                        await clock.sleep(0.05)
                yield Term(clock, store, uplink, sup, manager, jobs)
            finally:
                for task in tasks:
                    task.cancel()
                await sup.stop()
                await sup_task
    finally:
        await store.close()


@dataclass
class Cloud:
    stub: CloudStub
    server: PackageServer
    watcher: JobWatcher
    clock: LoopClock

    async def job(self, command: str, args: dict[str, Any], *, within: float = WAIT_S) -> JobProgress:
        """Send a job command; return its progress once final (or raise on a refused command)."""
        progress = self.watcher.watch(args["job"])
        reply = await self.stub.send_command(TERMINAL, command, args, timeout=WAIT_S)
        assert reply.ok, reply
        async with self.clock.timeout(within):
            await progress.done.wait()
        return progress


@asynccontextmanager
async def cloud(broker_url: str, *, catalog: Catalog | None = None, window: int = 4) -> AsyncIterator[Cloud]:
    clock = LoopClock()
    async with CloudStub(
        broker_url=broker_url, db_path=":memory:", clock=clock, default_key=COMMAND_KEY, terminal=TERMINAL
    ) as stub:
        yield Cloud(stub, PackageServer(stub, catalog=catalog, window=window), JobWatcher(stub), clock)
