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
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect, then freeze every object left; returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


__all__ = ["settle"]
