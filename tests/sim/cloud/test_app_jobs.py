"""Remote app lifecycle over a real broker: install end to end, from the catalog, failures reported
with their reason, hostile chunks and commands refused, a transfer resumed after a broken link
and after a terminal restart, and the ``ttu cloud app`` CLI."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.cloud import Chunk, chunk_topic, sign_chunk
from runtime.container.supervisor import AppState
from sim.cloud.catalog import Catalog
from sim.cloud.transfer import install_args, new_job_id
from tests.brokers import AnyBroker
from tests.runtime.packages.lifecycle import make_package
from tests.runtime.uplink.helpers import TcpProxy

from .appnet import COMMAND_KEY, TERMINAL, WAIT_S, Term, cloud, terminal

FINAL_HISTORY = ["verifying", "installing", "starting", "health-check", "done"]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def args_for(pkg: Path, name: str = "demo", version: str = "1.0.0", **kw: object) -> dict[str, object]:
    return install_args(new_job_id(), package=pkg.read_bytes(), name=name, version=version, **kw)  # type: ignore[arg-type]


async def running(t: Term, name: str = "demo") -> None:
    async with t.clock.timeout(WAIT_S):
        await t.supervisor.wait_state(name, AppState.RUNNING)


async def test_install_end_to_end(broker: AnyBroker, tmp_path: Path, key: Ed25519PrivateKey) -> None:
    pkg = make_package(tmp_path, key)
    async with terminal(broker.url, tmp_path / "state", key) as t, cloud(broker.url) as c:
        args = args_for(pkg, chunk_size=1024)
        c.server.offer(TERMINAL, str(args["job"]), pkg.read_bytes())
        progress = await c.job("app.install", args)
        assert progress.state == "done", (progress.code, progress.message)
        assert progress.history[-len(FINAL_HISTORY) :] == FINAL_HISTORY
        assert progress.percent == 100
        await running(t)
        assert [(a.name, a.version, a.state) for a in t.manager.apps()] == [("demo", "1.0.0", "running")]
        assert t.supervisor.isolated == {"demo": True}
        chunks = -(-pkg.stat().st_size // 1024)
        assert t.jobs.chunks == chunks and t.jobs.rejected == {}
        assert not any((tmp_path / "state/packages/jobs").glob("*.part"))
        listed = await c.stub.send_command(TERMINAL, "app.list", {})
        assert listed.ok and listed.result is not None
        assert listed.result["apps"][0]["version"] == "1.0.0"


async def test_upgrade_from_catalog_then_rollback(
    amqtt_broker: AnyBroker, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    catalog = Catalog(tmp_path / "catalog")
    v1 = make_package(tmp_path, key, version="1.0.0")
    v2 = make_package(tmp_path, key, version="2.0.0")
    for pkg in (v1, v2):
        catalog.publish(pkg, ts=1_767_225_600.0)
    async with (
        terminal(amqtt_broker.url, tmp_path / "state", key) as t,
        cloud(amqtt_broker.url, catalog=catalog) as c,
    ):
        done = await c.job("app.install", args_for(v1, catalog=True))
        assert done.state == "done", done.message
        done = await c.job("app.upgrade", args_for(v2, version="2.0.0", catalog=True))
        assert done.state == "done", done.message
        await running(t)
        assert [(a.version, a.previous) for a in t.manager.apps()] == [("2.0.0", "1.0.0")]
        done = await c.job("app.rollback", {"job": new_job_id(), "name": "demo"})
        assert done.state == "done", done.message
        assert [(a.version, a.previous) for a in t.manager.apps()] == [("1.0.0", "2.0.0")]
        for command, want in (("app.stop", "stopped"), ("app.start", None)):
            reply = await c.stub.send_command(TERMINAL, command, {"name": "demo"})
            assert reply.ok and reply.result is not None
            if want is not None:
                assert reply.result["state"] == want
        reply = await c.stub.send_command(TERMINAL, "app.uninstall", {"name": "demo"})
        assert reply.ok and t.manager.apps() == []


async def test_failures_are_reported_with_the_reason(
    amqtt_broker: AnyBroker, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    stranger = make_package(tmp_path / "stranger", Ed25519PrivateKey.generate())
    crasher = make_package(tmp_path, key, behaviour="crash")
    async with terminal(amqtt_broker.url, tmp_path / "state", key) as t, cloud(amqtt_broker.url) as c:
        for pkg, code in ((stranger, "unknown_key"), (crasher, "crashed")):
            args = args_for(pkg)
            c.server.offer(TERMINAL, str(args["job"]), pkg.read_bytes())
            progress = await c.job("app.install", args)
            assert (progress.state, progress.code) == ("failed", code)
            assert progress.message
        assert t.manager.apps() == []


async def test_hostile_commands_and_chunks_change_nothing(
    amqtt_broker: AnyBroker, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    pkg = make_package(tmp_path, key)
    data = pkg.read_bytes()
    async with terminal(amqtt_broker.url, tmp_path / "state", key) as t, cloud(amqtt_broker.url) as c:
        send = c.stub.send_command
        good = args_for(pkg, chunk_size=1024)
        for bad, code in (
            ({**good, "size": "12"}, "bad_args"),
            ({**good, "sha256": "xyz"}, "bad_args"),
            ({**good, "chunk_size": 10}, "bad_args"),
            ({**good, "surprise": 1}, "bad_args"),
            ({**good, "size": 1 << 30}, "oversize"),
        ):
            reply = await send(TERMINAL, "app.install", bad)
            assert (reply.ok, reply.code) == (False, code), reply
        reply = await send(TERMINAL, "app.rollback", {"job": "j-x", "name": "demo"})
        assert reply.ok  # accepted as a job, which then fails: nothing to roll back
        reply = await send(TERMINAL, "app.upgrade", good)
        assert (reply.ok, reply.code) == (False, "not_installed")

        # a job whose chunks are pushed by hand (the server does not serve it)
        job = str(good["job"])
        progress = c.watcher.watch(job)
        assert (await send(TERMINAL, "app.install", good)).ok
        again = await send(TERMINAL, "app.install", good)  # same job again: its state, not a second job
        assert again.ok and again.result is not None and again.result["next"] == 0
        conflict = await send(TERMINAL, "app.install", {**good, "version": "9.9.9"})
        assert (conflict.ok, conflict.code) == (False, "job_conflict")

        async with aiomqtt.Client(amqtt_broker.host, amqtt_broker.port) as raw:
            topic = chunk_topic(TERMINAL)

            async def push(chunk: Chunk, *, signed: bool = True) -> None:
                await raw.publish(
                    topic, (sign_chunk(chunk, COMMAND_KEY) if signed else chunk).encode(), qos=1
                )

            await raw.publish(topic, b"{not json", qos=1)
            await push(Chunk(job, 0, data[:1024]), signed=False)
            await push(Chunk("j-nobody", 0, data[:1024]))
            await push(Chunk(job, 999, data[:1024]))
            await push(Chunk(job, 1, data[1024:2048]))  # out of order
            await push(Chunk(job, 0, data[:1000]))  # wrong length
            expected = {
                "bad_chunk": 1,
                "unauthenticated": 1,
                "unknown_job": 1,
                "out_of_range": 1,
                "out_of_order": 1,
                "bad_length": 1,
            }
            async with t.clock.timeout(WAIT_S):
                while dict(t.jobs.rejected) != expected:
                    await t.clock.sleep(0.05)
            assert t.jobs.chunks == 0
            part = tmp_path / "state/packages/jobs" / f"{job}.part"
            assert not part.exists()
            # now every chunk, but the bytes are not the announced package: sha256 mismatch
            forged = bytes(b ^ 0xFF for b in data)
            for i in range(-(-len(data) // 1024)):
                await push(Chunk(job, i, forged[i * 1024 : (i + 1) * 1024]))
            async with t.clock.timeout(WAIT_S):
                await progress.done.wait()
        assert (progress.state, progress.code) == ("failed", "sha256_mismatch")
        assert hashlib.sha256(forged).hexdigest() != good["sha256"]
        assert t.manager.apps() == [] and not part.exists()


async def test_broken_link_midway_resumes(
    amqtt_broker: AnyBroker, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    pkg = make_package(tmp_path, key, blob_bytes=12_000)
    proxy = TcpProxy(amqtt_broker.host, amqtt_broker.port)
    await proxy.start()
    try:
        async with (
            terminal(proxy.url, tmp_path / "state", key, stall_s=0.5) as t,
            cloud(amqtt_broker.url, window=1) as c,
        ):
            args = args_for(pkg, chunk_size=1024)
            job = str(args["job"])
            c.server.offer(TERMINAL, job, pkg.read_bytes())
            cut = asyncio.Event()

            async def cut_after_third_ack(terminal_id: str, body: dict[str, object]) -> None:
                if body.get("kind") == "ack" and body.get("index") == 2 and not cut.is_set():
                    cut.set()
                    await proxy.cut()

            c.stub.listen("jobs", cut_after_third_ack)
            progress = c.watcher.watch(job)
            assert (await c.stub.send_command(TERMINAL, "app.install", args)).ok
            async with c.clock.timeout(WAIT_S):
                await cut.wait()
            assert progress.state == "downloading"
            await c.clock.sleep(1.0)  # the link stays down for a while
            await proxy.start()  # same port: the uplink reconnects
            async with c.clock.timeout(WAIT_S):
                await progress.done.wait()
            assert progress.state == "done", progress.message
            chunks = -(-pkg.stat().st_size // 1024)
            assert t.jobs.chunks == chunks  # every chunk written exactly once
            assert t.jobs.refetches >= 1 and t.uplink.statistics()["reconnects"] >= 1
            await running(t)
    finally:
        await proxy.close()


async def test_terminal_restart_midway_resumes(
    amqtt_broker: AnyBroker, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    pkg = make_package(tmp_path, key, blob_bytes=12_000)
    state = tmp_path / "state"
    async with cloud(amqtt_broker.url, window=1) as c:
        args = args_for(pkg, chunk_size=1024)
        job = str(args["job"])
        c.server.offer(TERMINAL, job, pkg.read_bytes())
        progress = c.watcher.watch(job)
        reboot = asyncio.Event()

        async def stop_after_second_ack(terminal_id: str, body: dict[str, object]) -> None:
            if body.get("kind") == "ack" and body.get("index") == 1:
                reboot.set()

        c.stub.listen("jobs", stop_after_second_ack)
        async with terminal(amqtt_broker.url, state, key) as t:
            assert (await c.stub.send_command(TERMINAL, "app.install", args)).ok
            async with c.clock.timeout(WAIT_S):
                await reboot.wait()
            first_part = t.jobs.chunks
        assert 2 <= first_part < 10 and progress.state == "downloading"
        part = state / "packages/jobs" / f"{job}.part"
        assert part.stat().st_size == first_part * 1024  # the partial file survived
        async with terminal(amqtt_broker.url, state, key) as t:
            async with c.clock.timeout(WAIT_S):
                await progress.done.wait()
            assert progress.state == "done", progress.message
            assert first_part + t.jobs.chunks == -(-pkg.stat().st_size // 1024)
            await running(t)


async def _cli(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_install_list_and_failure(
    amqtt_broker: AnyBroker, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    good = make_package(tmp_path, key)
    bad = make_package(tmp_path / "bad", Ed25519PrivateKey.generate(), version="2.0.0")
    key_file = tmp_path / "credentials.toml"
    key_file.write_text(f'command_key = "{COMMAND_KEY.hex()}"\n')
    common = [
        "--terminal",
        TERMINAL,
        "--broker",
        amqtt_broker.url,
        "--key-file",
        str(key_file),
        "--timeout",
        "60",
    ]
    async with terminal(amqtt_broker.url, tmp_path / "state", key) as t:
        code, out, err = await _cli("cloud", "app", "install", *common, "--package", str(good))
        assert code == 0, err
        assert "done" in out and "100% health-check" in err
        code, out, err = await _cli("cloud", "app", "list", *common)
        assert code == 0, err
        assert "demo" in out and "1.0.0" in out and "running" in out
        code, out, err = await _cli("cloud", "app", "upgrade", *common, "--package", str(bad))
        assert code == 1
        assert "failed: unknown_key" in err
        code, out, err = await _cli("cloud", "app", "rollback", *common, "--name", "demo")
        assert code == 1 and "no_previous" in err
        code, out, err = await _cli("cloud", "app", "install", *common)
        assert code == 2 and "--package" in err
        assert [(a.version, a.state) for a in t.manager.apps()] == [("1.0.0", "running")]
