"""Simulation hal backend: in-memory serial pairs, a recording watchdog, in-memory slots.

Layer: hal. Implements the same interfaces as ``hal.linux`` so the runtime and apps run
unchanged on a simulated board. Must not know apps or grid physics (that is ``sim/``).
"""

from hal.sim.memory import MemoryLink, memory_link_pair
from hal.sim.power import SimPowerMonitor
from hal.sim.slot import MemorySlot
from hal.sim.watchdog import MissedDeadline, SimWatchdog

__all__ = ["MemoryLink", "MemorySlot", "MissedDeadline", "SimPowerMonitor", "SimWatchdog", "memory_link_pair"]
