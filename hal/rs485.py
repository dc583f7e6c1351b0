"""``Rs485Port``: one transaction at a time on a shared RS-485 bus, by priority, with device health.

Layer: hal. Sits on any ``SerialLink`` (pyserial tty, pty, in-memory pair). A meter bus
is half-duplex and shared: the master writes a request, the addressed meter answers,
and only then may the next request go out. This module arbitrates that:

* the bus is held by one transaction (or broadcast) at a time; waiters are served by
  ``Priority`` (CONTROL > EVENT > REALTIME > CURVE), FIFO within a priority;
* every transaction has its own timeout scope from ``clock.timeout`` (counted from the
  end of the request on the wire), so a dead meter costs its timeout and no more;
  after ``fail_threshold`` consecutive timeouts a device is *unavailable*: logged
  once, and its transactions then use the short ``unavailable_timeout`` until it
  answers again (logged once as recovered) -- the edge-triggered health of STYLE.md §9;
* a request goes out only after the line has been quiet for ``inter_frame_gap``
  seconds (default: one character time, the half-duplex turnaround of the device that
  answered last), or for the longer ``silence`` its caller asks for: Modbus RTU needs
  3.5 character times before a frame, DL/T 645 and 698.45 frames are delimited by their
  length and need none;
* every request, reply, stray frame and decode error is kept in a ``FrameTrace``.

A waiting caller that is cancelled leaves the queue; a transaction cancelled half-way
releases the bus and drops whatever half reply is in the input buffer.

Must not: know any protocol (frames are decoded by the caller's ``StreamDecoder`` and
recognised by its ``match``), retry on its own (callers decide), import runtime/ (the
clock is taken structurally), or sleep outside the given clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

from hal.errors import TransportError, TransportTimeout
from hal.health import DeviceHealth, DeviceHealthBook
from hal.interfaces import HalClock, Priority, SerialLink, StreamDecoder
from hal.slots import PrioritySlots, Reservation, Start
from hal.trace import Direction, FrameTrace

_log = logging.getLogger(__name__)

F = TypeVar("F")

# A request must be handed to the driver within its wire time plus this, or the bus is
# declared stuck (e.g. a USB adapter that stopped draining).
WRITE_SLACK = 1.0


class Rs485Port:
    """The transaction scheduler of one RS-485 port. ``async with`` opens/closes the link."""

    def __init__(
        self,
        link: SerialLink,
        *,
        clock: HalClock,
        name: str,
        trace_size: int = 256,
        inter_frame_gap: float | None = None,
        fail_threshold: int = 3,
        unavailable_timeout: float = 0.3,
    ) -> None:
        if unavailable_timeout <= 0:
            raise ValueError(f"unavailable_timeout must be positive, not {unavailable_timeout}")
        self._link = link
        self._clock = clock
        self._name = name
        self._gap = link.settings.wire_seconds(1) if inter_frame_gap is None else max(0.0, inter_frame_gap)
        self._unavailable_timeout = unavailable_timeout
        self._trace = FrameTrace(trace_size)
        # only timeouts count toward unavailability: a transport error is the port's fault
        self._health = DeviceHealthBook(
            clock=clock,
            name=name,
            fail_threshold=fail_threshold,
            log=_log,
            unavailable_note=f"; polling it with a {unavailable_timeout:g} s timeout",
        )
        self._bus = PrioritySlots(1)  # one transaction (or broadcast) holds the line
        self._idle_since: float | None = None  # monotonic end of the last activity on the line
        # port counters
        self._transactions = 0
        self._broadcasts = 0
        self._busy_seconds = 0.0
        self._decode_errors = 0
        self._stray_bytes = 0
        self._unmatched = 0
        self.last_exchange: tuple[int, int] = (0, 0)
        """Bytes of the last answered transaction on the wire: (request, reply incl. preamble/noise)."""

    # ------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return self._name

    @property
    def link(self) -> SerialLink:
        return self._link

    @property
    def trace(self) -> FrameTrace:
        return self._trace

    @property
    def inter_frame_gap(self) -> float:
        return self._gap

    # ------------------------------------------------------------------ arbitration

    async def _quiet(self, silence: float | None) -> None:
        """Wait until the line has been idle for ``silence`` (at least the port's gap)."""
        if self._idle_since is not None:
            needed = self._gap if silence is None else max(self._gap, silence)
            remaining = self._idle_since + needed - self._clock.monotonic()
            if remaining > 0:
                await self._clock.sleep(remaining)

    def reserve(self, priority: Priority, count: int, start: Start) -> Reservation:
        """Queue ``count`` transactions' places on the bus now; each one's task is started when
        its place comes up (``PrioritySlots.reserve``): a reading cycle need not start one task a
        meter to wait for the line."""
        return self._bus.reserve(priority, count, start)

    async def turn(self, priority: Priority) -> None:
        """Wait for the bus for this task's next transaction (``PrioritySlots.turn``)."""
        await self._bus.turn(priority)

    # ------------------------------------------------------------------ health

    def health(self, device: str) -> DeviceHealth:
        return self._health.snapshot(device)

    def statistics(self) -> dict[str, object]:
        return {
            "port": self._name,
            "link": self._link.name,
            "transactions": self._transactions,
            "broadcasts": self._broadcasts,
            "busy_seconds": self._busy_seconds,
            "busy": self._bus.in_use > 0,
            "queue": self._bus.waiting_by_priority(),
            "decode_errors": self._decode_errors,
            "stray_bytes": self._stray_bytes,
            "unmatched_frames": self._unmatched,
            "devices": {
                h.device: {
                    "available": h.available,
                    "consecutive_failures": h.consecutive_failures,
                    "ok": h.ok,
                    "timeouts": h.timeouts,
                    "errors": h.errors,
                    "bad_frames": h.bad_frames,
                    "last_ok": h.last_ok,
                }
                for h in self._health.snapshots()
            },
        }

    # ------------------------------------------------------------------ traffic

    def _record(self, direction: Direction, data: bytes, device: str, note: str) -> None:
        self._trace.record(direction, data, ts=self._clock.now(), device=device, note=note)

    def _count_stray(self, dropped: int, device: str) -> None:
        """Bytes nobody asked for (line noise, a late reply) dropped before a request: counted."""
        if dropped > 0:
            self._stray_bytes += dropped
            _log.debug(
                "%s: %d stray bytes dropped before a request to %s", self._name, dropped, device or "-"
            )

    def _discard_quietly(self) -> None:
        try:
            self._count_stray(self._link.discard_input(), "")
        except TransportError as err:  # the link is failing anyway; the caller sees the first error
            _log.debug("%s: discard after failed transaction: %s", self._name, err)

    async def transact(
        self,
        request: bytes,
        *,
        decoder: StreamDecoder[F],
        match: Callable[[F], bool],
        device: str,
        priority: Priority = Priority.REALTIME,
        timeout: float = 1.0,  # noqa: ASYNC109 (a per-device reply timeout, applied with clock.timeout)
        silence: float | None = None,
    ) -> F:
        """Send ``request`` and return the first decoded frame for which ``match`` is true.

        ``timeout`` (clock seconds) counts from the end of the request on the wire; time
        spent waiting for the bus is not included. ``silence`` is the idle line the
        request's protocol needs before it (seconds; the port's gap when None or shorter).
        Raises ``TransportTimeout`` (naming device and port) or the link's
        ``TransportClosed``/``TransportBroken``.
        """
        self._health.track(device)
        async with self._bus.hold(priority):
            await self._quiet(silence)
            limit = timeout if self._health.available(device) else min(timeout, self._unavailable_timeout)
            started = self._clock.monotonic()
            received = bytearray()
            traced = 0  # bytes of `received` already in the trace
            answered = False
            try:
                self._count_stray(self._link.discard_input(), device)
                self._record("tx", request, device, f"{priority.name.lower()} request")
                request_wire = self._link.settings.wire_seconds(len(request))
                try:
                    # An unavailable device gets the short limit for its first byte only: once it
                    # answers, a long reply may take its own line time (the caller's timeout).
                    async with self._clock.timeout(timeout + request_wire):
                        await self._link.write(request)
                        async with self._clock.timeout(limit + request_wire):
                            chunk = await self._link.read()
                        while True:
                            received += chunk
                            for item in decoder.feed(chunk):
                                if isinstance(item, Exception):
                                    self._decode_errors += 1
                                    self._health.count(device, "bad_frames")
                                    note = f"decode error: {item}"
                                elif match(item):
                                    answered = True
                                    self.last_exchange = (len(request), len(received))
                                    self._record("rx", bytes(received[traced:]), device, "reply")
                                    self._health.success(device)
                                    return item
                                else:
                                    self._unmatched += 1
                                    self._health.count(device, "bad_frames")
                                    note = f"not the reply: {item!r:.120}"
                                self._record("rx", bytes(received[traced:]), device, note)
                                traced = len(received)
                            chunk = await self._link.read()
                except TimeoutError as err:
                    waited = limit if not received else timeout
                    note = f"timeout after {waited:g} s, {len(received)} bytes received"
                    self._record("rx", bytes(received[traced:]), device, note)
                    self._health.failure(device, "timeouts")
                    raise TransportTimeout(
                        f"{self._name}: {device} did not answer within {waited:g} s "
                        f"({len(received)} bytes received)"
                    ) from err
                except TransportError:
                    self._health.count(device, "errors")
                    raise
            finally:
                self._transactions += 1
                now = self._clock.monotonic()
                self._busy_seconds += now - started
                self._idle_since = now
                if not answered:
                    self._discard_quietly()  # a half reply must not be read as the next one's answer

    async def send(
        self,
        request: bytes,
        *,
        device: str = "broadcast",
        priority: Priority = Priority.REALTIME,
    ) -> None:
        """Write a frame nobody answers (broadcast time sync, freeze); hold the bus for its wire time."""
        async with self._bus.hold(priority):
            await self._quiet(None)
            started = self._clock.monotonic()
            wire = self._link.settings.wire_seconds(len(request))
            try:
                self._record("tx", request, device, f"{priority.name.lower()} broadcast")
                try:
                    async with self._clock.timeout(wire + WRITE_SLACK):
                        await self._link.write(request)
                except TimeoutError as err:
                    raise TransportTimeout(
                        f"{self._name}: could not hand {len(request)} bytes for {device} to the driver"
                    ) from err
                # the driver took the bytes; they are on the wire for `wire` seconds more
                await self._clock.sleep(wire)
            finally:
                self._broadcasts += 1
                now = self._clock.monotonic()
                self._busy_seconds += now - started
                self._idle_since = now

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self._link.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._link.close()

    def __repr__(self) -> str:
        return f"<Rs485Port {self._name} on {self._link.name}>"


__all__ = ["WRITE_SLACK", "DeviceHealth", "Rs485Port"]
