"""``MeterClient``: one meter, whatever its protocol (DL/T 645 / 698.45) and transport (RS-485 / HPLC).

Layer: hal. The one interface the acquisition app reads meters through. Every method
returns normalized values: quantity names from ``protocols.quantities`` mapped to floats in
the quantity's unit, and meter-clock times as naive local ``datetime`` (the meter's own
clock, in its local time; the caller knows the time zone). What is read per kind:

=================  ==============================  =====================================
kind               DL/T 645-2007                   DL/T 698.45
=================  ==============================  =====================================
realtime items     one DI per item (per exchange)  GET-Request-NormalList, one exchange
15-min curve       06000001 load records           GET-Record 50020200, RSD selector 2
daily freeze n     05060000+n time, 050601/02+n    GET-Record 50040200, RSD selector 9
power-down count   03110000                        GET 30110700 (current value record)
power-down record  03110000+n start/end            GET-Record 30110200, RSD selector 9
relay status       status word 3 (04000503)        status word 3 (20140203)
relay command      1CH control, N1 1A..3B          ACTION 8000 m127..130 / 8001 m127, 128
fee-control limits 04001001..05 (read / write 14H) 401E, 401F (GET / SET)
remaining credit   00900200                        202C
meter clock        04000101 date, 04000102 time    GET 40000200
set meter clock    write 04000101, 04000102        SET 40000200
time sync          broadcast 08H                   broadcast ACTION 40007F00
=================  ==============================  =====================================

Relay commands and what the read-back of status word 3 must show once a command took effect
(``RelayStatus.satisfies``): trip -> relay open (bit 4) and trip commanded (bit 6); close
allowed -> trip no longer commanded (the relay itself closes when the customer presses the
meter's button); direct close -> relay closed; alarm / alarm release -> bit 7 (pre-trip alarm)
set / clear; keep power / release -> bit 12 set / clear.

Abnormal replies raise ``DeviceError``; no answer ``TransportTimeout``; garbage
``ProtocolError``. Must not know schedules, archives, stores or readings.
"""

from __future__ import annotations

import enum
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from hal.errors import DeviceError
from hal.interfaces import Priority
from hal.meters.dlt645 import Dlt645Master
from hal.meters.dlt698 import Dlt698Master, date_time_s, to_datetime
from hal.meters.transport import MeterTransport
from protocols import dlt645, dlt698
from protocols.errors import ProtocolError
from protocols.quantities import QUANTITIES
from protocols.signature import MAX_DETECTIONS, Detection

CURVE_PERIOD_S = 900
REALTIME_ITEMS = ("energy", "energy_export", "voltage", "current", "power", "power_factor", "frequency")


class RelayCommand(enum.Enum):
    """Fee-control commands (DL/T 645 N1 code in brackets)."""

    TRIP = "trip"  # 1AH 跳闸
    CLOSE_ALLOWED = "close_allowed"  # 1BH 合闸允许
    DIRECT_CLOSE = "direct_close"  # 1CH 直接合闸
    ALARM = "alarm"  # 2AH 报警
    ALARM_RELEASE = "alarm_release"  # 2BH 报警解除
    KEEP_POWER = "keep_power"  # 3AH 保电
    KEEP_POWER_RELEASE = "keep_power_release"  # 3BH 保电解除


# status word 3 bits (DL/T 645 04000503 = DL/T 698.45 20140203)
RELAY_OPEN_BIT = 4  # relay state, 1 = open (断)
RELAY_TRIP_COMMAND_BIT = 6  # relay command state, 1 = trip commanded
PRE_TRIP_ALARM_BIT = 7
KEEP_POWER_BIT = 12


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """What status word 3 says about the relay, the alarm and keep-power."""

    open: bool
    trip_commanded: bool
    alarm: bool
    keep_power: bool
    word: int

    @classmethod
    def from_word(cls, word: int) -> RelayStatus:
        def bit(n: int) -> bool:
            return bool(word >> n & 1)

        return cls(
            bit(RELAY_OPEN_BIT),
            bit(RELAY_TRIP_COMMAND_BIT),
            bit(PRE_TRIP_ALARM_BIT),
            bit(KEEP_POWER_BIT),
            word,
        )

    def satisfies(self, command: RelayCommand) -> bool:
        """Whether the meter shows ``command`` carried out."""
        match command:
            case RelayCommand.TRIP:
                return self.open and self.trip_commanded
            case RelayCommand.CLOSE_ALLOWED:
                return not self.trip_commanded
            case RelayCommand.DIRECT_CLOSE:
                return not self.open and not self.trip_commanded
            case RelayCommand.ALARM:
                return self.alarm
            case RelayCommand.ALARM_RELEASE:
                return not self.alarm
            case RelayCommand.KEEP_POWER:
                return self.keep_power
            case RelayCommand.KEEP_POWER_RELEASE:
                return not self.keep_power
        return False  # pragma: no cover - every member is matched above


