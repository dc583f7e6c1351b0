"""The package manager: transactional install, upgrade, rollback, start, stop, uninstall, list.

Layer: runtime (package manager). Verifies with ``verify``, unpacks with ``unpack``, keeps
versions and the journal with ``journal.Layout``, runs apps only through the Supervisor's
public API (``AppRunner``), and touches an app's data only through the store's key-value
namespace ``app.<name>``. It never imports app code and knows no MQTT (``jobs`` does).

A transaction (install / upgrade / manual rollback)::

    verify -> unpack <state>/apps/N/V -> stop old -> snapshot old data -> migrate data
      -> switch pointer -> start new (isolated) -> health gate -> commit
                                                       | failed
                                                       v
            stop new, restore old data, pointer back, remove V, start old

The health gate passes when the app is RUNNING within its manifest's ``ready_timeout_s``
and then does not crash or exit for ``grace_s``. A power cut at any step is repaired by
``recover()`` at the next start (before any installed app is loaded): an uncommitted
transaction is undone from its journal, so the old version (or, for a first install,
nothing) runs — never a half-installed one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hal.clock import Clock, wall_timeout
from protocols.packages.errors import BadManifest, HealthCheckFailed, InstallRefused, PackageError
from protocols.packages.format import DEFAULT_LIMITS, PackageLimits
from runtime.container.manifest import Manifest, load_manifest
from runtime.container.supervisor import AppState
from runtime.errors import AppError, ConfigErrors
from runtime.packages._disk import fsync_dir, read_json, remove, write_json
from runtime.packages.journal import JournalError, Layout, Pointer, Txn
from runtime.packages.migrations import Migration, load_migrations, migrate
from runtime.packages.unpack import unpack
from runtime.packages.verify import VerifiedPackage, verify

if TYPE_CHECKING:  # cryptography is imported where a signature is checked (install)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger("ttu.packages")

Progress = Callable[[str], Awaitable[None]]

_UP = (AppState.RUNNING,)
_DOWN = (AppState.CRASHED, AppState.QUARANTINED, AppState.STOPPED, AppState.BACKOFF)


class AppRunner(Protocol):
    """What the manager needs of the Supervisor (its public API)."""

    def add(
        self, manifest: Manifest, config: Mapping[str, Any] | None = None, *, isolated: bool = ...
    ) -> Any: ...

    async def remove(self, name: str) -> None: ...

    def start_app(self, name: str) -> None: ...

    async def stop_app(self, name: str) -> None: ...

    def state(self, name: str) -> AppState: ...

    async def wait_state(self, name: str, *states: AppState) -> AppState: ...

    def record(self, name: str) -> Any: ...


class KvStore(Protocol):
    async def kv_items(self, ns: str) -> dict[str, Any]: ...

    async def kv_set(self, ns: str, key: str, value: Any) -> None: ...

    async def kv_delete(self, ns: str, key: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class InstalledApp:
    """One row of ``list``: ``state`` is the supervisor's, or ``stopped`` when not loaded."""

    name: str
    version: str
    previous: str | None
    running: bool  # the wanted state, kept across reboots
    state: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "previous": self.previous,
            "running": self.running,
            "state": self.state,
        }


async def _no_progress(state: str) -> None:
    return None


def _ns(name: str) -> str:
    return f"app.{name}"


