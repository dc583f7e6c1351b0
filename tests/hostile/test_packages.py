"""Hostile app packages installed over MQTT into a running terminal: a zip bomb, a symlink, an
absolute path, an archive that lies about a file's size. Each install fails with a code and a
reason the master station receives, is counted, leaves nothing behind, and the terminal keeps
reading its meters."""

from __future__ import annotations

import asyncio
import dataclasses
import stat
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.packages.keys import raw_public
from runtime.config import TrustedKey
from sim.broker import EmbeddedBroker
from sim.cloud.transfer import JobWatcher, PackageServer, install_args, new_job_id
from tests.runtime.packages.helpers import app_files, signed_zip, zip_entry

from . import rig
from .rig import TERMINAL, Attack, station

KEY = Ed25519PrivateKey.generate()


def lying_size(tmp_path: Path) -> bytes:
    """A signed package whose central directory declares service.py two bytes long."""
    pkg = signed_zip(tmp_path / "liar.ttuapp", app_files(version="1.0.0"), KEY)
    data = bytearray(pkg.read_bytes())
    with zipfile.ZipFile(pkg) as zf:
        size = zf.getinfo("service.py").file_size
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"service.py"))
    assert int.from_bytes(data[cd + 24 : cd + 28], "little") == size
    data[cd + 24 : cd + 28] = (2).to_bytes(4, "little")
    return bytes(data)


def hostile(tmp_path: Path) -> dict[str, bytes]:
    files = app_files(version="1.0.0")
    link = zip_entry("link.py", mode=stat.S_IFLNK | 0o777)
    return {
        "zip bomb": signed_zip(
            tmp_path / "bomb.ttuapp", {**files, "data/zeros.bin": bytes(8 << 20)}, KEY
        ).read_bytes(),
        "symlink": signed_zip(
            tmp_path / "link.ttuapp", {**files, "link.py": b"/etc/passwd"}, KEY, infos={"link.py": link}
        ).read_bytes(),
        "absolute path": signed_zip(
            tmp_path / "abs.ttuapp", {**files, "/etc/cron.d/evil": b"* * * * * x"}, KEY
        ).read_bytes(),
        "lies about a file's size": lying_size(tmp_path),
    }


@pytest.fixture
def trusting_board(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated board, trusting the test's package key (the repo board trusts none)."""
    trusted = (TrustedKey("test", raw_public(KEY.public_key())),)
    board = dataclasses.replace(
        rig.BOARD, packages=dataclasses.replace(rig.BOARD.packages, trusted_keys=trusted)
    )
    monkeypatch.setattr(rig, "BOARD", board)


async def test_hostile_packages_fail_with_a_reason_and_the_terminal_keeps_reading(
    tmp_path: Path, amqtt_broker: EmbeddedBroker, trusting_board: None
) -> None:
    async with station(tmp_path, amqtt_broker.url) as run:
        parts = run.terminal.parts
        assert parts is not None and parts.jobs is not None and parts.packages is not None
        server, watcher = PackageServer(run.cloud), JobWatcher(run.cloud)
        attack = await Attack.begin(run)
        refused = parts.packages.statistics()["refused"]
        apps_before = sorted(p.name for p in (tmp_path / "run").rglob("*") if p.name == "link.py")
        outcomes: dict[str, tuple[str | None, str | None]] = {}
        cases = hostile(tmp_path)
        for case, package in cases.items():
            args = install_args(
                new_job_id(), package=package, name="demo", version="1.0.0", chunk_size=32 << 10
            )
            server.offer(TERMINAL, str(args["job"]), package)
            progress = watcher.watch(str(args["job"]))
            reply = await run.cloud.send_command(TERMINAL, "app.install", args, timeout=600)
            assert reply.ok, (case, reply)
            async with run.clock.timeout(1200):
                await progress.done.wait()
            assert progress.state == "failed", case
            outcomes[case] = (progress.code, progress.message)

        assert "zip bomb" in (outcomes["zip bomb"][1] or "")
        assert "link.py" in (outcomes["symlink"][1] or "")
        assert "/etc/cron.d/evil" in (outcomes["absolute path"][1] or "") or "absolute" in (
            outcomes["absolute path"][1] or ""
        )
        assert all(code for code, _ in outcomes.values())
        assert parts.packages.statistics()["installs"] == 0
        assert parts.packages.statistics()["refused"] == refused + len(cases)  # each one counted
        assert parts.supervisor.status() == [a for a in parts.supervisor.status() if a["name"] != "demo"]
        assert sorted(p.name for p in (tmp_path / "run").rglob("*") if p.name == "link.py") == apps_before
        assert not await asyncio.to_thread(Path("/etc/cron.d/evil").exists)
        await attack.still_reading()
