"""DL/T 645-2007 master over any meter transport (an RS-485 port or the HPLC carrier).

Layer: hal. One request/response exchange per call, run through the transport's
priority arbitration; follow-up frames (B1H/B2H) are fetched and joined; abnormal replies
(D1H...) raise ``DeviceError`` with the error word. Keeps a tally of the bytes of its own
exchanges so callers can compare a cycle with its wire-time lower bound (RS-485).
Must not know schedules, archives or what the values are used for.
"""

from __future__ import annotations

import functools
from datetime import datetime

from hal.errors import DeviceError
from hal.interfaces import Priority
from hal.meters.transport import MIN_RESPONSE_DELAY_S, MeterTransport, Rs485Transport, WireTally
from hal.rs485 import Rs485Port
from protocols import dlt645
from protocols.errors import ProtocolError

MAX_FOLLOW_UPS = 16
PREAMBLE = 4
READ_REQUESTS_KEPT = 8192  # (meter, DI) read requests kept encoded: ~2.5 MB at most


@functools.lru_cache(maxsize=READ_REQUESTS_KEPT)
def _read_request(address: str, di: int) -> tuple[dlt645.Frame, bytes]:
    """The read request of ``di`` from ``address`` and its wire bytes: the same every cycle."""
    request = dlt645.read_request(address, di)
    return request, dlt645.encode(request, preamble=PREAMBLE)


class Dlt645Master:
    """Reads and commands DL/T 645-2007 meters on one transport.

    ``async with``-free: the port's / module's lifetime is owned by whoever opened it. An
    ``Rs485Port`` given directly is wrapped in an ``Rs485Transport``.
    """

    def __init__(self, transport: MeterTransport | Rs485Port, *, timeout: float = 1.0) -> None:
        self._transport: MeterTransport = (
            Rs485Transport(transport) if isinstance(transport, Rs485Port) else transport
        )
        self._timeout = timeout
        self.tally = WireTally()

    @property
    def transport(self) -> MeterTransport:
        return self._transport

    @property
    def port(self) -> Rs485Port:
        """The RS-485 port under this master (``TypeError`` on the carrier or a proxied port)."""
        if isinstance(self._transport, Rs485Transport) and isinstance(self._transport.port, Rs485Port):
            return self._transport.port
        raise TypeError(f"{self._transport!r} is not an RS-485 port")

    async def _exchange(
        self,
        request: dlt645.Frame,
        *,
        priority: Priority,
        timeout: float | None,  # noqa: ASYNC109 (the reply timeout, applied by the port with clock.timeout)
        raw: bytes | None = None,
    ) -> dlt645.Frame:
        """One exchange of ``request`` (its wire bytes ``raw`` when the caller has them)."""
        if raw is None:
            raw = dlt645.encode(request, preamble=PREAMBLE)
        code = request.control & 0x1F
        wildcard = "A" in request.address

        def is_reply(frame: dlt645.Frame) -> bool:
            return (
                frame.is_response
                and frame.control & 0x1F == code
                and (wildcard or frame.address == request.address)
            )

        reply = await self._transport.transact(
            raw,
            decoder=dlt645.Framer(),
            match=is_reply,
            device=request.address,
            priority=priority,
            timeout=self._timeout if timeout is None else timeout,
        )
        self.tally.add(*self._transport.last_exchange)
        if reply.is_abnormal:
            error = dlt645.parse_error(reply)
            raise DeviceError(request.address, error.bits, ", ".join(error.names) or "abnormal reply")
        return reply

    async def read(
        self,
        address: str,
        di: int,
        *,
        priority: Priority = Priority.REALTIME,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout, see _exchange)
    ) -> dlt645.ReadResult:
        """Read one data identifier; joins follow-up frames into one result."""
        request, raw = _read_request(address, di)
        reply = await self._exchange(request, priority=priority, timeout=timeout, raw=raw)
        result = dlt645.parse_read_response(reply)
        if not result.follow_up:
            return result
        payload = bytearray(reply.data[4:])
        for seq in range(1, MAX_FOLLOW_UPS + 1):
            reply = await self._exchange(
                dlt645.read_followup_request(address, di, seq), priority=priority, timeout=timeout
            )
            part = dlt645.parse_read_response(reply)
            payload += reply.data[4:-1]
            if not part.follow_up:
                break
        else:
            raise ProtocolError(f"{address}: more than {MAX_FOLLOW_UPS} follow-up frames for DI 0x{di:08X}")
        return dlt645.decode_payload(di, bytes(payload))

    async def read_load_curve(
        self,
        address: str,
        *,
        start: datetime,
        count: int,
        priority: Priority = Priority.CURVE,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout, see _exchange)
    ) -> dlt645.ReadResult:
        """Read ``count`` 15-min load records from the meter's memory, starting at ``start`` (meter time)."""
        request = dlt645.load_curve_request(address, start=start, count=count)
        reply = await self._exchange(request, priority=priority, timeout=timeout)
        return dlt645.parse_read_response(reply)

    async def broadcast_time(self, when: datetime, *, priority: Priority = Priority.CONTROL) -> None:
        """Broadcast time sync (08H, address 99...99): meters set their clock, nobody answers."""
        raw = dlt645.encode(dlt645.broadcast_time_request(when), preamble=PREAMBLE)
        await self._transport.broadcast(raw, priority=priority)

    async def write(
        self,
        address: str,
        di: int,
        data: bytes,
        *,
        password: str = "02000000",
        operator: str = "00000000",
        priority: Priority = Priority.CONTROL,
    ) -> None:
        request = dlt645.write_request(address, di, data, password=password, operator=operator)
        await self._exchange(request, priority=priority, timeout=None)

    async def relay(
        self,
        address: str,
        action: dlt645.RelayAction,
        valid_until: datetime,
        *,
        password: str = "02000000",
        operator: str = "00000000",
    ) -> None:
        """Relay trip / close / alarm / keep-power (1CH); control priority."""
        request = dlt645.relay_control_request(
            address, action, valid_until, password=password, operator=operator
        )
        await self._exchange(request, priority=Priority.CONTROL, timeout=None)


__all__ = ["MAX_FOLLOW_UPS", "MIN_RESPONSE_DELAY_S", "PREAMBLE", "Dlt645Master", "WireTally"]
