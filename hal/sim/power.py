"""``SimPowerMonitor``: the terminal's own supply as the simulator drives it.

Layer: hal (sim backend). The simulator owns one per run (the mains outlives the terminal's
restarts) and calls ``set_supply(powered, at)`` when the world (de-)energises the transformer's
LV side; the runtime reads it like any ``PowerMonitor``. Must not know the world or apps.
"""

from __future__ import annotations

from hal.interfaces import SupplyState
from hal.power import SupplyHub, SupplyStream, check_holdup


class SimPowerMonitor:
    """Mains present or not, set by the simulator; ``holdup_s`` from the board."""

    def __init__(self, *, holdup_s: float, powered: bool = True, since: float = 0.0) -> None:
        self._holdup_s = check_holdup(holdup_s)
        self._hub = SupplyHub(SupplyState(powered, since, 230.0 if powered else 0.0))

    @property
    def holdup_s(self) -> float:
        return self._holdup_s

    def state(self) -> SupplyState:
        return self._hub.state

    def changes(self) -> SupplyStream:
        return self._hub.stream()

    def set_supply(self, powered: bool, at: float) -> bool:
        """Mains on or off at ``at``; True if that is a change."""
        return self._hub.set(SupplyState(powered, at, 230.0 if powered else 0.0))

    @property
    def transitions(self) -> int:
        return self._hub.changes


__all__ = ["SimPowerMonitor"]
