"""Exception tree of the protocols layer.

Layer: protocols. A ``ProtocolError`` says where in the input the problem is
(``offset`` into the bytes fed) and why; framers return or raise these, never
another exception type, for any input.
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


__all__ = ["EncodeError", "ProtocolError"]
