"""Builders for lifecycle tests: signed packages of apps with a chosen behaviour, and a terminal rig.

The rig runs a real Supervisor, Store, Bus and Scheduler under the LoopClock. Installed apps
live outside the Python path, so ``FolderSupervisor`` imports an app's entry module from its
unpacked folder (a fresh module object per start, nothing put in ``sys.modules``): the same
contract the isolation runner's app host follows, in-process so that health gates can be
driven in virtual time.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hal.clock import LoopClock
from protocols.packages.keys import raw_public
from runtime.bus import Bus
from runtime.container.context import AppContextFactory, NamespacedStore
from runtime.container.manifest import Manifest
from runtime.container.supervisor import EntryPoint, Supervisor
from runtime.errors import AppError
from runtime.packages import pack
from runtime.packages.manager import PackageManager
from runtime.scheduler import Scheduler
from runtime.store import Store

START = 1_767_225_600.0
CAPABILITIES = frozenset({"rs485"})

APP_TOML = """\
[app]
name = "{name}"
version = "{version}"
api = 1
entry = "{name}:run"
description = "lifecycle test app ({behaviour})"

[capabilities]
hal = {hal}

[topics]
publish = ["{name}/#"]

[limits]
ready_timeout_s = {ready_timeout_s}
restart = {{ max_crashes = 3, window_s = 600, backoff_initial_s = 1, backoff_max_s = 4 }}
"""

BEHAVIOURS = {
    # ready, then count its starts and remember which version ran, then run until stopped
    "good": """
    await ctx.ready()
    runs = await ctx.store.get("runs", 0)
    await ctx.store.set("runs", runs + 1)
    await ctx.store.set("version", VERSION)
    await ctx.wait_stop()
""",
    "crash": """
    raise RuntimeError("cannot open its table")
""",
    "hang": """
    await ctx.clock.sleep(3600)
""",
    "late_crash": """
    await ctx.ready()
    await ctx.store.set("version", VERSION)
    await ctx.clock.sleep(2)
    raise RuntimeError("crashed after start")
""",
    "quit": """
    await ctx.ready()
""",
}


def write_app(
    root: Path,
    name: str = "demo",
    version: str = "1.0.0",
    behaviour: str = "good",
    *,
    hal: tuple[str, ...] = (),
    ready_timeout_s: float = 5.0,
    migrations: str | None = None,
    blob_bytes: int = 0,
) -> Path:
    folder = root / f"{name}-{version}-{behaviour}" / name
    folder.mkdir(parents=True)
    hal_list = "[" + ", ".join(f'"{h}"' for h in hal) + "]"
    (folder / "app.toml").write_text(
        APP_TOML.format(
            name=name, version=version, behaviour=behaviour, hal=hal_list, ready_timeout_s=ready_timeout_s
        )
    )
    body = BEHAVIOURS[behaviour]
    (folder / "__init__.py").write_text(
        f'"""Lifecycle fixture {name} {version} ({behaviour})."""\n\nVERSION = "{version}"\n\n\n'
        f"async def run(ctx, config):{body}"
    )
    if migrations is not None:
        (folder / "migrations.toml").write_text(migrations)
    if blob_bytes:
        # incompressible payload, to make packages of a chosen size
        (folder / "blob.bin").write_bytes(hashlib.shake_256(version.encode()).digest(blob_bytes))
    return folder


def make_package(
    root: Path,
    key: Ed25519PrivateKey,
    name: str = "demo",
    version: str = "1.0.0",
    behaviour: str = "good",
    **kw: Any,
) -> Path:
    folder = write_app(root / "src", name, version, behaviour, **kw)
    out = root / "pkgs" / f"{name}-{version}-{behaviour}.ttuapp"
    out.parent.mkdir(parents=True, exist_ok=True)
    return pack(folder, private_key=key, out=out)


class FolderSupervisor(Supervisor):
    """A Supervisor that imports each app from its own folder (see the module docstring)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.isolated: dict[str, bool] = {}

    def add(
        self, manifest: Manifest, config: Mapping[str, Any] | None = None, *, isolated: bool = False
    ) -> Any:
        self.isolated[manifest.name] = isolated
        return super().add(manifest, config)

    def _entry(self, manifest: Manifest) -> EntryPoint:
        source = manifest.folder / "__init__.py"
        spec = importlib.util.spec_from_file_location(f"installed_{manifest.name}", source)
        if spec is None or spec.loader is None:
            raise AppError(manifest.name, f"cannot import {source}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        entry: EntryPoint = getattr(module, manifest.entry_function)
        return entry


@dataclass
class Rig:
    clock: LoopClock
    store: Store
    bus: Bus
    supervisor: FolderSupervisor
    manager: PackageManager
    state_dir: Path

    async def kv(self, name: str) -> dict[str, Any]:
        return await self.store.kv_items(f"app.{name}")


def new_manager(
    state_dir: Path,
    supervisor: Any,
    store: Store,
    clock: LoopClock,
    key: Ed25519PrivateKey,
    grace_s: float = 10.0,
) -> PackageManager:
    return PackageManager(
        state_dir=state_dir,
        runner=supervisor,
        store=store,
        clock=clock,
        trusted_keys=[raw_public(key.public_key())],
        capabilities=CAPABILITIES,
        grace_s=grace_s,
    )


@asynccontextmanager
async def rig(state_dir: Path, key: Ed25519PrivateKey, *, grace_s: float = 10.0) -> AsyncIterator[Rig]:
    """A running terminal core with the package manager, recovered and loaded as at boot."""
    clock = LoopClock(start=START)
    store = await Store.open(state_dir.parent / f"{state_dir.name}.sqlite", clock=clock)
    try:
        bus = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz="Asia/Shanghai", state=NamespacedStore(store, "scheduler"))
        factory = AppContextFactory(
            clock=clock, bus=bus, scheduler=scheduler, stores=lambda name: NamespacedStore(store, name)
        )
        sup = FolderSupervisor(clock=clock, bus=bus, context_factory=factory)
        manager = new_manager(state_dir, sup, store, clock, key, grace_s)
        await manager.recover()
        manager.load_installed()
        async with asyncio.TaskGroup() as tg:
            sched_task = tg.create_task(scheduler.run(), name="scheduler")
            sup_task = tg.create_task(sup.run(), name="supervisor")
            # let run() begin: it clears the stop flag when it starts, so an early stop() would be lost
            await asyncio.sleep(0)
            try:
                yield Rig(clock, store, bus, sup, manager, state_dir)
            finally:
                await sup.stop()
                await sup_task
                sched_task.cancel()
    finally:
        await store.close()
