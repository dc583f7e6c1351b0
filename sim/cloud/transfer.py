"""Cloud side of app jobs: serve package chunks to terminals, follow job progress.

Layer: sim (cloud stub). Works on ``CloudStub`` only through its public API (``listen``,
``publish_chunk``, ``send_command``); the payloads are ``protocols.cloud``'s. Chunks are
pushed only when a terminal asks: a ``fetch`` (re)starts the window at the terminal's
``next``; every ``ack`` slides it; a ``nack`` with ``next`` rewinds it. So the terminal, not
the cloud, drives resumption after a broken link or a restart.

Package bytes come from ``offer(terminal, job, data)`` (``ttu cloud app install --package``)
or, for jobs whose source is the catalog, from the catalog's stored package, checked
against the job's announced size and sha256 before a single chunk goes out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols.cloud import DEFAULT_CHUNK_SIZE, FINAL_STATES, Chunk, InstallJob, JobReport, PackageSource
from protocols.errors import ProtocolError
from sim.cloud.catalog import Catalog, CatalogError
from sim.cloud.stub import CloudStub

_log = logging.getLogger(__name__)

DEFAULT_WINDOW = 4


@dataclass(slots=True)
class _Transfer:
    data: bytes
    chunk_size: int
    sent: int = 0  # chunks [0, sent) have been published at least once since the last (re)start

    @property
    def chunks(self) -> int:
        return max(1, -(-len(self.data) // self.chunk_size))


class PackageServer:
    """Pushes chunks of offered or catalog packages in answer to terminals' fetch/ack reports."""

    def __init__(
        self, stub: CloudStub, *, catalog: Catalog | None = None, window: int = DEFAULT_WINDOW
    ) -> None:
        self._stub = stub
        self._catalog = catalog
        self.window = window
        self._offers: dict[tuple[str, str], bytes] = {}
        self._transfers: dict[tuple[str, str], _Transfer] = {}
        self.chunks_sent = 0
        self.refused: list[str] = []
        stub.listen("jobs", self._on_report)

    def offer(self, terminal: str, job: str, data: bytes) -> None:
        self._offers[(terminal, job)] = data

    async def _on_report(self, terminal: str, body: dict[str, Any]) -> None:
        try:
            report = JobReport.from_json(body)
        except ProtocolError as err:
            _log.warning("cloud: bad job report from %s: %s", terminal, err)
            return
        key = (terminal, report.job)
        if report.kind == "fetch":
            transfer = self._start(terminal, report)
            if transfer is None:
                return
            transfer.sent = min(report.next, transfer.chunks)
            await self._fill(terminal, report.job, transfer, report.next)
        elif report.kind in ("ack", "nack") and key in self._transfers:
            transfer = self._transfers[key]
            if report.kind == "nack" and "next" in report.body:
                transfer.sent = min(report.next, transfer.chunks)
            await self._fill(terminal, report.job, transfer, report.next)
        elif report.kind == "state" and report.state in FINAL_STATES:
            self._transfers.pop(key, None)
            self._offers.pop(key, None)

    def _start(self, terminal: str, report: JobReport) -> _Transfer | None:
        key = (terminal, report.job)
        body = report.body
        chunk_size = body.get("chunk_size", DEFAULT_CHUNK_SIZE)
        known = self._transfers.get(key)
        if known is not None:
            return known
        data = self._offers.get(key)
        source = body.get("source") or {}
        if data is None and source.get("kind") == "catalog" and self._catalog is not None:
            data = self._from_catalog(terminal, report.job, source)
        if data is None:
            _log.info("cloud: %s asks for job %s, which this cloud does not serve", terminal, report.job)
            return None
        if len(data) != body.get("size") or hashlib.sha256(data).hexdigest() != body.get("sha256"):
            self.refused.append(f"{terminal}/{report.job}: package differs from the job's size/sha256")
            _log.error("cloud: %s", self.refused[-1])
            return None
        if not isinstance(chunk_size, int) or chunk_size < 1:
            return None
        transfer = _Transfer(data, chunk_size)
        self._transfers[key] = transfer
        return transfer

    def _from_catalog(self, terminal: str, job: str, source: dict[str, Any]) -> bytes | None:
        assert self._catalog is not None
        try:
            entry = self._catalog.find(str(source.get("name")), str(source.get("version")))
            return self._catalog.package_path(entry).read_bytes()
        except (CatalogError, OSError) as err:
            self.refused.append(f"{terminal}/{job}: {err}")
            _log.error("cloud: cannot serve %s/%s from the catalog: %s", terminal, job, err)
            return None

    async def _fill(self, terminal: str, job: str, transfer: _Transfer, acked: int) -> None:
        """Keep up to ``window`` chunks beyond the terminal's ``next`` in flight."""
        while transfer.sent < min(acked + self.window, transfer.chunks):
            index = transfer.sent
            data = transfer.data[index * transfer.chunk_size : (index + 1) * transfer.chunk_size]
            transfer.sent += 1
            await self._stub.publish_chunk(terminal, Chunk(job, index, data))
            self.chunks_sent += 1


@dataclass(slots=True)
class JobProgress:
    """What the cloud has heard of one job (from the terminal's state reports)."""

    job: str
    state: str = "sent"
    percent: int = 0
    code: str | None = None
    message: str | None = None
    history: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class JobWatcher:
    """Follows jobs' state reports; ``on_change(progress)`` is called after each change."""

    def __init__(self, stub: CloudStub, *, on_change: Callable[[JobProgress], None] | None = None) -> None:
        self._jobs: dict[str, JobProgress] = {}
        self._on_change = on_change
        stub.listen("jobs", self._on_report)

    def watch(self, job: str) -> JobProgress:
        return self._jobs.setdefault(job, JobProgress(job))

    async def _on_report(self, terminal: str, body: dict[str, Any]) -> None:
        try:
            report = JobReport.from_json(body)
        except ProtocolError:
            return
        progress = self._jobs.get(report.job)
        if progress is None or report.kind != "state" or progress.done.is_set():
            return
        state = report.state or progress.state
        percent = body.get("percent")
        progress.percent = percent if isinstance(percent, int) else progress.percent
        progress.code = body.get("code") if isinstance(body.get("code"), str) else None
        progress.message = body.get("message") if isinstance(body.get("message"), str) else None
        if state != progress.state:
            progress.history.append(state)
        progress.state = state
        if self._on_change is not None:
            self._on_change(progress)
        if state in FINAL_STATES:
            progress.done.set()


def new_job_id() -> str:
    return f"j-{uuid.uuid4().hex[:16]}"


def install_args(
    job: str,
    *,
    package: bytes,
    name: str,
    version: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    start_delay_s: float = 0.0,
    catalog: bool = False,
) -> dict[str, Any]:
    """The arguments of ``app.install``/``app.upgrade`` for ``package``."""
    source = PackageSource("catalog", name, version) if catalog else PackageSource("chunks")
    spec = InstallJob(
        job,
        name,
        version,
        len(package),
        hashlib.sha256(package).hexdigest(),
        chunk_size,
        start_delay_s,
        source,
    )
    return spec.to_json()


__all__ = ["JobProgress", "JobWatcher", "PackageServer", "install_args", "new_job_id"]
