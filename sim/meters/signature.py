"""A virtual device's signature-current (特征电流) state: the sends it was ordered to make and the
signatures it heard, grouped into result events as the meter firmware does.

Layer: sim. Pure state, no I/O: the responders read and write it (DL/T 645 ``0408 0001`` /
``0308 05nn``, DL/T 698.45 ACTION 4E08 method 127 / GET 4E08 attribute 2) and the world decides,
through ``on_send``, who hears a send (``sim.world``). Times are true UTC epoch seconds;
detections carry the hearing unit's own local clock, like its records. Firmware rules kept:
at most one send per ``MIN_INTERVAL_S``; at most 4 detections per result event, which closes
``RESULT_TIMEOUT_S`` after its first detection; the 10 most recent events are kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.signature import MAX_DETECTIONS, MIN_INTERVAL_S, RESULT_TIMEOUT_S, Detection

SendHook = Callable[[float], None]  # the true time the device sends at


@dataclass(slots=True)
class _Event:
    opened: float  # true time of its first detection
    detections: list[Detection] = field(default_factory=list)


@dataclass(slots=True)
class SignatureState:
    on_send: SendHook | None = None  # set by the world: what a send does in the network
    sends: list[float] = field(default_factory=list)  # true times of the sends accepted
    refused: int = 0  # orders inside the minimum interval: not sent (as the firmware does)
    events: deque[_Event] = field(default_factory=lambda: deque(maxlen=10))  # newest first

    def order(self, at: float) -> bool:
        """An order to send at true time ``at``; False when inside the minimum interval."""
        if self.sends and abs(at - self.sends[-1]) < MIN_INTERVAL_S:
            self.refused += 1
            return False
        self.sends.append(at)
        if self.on_send is not None:
            self.on_send(at)
        return True

    def hear(self, detection: Detection, t: float) -> None:
        """This unit heard a signature at true time ``t``."""
        current = self.events[0] if self.events else None
        if (
            current is None
            or t - current.opened >= RESULT_TIMEOUT_S
            or len(current.detections) >= MAX_DETECTIONS
        ):
            current = _Event(t)
            self.events.appendleft(current)
        current.detections.append(detection)

    def event(self, last: int) -> list[Detection]:
        """The detections of the ``last``-th most recent result event (1 = newest); [] if none."""
        return list(self.events[last - 1].detections) if 1 <= last <= len(self.events) else []

    def heard(self) -> list[Detection]:
        """Every detection kept, newest first."""
        return [d for e in self.events for d in reversed(e.detections)]

    @property
    def count(self) -> int:
        return len(self.events)


__all__ = ["SendHook", "SignatureState"]
