"""A terminal core with the app bridge: real bus, real store, real host processes, real time.

Host processes run in real time, so these tests cannot use looptime (it would
fast-forward the runtime's loop past the children's replies). Intervals are
small and every wait is on a state or message, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from runtime.bus import Bus, Message
from runtime.clock import LoopClock
from runtime.container.bridge import SOCKET_NAME, Bridge, IsolationSettings
from runtime.container.context import AppContextFactory, NamespacedStore
from runtime.container.manifest import load_manifest
from runtime.container.supervisor import AppState, Supervisor
from runtime.scheduler import MemoryKeyValue, Scheduler
from runtime.store import Store

FIXTURES = Path(__file__).parent.parent / "core" / "fixture_apps"  # the in-process suite's apps
OWN_FIXTURES = Path(__file__).parent / "fixture_apps"  # apps written for isolation


def manifest_path(name: str) -> Path:
    own = OWN_FIXTURES / name / "app.toml"
    return own if own.exists() else FIXTURES / name / "app.toml"


FAST = IsolationSettings(heartbeat_s=0.05, heartbeat_timeout_s=1.0, nice=1, hello_timeout_s=10.0)


@dataclass
class Core:
    sup: Supervisor
    bus: Bus
    clock: LoopClock
    store: Store
    bridge: Bridge
    scheduler: Scheduler

    async def wait(self, name: str, *states: AppState, within: float = 30) -> AppState:
        async with self.clock.timeout(within):
            return await self.sup.wait_state(name, *states)

    async def next(
        self, pattern: str, *, publish: tuple[str, object] | None = None, within: float = 15
    ) -> Message:
        async with self.bus.subscribe(pattern) as sub:
            if publish is not None:
                self.bus.publish(*publish)
            async with self.clock.timeout(within):
                return await sub.get()


@asynccontextmanager
async def core(
    *, isolated: tuple[str, ...] = (), inproc: tuple[str, ...] = (), settings: IsolationSettings = FAST
) -> AsyncIterator[Core]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    tmp = Path(tempfile.mkdtemp(prefix="ttu-iso-", dir="/tmp"))
    clock = LoopClock()
    bus = Bus(clock=clock)
    store = await Store.open(tmp / "store.sqlite", clock=clock)
    scheduler = Scheduler(clock=clock, tz="Asia/Shanghai", state=MemoryKeyValue())
    factory = AppContextFactory(
        clock=clock, bus=bus, scheduler=scheduler, stores=lambda name: NamespacedStore(store, name)
    )
    try:
        async with Bridge(tmp / SOCKET_NAME, bus=bus, clock=clock, settings=settings) as bridge:
            sup = Supervisor(clock=clock, bus=bus, context_factory=factory, state_dir=tmp, bridge=bridge)
            for name in isolated:
                sup.add(load_manifest(manifest_path(name)), isolated=True)
            for name in inproc:
                sup.add(load_manifest(manifest_path(name)))
            async with asyncio.TaskGroup() as tg:
                sched_task = tg.create_task(scheduler.run(), name="scheduler")
                sup_task = tg.create_task(sup.run(), name="supervisor")
                try:
                    yield Core(sup, bus, clock, store, bridge, scheduler)
                finally:
                    await sup.stop()
                    await sup_task
                    sched_task.cancel()
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)
