"""App lifecycle jobs from the cloud: ``app.*`` commands, the chunked package transfer, job reports.

Layer: runtime (package manager). Turns authenticated downlink commands and package chunks
into ``PackageManager`` calls; reports every job's progress through a ``report`` callable
(the uplink's durable outbox, stream ``jobs``). It knows the ``protocols.cloud`` job
payloads but no MQTT client. See ``protocols.cloud`` for the message flow.

Durability: a job is a JSON record ``<state>/packages/jobs/<job>.json`` plus its partial
package ``<job>.part``. A chunk is fsynced into the partial file before the record's
``next`` moves past it and before it is acked, so after a broken link or a restart the
transfer resumes from the first chunk not on disk. Jobs run one at a time, in order.

Hostile input (bad JSON, bad signature, unknown job, index out of range or out of order,
wrong length, size or hash mismatch) is refused, counted in ``rejected`` and answered
with a ``nack`` (or an error reply for commands); it never changes a job's file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hal.clock import Clock
from protocols.cloud import FINAL_STATES, Chunk, InstallJob, parse_app_name, verify_chunk
from protocols.errors import ProtocolError
from protocols.packages.errors import PackageError
from runtime.errors import CommandError
from runtime.packages._disk import append_durably, read_json, remove, write_json
from runtime.packages.journal import Txn
from runtime.packages.manager import InstalledApp, PackageManager

log = logging.getLogger("ttu.packages.jobs")

Report = Callable[[dict[str, Any]], Awaitable[Any]]
Register = Callable[..., None]
KEEP_FINISHED = 50
MAX_ACTIVE = 4
"""Transfers that may be open at once: a flood of install commands cannot fill the disk."""
PERCENT_STEP = 10


@dataclass(slots=True)
class Job:
    op: str  # install | upgrade | rollback
    spec: InstallJob | None  # None for rollback
    name: str
    state: str = "queued"
    next: int = 0
    code: str | None = None
    message: str | None = None
    created: float = 0.0
    last_chunk: float = 0.0  # clock.monotonic() of the last progress (not persisted)
    percent_sent: int = -1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.job if self.spec is not None else str(self.extra["job"])

    @property
    def version(self) -> str | None:
        return self.spec.version if self.spec is not None else None

    @property
    def percent(self) -> int:
        if self.spec is None:
            return 100 if self.state == "done" else 0
        return min(100, self.next * 100 // self.spec.chunks)

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "spec": None if self.spec is None else self.spec.to_json(),
            "name": self.name,
            "state": self.state,
            "next": self.next,
            "code": self.code,
            "message": self.message,
            "created": self.created,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Job:
        spec = None if doc.get("spec") is None else InstallJob.from_json(doc["spec"], where="job")
        return cls(
            op=str(doc["op"]),
            spec=spec,
            name=str(doc["name"]),
            state=str(doc["state"]),
            next=int(doc["next"]),
            code=doc.get("code"),
            message=doc.get("message"),
            created=float(doc.get("created", 0.0)),
            extra=dict(doc.get("extra") or {}),
        )


class JobRunner:
    """The ``app.*`` commands and the chunk handler of one terminal. Run ``await run()`` as a task."""

    def __init__(
        self,
        *,
        manager: PackageManager,
        clock: Clock,
        command_key: bytes,
        report: Report,
        stall_s: float = 15.0,
        recovered: Txn | None = None,
    ) -> None:
        self._manager = manager
        self._clock = clock
        self._key = command_key
        self._report = report
        self.stall_s = stall_s
        self._dir = manager.layout.packages / "jobs"
        self._jobs: dict[str, Job] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._recovered = recovered
        self._saving = asyncio.Lock()
        self.rejected: Counter[str] = Counter()
        self.chunks = 0
        self.duplicates = 0
        self.refetches = 0
        self._load()
        # only what was on disk at start is resumed: a command arriving meanwhile is not "interrupted"
        self._to_resume = sorted(self._jobs.values(), key=lambda j: j.created)

    # -- registration ---------------------------------------------------------------------------

    def register(self, register: Register) -> None:
        """Register the ``app.*`` commands with ``register(name, handler, validate=...)``."""
        register("app.install", self._install, validate=self._validate_install)
        register("app.upgrade", self._upgrade, validate=self._validate_install)
        register("app.rollback", self._rollback, validate=lambda a: parse_app_name(a, job=True))
        register("app.start", self._start, validate=lambda a: parse_app_name(a))
        register("app.stop", self._stop, validate=lambda a: parse_app_name(a))
        register("app.uninstall", self._uninstall, validate=lambda a: parse_app_name(a))
        register("app.list", self._list)

    def statistics(self) -> dict[str, Any]:
        return {
            "jobs": len(self._jobs),
            "active": sorted(j.id for j in self._jobs.values() if j.state not in FINAL_STATES),
            "chunks": self.chunks,
            "duplicates": self.duplicates,
            "refetches": self.refetches,
            "rejected": dict(sorted(self.rejected.items())),
            **self._manager.statistics(),
        }

    # -- persistence ----------------------------------------------------------------------------

    def _record_path(self, job_id: str) -> Path:
        return self._dir / f"{job_id}.json"

    def part_path(self, job_id: str) -> Path:
        return self._dir / f"{job_id}.part"

    def _load(self) -> None:
        if not self._dir.is_dir():
            return
        for path in sorted(self._dir.glob("*.json")):
            try:
                doc = read_json(path)
                job = Job.from_json(doc)
            except (ValueError, KeyError, TypeError, ProtocolError) as err:
                log.error("job record %s unreadable, ignored: %s", path, err)
                continue
            self._jobs[job.id] = job

    async def _save(self, job: Job) -> None:
        # one writer at a time, serializing under the lock: the newest state is the one on disk
        async with self._saving:
            await asyncio.to_thread(write_json, self._record_path(job.id), job.to_json())

    # -- reports --------------------------------------------------------------------------------

    async def _state(
        self, job: Job, state: str, *, code: str | None = None, message: str | None = None
    ) -> None:
        job.state = state
        job.code, job.message = code, message
        await self._save(job)
        body: dict[str, Any] = {
            "kind": "state",
            "job": job.id,
            "op": job.op,
            "name": job.name,
            "version": job.version,
            "state": state,
            "percent": job.percent,
        }
        if code is not None:
            body["code"] = code
        if message is not None:
            body["message"] = message
        await self._report(body)
        log.info(
            "job %s (%s %s): %s%s", job.id, job.op, job.name, state, f" {code}: {message}" if code else ""
        )

    async def _fetch(self, job: Job) -> None:
        assert job.spec is not None
        job.last_chunk = self._clock.monotonic()
        await self._report(
            {
                "kind": "fetch",
                "job": job.id,
                "next": job.next,
                "chunks": job.spec.chunks,
                "chunk_size": job.spec.chunk_size,
                "size": job.spec.size,
                "sha256": job.spec.sha256,
                "name": job.spec.name,
                "version": job.spec.version,
                "source": job.spec.source.to_json(),
            }
        )

    async def _nack(self, job_id: str, index: int, code: str, message: str, nxt: int | None) -> None:
        self.rejected[code] += 1
        log.warning("chunk %d of job %s refused: %s: %s", index, job_id, code, message)
        body: dict[str, Any] = {
            "kind": "nack",
            "job": job_id,
            "index": index,
            "code": code,
            "message": message,
        }
        if nxt is not None:
            body["next"] = nxt
        await self._report(body)

    # -- commands -------------------------------------------------------------------------------

    def _validate_install(self, args: dict[str, Any]) -> None:
        InstallJob.from_json(args)

    async def _install(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._new_transfer("install", args)

    async def _upgrade(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._new_transfer("upgrade", args)

    async def _new_transfer(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        spec = InstallJob.from_json(args)
        known = self._jobs.get(spec.job)
        if known is not None:
            if known.spec != spec or known.op != op:
                raise CommandError("job_conflict", f"job {spec.job} exists with other arguments")
            if known.state == "downloading":
                await self._fetch(known)  # the cloud is resuming: tell it where we are
            return self._reply(known)
        limit = self._manager.limits.max_package_bytes
        if spec.size > limit:
            raise CommandError("oversize", f"package of {spec.size} bytes exceeds the limit of {limit} bytes")
        self._check_busy(spec.name)
        active = [j.id for j in self._jobs.values() if j.state not in FINAL_STATES]
        if len(active) >= MAX_ACTIVE:
            raise CommandError("busy", f"{len(active)} jobs are open ({', '.join(active)}); try later")
        installed = {
            a.name: a for a in self._manager.apps()
        }  # a few tiny files; the supervisor is read on the loop
        if op == "install" and spec.name in installed:
            raise CommandError(
                "already_installed",
                f"{spec.name} {installed[spec.name].version} is installed; use app.upgrade",
            )
        if op == "upgrade" and spec.name not in installed:
            raise CommandError("not_installed", f"{spec.name} is not installed; use app.install")
        job = Job(op, spec, spec.name, created=self._clock.now())
        self._jobs[job.id] = job
        await asyncio.to_thread(self._dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(remove, self.part_path(job.id))
        await self._state(job, "queued")
        await self._state(job, "downloading")
        await self._fetch(job)
        await asyncio.to_thread(self._prune)
        return self._reply(job)

    async def _rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        name, job_id = parse_app_name(args, job=True)
        assert job_id is not None
        known = self._jobs.get(job_id)
        if known is not None:
            if known.op != "rollback" or known.name != name:
                raise CommandError("job_conflict", f"job {job_id} exists with other arguments")
            return self._reply(known)
        self._check_busy(name)
        job = Job("rollback", None, name, created=self._clock.now(), extra={"job": job_id})
        self._jobs[job_id] = job
        await asyncio.to_thread(self._dir.mkdir, parents=True, exist_ok=True)
        await self._state(job, "queued")
        self._queue.put_nowait(job_id)
        return self._reply(job)

    async def _start(self, args: dict[str, Any]) -> dict[str, Any]:
        name, _ = parse_app_name(args)
        info: InstalledApp = await self._call(self._manager.start(name))
        return info.to_json()

    async def _stop(self, args: dict[str, Any]) -> dict[str, Any]:
        name, _ = parse_app_name(args)
        info: InstalledApp = await self._call(self._manager.stop(name))
        return info.to_json()

    async def _uninstall(self, args: dict[str, Any]) -> dict[str, Any]:
        name, _ = parse_app_name(args)
        self._check_busy(name)
        result: dict[str, Any] = await self._call(self._manager.uninstall(name))
        return result

    async def _list(self, args: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise CommandError("bad_args", f"app.list takes no arguments, got {sorted(args)}")
        active = [self._reply(j) for j in self._jobs.values() if j.state not in FINAL_STATES]
        apps = self._manager.apps()
        return {"apps": [a.to_json() for a in apps], "jobs": active}

    async def _call(self, op: Awaitable[Any]) -> Any:
        try:
            return await op
        except PackageError as err:
            raise CommandError(err.code, err.reason) from err

    def _check_busy(self, name: str) -> None:
        for other in self._jobs.values():
            if other.name == name and other.state not in FINAL_STATES:
                raise CommandError("busy", f"job {other.id} for {name} is {other.state}")

    def _reply(self, job: Job) -> dict[str, Any]:
        out: dict[str, Any] = {"job": job.id, "op": job.op, "name": job.name, "state": job.state}
        if job.spec is not None:
            out.update(next=job.next, chunks=job.spec.chunks, percent=job.percent)
        if job.code is not None:
            out.update(code=job.code, message=job.message)
        return out

    def _prune(self) -> None:
        finished = sorted(
            (j for j in self._jobs.values() if j.state in FINAL_STATES), key=lambda j: j.created
        )
        for job in finished[:-KEEP_FINISHED]:
            del self._jobs[job.id]
            remove(self._record_path(job.id))

    # -- chunks ---------------------------------------------------------------------------------

    async def handle_chunk(self, payload: bytes) -> None:
        """One raw payload from the chunk topic; never raises for bad input."""
        try:
            chunk = Chunk.decode(payload)
        except ProtocolError as err:
            self.rejected["bad_chunk"] += 1
            log.warning("chunk refused: %s", err)
            return
        job = self._jobs.get(chunk.job)
        if not verify_chunk(chunk, self._key):
            if job is None:
                self.rejected["unauthenticated"] += 1
                log.warning("chunk for %r refused: bad or missing auth", chunk.job)
                return
            await self._nack(chunk.job, chunk.index, "unauthenticated", "bad or missing auth", job.next)
            return
        if job is None or job.spec is None:
            await self._nack(chunk.job, chunk.index, "unknown_job", f"no transfer job {chunk.job!r}", None)
            return
        spec = job.spec
        if chunk.index >= spec.chunks:
            msg = f"index {chunk.index} out of range 0..{spec.chunks - 1}"
            await self._nack(job.id, chunk.index, "out_of_range", msg, job.next)
            return
        if chunk.index < job.next:
            self.duplicates += 1  # already on disk: say so again, change nothing
            await self._ack(job, chunk.index)
            return
        if job.state != "downloading":
            await self._nack(job.id, chunk.index, "not_downloading", f"job is {job.state}", job.next)
            return
        if chunk.index > job.next:
            msg = f"chunk {chunk.index} before chunk {job.next}"
            await self._nack(job.id, chunk.index, "out_of_order", msg, job.next)
            return
        want = spec.chunk_length(chunk.index)
        if len(chunk.data) != want:
            msg = f"chunk {chunk.index} has {len(chunk.data)} bytes, expected {want}"
            await self._nack(job.id, chunk.index, "bad_length", msg, job.next)
            return
        offset = chunk.index * spec.chunk_size
        await asyncio.to_thread(append_durably, self.part_path(job.id), chunk.data, offset=offset)
        job.next = chunk.index + 1
        job.last_chunk = self._clock.monotonic()
        self.chunks += 1
        await self._save(job)
        await self._ack(job, chunk.index)
        if job.next == spec.chunks:
            await self._downloaded(job)
        elif job.percent // PERCENT_STEP != job.percent_sent // PERCENT_STEP:
            job.percent_sent = job.percent
            await self._state(job, "downloading")

    async def _ack(self, job: Job, index: int) -> None:
        assert job.spec is not None
        await self._report(
            {"kind": "ack", "job": job.id, "index": index, "next": job.next, "chunks": job.spec.chunks}
        )

    async def _downloaded(self, job: Job) -> None:
        assert job.spec is not None
        await self._state(job, "verifying")
        size, digest = await asyncio.to_thread(_size_and_hash, self.part_path(job.id))
        if size != job.spec.size or digest != job.spec.sha256:
            await asyncio.to_thread(remove, self.part_path(job.id))
            why = (
                f"received {size} bytes with sha256 {digest[:16]}..., the job announced {job.spec.size} bytes"
            )
            await self._state(
                job, "failed", code="sha256_mismatch", message=f"{why} and {job.spec.sha256[:16]}..."
            )
            return
        self._queue.put_nowait(job.id)

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Resume interrupted jobs, then run queued jobs one at a time and re-fetch stalled transfers."""
        await self._resume()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._worker(), name="package-jobs")
            tg.create_task(self._stall_watch(), name="package-transfers")

    async def _resume(self) -> None:
        txn = self._recovered
        for job in self._to_resume:
            if job.state in FINAL_STATES:
                continue
            spec = job.spec
            if spec is not None and job.state in ("queued", "downloading") and job.next < spec.chunks:
                if job.state != "downloading":
                    await self._state(job, "downloading")
                await self._fetch(job)
            elif spec is None and job.state == "queued":
                self._queue.put_nowait(job.id)
            elif spec is not None and job.state in ("queued", "verifying") and job.next == spec.chunks:
                await self._downloaded(job)  # verified again, then queued
            elif txn is not None and txn.job == job.id and txn.step == "committed":
                await self._finished(
                    job, "done", message=f"{job.name} {txn.to_version} committed before a restart"
                )
            else:
                why = f"terminal restarted during {job.state}; the previous state was restored"
                await self._finished(job, "failed", code="interrupted", message=why)
        self._to_resume = []

    async def _stall_watch(self) -> None:
        while True:
            await self._clock.sleep(max(0.5, self.stall_s / 3))
            now = self._clock.monotonic()
            for job in list(self._jobs.values()):
                if job.state == "downloading" and now - job.last_chunk >= self.stall_s:
                    self.refetches += 1
                    log.info(
                        "job %s: no chunk for %.0f s, asking again from %d", job.id, self.stall_s, job.next
                    )
                    await self._fetch(job)

    async def _worker(self) -> None:
        while True:
            job_id = await self._queue.get()
            job = self._jobs.get(job_id)
            if job is None or job.state in FINAL_STATES:
                continue
            try:
                await self._execute(job)
            except PackageError as err:
                await self._finished(job, "failed", code=err.code, message=err.reason)
            except Exception as err:  # a bug must fail the job with a reason, not the runtime
                log.exception("job %s failed unexpectedly", job.id)
                await self._finished(job, "failed", code="failed", message=f"{type(err).__name__}: {err}")

    async def _execute(self, job: Job) -> None:
        async def progress(state: str) -> None:
            if state != "verifying" or job.state != "verifying":
                await self._state(job, state)

        if job.spec is None:
            info = await self._manager.rollback(job.name, job=job.id, progress=progress)
        else:
            if job.spec.start_delay_s > 0:
                await self._state(job, "queued", message=f"installing in {job.spec.start_delay_s:g} s")
                await self._clock.sleep(job.spec.start_delay_s)
            info = await self._manager.install(
                self.part_path(job.id),
                upgrade=job.op == "upgrade",
                expect=(job.spec.name, job.spec.version),
                job=job.id,
                progress=progress,
            )
        await self._finished(job, "done", message=f"{info.name} {info.version} {info.state}")

    async def _finished(
        self, job: Job, state: str, *, code: str | None = None, message: str | None = None
    ) -> None:
        await self._state(job, state, code=code, message=message)
        await asyncio.to_thread(remove, self.part_path(job.id))


def _size_and_hash(path: Path) -> tuple[int, str]:
    try:
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256")
            return fh.tell(), digest.hexdigest()
    except FileNotFoundError:
        return 0, hashlib.sha256(b"").hexdigest()


__all__ = ["Job", "JobRunner"]
