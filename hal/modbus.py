"""Modbus RTU master over an ``Rs485Port``: profile reads in contiguous blocks, verified writes.

Layer: hal. Framing and PDUs are pymodbus's own (``FramerRTU`` CRC and frame sizing,
``DecodePDU`` and the request/response classes); they live here rather than in
``protocols/`` because importing pymodbus pulls asyncio in. Must not know apps, device
archives or grid logic; never retries on its own (callers decide).

Every exchange goes through the port's priority queue, so Modbus devices share a bus with
DL/T 645 meters one transaction at a time: reads default to REALTIME (EVENT for trip
records), writes to CONTROL, and a write therefore overtakes queued meter reads.

    request   unit | fc | address(2) | count(2) | CRC16(2, low byte first)
    reply     unit | fc | byte count | data ... | CRC16
    exception unit | fc|0x80 | exception code | CRC16   -> DeviceError(code)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from hal.errors import DeviceError, HalError
from hal.interfaces import Priority, SerialSettings
from hal.meters.transport import TransactionPort
from protocols import modbus
from protocols.errors import ProtocolError

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target failed to respond",
}
_READS: dict[str, type[ModbusPDU]] = {
    "coil": ReadCoilsRequest,
    "discrete": ReadDiscreteInputsRequest,
    "holding": ReadHoldingRegistersRequest,
    "input": ReadInputRegistersRequest,
}
MAX_FRAME = 256


@dataclass(frozen=True, slots=True)
class RtuFrame:
    """One decoded RTU frame: the unit id and pymodbus's PDU object."""

    unit: int
    pdu: ModbusPDU

    @property
    def function(self) -> int:
        return int(self.pdu.function_code) & 0x7F

    @property
    def is_exception(self) -> bool:
        return isinstance(self.pdu, ExceptionResponse)


class RtuDecoder:
    """``StreamDecoder`` for Modbus RTU built from pymodbus's framer pieces.

    pymodbus's ``FramerRTU.decode`` drops the whole buffer on a CRC mismatch; on a shared
    bus that can throw away a good frame behind line noise, so this hunts one byte at a
    time instead: a candidate start needs a known function code, a complete frame of the
    size pymodbus computes for it, and a matching CRC; otherwise the byte is skipped.
    ``is_server`` selects request (sim devices) or response (master) decoding.
    """

    def __init__(self, *, is_server: bool = False) -> None:
        self._pdus = DecodePDU(is_server)
        self._buf = bytearray()
        self.frames = 0
        self.errors = 0
        self.skipped = 0
        self._size = 0

    def feed(self, data: bytes) -> list[RtuFrame | ProtocolError]:
        self._buf += data
        out: list[RtuFrame | ProtocolError] = []
        pos = 0
        bad_run = 0
        while len(self._buf) - pos >= FramerRTU.MIN_SIZE:
            found = self._frame_at(pos)
            if found is None and self._complete_after(pos) is None:
                break  # a plausible frame still arriving
            if isinstance(found, RtuFrame):
                if bad_run:
                    out.append(self._noise(bad_run))
                    bad_run = 0
                out.append(found)
                self.frames += 1
                pos += self._size
                continue
            pos += 1  # not a frame here, or a stalled candidate with a complete frame behind it
            bad_run += 1
        if bad_run:
            out.append(self._noise(bad_run))
        del self._buf[:pos]
        return out

    def _frame_at(self, pos: int) -> RtuFrame | bool | None:
        """The frame starting at ``pos``; False if none can start there; None if more bytes are needed."""
        buf = self._buf
        head = bytes(buf[pos : pos + 8])
        cls = self._pdus.lookupPduClass(head)
        if cls is None:
            return False
        size = cls.calculateRtuFrameSize(bytes(buf[pos:]))
        if size == 0:
            return None  # the byte count is not in yet
        if size > MAX_FRAME:
            return False
        if len(buf) - pos < size:
            return None
        body = bytes(buf[pos : pos + size - 2])
        crc = (buf[pos + size - 2] << 8) | buf[pos + size - 1]
        if not FramerRTU.check_CRC(body, crc):
            return False
        pdu = self._pdus.decode(body[1:])
        if pdu is None:
            return False
        pdu.dev_id = body[0]
        self._size = size
        return RtuFrame(body[0], pdu)

    def _complete_after(self, pos: int) -> int | None:
        for later in range(pos + 1, len(self._buf) - FramerRTU.MIN_SIZE + 1):
            if isinstance(self._frame_at(later), RtuFrame):
                return later
        return None

    def _noise(self, n: int) -> ProtocolError:
        self.errors += 1
        self.skipped += n
        return ProtocolError(
            f"{n} bytes skipped: no valid RTU frame (CRC or function code)", protocol="modbus"
        )

    def reset(self) -> None:
        self.skipped += len(self._buf)
        self._buf.clear()


def frame_silence(settings: SerialSettings) -> float:
    """The idle line (t3.5) Modbus RTU needs before a frame: 3.5 character times, fixed at
    1.75 ms above 19200 baud (Modbus over serial line V1.02, 2.5.1.1)."""
    return settings.wire_seconds(3.5) if settings.baud <= 19200 else 0.00175


def encode_frame(unit: int, pdu: ModbusPDU) -> bytes:
    """RTU wire bytes of ``pdu`` for ``unit`` (pymodbus's framer adds the CRC)."""
    pdu.dev_id = unit
    return FramerRTU(DecodePDU(False)).buildFrame(pdu)


class WriteNotVerified(HalError):
    """A write was acknowledged but reading the point back shows another value."""

    def __init__(self, device: str, point: str, wanted: object, got: object) -> None:
        self.device = device
        self.point = point
        self.wanted = wanted
        self.got = got
        super().__init__(f"{device}: wrote {point} = {wanted!r} but it reads back {got!r}")


