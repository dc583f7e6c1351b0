"""A real power cut: a child process upgrading an app is SIGKILLed right after each journal
step; the next start recovers to one whole version (the old one, or the new one once committed)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runtime.container.supervisor import AppState
from runtime.packages.journal import STEPS

from .lifecycle import make_package, rig

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("step", [s for s in STEPS if s != "begin"])
async def test_sigkill_at_each_step(tmp_path: Path, step: str) -> None:
    key = Ed25519PrivateKey.generate()
    state = tmp_path / "state"
    async with rig(state, key, grace_s=0.2) as r:
        await r.manager.install(make_package(tmp_path, key, version="1.0.0"))
        await r.store.kv_set("app.demo", "meters", ["1"])
    v2 = make_package(
        tmp_path, key, version="2.0.0", migrations='[[migration]]\nbefore = "2.0.0"\nset = { schema = 2 }\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.runtime.packages.kill_install",
        str(state),
        str(v2),
        step,
        key.private_bytes_raw().hex(),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert (state / "packages/journal.json").exists()

    async with rig(state, key, grace_s=0.2) as r:
        async with r.clock.timeout(30):
            await r.supervisor.wait_state("demo", AppState.RUNNING)
        (app,) = r.manager.apps()
        data = await r.kv("demo")
        assert not (state / "packages/journal.json").exists()
        if step == "committed":
            assert (app.version, app.previous) == ("2.0.0", "1.0.0")
            assert data["schema"] == 2
        else:
            assert (app.version, app.previous) == ("1.0.0", None)
            assert "schema" not in data and data["meters"] == ["1"]
            assert sorted(p.name for p in (state / "apps/demo").iterdir()) == ["1.0.0", "current.json"]
