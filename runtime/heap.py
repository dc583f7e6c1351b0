"""The process heap once the terminal is up: frozen, so later collections skip it.

Layer: runtime. A full (generation 2) collection walks every object the garbage collector
tracks; after start-up most of them are modules, classes, codec tables and the apps' own
long-lived state, which live as long as the process. Walking them is a pause of the whole
event loop (95-190 ms on a loaded 2-core machine with the simulator's libraries loaded: an
outage report waiting behind it misses its 100 ms). ``settle`` collects once and then freezes
what is left (``gc.freeze``): from then on collections look only at objects made later.

Must not be called per request or on a timer: a frozen object that later becomes cyclic
garbage is never collected (refcounting still frees the rest), which is why it runs once,
after start-up, and only in the terminal's own process (``ttu run``), not in a test session.

``give_back`` hands the C allocator's free pages back to the operating system (glibc's
``malloc_trim``). The daily jobs (topology, line loss) make and drop large arrays; the free
chunks they leave between live ones stay in the process's RSS, a few MB a day, until trimmed.
The terminal calls it after its hourly store prune, not per request (it walks the free lists).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable


def settle() -> int:
    """Collect, then freeze every object left; returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    return trim


_TRIM = _malloc_trim()


def give_back() -> bool:
    """Return the allocator's free pages to the operating system; False where the C library
    has no way to (only glibc has ``malloc_trim``)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


__all__ = ["give_back", "settle"]
