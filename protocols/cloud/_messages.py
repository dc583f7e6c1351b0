"""Payloads of the terminal <-> cloud scheme: batches upward, signed commands downward."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from typing import Any

from protocols.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_PAYLOAD_BYTES = 1 << 20


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, no spaces, UTF-8): what signatures cover."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _load(payload: bytes | str, what: str) -> dict[str, Any]:
    if isinstance(payload, bytes) and len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"{what}: payload of {len(payload)} bytes is too large", protocol="cloud")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"{what}: not JSON ({err})", protocol="cloud") from err
    if not isinstance(data, dict):
        raise ProtocolError(f"{what}: must be a JSON object", protocol="cloud")
    return data


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    if name not in data:
        raise ProtocolError(f"{what}.{name}: missing", protocol="cloud")
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"{what}.{name}: wrong type {type(value).__name__}", protocol="cloud")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{what}.{name}: not a finite number", protocol="cloud")
    return value


@dataclass(frozen=True, slots=True)
class UpMessage:
    key: str
    seq: int
    ts: float
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "seq": self.seq, "ts": self.ts, "body": self.body}


@dataclass(frozen=True, slots=True)
class UpBatch:
    terminal: str
    stream: str
    messages: tuple[UpMessage, ...]

    def encode(self) -> bytes:
        return canonical_json(
            {
                "v": PROTOCOL_VERSION,
                "terminal": self.terminal,
                "stream": self.stream,
                "messages": [m.to_json() for m in self.messages],
            }
        )

    @classmethod
    def decode(cls, payload: bytes | str) -> UpBatch:
        data = _load(payload, "batch")
        terminal = _field(data, "terminal", str, "batch")
        stream = _field(data, "stream", str, "batch")
        raw = _field(data, "messages", list, "batch")
        messages = []
        for i, item in enumerate(raw):
            where = f"batch.messages[{i}]"
            if not isinstance(item, dict):
                raise ProtocolError(f"{where}: must be an object", protocol="cloud")
            messages.append(
                UpMessage(
                    key=_field(item, "key", str, where),
                    seq=_field(item, "seq", int, where),
                    ts=float(_field(item, "ts", (int, float), where)),
                    body=_field(item, "body", dict, where),
                )
            )
        return cls(terminal, stream, tuple(messages))


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0
    auth: str = ""

    def unsigned_json(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "id": self.id, "name": self.name, "args": self.args, "ts": self.ts}

    def encode(self) -> bytes:
        return canonical_json({**self.unsigned_json(), "auth": self.auth})

    @classmethod
    def decode(cls, payload: bytes | str) -> Command:
        """Parse the shape only; ``verify_command`` checks the signature."""
        data = _load(payload, "command")
        version = data.get("v")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"command.v: unsupported version {version!r}", protocol="cloud")
        unknown = set(data) - {"v", "id", "name", "args", "ts", "auth"}
        if unknown:
            raise ProtocolError(f"command: unknown fields {sorted(unknown)}", protocol="cloud")
        cmd_id = _field(data, "id", str, "command")
        if not cmd_id or len(cmd_id) > 128:
            raise ProtocolError("command.id: must be 1..128 characters", protocol="cloud")
        return cls(
            id=cmd_id,
            name=_field(data, "name", str, "command"),
            args=_field(data, "args", dict, "command") if "args" in data else {},
            ts=float(_field(data, "ts", (int, float), "command")),
            auth=_field(data, "auth", str, "command") if "auth" in data else "",
        )


def _mac(key: bytes, command: Command) -> str:
    return hmac.new(key, canonical_json(command.unsigned_json()), hashlib.sha256).hexdigest()


def sign_command(command: Command, key: bytes) -> Command:
    return Command(command.id, command.name, command.args, command.ts, _mac(key, command))


def verify_command(command: Command, key: bytes) -> bool:
    return hmac.compare_digest(command.auth, _mac(key, command))


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    ok: bool
    result: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.id, "ok": True, "result": self.result or {}}
        return {"id": self.id, "ok": False, "error": {"code": self.code, "message": self.message}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        ok = bool(_field(data, "ok", bool, "reply"))
        cmd_id = _field(data, "id", str, "reply")
        if ok:
            return cls(cmd_id, True, result=dict(data.get("result") or {}))
        err = _field(data, "error", dict, "reply")
        return cls(cmd_id, False, code=str(err.get("code")), message=str(err.get("message")))
