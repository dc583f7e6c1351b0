"""Errors of the HPLC carrier-module driver (``hal.hplc``).

Layer: hal. Part of the ``HalError`` tree: a module that says no (AFN00 F2 deny) is a
``ModuleDenied`` naming the code and its reason; a node that did not answer is a
``TransportTimeout`` (``NodeTimeout``) so callers treat it like a silent RS-485 meter.
"""

from __future__ import annotations

from hal.errors import HalError, TransportError, TransportTimeout


class ModuleError(HalError):
    """The module answered with something the driver cannot use (bad unit, wrong reply)."""


class ModuleDenied(ModuleError):
    """AFN00 F2: the module refused a command; ``code`` is its error byte (PROTOCOLS.md §3.3)."""

    def __init__(self, what: str, code: int, reason: str) -> None:
        self.what = what
        self.code = code
        self.reason = reason
        super().__init__(f"{what}: module denied with code {code} ({reason})")


class NodeTimeout(TransportTimeout):
    """A slave node (meter) did not answer through the carrier network."""


class ModuleReset(TransportError):
    """The module restarted while a command was in flight; the command was lost."""


__all__ = ["ModuleDenied", "ModuleError", "ModuleReset", "NodeTimeout"]
