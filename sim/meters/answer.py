"""``answer(frame_bytes) -> reply_bytes | None`` for one virtual meter, in either protocol.

Layer: sim. For callers that carry meter frames without a line of their own -- the
virtual HPLC CCO (``sim/hplc``) forwards the 645/698 frame inside a Q/GDW 1376.2 AFN13 /
AFN02 request to the node and needs the node's reply bytes:

    from sim.meters import make_answer
    answer = make_answer(meter, "dlt698", clock=clock)   # or "dlt645"
    reply = answer(frame_bytes)      # bytes with FE preamble, or None: no reply (silence)

``frame_bytes`` may carry FE preamble; a frame the meter cannot decode, a frame for another
address, a broadcast (acted on, not answered), a meter that is off or that drew a miss
(``faults.miss_rate``) all give None. The meter's state is advanced to ``clock.now()``.
Carrier latency and loss belong to the CCO, not here.
"""

from __future__ import annotations

from collections.abc import Callable

from hal.clock import Clock
from protocols import dlt645, dlt698
from protocols.errors import ProtocolError
from sim.meters.bus import address_matches
from sim.meters.model import VirtualMeter
from sim.meters.responder import MeterResponder
from sim.meters.responder698 import DEFAULT_MAX_APDU, Dlt698Responder

Answer = Callable[[bytes], bytes | None]


def make_answer(
    meter: VirtualMeter,
    protocol: str,
    *,
    clock: Clock,
    preamble: int = 4,
    max_apdu: int = DEFAULT_MAX_APDU,
) -> Answer:
    """The answer function of ``meter`` speaking ``protocol`` ("dlt645" | "dlt698").

    A 698 reply longer than ``max_apdu`` comes back as its start fragment; each fragment
    acknowledgement frame passed in later returns the next piece."""
    if protocol == "dlt645":
        r645 = MeterResponder(meter, preamble=preamble)

        def answer645(frame_bytes: bytes) -> bytes | None:
            frames = [f for f in dlt645.Framer().feed(frame_bytes) if isinstance(f, dlt645.Frame)]
            if len(frames) != 1 or not meter.on:
                return None
            frame = frames[0]
            broadcast = frame.address == dlt645.BROADCAST_ADDRESS
            if not broadcast and not address_matches(frame.address, meter.address):
                return None
            if meter.misses():
                return None
            return r645.handle(frame, now=clock.now(), alone=True)

        return answer645
    if protocol == "dlt698":
        r698 = Dlt698Responder(meter, preamble=preamble, max_apdu=max_apdu)

        def answer698(frame_bytes: bytes) -> bytes | None:
            try:
                frames = [f for f in dlt698.Framer().feed(frame_bytes) if isinstance(f, dlt698.Frame)]
            except ProtocolError:
                return None
            if len(frames) != 1 or not meter.on:
                return None
            frame = frames[0]
            if frame.sa_type is not dlt698.AddressType.BROADCAST and (
                len(frame.sa) != 12 or not address_matches(frame.sa, meter.address)
            ):
                return None
            if meter.misses():
                return None
            return r698.handle(frame, now=clock.now())

        return answer698
    raise ValueError(f"protocol {protocol!r}: expected dlt645 or dlt698")


__all__ = ["Answer", "make_answer"]
