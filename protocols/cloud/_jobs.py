"""App-lifecycle jobs of the cloud scheme: job arguments, package chunks, job reports.

Layer: protocols. Pure: parses and builds JSON payloads, signs and verifies chunks. No I/O.
See the package docstring for the topics and the flow; every parse error is a
``ProtocolError`` whose message names the field (``app.install.args.sha256: ...``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from typing import Any

from protocols.errors import ProtocolError

from ._messages import PROTOCOL_VERSION, _load, canonical_json

JOB_STATES = (
    "queued",
    "downloading",
    "verifying",
    "installing",
    "starting",
    "health-check",
    "done",
    "failed",
)
FINAL_STATES = frozenset({"done", "failed"})
JOB_KINDS = ("install", "upgrade", "rollback")
DEFAULT_CHUNK_SIZE = 32 << 10
MIN_CHUNK_SIZE = 1 << 10
MAX_CHUNK_SIZE = 256 << 10
"""A base64 chunk of 256 KiB stays well inside the 1 MiB payload bound."""

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VERSION = re.compile(r"^[0-9A-Za-z.+-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _err(where: str, reason: str) -> ProtocolError:
    return ProtocolError(f"{where}: {reason}", protocol="cloud")


def _get(
    args: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, *, required: bool = True
) -> Any:
    if key not in args:
        if required:
            raise _err(f"{where}.{key}", "missing")
        return None
    value = args[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _err(f"{where}.{key}", f"wrong type {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _err(f"{where}.{key}", "not a finite number")
    return value


def _unknown(args: dict[str, Any], known: set[str], where: str) -> None:
    extra = set(args) - known
    if extra:
        raise _err(where, f"unknown fields {sorted(extra)}")


def check_job_id(value: Any, where: str = "job") -> str:
    if not isinstance(value, str) or not _JOB_ID.match(value):
        raise _err(where, "must be 1..64 characters of letters, digits and _.:- (no leading symbol)")
    return value


def check_app_name(value: Any, where: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise _err(where, f"must be a lower_snake_case app name, not {value!r}")
    return value


def check_version(value: Any, where: str = "version") -> str:
    if not isinstance(value, str) or not _VERSION.match(value):
        raise _err(where, f"must be a version string like '1.2.0', not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PackageSource:
    """Where the package bytes come from: pushed as chunks, or served from the cloud catalog."""

    kind: str  # "chunks" | "catalog"
    name: str | None = None
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.kind == "catalog":
            return {"kind": "catalog", "name": self.name, "version": self.version}
        return {"kind": "chunks"}


@dataclass(frozen=True, slots=True)
class InstallJob:
    """``app.install`` / ``app.upgrade`` arguments::

    {"job": "j-1", "name": "demo", "version": "1.2.0", "size": 10240, "sha256": "<hex>",
     "chunk_size": 32768, "start_delay_s": 0, "source": {"kind": "chunks"}}
    source may also be {"kind": "catalog", "name": "demo", "version": "1.2.0"}
    """

    job: str
    name: str
    version: str
    size: int
    sha256: str
    chunk_size: int = DEFAULT_CHUNK_SIZE
    start_delay_s: float = 0.0
    source: PackageSource = PackageSource("chunks")

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    def chunk_length(self, index: int) -> int:
        """The exact byte count chunk ``index`` must carry."""
        if index < self.chunks - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (self.chunks - 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "name": self.name,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "chunk_size": self.chunk_size,
            "start_delay_s": self.start_delay_s,
            "source": self.source.to_json(),
        }

    @classmethod
    def from_json(
        cls, args: dict[str, Any], *, where: str = "args", max_size: int | None = None
    ) -> InstallJob:
        if not isinstance(args, dict):
            raise _err(where, "must be a JSON object")
        _unknown(
            args, {"job", "name", "version", "size", "sha256", "chunk_size", "start_delay_s", "source"}, where
        )
        job = check_job_id(args.get("job"), f"{where}.job")
        name = check_app_name(args.get("name"), f"{where}.name")
        version = check_version(args.get("version"), f"{where}.version")
        size = _get(args, "size", int, where)
        if size < 1:
            raise _err(f"{where}.size", f"must be positive, not {size}")
        if max_size is not None and size > max_size:
            raise _err(f"{where}.size", f"{size} bytes exceeds the package limit of {max_size} bytes")
        sha = _get(args, "sha256", str, where)
        if not _HEX64.match(sha):
            raise _err(f"{where}.sha256", "must be 64 lower-case hex digits")
        chunk_size = _get(args, "chunk_size", int, where, required=False)
        chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise _err(f"{where}.chunk_size", f"must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}, not {chunk_size}")
        delay = _get(args, "start_delay_s", (int, float), where, required=False)
        delay = 0.0 if delay is None else float(delay)
        if not 0 <= delay <= 7 * 86400:
            raise _err(f"{where}.start_delay_s", f"must be 0..604800 s, not {delay:g}")
        raw_source = _get(args, "source", dict, where, required=False)
        source = PackageSource("chunks")
        if raw_source is not None:
            kind = raw_source.get("kind")
            if kind == "chunks":
                _unknown(raw_source, {"kind"}, f"{where}.source")
            elif kind == "catalog":
                _unknown(raw_source, {"kind", "name", "version"}, f"{where}.source")
                source = PackageSource(
                    "catalog",
                    check_app_name(raw_source.get("name"), f"{where}.source.name"),
                    check_version(raw_source.get("version"), f"{where}.source.version"),
                )
            else:
                raise _err(f"{where}.source.kind", f"must be 'chunks' or 'catalog', not {kind!r}")
        return cls(job, name, version, size, sha, chunk_size, delay, source)


def parse_app_name(args: dict[str, Any], *, where: str = "args", job: bool = False) -> tuple[str, str | None]:
    """``{"name": N}`` (``app.start|stop|uninstall``) or ``{"job": J, "name": N}`` (``app.rollback``)."""
    if not isinstance(args, dict):
        raise _err(where, "must be a JSON object")
    _unknown(args, {"name", "job"} if job else {"name"}, where)
    name = check_app_name(args.get("name"), f"{where}.name")
    job_id = check_job_id(args.get("job"), f"{where}.job") if job else None
    return name, job_id


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a package, cloud -> terminal on ``ttu/T/down/chunk``::

    {"v": 1, "job": "j-1", "index": 0, "data": "<base64>", "auth": "<hex HMAC-SHA256>"}

    ``auth`` is the HMAC (the terminal's command key) of the canonical JSON of every other
    field, so a stranger on the broker cannot feed a download.
    """

    job: str
    index: int
    data: bytes
    auth: str = ""

    def unsigned_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "job": self.job,
            "index": self.index,
            "data": base64.b64encode(self.data).decode("ascii"),
        }

    def encode(self) -> bytes:
        return canonical_json({**self.unsigned_json(), "auth": self.auth})

    @classmethod
    def decode(cls, payload: bytes | str) -> Chunk:
        data = _load(payload, "chunk")
        if data.get("v") != PROTOCOL_VERSION:
            raise _err("chunk.v", f"unsupported version {data.get('v')!r}")
        _unknown(data, {"v", "job", "index", "data", "auth"}, "chunk")
        job = check_job_id(data.get("job"), "chunk.job")
        index = _get(data, "index", int, "chunk")
        if index < 0:
            raise _err("chunk.index", f"must not be negative, not {index}")
        text = _get(data, "data", str, "chunk")
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as err:
            raise _err("chunk.data", f"not base64 ({err})") from err
        return cls(job, index, raw, _get(data, "auth", str, "chunk", required=False) or "")


