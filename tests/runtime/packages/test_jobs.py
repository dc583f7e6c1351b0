"""The job runner without MQTT, in virtual time: chunk fuzzing never raises nor writes, stalled
transfers are asked for again, a start delay is honoured, a job interrupted by a restart is
failed with its reason, and package migrations are checked."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.cloud import Chunk, sign_chunk
from runtime.errors import CommandError
from runtime.packages import BadManifest
from runtime.packages.jobs import MAX_ACTIVE, JobRunner
from runtime.packages.migrations import load_migrations, migrate

from .lifecycle import Rig, make_package, rig

KEY = b"k" * 32


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


class Reports(list[dict[str, Any]]):
    async def __call__(self, body: dict[str, Any]) -> None:
        self.append(body)

    def of(self, kind: str, job: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self if r["kind"] == kind and (job is None or r["job"] == job)]


@asynccontextmanager
async def runner(r: Rig, reports: Reports, *, stall_s: float = 15.0) -> AsyncIterator[JobRunner]:
    jobs = JobRunner(manager=r.manager, clock=r.clock, command_key=KEY, report=reports, stall_s=stall_s)
    task = asyncio.create_task(jobs.run(), name="package-jobs")
    try:
        yield jobs
    finally:
        task.cancel()
        await asyncio.wait({task})


def spec(pkg: Path, job: str = "j-1", **kw: Any) -> dict[str, Any]:
    data = pkg.read_bytes()
    return {
        "job": job,
        "name": "demo",
        "version": "1.0.0",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "chunk_size": 1024,
        **kw,
    }


async def feed(jobs: JobRunner, data: bytes, job: str = "j-1") -> None:
    for i in range(-(-len(data) // 1024)):
        await jobs.handle_chunk(sign_chunk(Chunk(job, i, data[i * 1024 : (i + 1) * 1024]), KEY).encode())


async def final(r: Rig, reports: Reports, job: str, within: float = 60) -> dict[str, Any]:
    async with r.clock.timeout(within):
        while True:
            states = [s for s in reports.of("state", job) if s["state"] in ("done", "failed")]
            if states:
                return states[-1]
            await r.clock.sleep(0.1)


@pytest.mark.looptime
async def test_stall_refetch_start_delay_and_done(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    pkg = make_package(tmp_path, key, blob_bytes=3000)
    reports = Reports()
    async with rig(tmp_path / "state", key, grace_s=1) as r, runner(r, reports, stall_s=5) as jobs:
        reply = await jobs._install(spec(pkg, start_delay_s=120))
        assert reply["state"] == "downloading" and reply["next"] == 0
        assert len(reports.of("fetch")) == 1
        asked = r.clock.monotonic()
        async with r.clock.timeout(60):  # nothing arrives: the terminal asks again, from 0
            while len(reports.of("fetch")) < 2:
                await r.clock.sleep(0.5)
        assert r.clock.monotonic() - asked >= 5
        assert reports.of("fetch")[-1]["next"] == 0 and jobs.refetches >= 1
        t0 = r.clock.monotonic()
        await feed(jobs, pkg.read_bytes())
        done = await final(r, reports, "j-1", within=300)
        assert done["state"] == "done", (done.get("code"), done.get("message"))
        assert r.clock.monotonic() - t0 >= 120  # the start delay
        states = [s["state"] for s in reports.of("state")]
        # the hash is checked when the last chunk lands, the signature when the delay is over
        assert states[-7:] == [
            "verifying",
            "queued",
            "verifying",
            "installing",
            "starting",
            "health-check",
            "done",
        ]
        assert [a.version for a in r.manager.apps()] == ["1.0.0"]
        assert jobs.statistics()["active"] == []


@pytest.mark.looptime
async def test_job_interrupted_by_restart_fails_with_reason(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    pkg = make_package(tmp_path, key)
    reports = Reports()
    async with rig(tmp_path / "state", key) as r, runner(r, reports) as jobs:
        await jobs._install(spec(pkg))
        job = jobs._jobs["j-1"]
        job.state = "installing"  # as if the power went during the install
        await jobs._save(job)
    reports.clear()
    async with rig(tmp_path / "state", key) as r, runner(r, reports) as jobs:
        done = await final(r, reports, "j-1")
        assert (done["state"], done["code"]) == ("failed", "interrupted")
        with pytest.raises(CommandError) as err:
            await jobs._install(spec(pkg, version="2.0.0"))
        assert err.value.code == "job_conflict"


@pytest.mark.looptime
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
async def test_random_chunks_never_raise_nor_write(tmp_path: Path, payload: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    reports = Reports()
    state = tmp_path / "fuzz"
    async with rig(state, key) as r, runner(r, reports) as jobs:
        await jobs.handle_chunk(payload)
        assert jobs.chunks == 0
        assert not (state / "packages/jobs").exists()


def test_migrations_parse_and_apply(tmp_path: Path) -> None:
    (tmp_path / "migrations.toml").write_text(
        '[[migration]]\nbefore = "2.0.0"\nrename = { a = "b" }\ndefault = { c = 1 }\ndelete = ["d"]\n'
        '[[migration]]\nbefore = "1.5.0"\nset = { e = true }\n'
    )
    migs = load_migrations(tmp_path)
    data = {"a": 1, "d": 2, "c": 5}
    assert migrate(data, migs, from_version="1.9.0") == {"b": 1, "c": 5}
    assert migrate(data, migs, from_version="1.0.0") == {"b": 1, "c": 5, "e": True}
    assert migrate(data, migs, from_version="2.0.0") == data
    for bad in ('[[migration]]\nbefore = "soon"\n', "[other]\n", '[[migration]]\nbefore = "1.0.0"\nx = 1\n'):
        (tmp_path / "migrations.toml").write_text(bad)
        with pytest.raises(BadManifest):
            load_migrations(tmp_path)


@pytest.mark.looptime
async def test_open_transfers_are_bounded(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    pkg = make_package(tmp_path, key)
    reports = Reports()
    async with rig(tmp_path / "state", key) as r, runner(r, reports) as jobs:
        for i in range(MAX_ACTIVE):
            await jobs._install(spec(pkg, job=f"j-{i}", name=f"app{i}"))
        with pytest.raises(CommandError) as err:
            await jobs._install(spec(pkg, job="j-more", name="another"))
        assert err.value.code == "busy"
        with pytest.raises(CommandError) as err:
            await jobs._install(spec(pkg, job="j-same", name="app0"))
        assert err.value.code == "busy"  # one job per app at a time
        assert sorted(jobs.statistics()["active"]) == [f"j-{i}" for i in range(MAX_ACTIVE)]
