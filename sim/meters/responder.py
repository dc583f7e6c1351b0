"""What one virtual meter answers to one DL/T 645 request.

Layer: sim. Maps a decoded request ``Frame`` to the reply frame (or silence) using
the codec's DI table and builders; the meter's state lives in ``model``, the line
and its timing in ``bus``. Supported: read data (every DI of the codec table;
FF-filled where this meter has no such quantity; "no requested data" for unknown
DIs), the 15-min load curve (DI 06000001, codec layout) with follow-up reads (12H)
beyond 5 records, read address (only alone on the line), write (password checked:
04001503 clears report bits, 04000101/02 set the clock, 04001001..05 set the fee-control
limits, 04080001 orders a signature-current send), the signature result events (0308 0500 count,
0308 05nn records), broadcast time (08H), freeze (16H), relay control (1CH: trip, close allowed, direct
close, alarm, alarm release, keep power and its release; a trip under keep power is refused
with "password error / unauthorized" as meters do). Other functions get "other error" (baud
change: "rate cannot be changed").
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from protocols.dlt645 import SIGNATURE_RESULT_COUNT_DI, SIGNATURE_START_DI, topology
from protocols.errors import ProtocolError
from sim.meters._codec import (
    BROADCAST_ADDRESS,
    ERR_BAUD,
    ERR_NO_DATA,
    ERR_OTHER,
    ERR_PASSWORD,
    LOAD_CURVE_DI,
    LOAD_RECORDS_PER_FRAME,
    Control,
    Frame,
    RelayAction,
    Value,
    abnormal_response,
    ack_response,
    encode,
    lookup,
    parse_broadcast_time,
    parse_load_curve_query,
    parse_read_request,
    parse_relay_control,
    parse_write_request,
    read_address_response,
    read_response,
)
from sim.meters.model import Instant, Registers, RelayRefused, VirtualMeter

DI_REPORT_STATUS = 0x04001501
DI_REPORT_RESET = 0x04001503
DI_DATE = 0x04000101
DI_TIME = 0x04000102
CREDIT_LIMIT_DIS = {
    0x04001001: "credit.alarm1",
    0x04001002: "credit.alarm2",
    0x04001003: "credit.overdraft_limit",
    0x04001004: "credit.max_stored",
    0x04001005: "credit.close_allowed",
}
TEXT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


def _kwh(x: float) -> float:
    """Registers show truncated hundredths, like a meter's display."""
    return math.floor(x * 100 + 1e-6) / 100