def _chunk_mac(key: bytes, chunk: Chunk) -> str:
    return hmac.new(key, canonical_json(chunk.unsigned_json()), hashlib.sha256).hexdigest()


def sign_chunk(chunk: Chunk, key: bytes) -> Chunk:
    return Chunk(chunk.job, chunk.index, chunk.data, _chunk_mac(key, chunk))


def verify_chunk(chunk: Chunk, key: bytes) -> bool:
    return hmac.compare_digest(chunk.auth, _chunk_mac(key, chunk))


@dataclass(frozen=True, slots=True)
class JobReport:
    """A message of stream ``jobs`` (terminal -> cloud, through the durable outbox).

    kind ``state``: ``{"kind": "state", "job", "op", "name", "version", "state",
    "percent", "code"?, "message"?}`` — ``code``/``message`` on ``failed`` (the
    ``PackageError`` code, e.g. ``unknown_key``), ``message`` on ``done``.
    kind ``fetch``: ``{"kind": "fetch", "job", "next", "chunks", "chunk_size", "size", "sha256",
    "name", "version", "source"}`` — the terminal
    wants chunks from ``next`` on (after the job starts, after a restart, after a stall).
    kind ``ack``: ``{"kind": "ack", "job", "index", "next", "chunks"}`` — chunk ``index`` is
    on disk; ``next`` is the first chunk still missing.
    kind ``nack``: ``{"kind": "nack", "job", "index", "code", "message", "next"}`` — a chunk was
    refused and changed nothing.
    """

    kind: str
    job: str
    body: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> JobReport:
        kind = body.get("kind")
        if kind not in ("state", "fetch", "ack", "nack"):
            raise _err("jobs.kind", f"unknown {kind!r}")
        job = check_job_id(body.get("job"), "jobs.job")
        if kind == "state" and body.get("state") not in JOB_STATES:
            raise _err("jobs.state", f"unknown {body.get('state')!r}")
        for key in ("next", "index", "chunks"):
            if key in body and (isinstance(body[key], bool) or not isinstance(body[key], int)):
                raise _err(f"jobs.{key}", "must be an integer")
        return cls(kind, job, body)

    @property
    def state(self) -> str | None:
        value = self.body.get("state")
        return value if isinstance(value, str) else None

    @property
    def next(self) -> int:
        value = self.body.get("next", 0)
        return value if isinstance(value, int) else 0


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FINAL_STATES",
    "JOB_KINDS",
    "JOB_STATES",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "Chunk",
    "InstallJob",
    "JobReport",
    "PackageSource",
    "check_app_name",
    "check_job_id",
    "check_version",
    "parse_app_name",
    "sign_chunk",
    "verify_chunk",
]
