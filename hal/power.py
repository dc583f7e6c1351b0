"""The terminal's own supply, shared by every ``PowerMonitor`` backend: state and change streams.

Layer: hal. ``SupplyHub`` keeps the current ``SupplyState`` and hands each change to every open
``SupplyStream`` (a ``hal.streams.Stream``, bounded: when a subscriber falls behind, its oldest
change is dropped and counted -- the latest state is always kept). Backends (``hal.linux.power``,
``hal.sim.power``) call ``SupplyHub.set``. Must not do I/O or know apps.
"""

from __future__ import annotations

from hal.interfaces import SupplyState
from hal.streams import Stream

SupplyStream = Stream[SupplyState]
"""One subscriber's supply changes: ``async for state in stream`` until ``aclose()``."""


class SupplyHub:
    """The current supply state and its subscribers."""

    def __init__(self, initial: SupplyState, *, maxlen: int = 64) -> None:
        self._state = initial
        self._maxlen = maxlen
        self._streams: list[SupplyStream] = []
        self.changes = 0

    @property
    def state(self) -> SupplyState:
        return self._state

    def set(self, state: SupplyState) -> bool:
        """Take ``state``; tell the subscribers if ``powered`` changed. Returns whether it did."""
        if state.powered == self._state.powered:
            self._state = SupplyState(state.powered, self._state.since, state.voltage_v)
            return False
        self._state = state
        self.changes += 1
        for s in list(self._streams):
            s.put(state)
        return True

    def stream(self) -> SupplyStream:
        s: SupplyStream = Stream(self._maxlen, on_close=self._remove)
        self._streams.append(s)
        return s

    def _remove(self, stream: SupplyStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    def close(self) -> None:
        for s in list(self._streams):
            s.close()


def check_holdup(holdup_s: float) -> float:
    if not holdup_s > 0:
        raise ValueError(f"hold-up time must be positive, not {holdup_s}")
    return float(holdup_s)


__all__ = ["SupplyHub", "SupplyStream", "check_holdup"]
