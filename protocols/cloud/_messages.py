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


def _load(payload: bytes | str, what: str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """A JSON object from ``payload``, its size, nesting and element count bounded before parsing."""
    from ._delivery import load_bounded  # (a cycle: _delivery builds on canonical_json here)

    return load_bounded(payload, what=what, max_bytes=max_bytes, max_elements=max_bytes // 2)


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
    """One stream's messages in seq order; ``acked`` is the terminal's last known cloud ack of the
    stream. Encoded with the ``first``/``last`` seq header (``_delivery.peek_batch``)."""

    terminal: str
    stream: str
    messages: tuple[UpMessage, ...]
    acked: int = 0

    def encode(self) -> bytes:
        from ._delivery import encode_batch, message_json

        return encode_batch(
            self.terminal,
            self.stream,
            self.acked,
            [
                (m.seq, message_json(m.key, m.seq, m.ts, canonical_json(m.body).decode()))
                for m in self.messages
            ],
        )

    @classmethod
    def decode(cls, payload: bytes | str, *, max_bytes: int | None = None) -> UpBatch:
        from ._delivery import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES

        data = _load(payload, "batch", max_bytes=max_bytes or MAX_BATCH_BYTES)
        terminal = _field(data, "terminal", str, "batch")
        stream = _field(data, "stream", str, "batch")
        raw = _field(data, "messages", list, "batch")
        acked = _field(data, "acked", int, "batch") if "acked" in data else 0
        if acked < 0:
            raise ProtocolError("batch.acked: negative", protocol="cloud")
        if not raw or len(raw) > MAX_BATCH_MESSAGES:
            raise ProtocolError(
                f"batch.messages: 1..{MAX_BATCH_MESSAGES} messages, not {len(raw)}", protocol="cloud"
            )
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
        return cls(terminal, stream, tuple(messages), acked)


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
    def decode(cls, payload: bytes | str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Command:
        """Parse the shape only (size, nesting and element count bounded before parsing);
        ``verify_command`` checks the signature."""
        data = _load(payload, "command", max_bytes=max_bytes)
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
