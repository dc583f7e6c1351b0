"""The package manager in virtual time: install, upgrade with data, health gate rollbacks,
every bad package refused with nothing changed, manual rollback, start/stop/uninstall, and
recovery from a power cut at every journal step."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.container.supervisor import AppState
from runtime.packages import PackageError, PackageLimits
from runtime.packages.journal import STEPS
from runtime.packages.manager import PackageManager

from .helpers import app_files, signed_zip, write_zip
from .lifecycle import Rig, make_package, rig

pytestmark = pytest.mark.looptime

MIGRATION = """
[[migration]]
before = "2.0.0"
rename = { runs = "starts_before_2" }
set = { schema = 2 }
"""


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: what 'nothing changed' compares."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def running(r: Rig, name: str = "demo", within: float = 30) -> None:
    async with r.clock.timeout(within):
        await r.supervisor.wait_state(name, AppState.RUNNING)


async def data_when(r: Rig, check: Any, name: str = "demo", within: float = 30) -> dict[str, Any]:
    """The app's data once ``check(data)`` holds (the app writes it just after reporting ready)."""
    async with r.clock.timeout(within):
        while not check(data := await r.kv(name)):
            await r.clock.sleep(0.1)
    return data


async def install_v1(r: Rig, tmp_path: Path, key: Ed25519PrivateKey) -> None:
    await r.manager.install(make_package(tmp_path, key, version="1.0.0"))
    await running(r)
    await data_when(r, lambda d: d.get("version") == "1.0.0")


