"""Virtual meters: the meter model, its DL/T 645 and DL/T 698.45 responders, a bus of meters on a pty.

Layer: sim. Speaks to the terminal only through the bytes on a pty (or, through
``make_answer``, to the virtual CCO); uses the ``protocols.dlt645`` / ``protocols.dlt698``
codecs for every frame. ``make_answer(meter, protocol, clock=...)`` gives the
``answer(frame_bytes) -> reply_bytes | None`` function of one meter (see ``answer``).
"""

from __future__ import annotations

from sim.meters.answer import Answer, make_answer
from sim.meters.bus import PROTOCOLS, BusCounters, MeterBus, address_matches
from sim.meters.model import CurvePoint, Faults, Freeze, Instant, PowerDown, Registers, VirtualMeter
from sim.meters.responder import MeterResponder
from sim.meters.responder698 import Dlt698Responder

__all__ = [
    "PROTOCOLS",
    "Answer",
    "BusCounters",
    "CurvePoint",
    "Dlt698Responder",
    "Faults",
    "Freeze",
    "Instant",
    "MeterBus",
    "MeterResponder",
    "PowerDown",
    "Registers",
    "VirtualMeter",
    "address_matches",
    "make_answer",
]