class MeterResponder:
    """Answers requests for one meter; keeps the follow-up state of long replies."""

    def __init__(self, meter: VirtualMeter, *, preamble: int = 4) -> None:
        self.meter = meter
        self.preamble = preamble
        self._follow: dict[int, list[tuple[Value, ...]]] = {}  # DI -> remaining record chunks

    # -- entry points -------------------------------------------------------------------------------
    def handle(self, request: Frame, *, now: float, alone: bool = False) -> bytes | None:
        """Reply bytes (with FE preamble) for ``request`` at true time ``now``, or None for silence."""
        reply = self.reply(request, now=now, alone=alone)
        return None if reply is None else encode(reply, preamble=self.preamble)

    def reply(self, request: Frame, *, now: float, alone: bool = False) -> Frame | None:
        if request.is_response or not self.meter.on:
            return None
        self.meter.settle(now)
        broadcast = request.address == BROADCAST_ADDRESS
        try:
            reply = self._dispatch(request, now=now, alone=alone)
        except ProtocolError:
            reply = abnormal_response(self.meter.address, request.control, ERR_OTHER)
        return None if broadcast else reply

    # -- per function -------------------------------------------------------------------------------
    def _dispatch(self, req: Frame, *, now: float, alone: bool) -> Frame | None:
        code = req.code
        addr = self.meter.address
        if code == Control.BROADCAST_TIME:
            self.meter.broadcast_sync(self._epoch(parse_broadcast_time(req)), now)
            return None
        if code == Control.READ_DATA:
            return self._read(req, now)
        if code == Control.READ_FOLLOWUP:
            return self._followup(req)
        if code == Control.READ_ADDRESS:
            return read_address_response(addr) if alone else None
        if code == Control.WRITE_DATA:
            return self._write(req, now)
        if code == Control.FREEZE:
            self.meter.freeze_now(now)  # periodic settings (non-99 fields) are acknowledged, not kept
            return ack_response(addr, req.control)
        if code == Control.RELAY_CONTROL:
            return self._relay(req, now)
        if code == Control.CHANGE_BAUD:
            return abnormal_response(addr, req.control, ERR_BAUD)
        if code in (Control.WRITE_ADDRESS,):
            return None  # only on a programming-enabled meter; ours stay silent
        return abnormal_response(addr, req.control, ERR_OTHER)

    def _read(self, req: Frame, now: float) -> Frame:
        addr = self.meter.address
        query = parse_read_request(req)
        row = lookup(query.di)
        if row is None or query.di == DI_REPORT_RESET:
            return abnormal_response(addr, req.control, ERR_NO_DATA)
        if query.di == LOAD_CURVE_DI:
            return self._curve(req, query.extra, now)
        values = self._values(query.di, row.layout.element_names(), now)
        if values is None:
            return abnormal_response(addr, req.control, ERR_NO_DATA)
        return read_response(addr, query.di, values)

    def _curve(self, req: Frame, extra: bytes, now: float) -> Frame:
        addr = self.meter.address
        q = parse_load_curve_query(extra)
        self.meter.advance(now)
        points = self.meter.curve_since(self._epoch(q.start), q.count)
        if not points:
            return abnormal_response(addr, req.control, ERR_NO_DATA)
        records: list[tuple[Value, ...]] = []
        for p in points:
            inst = p.instant
            records.append(
                (
                    self._local(p.ts).strftime("%Y-%m-%d %H:%M"),
                    _kwh(p.forward_total),
                    _kwh(p.reverse_total),
                    *_round(inst.voltage, 1),
                    *_round(inst.current, 3),
                    round(inst.total_power_kw, 4),
                    round(inst.power_factor, 3),
                )
            )
        chunks: list[tuple[Value, ...]] = [
            tuple(records[i : i + LOAD_RECORDS_PER_FRAME])
            for i in range(0, len(records), LOAD_RECORDS_PER_FRAME)
        ]
        self._follow[LOAD_CURVE_DI] = chunks[1:]
        return read_response(addr, LOAD_CURVE_DI, chunks[0], follow_up=len(chunks) > 1)

    def _followup(self, req: Frame) -> Frame:
        addr = self.meter.address
        query = parse_read_request(req)
        pending = self._follow.get(query.di)
        if not pending:
            return abnormal_response(addr, req.control, ERR_NO_DATA)
        chunk = pending.pop(0)
        return read_response(addr, query.di, chunk, follow_up=bool(pending), seq=query.seq or 0)

    def _authorized(self, password: str) -> bool:
        return self.meter.check_password(int(password[:2]), password[2:])

    def _write(self, req: Frame, now: float) -> Frame:
        addr = self.meter.address
        w = parse_write_request(req)
        if not self._authorized(w.auth.password):
            return abnormal_response(addr, req.control, ERR_PASSWORD)
        row = lookup(w.di)
        if row is None:
            return abnormal_response(addr, req.control, ERR_NO_DATA)
        values = row.layout.decode(w.payload, 22)
        meter = self.meter
        local = self._local(meter.meter_time(now))
        if w.di == DI_REPORT_RESET and isinstance(values[0], int):
            meter.clear_report(values[0])
        elif w.di == DI_DATE and isinstance(values[0], str):
            day = datetime.strptime(values[0].rsplit(" ", 1)[0], "%Y-%m-%d")
            meter.set_clock(self._epoch_dt(local.replace(year=day.year, month=day.month, day=day.day)), now)
        elif w.di == DI_TIME and isinstance(values[0], str):
            hh, mm, ss = (int(x) for x in values[0].split(":"))
            meter.set_clock(self._epoch_dt(local.replace(hour=hh, minute=mm, second=ss)), now)
        elif w.di == SIGNATURE_START_DI and isinstance(values[0], str):
            meter.signature.order(self._epoch(values[0]) - meter.skew_s)
        elif w.di in CREDIT_LIMIT_DIS and isinstance(values[0], int | float):
            meter.credit_limits[CREDIT_LIMIT_DIS[w.di]] = float(values[0])
        else:
            return abnormal_response(addr, req.control, ERR_OTHER)  # read-only here
        return ack_response(addr, req.control)

    def _relay(self, req: Frame, now: float) -> Frame:
        addr = self.meter.address
        cmd = parse_relay_control(req)
        if not self._authorized(cmd.auth.password):
            return abnormal_response(addr, req.control, ERR_PASSWORD)
        meter = self.meter
        if cmd.valid_until is None or self._epoch(cmd.valid_until) < meter.meter_time(now):
            return abnormal_response(addr, req.control, ERR_OTHER)  # command expired
        try:
            if cmd.action == RelayAction.TRIP:
                meter.trip(now)
            elif cmd.action == RelayAction.CLOSE_ALLOWED:
                meter.allow_close(now)
            elif cmd.action == RelayAction.DIRECT_CLOSE:
                meter.close(now)
            elif cmd.action in (RelayAction.ALARM, RelayAction.ALARM_RELEASE):
                meter.set_alarm(cmd.action == RelayAction.ALARM, now)
            elif cmd.action == RelayAction.KEEP_POWER:
                meter.set_keep_power(True, now)
            elif cmd.action == RelayAction.KEEP_POWER_RELEASE:
                meter.set_keep_power(False, now)
            else:
                return abnormal_response(addr, req.control, ERR_OTHER)
        except RelayRefused:
            return abnormal_response(addr, req.control, ERR_PASSWORD)  # as meters do under keep-power
        return ack_response(addr, req.control)

    # -- values -------------------------------------------------------------------------------------
    def _values(self, di: int, names: tuple[str, ...], now: float) -> tuple[Value, ...] | None:
        meter = self.meter
        if di == DI_REPORT_STATUS:
            word = meter.report_status
            return (word, tuple(1 for bit in range(96) if word >> bit & 1))
        if di & 0xFFFFFF00 == 0x03110000 and 1 <= di & 0xFF <= 10:  # power-down record n
            n = di & 0xFF
            meter.advance(now)
            if n > len(meter.power_downs):
                return (None, None)
            rec = meter.power_downs[n - 1]
            return (self._stamp(rec.start), None if rec.end is None else self._stamp(rec.end))
        if di in (DI_DATE, DI_TIME):  # the meter's own clock
            local = self._local(meter.meter_time(now))
            if di == DI_DATE:
                return (f"{local:%Y-%m-%d} w{local.isoweekday() % 7}",)
            return (f"{local:%H:%M:%S}",)
        if di == SIGNATURE_RESULT_COUNT_DI:
            return (meter.signature.count,)
        if di & 0xFFFFFF00 == SIGNATURE_RESULT_COUNT_DI and 1 <= di & 0xFF <= 10:  # result event n
            return topology.values_from_detections(meter.signature.event(di & 0xFF))
        if di & 0xFFFFFF00 in (0x05060000, 0x05060100, 0x05060200) and di & 0xFF:  # daily freeze n
            n = di & 0xFF
            meter.advance(now)
            if n > len(meter.daily_freezes):
                return tuple(None for _ in names)
            frz = meter.daily_freezes[n - 1]
            if di & 0xFF00 == 0:
                return (self._local(frz.ts).strftime("%Y-%m-%d %H:%M"),)
            block = frz.registers.forward if di & 0xFF00 == 0x0100 else frz.registers.reverse
            return tuple(_kwh(x) for x in block)
        snap = _Snapshot(self, now)
        return tuple(snap.get(name) for name in names)

    # -- time helpers -------------------------------------------------------------------------------
    def _local(self, meter_epoch: float) -> datetime:
        return datetime.fromtimestamp(meter_epoch + self.meter.utc_offset_s, UTC).replace(tzinfo=None)

    def _stamp(self, meter_epoch: float) -> str:
        return self._local(meter_epoch).strftime("%Y-%m-%d %H:%M:%S")

    def _epoch_dt(self, local: datetime) -> float:
        return local.replace(tzinfo=UTC).timestamp() - self.meter.utc_offset_s

    def _epoch(self, text: str) -> float:
        for fmt in TEXT_FORMATS:
            try:
                return self._epoch_dt(datetime.strptime(text, fmt))
            except ValueError:
                continue
        raise ProtocolError(f"time {text!r} is not a valid date", protocol="dlt645")