class ModbusMaster:
    """Reads and writes Modbus RTU devices on one RS-485 port (which it does not own)."""

    def __init__(self, port: TransactionPort, *, timeout: float = 0.5) -> None:
        self._port = port
        self._timeout = timeout
        self._silence = frame_silence(port.link.settings)
        self.exchanges = 0

    @property
    def port(self) -> TransactionPort:
        return self._port

    @staticmethod
    def device_name(unit: int) -> str:
        """The port's health key of a unit (distinct from 645 addresses on the same bus)."""
        return f"modbus:{unit}"

    async def exchange(
        self,
        unit: int,
        request: ModbusPDU,
        *,
        priority: Priority = Priority.REALTIME,
        timeout: float | None = None,  # noqa: ASYNC109 (the reply timeout, applied by the port with clock.timeout)
    ) -> ModbusPDU:
        """Send one request PDU and return the reply PDU; exception replies raise ``DeviceError``."""
        if not 1 <= unit <= 247:
            raise ValueError(f"Modbus unit id {unit}: expected 1..247")
        raw = encode_frame(unit, request)
        fc = int(request.function_code)
        device = self.device_name(unit)
        reply = await self._port.transact(
            raw,
            decoder=RtuDecoder(),
            match=lambda f: f.unit == unit and f.function == fc,
            device=device,
            priority=priority,
            timeout=self._timeout if timeout is None else timeout,
            silence=self._silence,
        )
        self.exchanges += 1
        if reply.is_exception:
            code = int(reply.pdu.exception_code)
            raise DeviceError(device, code, EXCEPTION_NAMES.get(code, "unknown exception"))
        return reply.pdu

    async def read_block(
        self,
        unit: int,
        block: modbus.Block,
        *,
        priority: Priority = Priority.REALTIME,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout, see exchange)
    ) -> list[int] | list[bool]:
        request = _READS[block.table](address=block.start, count=block.count)
        pdu = await self.exchange(unit, request, priority=priority, timeout=timeout)
        if block.table in modbus.BIT_TABLES:
            bits = [bool(b) for b in pdu.bits]
            if len(bits) < block.count:
                raise ProtocolError(
                    f"unit {unit}: {block.table} reply has {len(bits)} bits, asked {block.count}",
                    protocol="modbus",
                )
            return bits[: block.count]
        regs = [int(r) for r in pdu.registers]
        if len(regs) != block.count:
            raise ProtocolError(
                f"unit {unit}: {block.table} reply has {len(regs)} registers, asked {block.count}",
                protocol="modbus",
            )
        return regs

    async def read(
        self,
        unit: int,
        profile: modbus.Profile,
        points: Sequence[str] | None = None,
        *,
        priority: Priority = Priority.REALTIME,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout, see exchange)
        max_gap: int = 0,
    ) -> dict[str, float | bool]:
        """Engineering values of ``points`` (default: all) in as few requests as possible."""
        regs = profile.registers.values() if points is None else [profile.register(p) for p in points]
        out: dict[str, float | bool] = {}
        for block in modbus.plan_blocks(regs, max_gap=max_gap):
            values = await self.read_block(unit, block, priority=priority, timeout=timeout)
            out.update(block.decode(values))
        return out

    async def write(
        self,
        unit: int,
        profile: modbus.Profile,
        point: str,
        value: float | bool,
        *,
        verify: str | None = None,
        expect: float | bool | None = None,
        priority: Priority = Priority.CONTROL,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout, see exchange)
    ) -> float | bool:
        """Write ``point`` and read ``verify`` (default: the point) back; returns the read-back value.

        Raises ``WriteNotVerified`` when the read-back differs from ``expect`` (default: value).
        """
        reg = profile.register(point)
        if not reg.writable:
            raise ValueError(f"profile {profile.name}: point {point!r} is not writable")
        words = modbus.encode_value(reg, value)
        request: ModbusPDU
        if reg.table == "coil":
            request = WriteSingleCoilRequest(address=reg.address, bits=[bool(words[0])])
        elif len(words) == 1:
            request = WriteSingleRegisterRequest(address=reg.address, registers=[int(words[0])])
        else:
            request = WriteMultipleRegistersRequest(address=reg.address, registers=[int(w) for w in words])
        await self.exchange(unit, request, priority=priority, timeout=timeout)
        check = verify or point
        got = (await self.read(unit, profile, [check], priority=priority, timeout=timeout))[check]
        wanted = value if expect is None else expect
        if not _same(profile.register(check), got, wanted):
            raise WriteNotVerified(self.device_name(unit), check, wanted, got)
        return got

    async def command(
        self,
        unit: int,
        profile: modbus.Profile,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> float | bool:
        """Run a profile command (``open``, ``close`` ...) at CONTROL priority, verified by read-back."""
        try:
            cmd = profile.commands[name]
        except KeyError:
            known = ", ".join(profile.commands) or "none"
            raise ValueError(f"profile {profile.name}: no command {name!r}; commands: {known}") from None
        return await self.write(
            unit, profile, cmd.register, cmd.value, verify=cmd.verify, expect=cmd.expect, timeout=timeout
        )


def _same(reg: modbus.Register, got: float | bool, wanted: float | bool) -> bool:
    if reg.is_bit or isinstance(wanted, bool):
        return bool(got) == bool(wanted)
    return abs(float(got) - float(wanted)) <= abs(reg.scale) / 2


__all__ = [
    "EXCEPTION_NAMES",
    "ModbusMaster",
    "RtuDecoder",
    "RtuFrame",
    "WriteNotVerified",
    "encode_frame",
    "frame_silence",
]
