"""Exception tree of the protocols layer, and the roots of ttu's tree of user-caused errors.

Layer: protocols (the lowest layer: every other one may import it). A ``ProtocolError`` says
where in the input the problem is (``offset`` into the bytes fed) and why; framers return or
raise these, never another exception type, for any input.

``TerminalError`` is the base of every error a user can cause on the terminal or its tools
(the CLI prints it as one line, never a traceback); ``ConfigError`` names the file and the key
path of a bad configuration value, ``ConfigErrors`` collects those found in one validation
pass. The runtime derives its own errors from these (``runtime.errors``); the simulator raises
``ConfigError`` for a bad scenario or network. No I/O here.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that are not a valid frame (bad checksum, length, delimiter, field)."""

    def __init__(self, reason: str, *, offset: int | None = None, protocol: str = "") -> None:
        self.reason = reason
        self.offset = offset
        self.protocol = protocol
        where = f" at offset {offset}" if offset is not None else ""
        prefix = f"{protocol}: " if protocol else ""
        super().__init__(f"{prefix}{reason}{where}")


class EncodeError(ProtocolError):
    """A value cannot be encoded (out of range, wrong type for the field)."""


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


__all__ = ["ConfigError", "ConfigErrors", "EncodeError", "ProtocolError", "TerminalError"]
