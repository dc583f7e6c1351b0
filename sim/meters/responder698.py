"""What one virtual meter answers to one DL/T 698.45 request.

Layer: sim. Maps a decoded request ``dlt698.Frame`` to the reply frame (or silence) for the
same ``VirtualMeter`` state the DL/T 645 responder serves (registers, 15-min curve, daily
freezes, power-down records, relay, clock), using the ``protocols.dlt698`` codec for every
byte. The line and its timing live in ``bus``; this module knows neither.

Supported services:

* GET-Request-Normal / NormalList: 0000/0010/0020 energy (attr 2, scaler -2 kWh), 2000
  voltage, 2001 current, 2004 active / 2005 reactive power, 200A power factor, 200F
  frequency, 2014 status words (word 3 bit 4 = relay open; bit i of a word is bit-string
  bit i), 3011 attr 7 current value record (occurrence count), 4000 date-time, 4001
  address, 4002 meter number, 4E08 attr 2 signatures heard (newest first); element indexes
  too. Others: DAR 6 (object does not exist).
* GET-Request-Record: 5002 minute freeze (the 15-min curve, RSD selector 2 on 20210200 with
  [start, end)), 5004 daily freeze (selector 9 "n-th last"), 3011 power-down records
  (selector 9; columns 20220200 record number, 201E0200 start, 20200200 end); columns by
  RCSD, any of the OADs above plus 20210200 freeze time. Other selectors: DAR 5.
* ACTION-Request-Normal: 8000 method 127/128 alarm on/off, 129 trip, 130 close (enum 0 close
  allowed: the relay closes when the customer presses the button; 1 direct close), 8001
  method 127/128 keep-power on/off (a trip under keep-power: DAR 3), 4000 method 127 time set
  (also broadcast, no reply; more than 5 min off is ignored like a 645 broadcast), 4E08
  method 127 signature current: send at a date_time_s (``protocols.dlt698.topology``).
* SET-Request-Normal: 401E (alarm limits) and 401F (overdraft, hoarding, close-allowed limits);
  GET 202C / 202D / 401E / 401F / 8001 attr 2 read the credit registers and keep-power state.
* SECURITY-Request in plaintext: the inner request is served and the reply returned as a
  plaintext SECURITY-Response with a MAC (``security_mac``; a fixed fake: no ESAM here).
  With ``secure_replies=True`` plain requests are answered the same wrapped way.
* Anything undecodable: ERROR-Response 1; other services: ERROR-Response 2.

Replies whose APDU is longer than ``max_apdu`` (the meter's declared maximum send size,
200 bytes by default as on RS-485 meters) are fragmented (分帧): the start fragment is the
reply; every fragment acknowledgement frame carrying the sequence number of the piece just
sent releases the next one, the end fragment completes the transfer. Sequence numbers run
on from transfer to transfer (wrapping at 4096). A new request abandons a transfer in
progress; an ack of any other sequence is ignored. ``lose_fragment(index)`` makes the next
transfer(s) lose piece ``index`` on the line (sent, never seen: the client's wait for it
times out) -- fault injection for tests.

For the virtual CCO (or any other caller that has bytes, not frames), ``sim.meters.answer``
wraps a responder into ``answer(frame_bytes) -> reply_bytes | None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from protocols import dlt698
from protocols.errors import ProtocolError
from sim.meters.model import Instant, Registers, RelayRefused, VirtualMeter

DT = dlt698.DataType
DEFAULT_MAX_APDU = 200
DAR_DENIED = 3
DAR_CLASS_MISMATCH = 5
DAR_NO_OBJECT = 6
ERROR_UNDECODABLE = 1
ERROR_UNSUPPORTED = 2
_TARIFF = ("total", "t1", "t2", "t3", "t4")
_LIMITS = {
    (0x401E, 2): ("credit.alarm1", "credit.alarm2"),
    (0x401F, 2): ("credit.overdraft_limit", "credit.max_stored", "credit.close_allowed"),
}


def _data(t: dlt698.DataType, value: object) -> dlt698.Data:
    return dlt698.Data(t, value)


def _hundredths(kwh: float) -> int:
    """Registers show truncated hundredths, like a meter's display (and the 645 responder)."""
    return math.floor(kwh * 100 + 1e-6)