async def test_install_runs_isolated_and_lists(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    seen: list[str] = []

    async def progress(state: str) -> None:
        seen.append(state)

    async with rig(tmp_path / "state", key) as r:
        info = await r.manager.install(make_package(tmp_path, key), progress=progress)
        assert (info.name, info.version, info.previous, info.running) == ("demo", "1.0.0", None, True)
        assert info.state == "running"
        assert seen == ["verifying", "installing", "starting", "health-check"]
        assert r.supervisor.isolated == {"demo": True}
        assert (r.state_dir / "apps/demo/1.0.0/demo/app.toml").is_file()
        assert not (r.state_dir / "packages/journal.json").exists()
        assert [a.to_json() for a in r.manager.apps()] == [
            {"name": "demo", "version": "1.0.0", "previous": None, "running": True, "state": "running"}
        ]
        with pytest.raises(PackageError) as err:
            await r.manager.install(make_package(tmp_path / "again", key))
        assert err.value.code == "already_installed"


async def test_installed_app_comes_back_after_restart(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    async with rig(tmp_path / "state", key) as r:
        await install_v1(r, tmp_path, key)
    async with rig(tmp_path / "state", key) as r:
        await running(r)
        data = await data_when(r, lambda d: d.get("runs") == 2)
        assert data["runs"] == 2 and r.supervisor.state("demo") is AppState.RUNNING


async def test_upgrade_keeps_data_and_applies_migrations(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    async with rig(tmp_path / "state", key) as r:
        await install_v1(r, tmp_path, key)
        await r.store.kv_set("app.demo", "meters", ["000000000001"])
        pkg = make_package(tmp_path, key, version="2.0.0", migrations=MIGRATION)
        info = await r.manager.install(pkg, upgrade=True)
        assert (info.version, info.previous) == ("2.0.0", "1.0.0")
        await running(r)
        data = await data_when(r, lambda d: d.get("version") == "2.0.0")
        # kept: meters; migrated: runs -> starts_before_2, schema set; then 2.0.0 counted its own start
        assert data == {
            "meters": ["000000000001"],
            "starts_before_2": 1,
            "schema": 2,
            "runs": 1,
            "version": "2.0.0",
        }
        assert sorted(p.name for p in (r.state_dir / "apps/demo").iterdir()) == [
            "1.0.0",
            "2.0.0",
            "current.json",
            "data-1.0.0.json",
        ]


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [("crash", "crashed"), ("hang", "not_ready"), ("late_crash", "crashed"), ("quit", "crashed")],
)
async def test_bad_start_rolls_back_to_previous_with_its_data(
    tmp_path: Path, key: Ed25519PrivateKey, behaviour: str, code: str
) -> None:
    async with rig(tmp_path / "state", key) as r:
        await install_v1(r, tmp_path, key)
        before_data = await r.kv("demo")
        before_disk = tree(r.state_dir / "apps")
        pkg = make_package(tmp_path, key, version="2.0.0", behaviour=behaviour, migrations=MIGRATION)
        t0 = r.clock.monotonic()
        with pytest.raises(PackageError) as err:
            await r.manager.install(pkg, upgrade=True)
        assert err.value.code == code
        if behaviour == "hang":
            assert r.clock.monotonic() - t0 >= 5.0  # waited its ready_timeout_s
        await running(r)
        # the old version is back, with exactly the data it had (plus its own restart count)
        data = await data_when(r, lambda d: d.get("runs") == before_data["runs"] + 1)
        assert data == {**before_data, "runs": before_data["runs"] + 1}
        after_disk = tree(r.state_dir / "apps")
        assert after_disk == before_disk
        assert not (r.state_dir / "apps/demo/2.0.0").exists()
        assert after_disk["demo/current.json"] == before_disk["demo/current.json"]
        assert r.manager.rollbacks == 1


async def test_first_install_that_crashes_leaves_nothing(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    async with rig(tmp_path / "state", key) as r:
        with pytest.raises(PackageError) as err:
            await r.manager.install(make_package(tmp_path, key, behaviour="crash"))
        assert err.value.code == "crashed"
        assert "cannot open its table" in err.value.reason
        assert r.manager.apps() == []
        assert tree(r.state_dir / "apps") == {}
        with pytest.raises(Exception, match="not loaded"):
            r.supervisor.state("demo")


def _hostile(tmp_path: Path, key: Ed25519PrivateKey, kind: str) -> tuple[Path, dict[str, Any]]:
    """A package of the refusal class ``kind`` and the manager options that make it refused."""
    files = app_files("demo", "2.0.0", hal=())
    files["app.toml"] = files["app.toml"].replace(b"[capabilities]", b'entry = "demo:run"\n\n[capabilities]')
    out = tmp_path / f"{kind}.ttuapp"
    if kind == "unsigned":
        return write_zip(out, sorted(files.items())), {}
    if kind == "unknown_key":
        return signed_zip(out, files, Ed25519PrivateKey.generate()), {}
    if kind == "tampered":
        return signed_zip(out, {**files, "service.py": b"VALUE = 666\n"}, key, listed=files), {}
    if kind == "path_escape":
        return signed_zip(out, {**files, "../evil.py": b"x"}, key), {}
    if kind == "oversize":
        return make_package(tmp_path, key, version="2.0.0"), {"limits": PackageLimits(max_package_bytes=200)}
    if kind == "too_many_files":
        return make_package(tmp_path, key, version="2.0.0"), {"limits": PackageLimits(max_files=1)}
    if kind == "incompatible_api":
        bad = app_files("demo", "2.0.0", api=99, hal=())
        return signed_zip(out, bad, key), {}
    if kind == "missing_capability":
        return make_package(tmp_path, key, version="2.0.0", hal=("hplc",)), {}
    if kind == "bad_archive":
        out.write_bytes(b"PK\x03\x04 not really a zip")
        return out, {}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "unsigned",
        "unknown_key",
        "tampered",
        "path_escape",
        "oversize",
        "too_many_files",
        "incompatible_api",
        "missing_capability",
        "bad_archive",
    ],
)
async def test_bad_package_refused_nothing_changed(tmp_path: Path, key: Ed25519PrivateKey, kind: str) -> None:
    async with rig(tmp_path / "state", key) as r:
        await install_v1(r, tmp_path, key)
        (tmp_path / "bad").mkdir()
        pkg, options = _hostile(tmp_path / "bad", key, kind)
        for name, value in options.items():
            setattr(r.manager, name, value)
        disk = tree(r.state_dir)
        data = await r.kv("demo")
        with pytest.raises(PackageError) as err:
            await r.manager.install(pkg, upgrade=True)
        assert err.value.code == kind
        assert tree(r.state_dir) == disk
        assert await r.kv("demo") == data
        assert r.supervisor.state("demo") is AppState.RUNNING
        assert r.manager.refused == 1


async def test_manual_rollback_restores_previous_version_and_data(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    async with rig(tmp_path / "state", key) as r:
        await install_v1(r, tmp_path, key)
        v1_data = await r.kv("demo")
        await r.manager.install(
            make_package(tmp_path, key, version="2.0.0", migrations=MIGRATION), upgrade=True
        )
        await running(r)
        info = await r.manager.rollback("demo")
        assert (info.version, info.previous, info.state) == ("1.0.0", "2.0.0", "running")
        await running(r)
        data = await data_when(r, lambda d: d.get("runs") == v1_data["runs"] + 1)
        assert data == {**v1_data, "runs": v1_data["runs"] + 1}
        # and forward again: 2.0.0 gets the data it had when it was left
        info = await r.manager.rollback("demo")
        assert (info.version, info.previous) == ("2.0.0", "1.0.0")
        assert (await r.kv("demo"))["schema"] == 2


async def test_rollback_without_previous_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    async with rig(tmp_path / "state", key) as r:
        with pytest.raises(PackageError) as err:
            await r.manager.rollback("demo")
        assert err.value.code == "not_installed"
        await install_v1(r, tmp_path, key)
        with pytest.raises(PackageError) as err:
            await r.manager.rollback("demo")
        assert err.value.code == "no_previous"


async def test_stop_start_survive_restart_and_uninstall(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    async with rig(tmp_path / "state", key) as r:
        await install_v1(r, tmp_path, key)
        info = await r.manager.stop("demo")
        assert (info.running, info.state) == (False, "stopped")
    async with rig(tmp_path / "state", key) as r:
        assert [a.state for a in r.manager.apps()] == ["stopped"]  # stays stopped across a reboot
        info = await r.manager.start("demo")
        await running(r)
        assert r.manager.apps()[0].running is True
        result = await r.manager.uninstall("demo")
        assert result == {"name": "demo", "version": "1.0.0", "data_kept": False}
        assert r.manager.apps() == []
        assert await r.kv("demo") == {}
        assert not (r.state_dir / "apps/demo").exists()
        with pytest.raises(PackageError) as err:
            await r.manager.stop("demo")
        assert err.value.code == "not_installed"


class PowerCut(BaseException):
    """Stands for the power going away: nothing after it runs, not even rollback code."""


def cut_at(manager: PackageManager, step: str) -> None:
    """Make the manager 'lose power' right after it journals ``step``."""
    real = manager._step

    async def step_then_cut(txn: Any, name: str) -> None:
        await real(txn, name)
        if name == step:
            raise PowerCut(step)

    manager._step = step_then_cut  # type: ignore[method-assign]


@pytest.mark.parametrize("step", [s for s in STEPS if s != "begin"])
async def test_power_cut_at_each_step_recovers_a_whole_version(
    tmp_path: Path, key: Ed25519PrivateKey, step: str
) -> None:
    state = tmp_path / "state"
    async with rig(state, key) as r:
        await install_v1(r, tmp_path, key)
        await r.store.kv_set("app.demo", "meters", ["1"])
        v1_data = await r.kv("demo")
    pkg = make_package(tmp_path, key, version="2.0.0", migrations=MIGRATION)
    with pytest.RaisesGroup(PowerCut):
        async with rig(state, key) as r:
            await running(r)
            cut_at(r.manager, step)
            await r.manager.install(pkg, upgrade=True)
    assert (state / "packages/journal.json").exists()
    async with rig(state, key) as r:
        await running(r)
        want = "2.0.0" if step == "committed" else "1.0.0"
        data = await data_when(r, lambda d: d.get("version") == want and d.get("runs") != 1)
        apps = r.manager.apps()
        assert not (state / "packages/journal.json").exists()
        if step == "committed":
            assert (apps[0].version, apps[0].previous) == ("2.0.0", "1.0.0")
            assert data["version"] == "2.0.0" and data["schema"] == 2
        else:
            assert (apps[0].version, apps[0].previous) == ("1.0.0", None)
            assert data["version"] == "1.0.0" and "schema" not in data
            assert data["meters"] == v1_data["meters"]
            assert not (state / "apps/demo/2.0.0").exists()


async def test_power_cut_during_first_install_leaves_nothing(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    state = tmp_path / "state"
    pkg = make_package(tmp_path, key)
    with pytest.RaisesGroup(PowerCut):
        async with rig(state, key) as r:
            cut_at(r.manager, "starting")
            await r.manager.install(pkg)
    async with rig(state, key) as r:
        assert r.manager.apps() == []
        assert await r.kv("demo") == {}
        assert tree(state / "apps") == {}


async def test_corrupt_journal_is_set_aside(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    state = tmp_path / "state"
    (state / "packages").mkdir(parents=True)
    (state / "packages/journal.json").write_text("{not json")
    async with rig(state, key) as r:
        assert r.manager.apps() == []
    assert (state / "packages/journal.json.bad").read_text() == "{not json"
    assert not (state / "packages/journal.json").exists()


def test_tamper_helper_really_differs(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    pkg, _ = _hostile(tmp_path, key, "tampered")
    with zipfile.ZipFile(pkg) as zf:
        assert zf.read("service.py") == b"VALUE = 666\n"
    assert os.path.getsize(pkg) > 0
