"""End-to-end delivery of the terminal <-> cloud scheme: the shared limits, stream priorities, acks.

Layer: protocols. Pure: limits, a bounded JSON shape check, batch encoding, ack/nack payloads.
No I/O.

* **Limits** both ends apply: an ``UpBatch`` is at most ``MAX_BATCH_BYTES`` encoded and
  ``MAX_BATCH_MESSAGES`` messages; one message body at most ``MAX_MESSAGE_BYTES`` (so a batch of
  one always fits). Every JSON payload is checked by ``check_json_shape`` before ``json.loads``:
  nesting depth and element count are bounded by a scan that cannot recurse, so a payload of
  100,000 brackets is refused in linear time instead of overflowing the parser's stack.
* **Priorities**: a stream declares how urgent it is (``StreamPriority``); the uplink always sends
  the most urgent stream first, so an outage report overtakes an hour of readings.
* **Acks** (cloud -> terminal, ``ttu/T/down/ack``, QoS 1, HMAC-signed like commands)::

      {"v": 1, "acks": {"readings": 1234}, "seen": {"readings": 1300}, "batch": ["readings", 1291, 1300],
       "nacks": [{"stream": "readings", "first": 1235, "last": 1300, "code": "too_large",
                  "reason": "payload of 2105605 bytes is over 262144"}], "auth": "<hex>"}

  ``acks[S]``: the highest seq of stream S up to which the cloud has durably stored every
  message (contiguous); ``seen[S]``: the highest it stored at all (above ``acks``: a gap the
  terminal fills); ``batch``: the batch it answers (a batch sent before it on the same
  connection and still unacknowledged was lost: MQTT keeps order). A nack names a batch the
  cloud refused (``too_large``: split it; anything else: send it again later). The terminal
  keeps a row until ``acks`` covers it.
* **Batch header**: an encoded batch starts ``{"acked":A,"first":F,"last":L,`` (canonical JSON
  sorts keys), so the cloud can name a batch too large to parse from its first bytes
  (``peek_batch``); ``acked`` is the terminal's last known ack of the stream, where a cloud that
  has never seen the stream starts its contiguous count.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from protocols.errors import ProtocolError

from ._messages import PROTOCOL_VERSION, canonical_json

MAX_BATCH_BYTES = 256 << 10
MAX_BATCH_MESSAGES = 500
BATCH_ENVELOPE_BYTES = 1 << 10  # header and one message's key/seq/ts, with room to spare
MAX_MESSAGE_BYTES = MAX_BATCH_BYTES - BATCH_ENVELOPE_BYTES
MAX_JSON_DEPTH = 32
MAX_ACK_BYTES = 64 << 10
DEFAULT_MAX_COMMAND_BYTES = 64 << 10  # board uplink.max_command_bytes; a chunk's limit is its own

NACK_TOO_LARGE = "too_large"  # split it
NACK_BAD_BATCH = "bad_batch"  # not a batch (a bug on one side): sent again later, counted
NACK_STORE_FAILED = "store_failed"  # the cloud could not store it: sent again later


class StreamPriority(enum.IntEnum):
    """How urgent a stream is; lower goes first. Within a stream, order is always kept."""

    URGENT = 0  # outage reports, alarms, command replies: ahead of any backlog
    NORMAL = 1  # events, job and app reports, status, app results
    BULK = 2  # readings: the backlog that may wait

    @classmethod
    def parse(cls, value: str | int | StreamPriority) -> StreamPriority:
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"stream priority {value!r}: expected urgent, normal or bulk") from None
        return cls(value)


DEFAULT_PRIORITIES: Mapping[str, StreamPriority] = {
    "reply": StreamPriority.URGENT,
    "alarms": StreamPriority.URGENT,
    "readings": StreamPriority.BULK,
}


# -- a JSON shape check that cannot recurse -----------------------------------------------------

# a string (possessive: never backtracks; an unterminated one runs to the end) or a structural byte
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{},]', re.S)


#: a string alone (the rule of ``_TOKENS``, unrolled): what the fast path cuts out before counting
_STRINGS = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.S)
#: every byte but the four brackets (``bytes.translate`` deletes them)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: an innermost pair: removing every one of them takes one level of nesting off
_INNERMOST = re.compile(rb"\[\]|\{\}")


def check_json_shape(
    payload: bytes, *, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH, max_elements: int
) -> None:
    """Refuse, before parsing, a payload that is too big, nested deeper than ``max_depth`` or has
    more than ``max_elements`` values. No recursion: a fast pass in C (strings cut out, the
    brackets peeled one level at a time) accepts what is clearly within the bounds; anything
    else is decided by one pass over its structural characters, which names where it fails."""
    if len(payload) > max_bytes:
        raise ProtocolError(f"{what}: payload of {len(payload)} bytes is over {max_bytes}", protocol="cloud")
    if _clearly_within(payload, max_depth=max_depth, max_elements=max_elements):
        return
    _check_by_tokens(payload, what=what, max_depth=max_depth, max_elements=max_elements)


def _clearly_within(payload: bytes, *, max_depth: int, max_elements: int) -> bool:
    """True only when ``payload`` is well bracketed, at most ``max_depth`` deep and has at most
    ``max_elements`` values (containers and commas, as ``_check_by_tokens`` counts them)."""
    if b"\\" in payload:
        skeleton = _STRINGS.sub(b"", payload)
    else:  # no escapes: every other quote opens a string, and splitting is cheaper than a regex
        pieces = payload.split(b'"')
        if len(pieces) % 2 == 0:
            return False  # a string runs to the end: the token pass decides
        skeleton = b"".join(pieces[::2])
    elements = skeleton.count(b",") + skeleton.count(b"[") + skeleton.count(b"{")
    if elements > max_elements:
        return False
    nesting = skeleton.translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not nesting:
            return True
        nesting, peeled = _INNERMOST.subn(b"", nesting)
        if not peeled:
            return False  # unbalanced: the token pass decides
    return not nesting


def _check_by_tokens(payload: bytes, *, what: str, max_depth: int, max_elements: int) -> None:
    depth = elements = 0
    for match in _TOKENS.finditer(payload):
        token = match.group()
        first = token[0]
        if first in b"[{":
            depth += 1
            elements += 1
            if depth > max_depth:
                raise ProtocolError(
                    f"{what}: nested deeper than {max_depth} levels (at byte {match.start()})",
                    protocol="cloud",
                )
        elif first in b"]}":
            depth -= 1
        elif first in b",":
            elements += 1
            if elements > max_elements:
                raise ProtocolError(f"{what}: more than {max_elements} values", protocol="cloud")


def load_bounded(
    payload: bytes | str, *, what: str, max_bytes: int, max_elements: int, max_depth: int = MAX_JSON_DEPTH
) -> dict[str, Any]:
    """``json.loads`` of a JSON object, after ``check_json_shape``; ``ProtocolError`` otherwise."""
    raw = payload.encode() if isinstance(payload, str) else bytes(payload)
    check_json_shape(raw, what=what, max_bytes=max_bytes, max_depth=max_depth, max_elements=max_elements)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ProtocolError(f"{what}: not JSON ({err})", protocol="cloud") from err
    if not isinstance(data, dict):
        raise ProtocolError(f"{what}: must be a JSON object", protocol="cloud")
    return data


# -- batches --------------------------------------------------------------------------------------


def message_json(key: str, seq: int, ts: float, body_json: str) -> str:
    """One message of a batch, canonical (sorted keys), around an already-encoded body."""
    return f'{{"body":{body_json},"key":{json.dumps(key)},"seq":{int(seq)},"ts":{json.dumps(float(ts))}}}'


def encode_batch(terminal: str, stream: str, acked: int, messages: Iterable[tuple[int, str]]) -> bytes:
    """An ``UpBatch`` from ``(seq, message_json)`` pairs in seq order: the header first (see the
    module docstring), byte for byte what ``UpBatch.encode`` gives for the same content."""
    items = list(messages)
    if not items:
        raise ProtocolError("a batch needs at least one message", protocol="cloud")
    first, last = items[0][0], items[-1][0]
    head = f'{{"acked":{int(acked)},"first":{int(first)},"last":{int(last)},"messages":['
    tail = f'],"stream":{json.dumps(stream)},"terminal":{json.dumps(terminal)},"v":{PROTOCOL_VERSION}}}'
    return (head + ",".join(m for _, m in items) + tail).encode()


def batch_overhead(terminal: str, stream: str) -> int:
    """Bytes of a batch besides its messages and their commas (numbers at their widest)."""
    return len(encode_batch(terminal, stream, 10**15, [(10**15, "")])) + 20


_PEEK = re.compile(rb'^\{"acked":(\d{1,18}),"first":(\d{1,18}),"last":(\d{1,18}),')


def peek_batch(payload: bytes) -> tuple[int, int] | None:
    """``(first, last)`` seq from a batch's first bytes, without parsing it (it may be too big)."""
    match = _PEEK.match(payload[:128])
    return None if match is None else (int(match[2]), int(match[3]))