def _bits16(word: int) -> dlt698.BitString:
    data = bytearray(2)
    for i in range(16):
        if word >> i & 1:
            data[i // 8] |= 0x80 >> (i % 8)
    return dlt698.BitString(16, bytes(data))


@dataclass(frozen=True, slots=True)
class _View:
    """What one row of values is taken from: registers, instant values, a time (meter epoch)."""

    ts: float
    registers: Registers | None
    instant: Instant | None
    forward_total: float | None = None
    reverse_total: float | None = None


class Dlt698Responder:
    """Answers DL/T 698.45 requests for one meter."""

    def __init__(
        self,
        meter: VirtualMeter,
        *,
        preamble: int = 4,
        secure_replies: bool = False,
        security_mac: bytes = b"\x5a\xa5\x5a\xa5",
        max_apdu: int = DEFAULT_MAX_APDU,
    ) -> None:
        if max_apdu < 1:
            raise ValueError(f"max_apdu must be >= 1, not {max_apdu}")
        self.meter = meter
        self.preamble = preamble
        self.secure_replies = secure_replies
        self.security_mac = security_mac
        self.max_apdu = max_apdu
        self._pending: list[dlt698.Frame] = []  # fragments still to send, next first
        self._sent_seq: int | None = None  # sequence number of the last fragment sent
        self._next_seq = 0
        self._lose: dict[int, int] = {}  # fragment index -> transfers still to lose it
        self._transfer_index = 0  # index of the next pending piece within its transfer
        self._losing: set[int] = set()  # piece indexes this transfer loses
        self.fragments_sent = 0
        self.fragments_lost = 0
        self.transfers = 0

    def lose_fragment(self, index: int, *, times: int = 1) -> None:
        """The next ``times`` fragmented transfers lose their piece ``index`` (0 = start) on the line."""
        if index < 0 or times < 1:
            raise ValueError(f"lose_fragment({index}, times={times}): expected index >= 0, times >= 1")
        self._lose[index] = self._lose.get(index, 0) + times

    # -- entry points -------------------------------------------------------------------------------
    def handle(self, request: dlt698.Frame, *, now: float) -> bytes | None:
        """Reply bytes (with FE preamble) for ``request`` at true time ``now``, or None for silence."""
        reply = self.reply(request, now=now)
        return None if reply is None else dlt698.encode(reply, preamble=self.preamble)

    def reply(self, request: dlt698.Frame, *, now: float) -> dlt698.Frame | None:
        if request.from_server or not self.meter.on:
            return None
        self.meter.settle(now)
        if request.fragment is not None:
            return self._on_fragment(request)
        self._pending, self._sent_seq = [], None  # a new request abandons a transfer in progress
        broadcast = request.sa_type is dlt698.AddressType.BROADCAST
        secure = self.secure_replies
        try:
            apdu = dlt698.decode_apdu(request.apdu)
            if isinstance(apdu, dlt698.SecurityRequest):
                secure = True
                apdu = apdu.inner()
            answer = self._dispatch(apdu, now)
        except ProtocolError:
            answer = dlt698.ErrorResponse(0, ERROR_UNDECODABLE)
        if broadcast or answer is None:
            return None
        payload = answer.encode()
        if secure:
            payload = dlt698.SecurityResponse(0, payload, mac=self.security_mac).encode()
        frame = dlt698.Frame(dlt698.CONTROL_SERVER_RESPONSE, self.meter.address, request.ca, apdu=payload)
        if len(payload) <= self.max_apdu:
            return frame
        pieces = dlt698.split(frame, self.max_apdu, first_seq=self._next_seq)
        self._next_seq = (self._next_seq + len(pieces)) & 0xFFF
        self.transfers += 1
        self._pending, self._transfer_index = pieces, 0
        losing = {i for i, left in self._lose.items() if left > 0 and i < len(pieces)}
        for i in losing:
            self._lose[i] -= 1
        self._losing = losing
        return self._send_piece()

    # -- fragmented transfer ------------------------------------------------------------------------
    def _send_piece(self) -> dlt698.Frame | None:
        piece = self._pending.pop(0)
        assert piece.fragment is not None
        index = self._transfer_index
        self._transfer_index += 1
        self.fragments_sent += 1
        if piece.fragment.kind is dlt698.FragmentType.END:
            self._sent_seq = None  # the end fragment needs no acknowledgement
        else:
            self._sent_seq = piece.fragment.seq
        if index in self._losing:
            self.fragments_lost += 1
            return None  # sent, but lost on the line
        return piece

    def _on_fragment(self, frame: dlt698.Frame) -> dlt698.Frame | None:
        header = frame.fragment
        assert header is not None
        if header.kind is not dlt698.FragmentType.ACK:
            return None  # a fragmented request: no client of ours sends one
        if self._sent_seq is None or header.seq != self._sent_seq or not self._pending:
            return None  # not the piece we are waiting to have acknowledged
        return self._send_piece()

    # -- services -----------------------------------------------------------------------------------
    def _dispatch(self, apdu: dlt698.Apdu, now: float) -> dlt698.Apdu | None:
        if isinstance(apdu, dlt698.GetRequestNormal):
            return dlt698.GetResponseNormal(apdu.piid, self._result(apdu.oad, now))
        if isinstance(apdu, dlt698.GetRequestNormalList):
            return dlt698.GetResponseNormalList(apdu.piid, tuple(self._result(o, now) for o in apdu.oads))
        if isinstance(apdu, dlt698.GetRequestRecord):
            return dlt698.GetResponseRecord(apdu.piid, self._record(apdu.record, now))
        if isinstance(apdu, dlt698.ActionRequestNormal):
            return self._action(apdu, now)
        if isinstance(apdu, dlt698.SetRequestNormal):
            return dlt698.SetResponseNormal(apdu.piid, apdu.oad, self._set(apdu.oad, apdu.data, now))
        piid = getattr(apdu, "piid", 0)
        return dlt698.ErrorResponse(piid if isinstance(piid, int) else 0, ERROR_UNSUPPORTED)

    def _result(self, oad: dlt698.OAD, now: float) -> dlt698.ResultNormal:
        meter = self.meter
        meter.advance(now)
        view = _View(meter.meter_time(now), meter.registers(now), meter.instant(now))
        data = self._attribute(oad, view, now)
        if data is None:
            return dlt698.ResultNormal(oad, dar=DAR_NO_OBJECT)
        return dlt698.ResultNormal(oad, data=data)

    def _action(self, req: dlt698.ActionRequestNormal, now: float) -> dlt698.ActionResponseNormal | None:
        meter, omd = self.meter, req.omd
        dar = 0
        if (omd.oi, omd.method) == (0x4000, 127):
            value = req.data.value
            if req.data.type is not DT.DATE_TIME_S or not isinstance(value, dlt698.DateTimeS):
                dar = 7  # type mismatch
            else:
                meter.broadcast_sync(self._epoch(value), now)
        elif (omd.oi, omd.method) == (dlt698.topology.TOPOLOGY_OI, dlt698.topology.START_SENDING.method):
            value = req.data.value
            if req.data.type is not DT.DATE_TIME_S or not isinstance(value, dlt698.DateTimeS):
                dar = 7  # type mismatch
            else:
                meter.signature.order(self._epoch(value) - meter.skew_s)
        elif omd.oi in (dlt698.RELAY_OI, dlt698.KEEP_POWER_OI):
            dar = self._control(omd, req.data, now)
        else:
            dar = DAR_NO_OBJECT
        return dlt698.ActionResponseNormal(req.piid, omd, dar)

    def _control(self, omd: dlt698.OMD, data: dlt698.Data, now: float) -> int:
        meter = self.meter
        try:
            request = dlt698.parse_control(omd, data)
        except ProtocolError:
            return DAR_NO_OBJECT if omd.method not in (129, 130) else 7  # unknown method / type mismatch
        c = dlt698.Control
        try:
            match request.control:
                case c.TRIP:
                    meter.trip(now)
                case c.CLOSE_ALLOWED:
                    meter.allow_close(now)
                case c.DIRECT_CLOSE:
                    meter.close(now)
                case c.ALARM | c.ALARM_RELEASE:
                    meter.set_alarm(request.control is c.ALARM, now)
                case c.KEEP_POWER | c.KEEP_POWER_RELEASE:
                    meter.set_keep_power(request.control is c.KEEP_POWER, now)
        except RelayRefused:
            return DAR_DENIED
        return 0

    def _set(self, oad: dlt698.OAD, data: dlt698.Data, now: float) -> int:
        names = _LIMITS.get((oad.oi, oad.attr_id))
        if names is None or oad.index:
            return (
                DAR_DENIED if self._whole(oad.oi, oad.attr_id, _View(0, None, None), now) else DAR_NO_OBJECT
            )
        try:
            fen = dlt698.money_values(data, len(names))
        except ProtocolError:
            return 7  # type mismatch
        self.meter.advance(now)
        for name, value in zip(names, fen, strict=True):
            self.meter.credit_limits[name] = value / 100
        return 0

    def _record(self, get: dlt698.GetRecord, now: float) -> dlt698.ResultRecord:
        meter, oad, rsd = self.meter, get.oad, get.rsd
        meter.advance(now)
        views: list[_View] = []
        if (oad.oi, oad.attr_id) == (0x5002, 2) and rsd.selector == 2:
            _, start, end, _ = rsd.params
            if not (isinstance(start.value, dlt698.DateTimeS) and isinstance(end.value, dlt698.DateTimeS)):
                return dlt698.ResultRecord(oad, get.rcsd, dar=7)
            lo, hi = self._epoch(start.value), self._epoch(end.value)
            views = [
                _View(p.ts, None, p.instant, p.forward_total, p.reverse_total)
                for p in meter.curve.between(lo, hi)
            ]
        elif (oad.oi, oad.attr_id) == (0x5004, 2) and rsd.selector == 9:
            n = int(rsd.params[0])
            if 1 <= n <= len(meter.daily_freezes):
                frz = meter.daily_freezes[n - 1]
                views = [_View(frz.ts, frz.registers, None)]
        elif (oad.oi, oad.attr_id) == (0x3011, 2) and rsd.selector == 9:
            n = int(rsd.params[0])
            if 1 <= n <= len(meter.power_downs):
                return dlt698.ResultRecord(oad, get.rcsd, rows=(self._event_row(get.rcsd, n),))
            return dlt698.ResultRecord(oad, get.rcsd, rows=())
        elif (oad.oi, oad.attr_id) in ((0x5002, 2), (0x5004, 2), (0x3011, 2)):
            return dlt698.ResultRecord(oad, get.rcsd, dar=DAR_CLASS_MISMATCH)
        else:
            return dlt698.ResultRecord(oad, get.rcsd, dar=DAR_NO_OBJECT)
        rows = tuple(tuple(self._column(csd, v, now) for csd in get.rcsd) for v in views)
        return dlt698.ResultRecord(oad, get.rcsd, rows=rows)

    def _event_row(self, rcsd: Sequence[dlt698.CSD], n: int) -> tuple[dlt698.Data, ...]:
        meter = self.meter
        rec = meter.power_downs[n - 1]
        out: list[dlt698.Data] = []
        for csd in rcsd:
            oi = csd.oi if isinstance(csd, dlt698.OAD) else csd.oad.oi
            if oi == 0x2022:
                out.append(_data(DT.DOUBLE_LONG_UNSIGNED, max(0, meter.power_down_count - n + 1)))
            elif oi == 0x201E:
                out.append(self._dts(rec.start))
            elif oi == 0x2020:
                out.append(_data(DT.NULL, None) if rec.end is None else self._dts(rec.end))
            else:
                out.append(_data(DT.NULL, None))
        return tuple(out)

    def _column(self, csd: dlt698.CSD, view: _View, now: float) -> dlt698.Data:
        if not isinstance(csd, dlt698.OAD):
            return _data(DT.NULL, None)
        if (csd.oi, csd.attr_id) == (0x2021, 2):
            return self._dts(view.ts)
        return self._attribute(csd, view, now) or _data(DT.NULL, None)

    # -- attribute values ---------------------------------------------------------------------------
    def _attribute(self, oad: dlt698.OAD, view: _View, now: float) -> dlt698.Data | None:
        whole = self._whole(oad.oi, oad.attr_id, view, now)
        if whole is None or not oad.index:
            return whole
        if whole.type not in (DT.ARRAY, DT.STRUCTURE) or oad.index > len(whole.value):
            return None
        element: dlt698.Data = whole.value[oad.index - 1]
        return element

    def _energy(self, view: _View, kind: str) -> dlt698.Data | None:
        reg = view.registers
        if reg is None:  # a curve point keeps the totals only
            total = (
                view.forward_total if kind == "import" else view.reverse_total if kind == "export" else None
            )
            if total is None:
                return None
            return _data(DT.ARRAY, (_data(DT.DOUBLE_LONG_UNSIGNED, _hundredths(total)),))
        if kind == "import":
            values = reg.forward
        elif kind == "export":
            values = reg.reverse
        else:
            values = tuple(f + r for f, r in zip(reg.forward, reg.reverse, strict=True))  # type: ignore[assignment]
        return _data(DT.ARRAY, tuple(_data(DT.DOUBLE_LONG_UNSIGNED, _hundredths(x)) for x in values))

    def _phases(self, values: Sequence[float | None], t: dlt698.DataType, scale: float) -> dlt698.Data:
        present = [v for v in values if v is not None] if self.meter.phase != "ABC" else list(values)
        return _data(
            DT.ARRAY,
            tuple(_data(DT.NULL, None) if v is None else _data(t, round(v * scale)) for v in present),
        )

    def _whole(self, oi: int, attr: int, view: _View, now: float) -> dlt698.Data | None:
        meter = self.meter
        inst = view.instant
        if attr == 2 and oi in (0x0000, 0x0010, 0x0020):
            return self._energy(view, {0x0000: "combined", 0x0010: "import", 0x0020: "export"}[oi])
        if attr == 2 and inst is not None:
            if oi == 0x2000:
                return self._phases(inst.voltage, DT.LONG_UNSIGNED, 10)
            if oi == 0x2001:
                return self._phases(inst.current, DT.DOUBLE_LONG, 1000)
            if oi == 0x2004:
                return self._phases((inst.total_power_kw, *inst.power_kw), DT.DOUBLE_LONG, 10000)
            if oi == 0x2005:
                return _data(DT.ARRAY, (_data(DT.DOUBLE_LONG, round(inst.reactive_kvar * 10000)),))
            if oi == 0x200A:
                pf = inst.power_factor
                phases = [None if p is None else pf for p in inst.power_kw]
                return self._phases((pf, *phases), DT.LONG, 1000)
            if oi == 0x200F:
                return _data(DT.LONG_UNSIGNED, round(inst.frequency_hz * 100))
        if (oi, attr) == (0x2014, 2):
            words = [0, 0, meter.status_word3(), 0, 0, 0, 0]
            return _data(DT.ARRAY, tuple(_data(DT.BIT_STRING, _bits16(w)) for w in words))
        if (oi, attr) == (0x3011, 7):
            count = _data(DT.DOUBLE_LONG_UNSIGNED, meter.power_down_count)
            current = _data(
                DT.STRUCTURE,
                (_data(DT.NULL, None), _data(DT.STRUCTURE, (count, _data(DT.DOUBLE_LONG_UNSIGNED, 0)))),
            )
            return _data(DT.ARRAY, (current,))
        if (oi, attr) in _LIMITS:
            return dlt698.money_structure(*(round(meter.credit_limits[n] * 100) for n in _LIMITS[(oi, attr)]))
        if (oi, attr) == (0x8001, 2):
            return _data(DT.ENUM, 1 if meter.keep_power else 0)
        if (oi, attr) == (0x202C, 2) and meter.credit_yuan is not None:
            return _data(
                DT.STRUCTURE,
                (
                    _data(DT.DOUBLE_LONG_UNSIGNED, max(0, round(meter.credit_yuan * 100))),
                    _data(DT.DOUBLE_LONG_UNSIGNED, 0),
                ),
            )
        if (oi, attr) == (0x202D, 2) and meter.credit_yuan is not None:
            return _data(DT.DOUBLE_LONG_UNSIGNED, max(0, round(-meter.credit_yuan * 100)))
        if (oi, attr) == (0x4000, 2):
            return self._dts(meter.meter_time(now))
        if (oi, attr) == (dlt698.topology.TOPOLOGY_OI, 2):
            return dlt698.topology.results_data(meter.signature.heard())
        if (oi, attr) in ((0x4001, 2), (0x4002, 2)):
            return _data(DT.OCTET_STRING, bytes.fromhex(meter.address))
        return None

    # -- time helpers -------------------------------------------------------------------------------
    def _local(self, meter_epoch: float) -> datetime:
        return datetime.fromtimestamp(meter_epoch + self.meter.utc_offset_s, UTC).replace(tzinfo=None)

    def _dts(self, meter_epoch: float) -> dlt698.Data:
        t = self._local(meter_epoch)
        return _data(DT.DATE_TIME_S, dlt698.DateTimeS(t.year, t.month, t.day, t.hour, t.minute, t.second))

    def _epoch(self, value: dlt698.DateTimeS) -> float:
        try:
            local = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second)
        except ValueError as err:
            raise ProtocolError(f"date_time_s {value} is not a valid date", protocol=dlt698.PROTOCOL) from err
        return local.replace(tzinfo=UTC).timestamp() - self.meter.utc_offset_s


__all__ = ["Dlt698Responder"]
