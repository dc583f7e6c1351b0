"""The roots of ttu's exception tree: what every layer above may raise for a user's mistake.

Layer: base. ``TerminalError`` is the base of every error a user can cause on the terminal or
its tools (the CLI prints it as one line, never a traceback); ``ConfigError`` names the file
and the key path of a bad configuration value, ``ConfigErrors`` collects those found in one
validation pass. The runtime derives its own errors from these (``runtime.errors``); the
simulator raises ``ConfigError`` for a bad scenario or network. Causes are chained with
``raise ... from err``; ``CancelledError`` is never caught here.
"""

from __future__ import annotations


class TerminalError(Exception):
    """Base of every error a user can cause (bad file, bad command, bad package)."""


class ConfigError(TerminalError):
    """A configuration file or value is invalid.

    ``path`` is the dotted key path inside the document (``rs485[2].baud``);
    ``source`` names the file when there is one.
    """

    def __init__(self, path: str, reason: str, *, source: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {reason}" if path else f"{where}{reason}")


class ConfigErrors(TerminalError):
    """Several configuration errors found in one validation pass."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


__all__ = ["ConfigError", "ConfigErrors", "TerminalError"]