# -- acks -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Nack:
    stream: str
    first: int | None
    last: int | None
    code: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"stream": self.stream, "first": self.first, "last": self.last, "code": self.code,
                "reason": self.reason}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Ack:
    """What the cloud durably stored (``acks``: contiguous; ``seen``: at all) and what it refused."""

    acks: Mapping[str, int]
    seen: Mapping[str, int]
    nacks: tuple[Nack, ...] = ()
    batch: tuple[str, int, int] | None = None  # the batch (stream, first, last) this ack answers
    auth: str = ""

    def unsigned_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "acks": dict(self.acks),
            "seen": dict(self.seen),
            "nacks": [n.to_json() for n in self.nacks],
        }
        if self.batch is not None:
            out["batch"] = list(self.batch)
        return out

    def encode(self) -> bytes:
        return canonical_json({**self.unsigned_json(), "auth": self.auth})

    def signed(self, key: bytes) -> Ack:
        return Ack(self.acks, self.seen, self.nacks, self.batch, _mac(key, self))

    def verify(self, key: bytes) -> bool:
        return hmac.compare_digest(self.auth, _mac(key, self))

    @classmethod
    def decode(cls, payload: bytes | str) -> Ack:
        data = load_bounded(payload, what="ack", max_bytes=MAX_ACK_BYTES, max_elements=10_000)
        if data.get("v") != PROTOCOL_VERSION:
            raise ProtocolError(f"ack.v: unsupported version {data.get('v')!r}", protocol="cloud")
        acks = _seq_map(data.get("acks"), "ack.acks")
        seen = _seq_map(data.get("seen", {}), "ack.seen")
        raw = data.get("nacks", [])
        if not isinstance(raw, list):
            raise ProtocolError("ack.nacks: must be a list", protocol="cloud")
        nacks = tuple(_nack(item, f"ack.nacks[{i}]") for i, item in enumerate(raw))
        auth = data.get("auth", "")
        if not isinstance(auth, str):
            raise ProtocolError("ack.auth: must be a string", protocol="cloud")
        batch = data.get("batch")
        if batch is not None:
            if not (isinstance(batch, list) and len(batch) == 3 and isinstance(batch[0], str)):
                raise ProtocolError("ack.batch: must be [stream, first, last]", protocol="cloud")
            first, last = _seq(batch[1], "ack.batch[1]"), _seq(batch[2], "ack.batch[2]")
            assert first is not None and last is not None
            batch = (batch[0], first, last)
        return cls(acks, seen, nacks, batch, auth)


