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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hal.clock import LoopClock
from hal.errors import CapabilityMissing
from hal.interfaces import CarrierModule, Metrology, Slot, Watchdog
from runtime.api import UplinkClient
from runtime.bus import Bus, Message
from runtime.container.context import AppContextFactory, NamespacedStore, TerminalInfo
from runtime.container.isolation.bridge import SOCKET_NAME, Bridge, IsolationSettings
from runtime.container.manifest import load_manifest
from runtime.container.supervisor import AppState, Supervisor
from runtime.scheduler import MemoryKeyValue, Scheduler
from runtime.station import StationService
from runtime.store import Store

FIXTURES = Path(__file__).parent.parent / "core" / "fixture_apps"  # the in-process suite's apps
OWN_FIXTURES = Path(__file__).parent / "fixture_apps"  # apps written for isolation


def manifest_path(name: str) -> Path:
    own = OWN_FIXTURES / name / "app.toml"
    return own if own.exists() else FIXTURES / name / "app.toml"


@dataclass
class StubBoard:
    """A ``HalAccess`` with the nodes a test gives it; a missing one is CapabilityMissing (as BoardHal)."""

    ports: dict[str, Any] = field(default_factory=dict)
    slots: dict[str, Slot] = field(default_factory=dict)
    unit: Metrology | None = None
    carrier: CarrierModule | None = None

    def rs485(self, name: str) -> Any:
        try:
            return self.ports[name]
        except KeyError:
            raise CapabilityMissing(f"no enabled RS-485 port {name!r} on this board") from None

    def hplc(self) -> CarrierModule:
        if self.carrier is None:
            raise CapabilityMissing("HPLC carrier module: not enabled on this board")
        return self.carrier

    def metrology(self) -> Metrology:
        if self.unit is None:
            raise CapabilityMissing("metrology unit: not enabled on this board")
        return self.unit

    def slot(self, name: str) -> Slot:
        try:
            return self.slots[name]
        except KeyError:
            raise CapabilityMissing(f"no slot {name!r} with a driver on this board") from None

    def watchdog(self) -> Watchdog:
        raise CapabilityMissing("no watchdog enabled on this board")


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
    *,
    isolated: tuple[str, ...] = (),
    inproc: tuple[str, ...] = (),
    settings: IsolationSettings = FAST,
    board: StubBoard | None = None,
    configs: dict[str, dict[str, Any]] | None = None,
    clock: LoopClock | None = None,
    station: StationService | None = None,
    uplink: UplinkClient | None = None,
) -> AsyncIterator[Core]:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
    tmp = Path(tempfile.mkdtemp(prefix="ttu-iso-", dir="/tmp"))
    clock = clock or LoopClock()
    board = board or StubBoard()  # a board with no hal nodes unless the test gives some
    bus = Bus(clock=clock)
    store = await Store.open(tmp / "store.sqlite", clock=clock)
    scheduler = Scheduler(clock=clock, tz="Asia/Shanghai", state=MemoryKeyValue())
    terminal = TerminalInfo(
        id="TTU-ISO",
        tz=ZoneInfo("Asia/Shanghai"),
        root=tmp,
        rs485_ports=tuple(board.ports),
        hplc=board.carrier is not None,
        metrology=board.unit is not None,
        slots=tuple(board.slots),
    )
    factory = AppContextFactory(
        clock=clock,
        bus=bus,
        scheduler=scheduler,
        stores=lambda name: NamespacedStore(store, name),
        hal=board,
        terminal=terminal,
        station=station,
        uplinks=None if uplink is None else lambda name: uplink,
    )
    configs = configs or {}
    try:
        async with Bridge(
            tmp / SOCKET_NAME, bus=bus, clock=clock, settings=settings, terminal=terminal
        ) as bridge:
            sup = Supervisor(clock=clock, bus=bus, context_factory=factory, state_dir=tmp, bridge=bridge)
            for name in isolated:
                sup.add(load_manifest(manifest_path(name)), configs.get(name), isolated=True)
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