class PackageManager:
    """Installed apps under ``state_dir``; one lifecycle operation at a time.

    ``configs(name)`` gives an installed app's board.toml config (``[apps.<name>.config]``).
    Call ``await recover()`` then ``load_installed()`` before the supervisor runs.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        runner: AppRunner,
        store: KvStore,
        clock: Clock,
        trusted_keys: Iterable[Ed25519PublicKey | bytes],
        capabilities: frozenset[str],
        configs: Callable[[str], Mapping[str, Any]] | None = None,
        grace_s: float = 10.0,
        limits: PackageLimits = DEFAULT_LIMITS,
    ) -> None:
        self.layout = Layout(state_dir)
        self._runner = runner
        self._store = store
        self._clock = clock
        self._trusted = list(trusted_keys)
        self._capabilities = capabilities
        self._configs = configs or (lambda name: {})
        self.grace_s = grace_s
        self.limits = limits
        self._lock = asyncio.Lock()
        self.installs = 0
        self.rollbacks = 0
        self.refused = 0
        self.load_errors: list[str] = []

    # -- start of the terminal ------------------------------------------------------------------

    async def recover(self) -> Txn | None:
        """Finish or undo a transaction a power cut interrupted; return it (None: nothing to do)."""
        try:
            txn = await asyncio.to_thread(self.layout.journal)
        except JournalError as err:
            # written atomically, so this is damage from outside: keep it for a person, start clean
            log.error("package journal unreadable, set aside: %s", err)
            bad = self.layout.journal_path
            await asyncio.to_thread(os.replace, bad, bad.with_name(bad.name + ".bad"))
            txn = None
        if txn is not None:
            if txn.step == "committed":
                log.warning(
                    "package %s %s: committed before the restart; cleaning up", txn.name, txn.to_version
                )
                await asyncio.to_thread(self._finish, txn)
            else:
                log.warning(
                    "package %s: %s to %s interrupted at step %r by a restart; rolling back to %s",
                    txn.name,
                    txn.op,
                    txn.to_version,
                    txn.step,
                    txn.from_version or "nothing",
                )
                await self._undo(txn)
                self.rollbacks += 1
        await asyncio.to_thread(self._sweep)
        return txn

    def load_installed(self) -> list[str]:
        """Add every installed app whose wanted state is running to the runner (isolated)."""
        loaded: list[str] = []
        for name in self.layout.installed():
            try:
                pointer = self.layout.pointer(name)
                if pointer is None or not pointer.running:
                    continue
                self._add(self._manifest(name, pointer.version))
            except (JournalError, PackageError, AppError, ConfigErrors) as err:
                msg = f"installed app {name}: cannot load: {err}"
                log.error("%s", msg)
                self.load_errors.append(msg)
                continue
            loaded.append(name)
        return loaded

    # -- operations -----------------------------------------------------------------------------

    async def install(
        self,
        package: Path,
        *,
        upgrade: bool = False,
        expect: tuple[str, str] | None = None,
        job: str | None = None,
        progress: Progress = _no_progress,
    ) -> InstalledApp:
        """Install (or, with ``upgrade``, replace) the app in ``package``; see the module docstring.

        ``expect`` = (name, version) the caller announced: a package that is another app or
        version is refused as ``bad_manifest``. Raises ``PackageError`` (nothing changed, or
        everything rolled back).
        """
        async with self._lock:
            try:
                await progress("verifying")
                pkg = await asyncio.to_thread(
                    verify,
                    package,
                    trusted_keys=self._trusted,
                    capabilities=self._capabilities,
                    limits=self.limits,
                )
                if expect is not None and (pkg.name, pkg.version) != expect:
                    raise BadManifest(
                        f"the package is {pkg.name} {pkg.version}, the job announced {expect[0]} {expect[1]}"
                    )
                txn = self._plan(pkg, upgrade=upgrade, job=job)
            except PackageError:
                self.refused += 1
                raise
            await progress("installing")
            await self._journal(txn)
            try:
                await asyncio.to_thread(self._unpack, pkg)
                await self._step(txn, "unpacked")
                manifest = self._manifest(pkg.name, pkg.version)
                migrations = load_migrations(manifest.folder)
            except Exception:
                await self._undo(txn)
                self.refused += 1
                raise
            await self._transition(txn, manifest, restore=False, migrations=migrations, progress=progress)
            self.installs += 1
            return self._info(pkg.name)

    async def rollback(
        self, name: str, *, job: str | None = None, progress: Progress = _no_progress
    ) -> InstalledApp:
        """Go back to the kept previous version, with the data it had when it was left."""
        async with self._lock:
            pointer = self._pointer(name)
            prev = pointer.previous
            if prev is None or not self.layout.app_folder(name, prev).is_dir():
                raise InstallRefused("no_previous", f"{name}: no previous version to roll back to")
            txn = Txn("rollback", name, prev, pointer.version, pointer, created=False, job=job)
            manifest = self._manifest(name, prev)
            await progress("installing")
            await self._journal(txn)
            await self._transition(txn, manifest, restore=True, migrations=[], progress=progress)
            self.rollbacks += 1
            return self._info(name)

    async def start(self, name: str) -> InstalledApp:
        async with self._lock:
            pointer = self._pointer(name)
            if not pointer.running:
                await asyncio.to_thread(
                    self.layout.set_pointer, name, Pointer(pointer.version, pointer.previous)
                )
            if self._loaded(name):
                if self._runner.state(name) in (AppState.STOPPED, AppState.QUARANTINED, AppState.LOADED):
                    self._runner.start_app(name)
            else:
                self._add(self._manifest(name, pointer.version))
            return self._info(name)

    async def stop(self, name: str) -> InstalledApp:
        async with self._lock:
            pointer = self._pointer(name)
            if pointer.running:
                stopped = Pointer(pointer.version, pointer.previous, running=False)
                await asyncio.to_thread(self.layout.set_pointer, name, stopped)
            if self._loaded(name):
                await self._runner.stop_app(name)
            return self._info(name)

    async def uninstall(self, name: str, *, keep_data: bool = False) -> dict[str, Any]:
        """Stop and delete every version of ``name`` (and its data unless ``keep_data``)."""
        async with self._lock:
            pointer = self._pointer(name)
            if self._loaded(name):
                await self._runner.remove(name)
            app_dir = self.layout.app_dir(name)
            doomed = app_dir.with_name(f".{name}.removing")
            # one rename is the commit point: after it the app is not installed, whatever follows
            await asyncio.to_thread(self._rename_away, app_dir, doomed)
            if not keep_data:
                await self._replace_kv(name, {})
            await asyncio.to_thread(remove, doomed)
            log.info("app %s %s uninstalled", name, pointer.version)
            return {"name": name, "version": pointer.version, "data_kept": keep_data}

    def apps(self) -> list[InstalledApp]:
        out: list[InstalledApp] = []
        for name in self.layout.installed():
            try:
                out.append(self._info(name))
            except (JournalError, PackageError) as err:
                log.error("installed app %s: %s", name, err)
        return out

    def statistics(self) -> dict[str, Any]:
        return {
            "installs": self.installs,
            "rollbacks": self.rollbacks,
            "refused": self.refused,
            "load_errors": list(self.load_errors),
        }

    # -- the transaction ------------------------------------------------------------------------

    def _plan(self, pkg: VerifiedPackage, *, upgrade: bool, job: str | None) -> Txn:
        name, version = pkg.name, pkg.version
        pointer = self.layout.pointer(name)
        if pointer is None and self._loaded(name):
            raise InstallRefused("name_taken", f"{name}: a built-in app of this name is loaded")
        if pointer is None and upgrade:
            raise InstallRefused("not_installed", f"{name}: not installed; use install")
        if pointer is not None and not upgrade:
            raise InstallRefused("already_installed", f"{name} {pointer.version} is installed; use upgrade")
        if pointer is not None and pointer.version == version:
            raise InstallRefused("same_version", f"{name} {version} is already the installed version")
        if pointer is not None and pointer.previous == version:
            raise InstallRefused(
                "version_on_disk", f"{name} {version} is the kept previous version; use rollback"
            )
        try:
            self.layout.version_dir(name, version)
        except ValueError as err:
            raise BadManifest(str(err)) from err
        return Txn(
            "upgrade" if upgrade else "install",
            name,
            version,
            None if pointer is None else pointer.version,
            pointer,
            created=True,
            job=job,
        )

    def _unpack(self, pkg: VerifiedPackage) -> None:
        vdir = self.layout.version_dir(pkg.name, pkg.version)
        if vdir.exists():
            remove(vdir)  # a leftover of an undone transaction: never current nor previous (see _plan)
        vdir.mkdir(parents=True)
        fsync_dir(vdir.parent)
        unpack(pkg, self.layout.app_folder(pkg.name, pkg.version))

    async def _transition(
        self,
        txn: Txn,
        manifest: Manifest,
        *,
        restore: bool,
        migrations: Sequence[Migration],
        progress: Progress,
    ) -> None:
        name = txn.name
        try:
            if self._loaded(name):
                await self._runner.remove(name)
            await self._step(txn, "stopped")
            items = await self._store.kv_items(_ns(name))
            await asyncio.to_thread(write_json, self.layout.txn_snapshot_path(name), items)
            txn.snapshot = True
            await self._step(txn, "snapshotted")
            await self._step(txn, "data")
            if restore:
                kept = await asyncio.to_thread(read_json, self.layout.snapshot_path(name, txn.to_version))
                if isinstance(kept, dict):
                    await self._replace_kv(name, kept)
            elif migrations and txn.from_version is not None:
                await self._replace_kv(name, migrate(items, migrations, from_version=txn.from_version))
            pointer = Pointer(txn.to_version, previous=txn.from_version, running=True)
            await asyncio.to_thread(self.layout.set_pointer, name, pointer)
            await self._step(txn, "switched")
            await progress("starting")
            await self._step(txn, "starting")
            self._add(manifest)
            await progress("health-check")
            await self._health_gate(name, manifest)
        except Exception as err:
            log.error("app %s: %s to %s failed (%s); rolling back", name, txn.op, txn.to_version, err)
            await self._rollback_live(txn)
            raise
        # CancelledError (terminal shutting down) leaves the journal: recover() undoes it at the next start
        await self._step(txn, "committed")
        await asyncio.to_thread(self._finish, txn)
        log.info("app %s: %s %s -> %s committed", name, txn.op, txn.from_version, txn.to_version)

    async def _health_gate(self, name: str, manifest: Manifest) -> None:
        ready_s = manifest.limits.ready_timeout_s
        try:
            # the supervisor enforces ready_timeout_s itself (CRASHED); the margin covers a stuck runner
            async with wall_timeout(ready_s + 1.0):  # ready_timeout_s is real seconds, as there
                state = await self._runner.wait_state(name, *_UP, *_DOWN)
        except TimeoutError:
            raise HealthCheckFailed("not_ready", f"{name}: not running within {ready_s:g} s") from None
        if state not in _UP:
            raise self._unhealthy(name, state, f"within its ready timeout of {ready_s:g} s")
        try:
            async with self._clock.timeout(self.grace_s):
                state = await self._runner.wait_state(name, *_DOWN)
        except TimeoutError:
            return
        raise self._unhealthy(name, state, f"within the {self.grace_s:g} s grace window")

    def _unhealthy(self, name: str, state: AppState, when: str) -> HealthCheckFailed:
        error = getattr(self._runner.record(name), "last_error", None) or ""
        if "AppNotReady" in error or "not ready" in error:
            return HealthCheckFailed("not_ready", f"{name}: {error}")
        what = "exited" if state is AppState.STOPPED else "crashed"
        return HealthCheckFailed("crashed", f"{name}: {what} {when}" + (f": {error}" if error else ""))

    async def _rollback_live(self, txn: Txn) -> None:
        if self._loaded(txn.name):
            await self._runner.remove(txn.name)
        await self._undo(txn)
        before = txn.pointer_before
        if before is not None and before.running:
            try:
                self._add(self._manifest(txn.name, before.version))
            except (PackageError, AppError, ConfigErrors) as err:
                log.error("app %s: cannot restart %s after rollback: %s", txn.name, before.version, err)
        self.rollbacks += 1

    async def _undo(self, txn: Txn) -> None:
        """Put everything back as before ``txn``; idempotent (a crash here is undone again)."""
        if txn.snapshot:
            saved = await asyncio.to_thread(read_json, self.layout.txn_snapshot_path(txn.name))
            if isinstance(saved, dict):
                await self._replace_kv(txn.name, saved)

        def disk() -> None:
            self.layout.set_pointer(txn.name, txn.pointer_before)
            remove(self.layout.txn_snapshot_path(txn.name))
            if txn.created:
                remove(self.layout.version_dir(txn.name, txn.to_version))
            if txn.pointer_before is None:
                app_dir = self.layout.app_dir(txn.name)
                if app_dir.is_dir() and not any(app_dir.iterdir()):
                    app_dir.rmdir()
            self.layout.clear_journal()

        await asyncio.to_thread(disk)

    def _finish(self, txn: Txn) -> None:
        """After commit: keep the new and the previous version (and their data), drop the rest."""
        pending = self.layout.txn_snapshot_path(txn.name)
        if pending.is_file() and txn.from_version is not None:
            os.replace(pending, self.layout.snapshot_path(txn.name, txn.from_version))
            fsync_dir(pending.parent)
        remove(pending)
        self._prune(txn.name)
        self.layout.clear_journal()

    def _prune(self, name: str) -> None:
        pointer = self.layout.pointer(name)
        keep = set() if pointer is None else {pointer.version, pointer.previous}
        app_dir = self.layout.app_dir(name)
        if not app_dir.is_dir():
            return
        for child in app_dir.iterdir():
            if child.is_dir():
                stale = child.name not in keep
            else:
                # data-<version>.json snapshots live as long as their version folder
                stale = child.name.startswith("data-") and child.name.removeprefix("data-")[:-5] not in keep
            if stale:
                remove(child)

    def _sweep(self) -> None:
        """Remove what an interrupted uninstall or unpack left behind."""
        if not self.layout.apps.is_dir():
            return
        for child in self.layout.apps.iterdir():
            if child.name.startswith(".") and child.name.endswith(".removing"):
                remove(child)
            elif child.is_dir() and (child / "current.json").is_file():
                self._prune(child.name)

    # -- helpers --------------------------------------------------------------------------------

    async def _journal(self, txn: Txn) -> None:
        await asyncio.to_thread(self.layout.write_journal, txn)

    async def _step(self, txn: Txn, step: str) -> None:
        txn.step = step
        await asyncio.to_thread(self.layout.write_journal, txn)

    async def _replace_kv(self, name: str, new: Mapping[str, Any]) -> None:
        ns = _ns(name)
        current = await self._store.kv_items(ns)
        for key in current:
            if key not in new:
                await self._store.kv_delete(ns, key)
        for key, value in new.items():
            if key not in current or current[key] != value:
                await self._store.kv_set(ns, key, value)

    @staticmethod
    def _rename_away(src: Path, dst: Path) -> None:
        if dst.exists():
            remove(dst)
        os.replace(src, dst)
        fsync_dir(src.parent)

    def _pointer(self, name: str) -> Pointer:
        pointer = self.layout.pointer(name)
        if pointer is None:
            raise InstallRefused("not_installed", f"{name}: not installed")
        return pointer

    def _manifest(self, name: str, version: str) -> Manifest:
        path = self.layout.app_folder(name, version) / "app.toml"
        try:
            return load_manifest(path)
        except ConfigErrors as err:
            raise BadManifest(f"{path}: {err}") from err

    def _add(self, manifest: Manifest) -> None:
        self._runner.add(manifest, self._configs(manifest.name), isolated=True)

    def _loaded(self, name: str) -> bool:
        try:
            self._runner.state(name)
        except AppError:
            return False
        return True

    def _info(self, name: str) -> InstalledApp:
        pointer = self._pointer(name)
        state = self._runner.state(name).value if self._loaded(name) else AppState.STOPPED.value
        return InstalledApp(name, pointer.version, pointer.previous, pointer.running, state)


__all__ = ["AppRunner", "InstalledApp", "KvStore", "PackageManager", "Progress"]