def _mac(key: bytes, ack: Ack) -> str:
    return hmac.new(key, canonical_json(ack.unsigned_json()), hashlib.sha256).hexdigest()


def _seq(value: Any, where: str, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{where}: not a sequence number", protocol="cloud")
    return value


def _seq_map(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: must be an object", protocol="cloud")
    out: dict[str, int] = {}
    for stream, seq in value.items():
        number = _seq(seq, f"{where}.{stream}")
        assert number is not None
        out[str(stream)] = number
    return out


def _nack(item: Any, where: str) -> Nack:
    if not isinstance(item, dict):
        raise ProtocolError(f"{where}: must be an object", protocol="cloud")
    stream, code, reason = item.get("stream"), item.get("code"), item.get("reason", "")
    if not isinstance(stream, str) or not stream or not isinstance(code, str) or not isinstance(reason, str):
        raise ProtocolError(f"{where}: needs stream and code strings", protocol="cloud")
    return Nack(
        stream,
        _seq(item.get("first"), f"{where}.first", optional=True),
        _seq(item.get("last"), f"{where}.last", optional=True),
        code,
        reason[:500],
    )


__all__ = [
    "BATCH_ENVELOPE_BYTES",
    "DEFAULT_MAX_COMMAND_BYTES",
    "DEFAULT_PRIORITIES",
    "MAX_ACK_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "NACK_BAD_BATCH",
    "NACK_STORE_FAILED",
    "NACK_TOO_LARGE",
    "Ack",
    "Nack",
    "StreamPriority",
    "batch_overhead",
    "check_json_shape",
    "encode_batch",
    "load_bounded",
    "message_json",
    "peek_batch",
]
