"""DL/T 645-2007 master over one RS-485 port.

Layer: hal. One request/response exchange per call, run through the port's
priority queue; follow-up frames (B1H/B2H) are fetched and joined; abnormal replies
(D1H...) raise ``DeviceError`` with the error word. Keeps a tally of the bytes put on
the wire so callers can compare a cycle with its wire-time lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hal.errors import DeviceError
from hal.interfaces import Priority
from hal.rs485 import Rs485Port
from protocols import dlt645
from protocols.errors import ProtocolError

# DL/T 645 lets a meter wait 20 ms before answering: the least any exchange can take
# beyond its bytes on the wire (PROTOCOLS.md §1.1).
MIN_RESPONSE_DELAY_S = 0.020
MAX_FOLLOW_UPS = 16
PREAMBLE = 4


@dataclass(slots=True)
class WireTally:
    """Bytes and exchanges on one port, for the wire-time bound of a cycle."""

    exchanges: int = 0
    request_bytes: int = 0
    reply_bytes: int = 0

    def bound_seconds(self, port: Rs485Port) -> float:
        settings = port.link.settings
        wire = settings.wire_seconds(self.request_bytes + self.reply_bytes)
        return wire + self.exchanges * MIN_RESPONSE_DELAY_S

    def reset(self) -> None:
        self.exchanges = self.request_bytes = self.reply_bytes = 0


class Dlt645Master:
    """Reads and commands DL/T 645-2007 meters on one RS-485 port.

    ``async with``-free: the port's lifetime is owned by whoever opened it.
    """

    def __init__(self, port: Rs485Port, *, timeout: float = 1.0) -> None:
        self._port = port
        self._timeout = timeout
        self.tally = WireTally()

    @property
    def port(self) -> Rs485Port:
        return self._port

    async def _exchange(
        self,
        request: dlt645.Frame,
        *,
        priority: Priority,
        timeout: float | None,  # noqa: ASYNC109 (the reply timeout, applied by the port with clock.timeout)
    ) -> dlt645.Frame:
        raw = dlt645.encode(request, preamble=PREAMBLE)
        code = request.control & 0x1F
        wildcard = "A" in request.address

        def is_reply(frame: dlt645.Frame) -> bool:
            return (
                frame.is_response
                and frame.control & 0x1F == code
                and (wildcard or frame.address == request.address)
            )

        reply = await self._port.transact(
            raw,
            decoder=dlt645.Framer(),
            match=is_reply,
            device=request.address,
            priority=priority,
            timeout=self._timeout if timeout is None else timeout,
        )
        request_bytes, reply_bytes = self._port.last_exchange
        self.tally.exchanges += 1
        self.tally.request_bytes += request_bytes
        self.tally.reply_bytes += reply_bytes
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
        reply = await self._exchange(dlt645.read_request(address, di), priority=priority, timeout=timeout)
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
        await self._port.send(raw, device="broadcast", priority=priority)

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
