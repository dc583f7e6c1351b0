"""Installed apps through the real isolation runner: each version runs in its own app host
process; an upgrade that crashes is rolled back to the old version, again in its own process.
Real time (host processes cannot follow a virtual clock): small grace window, bounded waits."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.container.supervisor import AppState
from runtime.packages import PackageError
from tests.runtime.isolation.conftest import core

from .lifecycle import make_package, new_manager


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


async def test_install_and_failed_upgrade_in_host_processes(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    async with core() as c:
        manager = new_manager(tmp_path / "state", c.sup, c.store, c.clock, key, grace_s=0.5)
        await manager.recover()
        info = await manager.install(make_package(tmp_path, key, version="1.0.0"))
        assert (info.version, info.state) == ("1.0.0", "running")
        record = c.sup.record("demo")
        assert record.isolated is True
        async with c.clock.timeout(15):
            while await c.store.kv_get("app.demo", "version") != "1.0.0":
                await c.clock.sleep(0.05)

        with pytest.raises(PackageError) as err:
            await manager.install(
                make_package(tmp_path, key, version="2.0.0", behaviour="crash"), upgrade=True
            )
        assert err.value.code == "crashed"
        await c.wait("demo", AppState.RUNNING, within=15)
        assert c.sup.record("demo").isolated is True
        assert c.sup.record("demo").manifest.version == "1.0.0"
        assert await c.store.kv_get("app.demo", "version") == "1.0.0"
        assert [(a.version, a.previous) for a in manager.apps()] == [("1.0.0", None)]