@dataclass(frozen=True, slots=True)
class CreditLimits:
    """The meter's fee-control thresholds, in fen (0.01 元)."""

    alarm1: int
    alarm2: int
    overdraft: int
    max_stored: int
    close_allowed: int

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.alarm1, self.alarm2, self.overdraft, self.max_stored, self.close_allowed)


@dataclass(frozen=True, slots=True)
class Record:
    """A stored record (curve point, freeze): its meter-clock time and its quantities."""

    at: datetime
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class PowerDownRecord:
    start: datetime
    end: datetime | None


class MeterClient(Protocol):
    """One meter as the app sees it."""

    @property
    def address(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    @property
    def transport(self) -> MeterTransport: ...

    @property
    def curve_batch(self) -> int:
        """Most curve records one ``read_curve`` call asks for."""
        ...

    def available(self) -> bool:
        """False while the transport counts this meter as not answering."""
        ...

    def realtime_batches(self, items: Sequence[str]) -> list[tuple[str, ...]]:
        """How ``items`` split into exchanges (each batch is one ``read_realtime`` call)."""
        ...

    async def read_realtime(
        self, items: Sequence[str], *, priority: Priority = Priority.REALTIME
    ) -> dict[str, float]: ...

    async def read_curve(self, since: datetime, count: int) -> list[Record]: ...

    async def read_daily_freeze(self, times_ago: int) -> Record | None:
        """The n-th most recent daily freeze (1 = last midnight); None if the meter has none."""
        ...

    async def read_power_down_count(self) -> int | None: ...

    async def read_power_down_records(self, last: int) -> list[PowerDownRecord]:
        """Up to ``last`` most recent power-down records, newest first."""
        ...

    async def read_clock(self, *, priority: Priority = Priority.CONTROL) -> datetime | None:
        """The meter's own clock (naive local time); None if it gave none."""
        ...

    async def set_clock(self, when: datetime) -> None:
        """Set the meter's clock to ``when`` (naive local time) point to point, at control
        priority: what a terminal does when the broadcast cannot (a meter takes a broadcast sync
        of at most 5 minutes). A refusal raises ``DeviceError``."""
        ...

    async def read_relay_state(self) -> bool | None:
        """True when the relay is open (tripped)."""
        ...

    async def read_relay_status(self, *, priority: Priority = Priority.CONTROL) -> RelayStatus | None:
        """Relay, alarm and keep-power bits of status word 3 (None: the meter has no such word)."""
        ...

    async def relay(self, command: RelayCommand, *, valid_until: datetime) -> None:
        """Send a fee-control command (control priority); a refusal raises ``DeviceError``."""
        ...

    async def read_credit_limits(self) -> CreditLimits | None: ...

    async def write_credit_limits(self, limits: CreditLimits) -> None: ...

    async def read_remaining_credit(self) -> int | None:
        """The meter's own remaining credit in fen (a locally prepaid meter), None if it has none."""
        ...

    async def start_signature(self, at: datetime, *, priority: Priority = Priority.CONTROL) -> None:
        """Order the meter to send its signature current (特征电流) at ``at`` (its own local clock)."""
        ...

    async def read_signature_results(
        self, last: int = 4, *, priority: Priority = Priority.EVENT
    ) -> list[Detection]:
        """Signatures this unit heard, newest first (up to ``last`` result events' worth)."""
        ...


def _numeric(values: Sequence[object], names: Sequence[str]) -> Iterator[tuple[str, float]]:
    for name, value in zip(names, values, strict=False):
        if name in QUANTITIES and isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)


