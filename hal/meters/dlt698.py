"""DL/T 698.45 master (client) over any meter transport (an RS-485 port or the HPLC carrier).

Layer: hal. Turns GET / ACTION services into link frames (C = 43H, CA = 00: the local
terminal), runs them through the transport and decodes the replies:

* GET-Request-Normal (one OAD) / NormalList (several OADs in one exchange) -> the
  ``ResultNormal`` per OAD, each holding its Data or its own DAR;
* GET-Request-Record (OAD + RSD + RCSD, e.g. the 5002 minute freeze for the 15-min curve,
  5004 daily freeze, 3011 power-down records) -> ``ResultRecord`` rows;
* ACTION-Request-Normal (relay 8000, keep-power 8001) -> the method's return Data;
* SET-Request-Normal (fee-control limits 401E/401F) -> success or ``DeviceError``;
* broadcast time set (ACTION 40007F00 to the broadcast address, nobody answers).

A whole-reply DAR (record read refused, ACTION refused) and ERROR-Response raise
``DeviceError`` with the DAR code and its name; per-OAD DARs of a list are returned to the
caller. A SECURITY-Response in plaintext (with or without a MAC) is unwrapped and its inner
APDU used; the MAC is not checked (that needs the terminal's ESAM) and ciphertext is refused
with a ``ProtocolError``. A reply must come from the addressed meter and carry the request's
PIID; anything else on the line is skipped by the transport as "not the reply".

Fragmented (分帧) replies (link frames with C.D5 set, PROTOCOLS.md §2.1) are reassembled:
the meter sends the start fragment as its reply; the master acknowledges every fragment
but the last with an ack frame of the same sequence number (``dlt698.ack_for``), each
ack being one transport exchange with its own ``fragment_timeout`` (plus the line time of a
fragment as long as the first), until the end fragment arrives. At most ``max_fragments``
pieces and ``MAX_APDU`` bytes are accepted. A fragment that does not arrive, comes out of
order, twice, or from another address raises ``FragmentError`` (a ``ProtocolError``: the
caller retries the whole request; the meter drops a transfer nobody acknowledges).

Must not: know schedules, archives, item names or what apps do with the values.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

from hal.errors import DeviceError, TransportTimeout
from hal.interfaces import Priority
from hal.meters.transport import MeterTransport, Rs485Transport, WireTally
from hal.rs485 import Rs485Port
from protocols import dlt698
from protocols.errors import ProtocolError

PREAMBLE = 4
CLIENT_ADDRESS = 0x00  # the terminal's own local channel
BROADCAST_SA = "AA"
TIME_SET_OMD = dlt698.OMD(0x4000, 127, 0)  # broadcast time set (广播校时)
MAX_FRAGMENTS = 64
# GET / SET / ACTION / PROXY responses: tag, choice, PIID-ACD (a start fragment shows the PIID)
_PIID_AT_2 = frozenset((0x85, 0x86, 0x87, 0x89))


class FragmentError(ProtocolError):
    """A fragmented reply could not be reassembled: a piece missing, out of order, or too many."""

    def __init__(self, device: str, reason: str) -> None:
        self.device = device
        super().__init__(f"{device}: fragmented reply abandoned: {reason}", protocol=dlt698.PROTOCOL)


def date_time_s(when: datetime) -> dlt698.DateTimeS:
    return dlt698.DateTimeS(when.year, when.month, when.day, when.hour, when.minute, when.second)


def to_datetime(value: dlt698.DateTimeS) -> datetime:
    """``ProtocolError`` for a date the meter filled with FF or zeros (no such record)."""
    try:
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second)
    except ValueError as err:
        raise ProtocolError(f"date_time_s {value} is not a valid date", protocol=dlt698.PROTOCOL) from err


def _starts_reply(frame: dlt698.Frame, piid: int) -> bool:
    """A start fragment that can be the reply to request ``piid`` (its PIID byte when visible)."""
    header = frame.fragment
    if header is None or header.kind is not dlt698.FragmentType.START:
        return False
    apdu = frame.apdu
    # a start fragment of another PIID is a late transfer answering an earlier request
    return not (len(apdu) >= 3 and apdu[0] in _PIID_AT_2 and apdu[2] & 0x3F != piid & 0x3F)


def _unwrap(apdu: dlt698.Apdu, address: str) -> dlt698.Apdu:
    if isinstance(apdu, dlt698.SecurityResponse):
        if apdu.kind == 2:
            code = apdu.dar if apdu.dar is not None else 255
            raise DeviceError(address, code, f"security: {dlt698.dar_name(code)}")
        return apdu.inner()  # ciphertext raises ProtocolError: no ESAM here
    return apdu


class Dlt698Master:
    """Reads and commands DL/T 698.45 meters on one transport."""

    def __init__(
        self,
        transport: MeterTransport | Rs485Port,
        *,
        timeout: float = 1.0,
        fragment_timeout: float | None = None,
        max_fragments: int = MAX_FRAGMENTS,
    ) -> None:
        if max_fragments < 2:
            raise ValueError(f"max_fragments must be >= 2, not {max_fragments}")
        self._transport: MeterTransport = (
            Rs485Transport(transport) if isinstance(transport, Rs485Port) else transport
        )
        self._timeout = timeout
        self._fragment_timeout = timeout if fragment_timeout is None else fragment_timeout
        self.max_fragments = max_fragments
        self._piid = itertools.cycle(range(1, 64))
        self.tally = WireTally()
        self.fragmented_replies = 0
        self.fragments = 0
        self.fragment_errors = 0

    @property
    def transport(self) -> MeterTransport:
        return self._transport

    # ------------------------------------------------------------------ exchange

    async def _exchange(
        self,
        address: str,
        request: dlt698.Apdu,
        piid: int,
        *,
        priority: Priority,
        timeout: float | None,  # noqa: ASYNC109 (per-device reply timeout, applied by the transport)
        reply_bytes: int = 0,
    ) -> dlt698.Apdu:
        """One request and its reply APDU. ``reply_bytes``: the reply's expected size, whose
        line time is added to the timeout (a long record reply takes seconds at 2400 baud)."""
        raw = dlt698.encode(
            dlt698.Frame(dlt698.CONTROL_CLIENT_REQUEST, address, CLIENT_ADDRESS, apdu=request.encode()),
            preamble=PREAMBLE,
        )
        decoded: dict[int, dlt698.Apdu] = {}

        def is_reply(frame: dlt698.Frame) -> bool:
            if not frame.from_server or frame.sa != address:
                return False
            if frame.fragment is not None:
                return _starts_reply(frame, piid)
            if frame.prm != 1:
                return False
            try:
                apdu = dlt698.decode_apdu(frame.apdu)
            except ProtocolError:
                return False
            inner = apdu
            if isinstance(apdu, dlt698.SecurityResponse):
                if apdu.kind != 0:
                    decoded[id(frame)] = apdu  # a refusal or ciphertext still answers us
                    return True
                try:
                    inner = apdu.inner()
                except ProtocolError:
                    return False
            if getattr(inner, "piid", None) is not None and inner.piid & 0x3F != piid & 0x3F:  # type: ignore[attr-defined]
                return False  # a late reply to an earlier request
            decoded[id(frame)] = apdu
            return True

        limit = self._timeout if timeout is None else timeout
        frame = await self._transport.transact(
            raw,
            decoder=dlt698.Framer(),
            match=is_reply,
            device=address,
            priority=priority,
            timeout=limit + self._transport.wire_seconds(reply_bytes),
        )
        self.tally.add(*self._transport.last_exchange)
        if frame.fragment is not None:
            apdu = await self._reassemble(address, frame, piid, priority=priority)
        else:
            apdu = decoded[id(frame)]
        reply = _unwrap(apdu, address)
        if isinstance(reply, dlt698.ErrorResponse):
            raise DeviceError(address, reply.error, "ERROR-Response: APDU not understood or not supported")
        return reply

    async def _reassemble(
        self, address: str, first: dlt698.Frame, piid: int, *, priority: Priority
    ) -> dlt698.Apdu:
        """Acknowledge fragments until the end fragment; the whole reply APDU, decoded."""
        joiner = dlt698.Reassembler()
        try:
            joiner.add(first)
        except ProtocolError as err:
            raise self._fragment_failed(address, err.reason) from err
        # later pieces are no longer than the first; allow the line time of one that long
        limit = self._fragment_timeout + self._transport.wire_seconds(self._transport.last_exchange[1])
        frame, count = first, 1
        while True:
            if count >= self.max_fragments:
                raise self._fragment_failed(address, f"more than {self.max_fragments} fragments")
            assert frame.fragment is not None
            seq = frame.fragment.seq
            ack = dlt698.encode(dlt698.ack_for(frame), preamble=PREAMBLE)

            def is_piece(candidate: dlt698.Frame) -> bool:
                return (
                    candidate.from_server
                    and candidate.sa == address
                    and candidate.fragment is not None
                    and candidate.fragment.kind is not dlt698.FragmentType.ACK
                )

            try:
                frame = await self._transport.transact(
                    ack, decoder=dlt698.Framer(), match=is_piece, device=address,
                    priority=priority, timeout=limit,
                )  # fmt: skip
            except TransportTimeout as err:
                raise self._fragment_failed(
                    address, f"no fragment after {seq} within {limit:.3g} s ({count} received)"
                ) from err
            self.tally.add(*self._transport.last_exchange)
            count += 1
            try:
                whole = joiner.add(frame)
            except ProtocolError as err:
                raise self._fragment_failed(address, err.reason) from err
            if whole is not None:
                break
        self.fragmented_replies += 1
        self.fragments += count
        try:
            apdu = dlt698.decode_apdu(whole)
        except ProtocolError as err:
            raise self._fragment_failed(address, f"reassembled APDU does not decode: {err.reason}") from err
        inner = apdu.inner() if isinstance(apdu, dlt698.SecurityResponse) and apdu.kind == 0 else apdu
        got = getattr(inner, "piid", None)
        if isinstance(got, int) and got & 0x3F != piid & 0x3F:
            reason = f"reassembled reply has PIID {got & 0x3F}, not {piid & 0x3F}"
            raise self._fragment_failed(address, reason)
        return apdu

    def _fragment_failed(self, address: str, reason: str) -> FragmentError:
        self.fragment_errors += 1
        return FragmentError(address, reason)

    def _next_piid(self, priority: Priority) -> int:
        """Invoke id 1..63; PIID bit 7 asks the meter to serve a control request first."""
        return next(self._piid) | (0x80 if priority is Priority.CONTROL else 0)

    # ------------------------------------------------------------------ GET

    async def get(
        self,
        address: str,
        oads: Sequence[dlt698.OAD],
        *,
        priority: Priority = Priority.REALTIME,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout)
    ) -> tuple[dlt698.ResultNormal, ...]:
        """Read attributes: Normal for one OAD, NormalList for several (one exchange either way)."""
        if not oads:
            raise ValueError("get: no OAD to read")
        piid = self._next_piid(priority)
        request: dlt698.Apdu = (
            dlt698.GetRequestNormal(piid, oads[0])
            if len(oads) == 1
            else dlt698.GetRequestNormalList(piid, tuple(oads))
        )
        reply = await self._exchange(address, request, piid, priority=priority, timeout=timeout)
        if isinstance(reply, dlt698.GetResponseNormal):
            results: tuple[dlt698.ResultNormal, ...] = (reply.result,)
        elif isinstance(reply, dlt698.GetResponseNormalList):
            results = reply.results
        else:
            raise ProtocolError(f"{address}: {reply.service} is not a GET-Response", protocol=dlt698.PROTOCOL)
        if [r.oad for r in results] != list(oads):
            raise ProtocolError(
                f"{address}: GET-Response OADs {[str(r.oad) for r in results]} "
                f"do not answer {[str(o) for o in oads]}",
                protocol=dlt698.PROTOCOL,
            )
        return results

    async def get_one(
        self,
        address: str,
        oad: dlt698.OAD,
        *,
        priority: Priority = Priority.REALTIME,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout)
    ) -> dlt698.Data:
        """One attribute's Data; its DAR raises ``DeviceError``."""
        (result,) = await self.get(address, [oad], priority=priority, timeout=timeout)
        if result.data is None:
            code = result.dar if result.dar is not None else 255
            raise DeviceError(address, code, f"{oad}: {dlt698.dar_name(code)}")
        return result.data

    async def get_record(
        self,
        address: str,
        oad: dlt698.OAD,
        rsd: dlt698.RSD,
        rcsd: Sequence[dlt698.CSD],
        *,
        priority: Priority = Priority.CURVE,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout)
        reply_bytes: int = 0,
    ) -> dlt698.ResultRecord:
        """Rows of a record table (freezes, events) selected by ``rsd``; a DAR raises ``DeviceError``.

        ``reply_bytes``: the expected size of the reply (or of its first fragment), whose line
        time is added to the timeout."""
        piid = self._next_piid(priority)
        request = dlt698.GetRequestRecord(piid, dlt698.GetRecord(oad, rsd, tuple(rcsd)))
        reply = await self._exchange(
            address, request, piid, priority=priority, timeout=timeout, reply_bytes=reply_bytes
        )
        if not isinstance(reply, dlt698.GetResponseRecord):
            raise ProtocolError(
                f"{address}: {reply.service} is not a GET-Response-Record", protocol=dlt698.PROTOCOL
            )
        result = reply.result
        if result.oad != oad:
            raise ProtocolError(
                f"{address}: record of {result.oad} does not answer {oad}", protocol=dlt698.PROTOCOL
            )
        if result.rows is None:
            code = result.dar if result.dar is not None else 255
            raise DeviceError(address, code, f"{oad}: {dlt698.dar_name(code)}")
        return result

    # ------------------------------------------------------------------ ACTION

    async def action(
        self,
        address: str,
        omd: dlt698.OMD,
        data: dlt698.Data,
        *,
        priority: Priority = Priority.CONTROL,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout)
    ) -> dlt698.Data | None:
        """Invoke a method; a DAR other than success raises ``DeviceError``."""
        piid = self._next_piid(priority)
        request = dlt698.ActionRequestNormal(piid, omd, data)
        reply = await self._exchange(address, request, piid, priority=priority, timeout=timeout)
        if not isinstance(reply, dlt698.ActionResponseNormal):
            raise ProtocolError(
                f"{address}: {reply.service} is not an ACTION-Response", protocol=dlt698.PROTOCOL
            )
        if reply.dar != 0:
            raise DeviceError(address, reply.dar, f"{omd}: {dlt698.dar_name(reply.dar)}")
        return reply.data

    # ------------------------------------------------------------------ SET

    async def set(
        self,
        address: str,
        oad: dlt698.OAD,
        data: dlt698.Data,
        *,
        priority: Priority = Priority.CONTROL,
        timeout: float | None = None,  # noqa: ASYNC109 (per-device reply timeout)
    ) -> None:
        """Write one attribute (SET-Request-Normal); a DAR other than success raises ``DeviceError``."""
        piid = self._next_piid(priority)
        reply = await self._exchange(
            address, dlt698.SetRequestNormal(piid, oad, data), piid, priority=priority, timeout=timeout
        )
        if not isinstance(reply, dlt698.SetResponseNormal) or reply.oad != oad:
            raise ProtocolError(
                f"{address}: {reply.service} does not answer SET {oad}", protocol=dlt698.PROTOCOL
            )
        if reply.dar != 0:
            raise DeviceError(address, reply.dar, f"SET {oad}: {dlt698.dar_name(reply.dar)}")

    async def broadcast_time(self, when: datetime, *, priority: Priority = Priority.CONTROL) -> None:
        """Broadcast time set (ACTION 40007F00 with date_time_s to address type 3): nobody answers."""
        request = dlt698.ActionRequestNormal(
            self._next_piid(priority),
            TIME_SET_OMD,
            dlt698.Data(dlt698.DataType.DATE_TIME_S, date_time_s(when)),
        )
        frame = dlt698.Frame(
            dlt698.CONTROL_CLIENT_REQUEST,
            BROADCAST_SA,
            CLIENT_ADDRESS,
            apdu=request.encode(),
            sa_type=dlt698.AddressType.BROADCAST,
        )
        await self._transport.broadcast(dlt698.encode(frame, preamble=PREAMBLE), priority=priority)


__all__ = [
    "BROADCAST_SA",
    "CLIENT_ADDRESS",
    "MAX_FRAGMENTS",
    "PREAMBLE",
    "TIME_SET_OMD",
    "Dlt698Master",
    "FragmentError",
    "date_time_s",
    "to_datetime",
]
