"""Virtual DL/T 645 meters: the meter model, its responder, and a bus of meters on a pty.

Layer: sim. Speaks to the terminal only through the bytes on a pty; uses the
``protocols.dlt645`` codec for every frame.
"""

from __future__ import annotations

from sim.meters.bus import BusCounters, MeterBus, address_matches
from sim.meters.model import CurvePoint, Faults, Freeze, Instant, PowerDown, Registers, VirtualMeter
from sim.meters.responder import MeterResponder

__all__ = [
    "BusCounters",
    "CurvePoint",
    "Faults",
    "Freeze",
    "Instant",
    "MeterBus",
    "MeterResponder",
    "PowerDown",
    "Registers",
    "VirtualMeter",
    "address_matches",
]
