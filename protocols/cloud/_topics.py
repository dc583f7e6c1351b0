"""Topic names of the terminal <-> cloud MQTT scheme (see package docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocols.errors import ProtocolError

ROOT = "ttu"
STREAMS = ("readings", "events", "status", "alarms", "apps", "jobs", "reply", "station")
"""The built-in streams: each has its own meaning (and table) at the master station."""
RUNTIME_STREAMS = frozenset({"apps", "jobs", "reply", "station"})
"""Built-in streams only the runtime sends on; an app may not declare them."""
STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""Any stream: a lower-case word of at most 32 characters (apps' result streams: ``topology``)."""


def check_stream(stream: str) -> str:
    """``stream`` if it is a valid stream name, else ``ProtocolError``."""
    if not isinstance(stream, str) or not STREAM_NAME.match(stream):
        raise ProtocolError(
            f"stream {stream!r} is not a stream name (a-z, 0-9, '_', starting with a letter, at most 32)",
            protocol="cloud",
        )
    return stream


def _check_id(terminal: str) -> str:
    if not terminal or any(c in terminal for c in "/+#") or not terminal.isprintable():
        raise ProtocolError(f"terminal id {terminal!r} is not a valid topic level", protocol="cloud")
    return terminal


def up_topic(terminal: str, stream: str) -> str:
    return f"{ROOT}/{_check_id(terminal)}/up/{stream}"


def up_wildcard(terminal: str = "+") -> str:
    """Everything terminals send upward (``ttu/+/up/#``), or one terminal's."""
    return f"{ROOT}/{terminal}/up/#"


def state_topic(terminal: str) -> str:
    return f"{ROOT}/{_check_id(terminal)}/state"


def command_topic(terminal: str) -> str:
    return f"{ROOT}/{_check_id(terminal)}/down/cmd"


def ack_topic(terminal: str) -> str:
    """Where the cloud acknowledges what it stored (``protocols.cloud.Ack``)."""
    return f"{ROOT}/{_check_id(terminal)}/down/ack"


def chunk_topic(terminal: str) -> str:
    return f"{ROOT}/{_check_id(terminal)}/down/chunk"


@dataclass(frozen=True, slots=True)
class TopicParts:
    terminal: str
    direction: str  # "up" | "down" | "state"
    leaf: str  # stream name, "cmd", "chunk", or "" for state


def parse_topic(topic: str) -> TopicParts:
    """Split a scheme topic; ``ProtocolError`` for anything outside the scheme."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == ROOT and parts[2] == "state":
        return TopicParts(parts[1], "state", "")
    if len(parts) == 4 and parts[0] == ROOT and parts[2] in ("up", "down") and parts[3]:
        return TopicParts(parts[1], parts[2], parts[3])
    raise ProtocolError(f"topic {topic!r} is not in the ttu scheme", protocol="cloud")