class _Snapshot:
    """Values by quantity/element name at one instant; unknown names give None (FF-filled)."""

    def __init__(self, responder: MeterResponder, now: float) -> None:
        self.r = responder
        self.now = now
        self._reg: Registers | None = None
        self._inst: Instant | None = None

    @property
    def reg(self) -> Registers:
        if self._reg is None:
            self._reg = self.r.meter.registers(self.now)
        return self._reg

    @property
    def inst(self) -> Instant:
        if self._inst is None:
            self._inst = self.r.meter.instant(self.now)
        return self._inst

    def get(self, name: str) -> Value:
        m = self.r.meter
        parts = name.split(".")
        if parts[0] == "energy" and len(parts) == 4:
            idx = ("total", "t1", "t2", "t3", "t4").index(parts[3])
            if parts[2] == "import":
                return _kwh(self.reg.forward[idx])
            if parts[2] == "export":
                return _kwh(self.reg.reverse[idx])
            if parts[2] == "combined":
                return _kwh(self.reg.forward[idx] + self.reg.reverse[idx])
        if parts[0] in ("voltage", "current", "power", "power_factor") and parts[-1] in "abc":
            k = "abc".index(parts[-1])
            inst = self.inst
            if parts[0] == "voltage":
                return _r(inst.voltage[k], 1)
            if parts[0] == "current":
                return _r(inst.current[k], 3)
            if parts[0] == "power":
                return _r(inst.power_kw[k], 4)
            return round(inst.power_factor, 3) if inst.power_kw[k] is not None else None
        if name == "power.active.total":
            return round(self.inst.total_power_kw, 4)
        if name == "power_factor.total":
            return round(self.inst.power_factor, 3)
        if name == "frequency":
            return round(self.inst.frequency_hz, 2)
        if name == "temperature.internal":
            return round(25.0 + 5.0 * math.sin(self.now / 7200.0), 1)
        local = self.r._local(m.meter_time(self.now))
        values: dict[str, Value] = {
            "date": f"{local:%Y-%m-%d} w{(local.weekday() + 1) % 7}",  # DL/T 645 weekday: 0 = Sunday
            "time": f"{local:%H:%M:%S}",
            "address": m.address,
            "meter_number": m.address,
            "rated_voltage": "220V",
            "status_word_3": m.status_word3(),
            "credit.remaining": None if m.credit_yuan is None else max(0.0, round(m.credit_yuan, 2)),
            "credit.overdraft": None if m.credit_yuan is None else max(0.0, round(-m.credit_yuan, 2)),
            **m.credit_limits,
            "events.cover_open.count": 0,
            "events.relay_trip.count": m.relay_trip_count,
            "events.power_down.count": m.power_down_count,
            "events.voltage_loss.count": 0,
            "events.voltage_loss.minutes": 0,
        }
        return values.get(name)


def _r(x: float | None, nd: int) -> float | None:
    return None if x is None else round(x, nd)


def _round(xs: tuple[float | None, ...], nd: int) -> list[float | None]:
    return [_r(x, nd) for x in xs]


__all__ = ["MeterResponder"]