def parse_645_time(text: str) -> datetime:
    """A DL/T 645 stamp as the codec renders it ("2026-01-01 00:15[:ss]")."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    try:
        return datetime.strptime(text, fmt)
    except ValueError as err:
        raise ProtocolError(f"meter time {text!r} is not a valid date", protocol="dlt645") from err


# ---------------------------------------------------------------------------------------- 645

# item -> (DI on a single-phase meter, DI on a three-phase meter)
DLT645_ITEMS: dict[str, tuple[int, int]] = {
    "energy": (0x0001FF00, 0x0001FF00),
    "energy_export": (0x00020000, 0x00020000),
    "voltage": (0x02010100, 0x0201FF00),
    "current": (0x02020100, 0x0202FF00),
    "power": (0x02030000, 0x0203FF00),
    "power_factor": (0x02060000, 0x02060000),
    "frequency": (0x02800002, 0x02800002),
}
DLT645_POWER_DOWN_COUNT = 0x03110000
DLT645_STATUS_WORD_3 = 0x04000503
DLT645_DATE = 0x04000101  # date and weekday (YYMMDDWW)
DLT645_TIME = 0x04000102  # time (hhmmss)
DLT645_REMAINING_CREDIT = 0x00900200
DLT645_CREDIT_LIMITS = (0x04001001, 0x04001002, 0x04001003, 0x04001004, 0x04001005)
_645_RELAY = {command: dlt645.RelayAction[command.name] for command in RelayCommand}


class Dlt645Client:
    """``MeterClient`` for a DL/T 645-2007 meter."""

    protocol = "dlt645"
    curve_batch: int = dlt645.LOAD_RECORDS_PER_FRAME
    __slots__ = ("_address", "_password", "master", "three_phase")  # one client a meter

    def __init__(
        self, master: Dlt645Master, address: str, *, three_phase: bool = False, password: str = "02000000"
    ) -> None:
        self.master = master
        self._address = address
        self.three_phase = three_phase
        self._password = password

    @property
    def address(self) -> str:
        return self._address

    @property
    def transport(self) -> MeterTransport:
        return self.master.transport

    def available(self) -> bool:
        return self.master.transport.available(self._address)

    def realtime_batches(self, items: Sequence[str]) -> list[tuple[str, ...]]:
        return [(item,) for item in items]  # one DI per exchange

    def _read(self, di: int, priority: Priority) -> Coroutine[Any, Any, dlt645.ReadResult]:
        # the master's read itself, not a coroutine around it: one frame less a queued read
        return self.master.read(self._address, di, priority=priority)

    async def read_realtime(
        self, items: Sequence[str], *, priority: Priority = Priority.REALTIME
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        for item in items:
            result = await self._read(DLT645_ITEMS[item][1 if self.three_phase else 0], priority)
            out.update(_numeric(result.values, result.names))
        return out

    async def read_curve(self, since: datetime, count: int) -> list[Record]:
        result = await self.master.read_load_curve(self._address, start=since, count=count)
        names = result.names
        records: list[Record] = []
        for row in result.values:
            if not isinstance(row, tuple) or not row or not isinstance(row[0], str):
                continue
            records.append(Record(parse_645_time(row[0]), dict(_numeric(row[1:], names[1:]))))
        return records

    async def read_daily_freeze(self, times_ago: int) -> Record | None:
        stamp = await self._read(0x05060000 | times_ago, Priority.CURVE)
        if not stamp.values or not isinstance(stamp.values[0], str):
            return None
        energy = await self._read(0x05060100 | times_ago, Priority.CURVE)
        values = dict(_numeric(energy.values, energy.names))
        try:  # the reverse block (PV export); a meter without it answers abnormally
            reverse = await self._read(0x05060200 | times_ago, Priority.CURVE)
        except DeviceError:
            reverse = None
        if reverse is not None:
            values.update(_numeric(reverse.values, reverse.names))
        return Record(parse_645_time(stamp.values[0]), values)

    async def read_clock(self, *, priority: Priority = Priority.CONTROL) -> datetime | None:
        """Date (04000101) then time (04000102): two exchanges, so a read across midnight can pair
        one day's date with the next day's time; the caller bounds the error by the exchange time."""
        day = await self._read(DLT645_DATE, priority)
        clock = await self._read(DLT645_TIME, priority)
        if not day.values or not clock.values:
            return None
        date_text, time_text = day.values[0], clock.values[0]
        if not isinstance(date_text, str) or not isinstance(time_text, str):
            return None
        try:
            return datetime.strptime(f"{date_text.rsplit(' ', 1)[0]} {time_text}", "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return None

    async def set_clock(self, when: datetime) -> None:
        day, clock = f"{when:%Y-%m-%d} w{when.isoweekday() % 7}", f"{when:%H:%M:%S}"
        for di, value in ((DLT645_DATE, day), (DLT645_TIME, clock)):
            payload = dlt645.encode_values(di, [value])
            await self.master.write(self._address, di, payload, password=self._password)

    async def read_power_down_count(self) -> int | None:
        count = await self._read(DLT645_POWER_DOWN_COUNT, Priority.EVENT)
        value = count.values[0] if count.values else None
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    async def read_power_down_records(self, last: int) -> list[PowerDownRecord]:
        out: list[PowerDownRecord] = []
        for n in range(1, min(last, 10) + 1):
            record = await self._read(DLT645_POWER_DOWN_COUNT | n, Priority.EVENT)
            start, end = (*record.values, None, None)[:2]
            if not isinstance(start, str):
                break
            out.append(
                PowerDownRecord(parse_645_time(start), parse_645_time(end) if isinstance(end, str) else None)
            )
        return out

    async def read_relay_state(self) -> bool | None:
        status = await self.read_relay_status(priority=Priority.EVENT)
        return None if status is None else status.open

    async def read_relay_status(self, *, priority: Priority = Priority.CONTROL) -> RelayStatus | None:
        word = await self._read(DLT645_STATUS_WORD_3, priority)
        value = word.values[0] if word.values else None
        return RelayStatus.from_word(value) if isinstance(value, int) else None

    async def relay(self, command: RelayCommand, *, valid_until: datetime) -> None:
        await self.master.relay(self._address, _645_RELAY[command], valid_until, password=self._password)

    async def read_credit_limits(self) -> CreditLimits | None:
        fen: list[int] = []
        for di in DLT645_CREDIT_LIMITS:
            result = await self._read(di, Priority.CONTROL)
            value = result.values[0] if result.values else None
            if not isinstance(value, int | float) or isinstance(value, bool):
                return None
            fen.append(round(value * 100))
        return CreditLimits(*fen)

    async def write_credit_limits(self, limits: CreditLimits) -> None:
        for di, fen in zip(DLT645_CREDIT_LIMITS, limits.as_tuple(), strict=True):
            payload = dlt645.encode_values(di, [fen / 100])
            await self.master.write(self._address, di, payload, password=self._password)

    async def read_remaining_credit(self) -> int | None:
        result = await self._read(DLT645_REMAINING_CREDIT, Priority.EVENT)
        value = result.values[0] if result.values else None
        return round(value * 100) if isinstance(value, int | float) and not isinstance(value, bool) else None

    async def start_signature(self, at: datetime, *, priority: Priority = Priority.CONTROL) -> None:
        payload = dlt645.encode_values(dlt645.SIGNATURE_START_DI, [at.strftime("%Y-%m-%d %H:%M:%S")])
        await self.master.write(
            self._address, dlt645.SIGNATURE_START_DI, payload, password=self._password, priority=priority
        )

    async def read_signature_results(
        self, last: int = 4, *, priority: Priority = Priority.EVENT
    ) -> list[Detection]:
        out: list[Detection] = []
        for n in range(1, min(max(last, 1), 10) + 1):
            result = await self._read(dlt645.topology.signature_result_di(n), priority)
            if not result.values:
                break  # no such event (yet)
            out.extend(dlt645.topology.detections_from_values(result.values))
        return out


# ---------------------------------------------------------------------------------------- 698

OAD = dlt698.OAD.of
DLT698_ITEMS: dict[str, dlt698.OAD] = {
    "energy": OAD(0x00100200),
    "energy_export": OAD(0x00200200),
    "voltage": OAD(0x20000200),
    "current": OAD(0x20010200),
    "power": OAD(0x20040200),
    "power_factor": OAD(0x200A0200),
    "frequency": OAD(0x200F0200),
}
FREEZE_TIME = OAD(0x20210200)  # data freeze time (数据冻结时间)
MINUTE_FREEZE = OAD(0x50020200)  # minute freeze records: the 15-min curve
DAILY_FREEZE = OAD(0x50040200)
CURVE_COLUMNS = (
    FREEZE_TIME,
    OAD(0x00100201),  # forward active energy, total
    OAD(0x00200201),  # reverse active energy, total
    OAD(0x20000200),  # voltage A/B/C
    OAD(0x20010200),  # current A/B/C
    OAD(0x20040201),  # active power, total
    OAD(0x200A0201),  # power factor, total
)
DAILY_COLUMNS = (FREEZE_TIME, OAD(0x00100200), OAD(0x00200200))  # forward, reverse (PV export)
POWER_DOWN_RECORDS = OAD(0x30110200)
CLOCK = OAD(0x40000200)  # date and time (日期时间)
POWER_DOWN_CURRENT = OAD(0x30110700)  # current value record: occurrence count + cumulative time
EVENT_COLUMNS = (OAD(0x20220200), OAD(0x201E0200), OAD(0x20200200))  # record no., start, end
STATUS_WORD_3 = dlt698.STATUS_WORD_3
_698_CONTROL = {command: dlt698.Control[command.name] for command in RelayCommand}
TI_15_MIN = dlt698.TI(1, 15)

# A-XDR bytes of each realtime item's Data on a single-phase meter (the probe order).
REPLY_DATA_BYTES = {
    "frequency": 3,
    "voltage": 5,
    "power_factor": 8,
    "current": 7,
    "power": 12,
    "energy": 27,
    "energy_export": 27,
}

# Sizes used to size a curve read (A-XDR encoded, rounded up): one CURVE_COLUMNS row of a
# single-/three-phase meter, the GET-Response-Record around the rows (service, PIID, OAD,
# RCSD of 7 OADs, row count, FollowReport/TimeTag) and a link frame around an APDU piece.
CURVE_ROW_BYTES = (40, 56)
RECORD_REPLY_OVERHEAD = 50
FRAME_OVERHEAD = 27  # FE x4, 68, L, C, AF, SA(6), CA, HCS, fragment word, FCS, 16
DECLARED_MAX_APDU = 200  # what RS-485 698 meters commonly declare as their largest send APDU
# One curve read may keep the line busy this long with its reply (all fragments): long enough
# to fetch hours of curve in one request, short enough not to starve the realtime cycle.
CURVE_LINE_BUDGET_S = 4.0
CARRIER_CURVE_FRAGMENTS = 4  # each fragment costs a carrier round trip (seconds)
MAX_CURVE_BATCH = 96  # one day of 15-min points


def _values_698(oad: dlt698.OAD, data: dlt698.Data) -> Iterator[tuple[str, float]]:
    for element in dlt698.values(oad, data) or ():
        name, value = element.get("quantity"), element.get("value")
        if isinstance(name, str) and isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)


def _time_of(data: dlt698.Data) -> datetime | None:
    if data.type is dlt698.DataType.DATE_TIME_S and isinstance(data.value, dlt698.DateTimeS):
        return to_datetime(data.value)
    return None


def _first_count(data: dlt698.Data) -> int | None:
    """The occurrence count in a current-value record: the first unsigned integer, depth first."""
    if data.type in (dlt698.DataType.ARRAY, dlt698.DataType.STRUCTURE):
        for item in data.value:
            found = _first_count(item)
            if found is not None:
                return found
        return None
    if data.type in (
        dlt698.DataType.DOUBLE_LONG_UNSIGNED,
        dlt698.DataType.LONG_UNSIGNED,
        dlt698.DataType.UNSIGNED,
    ):
        return int(data.value)
    return None


class Dlt698Client:
    """``MeterClient`` for a DL/T 698.45 meter."""

    protocol = "dlt698"
    __slots__ = ("_address", "curve_batch", "master", "max_apdu", "three_phase")  # one client a meter

    def __init__(
        self,
        master: Dlt698Master,
        address: str,
        *,
        three_phase: bool = False,
        max_apdu: int = DECLARED_MAX_APDU,
    ) -> None:
        if max_apdu < RECORD_REPLY_OVERHEAD:
            raise ValueError(f"max_apdu {max_apdu}: a record reply needs at least {RECORD_REPLY_OVERHEAD}")
        self.master = master
        self._address = address
        self.three_phase = three_phase
        self.max_apdu = max_apdu
        self.curve_batch = self._curve_batch()

    def _curve_batch(self) -> int:
        """Curve records per read: as many as fit the fragments the line time allows.

        The meter fragments a reply longer than ``max_apdu``; the master reassembles it. On
        RS-485 the reply's fragments may take ``CURVE_LINE_BUDGET_S`` on the wire (3 pieces at
        2400 baud, 15 at 9600); on the carrier each piece is a round trip, so a few.
        """
        transport = self.master.transport
        piece = transport.wire_seconds(self.max_apdu + FRAME_OVERHEAD)
        by_line = max(1, int(CURVE_LINE_BUDGET_S // piece)) if piece > 0 else CARRIER_CURVE_FRAGMENTS
        fragments = min(by_line, self.master.max_fragments)
        row = CURVE_ROW_BYTES[self.three_phase]
        rows = (fragments * self.max_apdu - RECORD_REPLY_OVERHEAD) // row
        return max(1, min(MAX_CURVE_BATCH, rows))

    def _reply_bytes(self, rows: int) -> int:
        """Expected bytes of a record reply (its first fragment when longer): for the timeout."""
        apdu = RECORD_REPLY_OVERHEAD + rows * CURVE_ROW_BYTES[self.three_phase]
        return min(apdu, self.max_apdu) + FRAME_OVERHEAD

    @property
    def address(self) -> str:
        return self._address

    @property
    def transport(self) -> MeterTransport:
        return self.master.transport

    def available(self) -> bool:
        return self.master.transport.available(self._address)

    def realtime_batches(self, items: Sequence[str]) -> list[tuple[str, ...]]:
        """NormalList: every item in one exchange -- except while the meter counts as not
        answering: then the smallest item goes first, alone. A port polls such a meter with a
        short timeout that a whole NormalList reply (0.5 s on the wire at 2400 baud) would
        never fit, so the meter could not be seen coming back."""
        if not items:
            return []
        if self.available() or len(items) == 1:
            return [tuple(items)]
        probe = min(items, key=lambda item: REPLY_DATA_BYTES.get(item, 99))
        rest = tuple(i for i in items if i != probe)
        return [(probe,), rest]

    async def read_realtime(
        self, items: Sequence[str], *, priority: Priority = Priority.REALTIME
    ) -> dict[str, float]:
        results = await self.master.get(self._address, [DLT698_ITEMS[i] for i in items], priority=priority)
        out: dict[str, float] = {}
        refused: list[str] = []
        for result in results:
            if result.data is None:
                refused.append(f"{result.oad}: {dlt698.dar_name(result.dar or 255)}")
                continue
            out.update(_values_698(result.oad, result.data))
        if refused and not out:
            raise DeviceError(self._address, 255, "; ".join(refused))
        return out

    async def _records(
        self, oad: dlt698.OAD, rsd: dlt698.RSD, columns: Sequence[dlt698.OAD], *, rows: int = 1
    ) -> dlt698.ResultRecord:
        return await self.master.get_record(
            self._address, oad, rsd, columns, priority=Priority.CURVE, reply_bytes=self._reply_bytes(rows)
        )

    @staticmethod
    def _row(result: dlt698.ResultRecord, row: tuple[dlt698.Data, ...]) -> Record | None:
        at = _time_of(row[0]) if row else None
        if at is None:
            return None
        values: dict[str, float] = {}
        for csd, data in zip(result.rcsd[1:], row[1:], strict=False):
            if isinstance(csd, dlt698.OAD):
                values.update(_values_698(csd, data))
        return Record(at, values)

    async def read_curve(self, since: datetime, count: int) -> list[Record]:
        dt = dlt698.DataType
        until = since + timedelta(seconds=CURVE_PERIOD_S * count)
        rsd = dlt698.RSD(
            2,
            (
                FREEZE_TIME,
                dlt698.Data(dt.DATE_TIME_S, date_time_s(since)),
                dlt698.Data(dt.DATE_TIME_S, date_time_s(until)),
                dlt698.Data(dt.TI, TI_15_MIN),
            ),
        )
        result = await self._records(MINUTE_FREEZE, rsd, CURVE_COLUMNS, rows=count)
        rows = (self._row(result, row) for row in result.rows or ())
        return [r for r in rows if r is not None]

    async def read_daily_freeze(self, times_ago: int) -> Record | None:
        result = await self._records(DAILY_FREEZE, dlt698.RSD(9, (times_ago,)), DAILY_COLUMNS)
        for row in result.rows or ():
            record = self._row(result, row)
            if record is not None:
                return record
        return None

    async def read_clock(self, *, priority: Priority = Priority.CONTROL) -> datetime | None:
        return _time_of(await self.master.get_one(self._address, CLOCK, priority=priority))

    async def set_clock(self, when: datetime) -> None:
        data = dlt698.Data(dlt698.DataType.DATE_TIME_S, date_time_s(when))
        await self.master.set(self._address, CLOCK, data)

    async def read_power_down_count(self) -> int | None:
        data = await self.master.get_one(self._address, POWER_DOWN_CURRENT, priority=Priority.EVENT)
        return _first_count(data)

    async def read_power_down_records(self, last: int) -> list[PowerDownRecord]:
        out: list[PowerDownRecord] = []
        for n in range(1, min(last, 10) + 1):
            result = await self.master.get_record(
                self._address, POWER_DOWN_RECORDS, dlt698.RSD(9, (n,)), EVENT_COLUMNS, priority=Priority.EVENT
            )
            row = (result.rows or ((),))[0]
            start = _time_of(row[1]) if len(row) > 1 else None
            if start is None:
                break
            out.append(PowerDownRecord(start, _time_of(row[2]) if len(row) > 2 else None))
        return out

    async def read_relay_state(self) -> bool | None:
        status = await self.read_relay_status(priority=Priority.EVENT)
        return None if status is None else status.open

    async def read_relay_status(self, *, priority: Priority = Priority.CONTROL) -> RelayStatus | None:
        data = await self.master.get_one(self._address, STATUS_WORD_3, priority=priority)
        if data.type is dlt698.DataType.BIT_STRING and isinstance(data.value, dlt698.BitString):
            # bit i of the word is bit-string bit i (counted from the first transmitted bit)
            bits = data.value
            return RelayStatus.from_word(sum(1 << i for i in range(min(bits.bits, 16)) if bits.bit(i)))
        return None

    async def relay(self, command: RelayCommand, *, valid_until: datetime) -> None:
        omd, data = dlt698.control_action(_698_CONTROL[command])
        await self.master.action(self._address, omd, data)

    async def read_credit_limits(self) -> CreditLimits | None:
        results = await self.master.get(
            self._address, [dlt698.ALARM_LIMITS, dlt698.OTHER_LIMITS], priority=Priority.CONTROL
        )
        if any(r.data is None for r in results):
            return None
        alarms = dlt698.money_values(results[0].data, 2)  # type: ignore[arg-type]
        others = dlt698.money_values(results[1].data, 3)  # type: ignore[arg-type]
        return CreditLimits(*alarms, *others)

    async def write_credit_limits(self, limits: CreditLimits) -> None:
        await self.master.set(
            self._address, dlt698.ALARM_LIMITS, dlt698.money_structure(limits.alarm1, limits.alarm2)
        )
        others = dlt698.money_structure(limits.overdraft, limits.max_stored, limits.close_allowed)
        await self.master.set(self._address, dlt698.OTHER_LIMITS, others)

    async def read_remaining_credit(self) -> int | None:
        try:
            data = await self.master.get_one(self._address, dlt698.WALLET, priority=Priority.EVENT)
        except DeviceError:
            return None
        return dlt698.money_values(data, 1)[0]

    async def start_signature(self, at: datetime, *, priority: Priority = Priority.CONTROL) -> None:
        topo = dlt698.topology
        await self.master.action(self._address, topo.START_SENDING, topo.start_sending(at), priority=priority)

    async def read_signature_results(
        self, last: int = 4, *, priority: Priority = Priority.EVENT
    ) -> list[Detection]:
        data = await self.master.get_one(self._address, dlt698.topology.RESULTS, priority=priority)
        return dlt698.topology.parse_results(data)[: max(last, 1) * MAX_DETECTIONS]


__all__ = [
    "DLT645_ITEMS",
    "DLT698_ITEMS",
    "REALTIME_ITEMS",
    "CreditLimits",
    "Dlt645Client",
    "Dlt698Client",
    "MeterClient",
    "PowerDownRecord",
    "Record",
    "RelayCommand",
    "RelayStatus",
    "parse_645_time",
]
