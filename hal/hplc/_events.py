"""Carrier events: AFN06 reports turned into ``CarrierEvent`` and fanned out to subscribers.

Layer: hal. ``EventHub`` hands every event to each open ``EventStream`` (one per
``Cco.events()`` call); a stream's queue is bounded and drops its oldest event when full,
counted in ``dropped``. ``ReportFilter`` recognises a report the module repeats (same R6
sequence and same data unit, within a window) so it is confirmed again but not delivered
twice. ``node_event`` maps an AFN06 F5 data unit to an event. Must not do I/O.
"""

from __future__ import annotations

from collections import OrderedDict

from hal.interfaces import CarrierEvent
from hal.streams import Stream
from protocols import dlt645
from protocols import gdw1376_2 as q
from protocols.errors import ProtocolError

PROTOCOL_NAMES = {q.DLT645_1997: "dlt645-1997", q.DLT645_2007: "dlt645", q.DLT698: "dlt698"}


class EventStream(Stream[CarrierEvent]):
    """One subscriber of carrier events: ``async for event in stream`` until ``aclose()`` (or the
    driver closes). Bounded, drops the oldest (``hal.streams.Stream``); ``on_close`` lets the hub
    forget it, or the isolated app's proxy tell the runtime to stop forwarding."""


class EventHub:
    """Fan-out of carrier events; ``published`` and ``dropped`` are totals over all streams."""

    def __init__(self, *, maxlen: int = 1024) -> None:
        if maxlen < 1:
            raise ValueError(f"event queue length must be >= 1, not {maxlen}")
        self._maxlen = maxlen
        self._streams: list[Stream[CarrierEvent]] = []
        self.published = 0
        self.dropped = 0

    def stream(self) -> EventStream:
        s = EventStream(self._maxlen, on_close=self.remove, on_drop=self._count_drop)
        self._streams.append(s)
        return s

    def _count_drop(self) -> None:
        self.dropped += 1

    def remove(self, stream: Stream[CarrierEvent]) -> None:
        if stream in self._streams:
            self._streams.remove(stream)

    @property
    def subscribers(self) -> int:
        return len(self._streams)

    def publish(self, event: CarrierEvent) -> None:
        self.published += 1
        for s in list(self._streams):
            s.put(event)

    def close(self) -> None:
        for s in list(self._streams):
            s.close()


class ReportFilter:
    """Remembers recent module reports by (AFN, Fn, R6 seq, data unit) for ``window`` seconds."""

    def __init__(self, *, window: float = 300.0, size: int = 256) -> None:
        self._window = window
        self._size = size
        self._seen: OrderedDict[tuple[int, int, int, bytes], float] = OrderedDict()

    def repeated(self, frame: q.Frame, now: float) -> bool:
        """True if this report was already seen (and delivered) within the window."""
        key = (frame.afn, frame.fn, frame.seq, frame.unit)
        seen = self._seen.get(key)
        while self._seen and (
            len(self._seen) > self._size or next(iter(self._seen.values())) < now - self._window
        ):
            self._seen.popitem(last=False)
        if seen is not None and now - seen <= self._window:
            return True
        self._seen[key] = now
        self._seen.move_to_end(key)
        return False


def _carried_address(protocol: int, content: bytes) -> str | None:
    try:
        if protocol in (q.DLT645_1997, q.DLT645_2007):
            return dlt645.decode(content).address
        decoded = q.decode_carried(protocol, content)
    except ProtocolError:
        return None
    address = getattr(decoded, "address", None)
    server = getattr(address, "address", address)  # a 698 SA object or a plain string
    return server if isinstance(server, str) else None


def node_event(frame: q.Frame, unit: q.NodeEvent, *, ts: float) -> CarrierEvent:
    """The ``CarrierEvent`` of one AFN06 F5 report (PROTOCOLS.md §3.5).

    Protocol 04 gives ``power_off`` / ``power_on`` with the listed addresses (a collector's
    report also carries each node's powered state in ``extra["powered"]``); 01-03 give
    ``meter_event`` with the meter's status frame as ``payload``; 05 gives ``node_refused``.
    Raises ``ProtocolError`` for a malformed power list.
    """
    base: dict[str, object] = {"device_type": unit.device_type, "seq": frame.seq}
    if unit.protocol == q.POWER_EVENT:
        power = unit.power
        assert power is not None
        kind = {q.POWER_OFF: "power_off", q.POWER_ON: "power_on"}.get(power.kind, f"power_event_{power.kind}")
        addresses = tuple(n.address for n in power.nodes)
        if unit.device_type == 0:
            base["collector"] = True
            base["powered"] = {n.address: bool(n.powered) for n in power.nodes}
        return CarrierEvent(kind, addresses, ts, unit.content, base)
    if unit.protocol in PROTOCOL_NAMES:
        address = frame.src or _carried_address(unit.protocol, unit.content)
        base["protocol"] = PROTOCOL_NAMES[unit.protocol]
        return CarrierEvent("meter_event", (address,) if address else (), ts, unit.content, base)
    if unit.protocol == q.REFUSED_NODE:
        return CarrierEvent("node_refused", (frame.src,) if frame.src else (), ts, unit.content, base)
    base["protocol"] = unit.protocol
    return CarrierEvent("node_event", (frame.src,) if frame.src else (), ts, unit.content, base)


__all__ = ["EventHub", "EventStream", "ReportFilter", "node_event"]
