"""Exception tree of the hal layer.

Layer: hal. Third-party errors (``serial.SerialException``, ``OSError``) are wrapped
here at the boundary with ``raise ... from err``.
"""

from __future__ import annotations


class HalError(Exception):
    """Base of every hal error."""


class TransportError(HalError):
    """A link failed to carry bytes."""


class TransportTimeout(TransportError):
    """No (complete) answer within the transaction's timeout."""


class TransportClosed(TransportError):
    """The link is closed or was never opened."""


class TransportBroken(TransportError):
    """The OS reported an error on the link (device gone, I/O error)."""


class DeviceError(HalError):
    """A device answered with an abnormal reply; ``code`` is its error word."""

    def __init__(self, device: str, code: int, reason: str) -> None:
        self.device = device
        self.code = code
        self.reason = reason
        super().__init__(f"{device}: abnormal reply 0x{code:02X} ({reason})")


class CapabilityMissing(HalError):
    """The board has no such hal node (port, module, slot)."""


__all__ = [
    "CapabilityMissing",
    "DeviceError",
    "HalError",
    "TransportBroken",
    "TransportClosed",
    "TransportError",
    "TransportTimeout",
]
