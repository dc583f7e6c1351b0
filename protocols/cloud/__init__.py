"""MQTT topic scheme and JSON payloads between terminals and the cloud master station.

Layer: protocols. Pure: builds and parses topics and payloads, signs and verifies
commands. No MQTT client, no I/O.

Topics (``T`` = terminal id, ``S`` = stream name)::

    ttu/T/up/S          terminal -> cloud   an UpBatch of one stream, QoS 1
                        built-in: readings, events, status, alarms, apps, jobs, reply, station;
                        any other stream name (``[a-z][a-z0-9_]{0,31}``) is an app's result
                        stream, declared in its manifest (``[uplink] streams``)
    ttu/T/state         terminal -> cloud   retained "online"/"offline" (offline is the will)
    ttu/T/down/cmd      cloud -> terminal   a Command, QoS 1
    ttu/T/down/chunk    cloud -> terminal   a Chunk of an app package, QoS 1 (HMAC like commands)
    ttu/T/down/ack      cloud -> terminal   an Ack: what the cloud durably stored, per stream (HMAC)

Delivery (``_delivery``): one limit for both ends (``MAX_BATCH_BYTES``, ``MAX_BATCH_MESSAGES``,
``MAX_MESSAGE_BYTES``), every JSON payload's nesting and element count bounded before parsing
(``check_json_shape``), stream priorities (``StreamPriority``) and the cloud's acks and nacks.
Paging (``_paging``): a result that grows with the station area goes up as ``part``/``parts``
messages that each fit ``MAX_MESSAGE_BYTES`` (``paged``), joined again by the cloud (``joined``).

UpBatch JSON (canonical: sorted keys, so the seq header comes first)::

    {"acked": 41, "first": 42, "last": 42,
     "messages": [{"body": {...}, "key": "T:readings:42", "seq": 42, "ts": 1767225600.0}, ...],
     "stream": "readings", "terminal": "T", "v": 1}

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

App lifecycle (``_jobs``). Commands ``app.install`` and ``app.upgrade`` take an
``InstallJob`` (job id, name, version, size, sha256, chunk_size, start_delay_s, source);
``app.rollback`` takes ``{"job", "name"}``; ``app.start``, ``app.stop``, ``app.uninstall``
take ``{"name"}``; ``app.list`` takes ``{}``. The reply of a job command only says the job
was accepted (``{"job", "state", "next", "chunks"}``); progress and the outcome arrive as
``JobReport`` messages on stream ``jobs``. The transfer is pulled by the terminal::

    cloud                                   terminal
      cmd app.install {job, size, sha256} ->  job persisted, reply {next: k}
                                          <-  jobs: fetch {job, next: k}
      chunk {job, index: k, data, auth}   ->  appended + fsynced to <job>.part
                                          <-  jobs: ack {job, index: k, next: k+1}
      ... (the cloud keeps a window of unacked chunks in flight) ...
                                          <-  jobs: state verifying/installing/starting/
                                              health-check/done | failed {code, message}

A chunk already on disk is acked again and changes nothing; a chunk out of order,
out of range, of the wrong length or for an unknown job is refused with a ``nack``.
Resume: after a broken link the terminal asks again (``fetch`` from its ``next``) when no
chunk arrived for a while; after a terminal restart the partial file and its ``next``
are still on disk, and the terminal sends ``fetch`` when it comes back; re-sending the same
``app.install`` (same job id and arguments) is answered with the current ``next``.
"""

from ._delivery import (
    BATCH_ENVELOPE_BYTES,
    DEFAULT_MAX_COMMAND_BYTES,
    DEFAULT_PRIORITIES,
    MAX_ACK_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_BYTES,
    NACK_BAD_BATCH,
    NACK_STORE_FAILED,
    NACK_TOO_LARGE,
    Ack,
    Nack,
    StreamPriority,
    batch_overhead,
    check_json_shape,
    encode_batch,
    load_bounded,
    message_json,
    peek_batch,
)
from ._jobs import (
    DEFAULT_CHUNK_SIZE,
    FINAL_STATES,
    JOB_STATES,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    Chunk,
    InstallJob,
    JobReport,
    PackageSource,
    check_app_name,
    check_job_id,
    parse_app_name,
    sign_chunk,
    verify_chunk,
)
from ._messages import (
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    Command,
    Reply,
    UpBatch,
    UpMessage,
    canonical_json,
    sign_command,
    verify_command,
)
from ._paging import (
    PAGE_SLACK_BYTES,
    PageError,
    joined,
    joined_rows,
    json_size,
    page_budget,
    paged,
    paged_lists,
    pages,
)
from ._topics import (
    RUNTIME_STREAMS,
    STREAM_NAME,
    STREAMS,
    ack_topic,
    check_stream,
    chunk_topic,
    command_topic,
    parse_topic,
    state_topic,
    up_topic,
    up_wildcard,
)
from ._views import CloudTools, Panel, Register, ResultReader, StoredResult

__all__ = [
    "BATCH_ENVELOPE_BYTES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_COMMAND_BYTES",
    "DEFAULT_PRIORITIES",
    "FINAL_STATES",
    "JOB_STATES",
    "MAX_ACK_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_CHUNK_SIZE",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MIN_CHUNK_SIZE",
    "NACK_BAD_BATCH",
    "NACK_STORE_FAILED",
    "NACK_TOO_LARGE",
    "PAGE_SLACK_BYTES",
    "PROTOCOL_VERSION",
    "RUNTIME_STREAMS",
    "STREAMS",
    "STREAM_NAME",
    "Ack",
    "Chunk",
    "CloudTools",
    "Command",
    "InstallJob",
    "JobReport",
    "Nack",
    "PackageSource",
    "PageError",
    "Panel",
    "Register",
    "Reply",
    "ResultReader",
    "StoredResult",
    "StreamPriority",
    "UpBatch",
    "UpMessage",
    "ack_topic",
    "batch_overhead",
    "canonical_json",
    "check_app_name",
    "check_job_id",
    "check_json_shape",
    "check_stream",
    "chunk_topic",
    "command_topic",
    "encode_batch",
    "joined",
    "joined_rows",
    "json_size",
    "load_bounded",
    "message_json",
    "page_budget",
    "paged",
    "paged_lists",
    "pages",
    "parse_app_name",
    "parse_topic",
    "peek_batch",
    "sign_chunk",
    "sign_command",
    "state_topic",
    "up_topic",
    "up_wildcard",
    "verify_chunk",
    "verify_command",
]
