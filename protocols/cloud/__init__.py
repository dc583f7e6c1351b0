"""MQTT topic scheme and JSON payloads between terminals and the cloud master station.

Layer: protocols. Pure: builds and parses topics and payloads, signs and verifies
commands. No MQTT client, no I/O.

Topics (``T`` = terminal id, ``S`` = stream name)::

    ttu/T/up/S          terminal -> cloud   an UpBatch of one stream, QoS 1
                        streams: readings, events, status, alarms, apps, jobs, reply
    ttu/T/state         terminal -> cloud   retained "online"/"offline" (offline is the will)
    ttu/T/down/cmd      cloud -> terminal   a Command, QoS 1
    ttu/T/down/chunk    cloud -> terminal   app-package chunks (package issue)

UpBatch JSON::

    {"v": 1, "terminal": "T", "stream": "readings",
     "messages": [{"key": "T:readings:42", "seq": 42, "ts": 1767225600.0, "body": {...}}, ...]}

``key`` is the idempotency key: the cloud de-duplicates on it (delivery is
at-least-once). ``seq`` increases by one per message within (terminal, stream), so
the cloud can see order and gaps.

Command JSON (down) and Reply JSON (up, stream ``reply``, as the body of a message)::

    {"v": 1, "id": "c-123", "name": "archive.replace", "args": {...}, "ts": 1767225600.0,
     "auth": "<hex HMAC-SHA256 of the canonical JSON of every other field>"}
    {"id": "c-123", "ok": true, "result": {...}}
    {"id": "c-123", "ok": false, "error": {"code": "bad_args", "message": "args.meters[3].address: ..."}}

Error codes: ``bad_json``, ``bad_command`` (shape), ``unauthenticated``,
``unknown_command``, ``bad_args``, ``failed`` (the handler raised), ``expired``.
"""

from ._messages import (
    PROTOCOL_VERSION,
    Command,
    Reply,
    UpBatch,
    UpMessage,
    canonical_json,
    sign_command,
    verify_command,
)
from ._topics import (
    STREAMS,
    chunk_topic,
    command_topic,
    parse_topic,
    state_topic,
    up_topic,
    up_wildcard,
)

__all__ = [
    "PROTOCOL_VERSION",
    "STREAMS",
    "Command",
    "Reply",
    "UpBatch",
    "UpMessage",
    "canonical_json",
    "chunk_topic",
    "command_topic",
    "parse_topic",
    "sign_command",
    "state_topic",
    "up_topic",
    "up_wildcard",
    "verify_command",
]
