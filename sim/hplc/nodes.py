"""The STAs behind the virtual CCO: ``SimNode`` and its meter's answer function.

Layer: sim. A node is an address, the protocol the CCO's archive should carry for it, and
``answer(frame_bytes, now) -> reply_bytes | None`` (the meter behind the STA). ``meter_node``
builds one for a ``sim.meters.VirtualMeter`` speaking DL/T 645 through ``MeterResponder``;
a DL/T 698.45 meter is served by whatever answer function ``sim.meters`` offers for it
(``answer698``), passed in by the station. Knows no 1376.2 and no timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from protocols import dlt645
from protocols import gdw1376_2 as q
from protocols.errors import ProtocolError
from sim.meters.model import VirtualMeter
from sim.meters.responder import MeterResponder

Answer = Callable[[bytes, float], bytes | None]
Latency = float | tuple[float, float]


@dataclass(slots=True)
class SimNode:
    address: str
    answer: Answer
    protocol: int = q.DLT645_2007
    phase: int = 0  # 0 unknown, 1..3 (AFN14 F1)
    latency_s: Latency | None = None  # None: the CCO's default distribution
    loss: float | None = None  # None: the CCO's default
    collector: bool = False  # reports power events with a state byte (device type 00)
    three_phase: bool = False
    meter: VirtualMeter | None = None
    _powered: bool = True

    @property
    def powered(self) -> bool:
        if self.meter is not None:
            return self.meter.on
        return self._powered

    @powered.setter
    def powered(self, on: bool) -> None:
        self._powered = on


def answer645(meter: VirtualMeter) -> Answer:
    """The DL/T 645 answer function of ``meter`` (``None`` = silence, e.g. a frame for another meter)."""
    responder = MeterResponder(meter, preamble=4)

    def answer(frame: bytes, now: float) -> bytes | None:
        try:
            request = dlt645.decode(frame)
        except ProtocolError:
            return None
        if request.address not in (meter.address, dlt645.BROADCAST_ADDRESS):
            return None
        return responder.handle(request, now=now, alone=True)

    return answer


def meter_node(
    meter: VirtualMeter,
    *,
    protocol: str = "dlt645",
    answer698: Callable[[VirtualMeter], Answer] | None = None,
    latency_s: Latency | None = None,
) -> SimNode:
    """A node for ``meter``; ``protocol`` "dlt698" needs ``answer698`` (from ``sim.meters``)."""
    phase = {"A": 1, "B": 2, "C": 3}.get(meter.phase, 0)
    three = meter.phase == "ABC"
    if protocol == "dlt698":
        if answer698 is None:
            raise ValueError(f"meter {meter.address}: no DL/T 698.45 answer function available")
        return SimNode(
            meter.address, answer698(meter), q.DLT698, phase, latency_s, meter=meter, three_phase=three
        )
    return SimNode(
        meter.address, answer645(meter), q.DLT645_2007, phase, latency_s, meter=meter, three_phase=three
    )


__all__ = ["Answer", "SimNode", "answer645", "meter_node"]
