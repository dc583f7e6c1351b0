"""The terminal runtime: the app container of the fusion terminal.

Layer: runtime. Owns the clock, scheduler, bus, store, supervisor, uplink, package
manager and CLI. Knows nothing of grid or protocol specifics: meters, DIs and
tariffs belong to apps/ and protocols/.
"""

RUNTIME_API_VERSION = 1
"""The app API version this runtime provides; app.toml declares the version it needs."""

__all__ = ["RUNTIME_API_VERSION"]
