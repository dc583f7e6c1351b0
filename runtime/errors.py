"""Exception tree of the runtime layer, under the roots of ``protocols.errors`` (re-exported here).

Layer: runtime. Every error a user can cause (a bad board.toml, a bad app manifest,
a hostile cloud command) is one of these, carries where it happened, and is
reported as a one-line message, never a traceback. Causes are chained with
``raise ... from err``; ``CancelledError`` is never caught here.
"""

from __future__ import annotations

from protocols.errors import ConfigError, ConfigErrors, TerminalError


class TerminalDied(TerminalError):
    """A part the terminal cannot run without (uplink, scheduler, supervisor...) failed.

    ``task`` names the part; the cause is chained. ``ttu run`` exits non-zero with it so the
    service manager restarts the terminal.
    """

    def __init__(self, task: str, reason: str) -> None:
        self.task = task
        self.reason = reason
        super().__init__(f"terminal stopped: {task} failed: {reason}")


class AppError(TerminalError):
    """An app failed: bad manifest, crash, hang, or capability violation."""

    def __init__(self, app: str, reason: str) -> None:
        self.app = app
        self.reason = reason
        super().__init__(f"app {app}: {reason}")


class AppNotReady(AppError):
    """An app did not report ready within its manifest's timeout."""


class CapabilityError(AppError):
    """An app used a topic or hal capability its manifest does not declare."""


class BusError(TerminalError):
    """Bus misuse or a failed request (no responder, timeout)."""


class RequestTimeout(BusError):
    """A bus request got no reply in time."""


class StoreError(TerminalError):
    """The store cannot do what was asked (corrupt database, disk full)."""


class MessageTooLarge(TerminalError):
    """An upward message bigger than one batch may carry (``protocols.cloud.MAX_MESSAGE_BYTES``):
    refused before anything is stored. Split the result into several messages."""

    def __init__(self, stream: str, size: int, limit: int) -> None:
        self.stream = stream
        self.size = size
        self.limit = limit
        super().__init__(f"uplink message on stream {stream!r} of {size} bytes is over {limit}")


class StoreFull(StoreError):
    """The store reached its size limit and only undelivered rows remain to prune."""


class CommandError(TerminalError):
    """A downlink command is unknown, malformed or refused.

    ``code`` is the machine-readable reason sent back in the reply.
    """

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


__all__ = [
    "AppError",
    "AppNotReady",
    "BusError",
    "CapabilityError",
    "CommandError",
    "ConfigError",
    "ConfigErrors",
    "MessageTooLarge",
    "RequestTimeout",
    "StoreError",
    "StoreFull",
    "TerminalDied",
    "TerminalError",
]
