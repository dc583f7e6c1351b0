"""The DL/T 645-2007 data-identifier (DI) table: what each DI carries and how it maps to quantities.

Layer: protocols (pure data + codec). Must not import asyncio, serial, hal or runtime.

A DI (DI3 DI2 DI1 DI0, written most significant first, sent DI0 first) names a
data item; its reply payload is a sequence of elements, each with a format (see
``_formats``) and a name -- a normalized quantity from ``protocols.quantities``
where one exists, otherwise a local field name. Three layouts exist:

* ``Fixed``: the elements once (most DIs; blocks such as 0001FF00 list several);
* ``Records``: the elements repeated once per record (load curve);
* ``ActiveReport``: 04001501, ``word(12) AA count.. AA`` (variable length).

Load curve (our documented subset of the DL/T 645-2007 负荷记录):
request  ``C=11H  DI=06000001  N(1 BCD)  start mm hh DD MM YY`` = "N records of the 15-min
load curve from ``start``"; reply ``DI`` + N records of 33 bytes each::

    YYMMDDhhmm(5) | import total XXXXXX.XX(4) | export total XXXXXX.XX(4)
    | Ua Ub Uc XXX.X(2 each) | Ia Ib Ic ±XXX.XXX(3 each) | P total ±XX.XXXX(3) | PF total ±X.XXX(2)

At most 5 records fit one frame (4 + 5 x 33 = 169 <= 200); a meter with more sets
the follow-up bit and the master continues with C=12H (``read_followup_request``).
Missing values in a record are FF-filled.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from protocols.dlt645._formats import Ascii, Bcd, Digits, Format, Stamp, Value, Word
from protocols.errors import EncodeError, ProtocolError
from protocols.quantities import QUANTITIES

PROTOCOL = "dlt645"


@dataclass(frozen=True, slots=True)
class Element:
    name: str
    fmt: Format
    unit: str = ""

    @property
    def quantity(self) -> str | None:
        return self.name if self.name in QUANTITIES else None


def _q(name: str, fmt: Format) -> Element:
    """An element that is a normalized quantity; its unit comes from the quantity table."""
    return Element(name, fmt, QUANTITIES[name].unit)


class Layout(Protocol):
    def decode(self, data: bytes, offset: int) -> tuple[Value, ...]: ...

    def encode(self, values: Sequence[Value]) -> bytes: ...

    def element_names(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Fixed:
    elements: tuple[Element, ...]
    size: int = field(init=False, repr=False, compare=False)  # bytes of all elements

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", sum(e.fmt.size for e in self.elements))

    def decode(self, data: bytes, offset: int) -> tuple[Value, ...]:
        if len(data) != self.size:
            raise ProtocolError(
                f"payload of {len(data)} bytes, expected {self.size}", offset=offset, protocol=PROTOCOL
            )
        values: list[Value] = []
        at = 0
        for element in self.elements:
            values.append(element.fmt.decode(data[at : at + element.fmt.size], offset + at))
            at += element.fmt.size
        return tuple(values)

    def encode(self, values: Sequence[Value]) -> bytes:
        if len(values) != len(self.elements):
            raise EncodeError(f"{len(values)} values for {len(self.elements)} elements", protocol=PROTOCOL)
        return b"".join(e.fmt.encode(v) for e, v in zip(self.elements, values, strict=True))

    def element_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.elements)


@dataclass(frozen=True, slots=True)
class Records:
    """The elements repeated per record; values are one tuple per record."""

    record: Fixed

    def decode(self, data: bytes, offset: int) -> tuple[Value, ...]:
        size = self.record.size
        if len(data) % size:
            raise ProtocolError(
                f"payload of {len(data)} bytes is not a whole number of {size}-byte records",
                offset=offset,
                protocol=PROTOCOL,
            )
        return tuple(
            self.record.decode(data[at : at + size], offset + at) for at in range(0, len(data), size)
        )

    def encode(self, values: Sequence[Value]) -> bytes:
        out = bytearray()
        for record in values:
            if not isinstance(record, tuple):
                raise EncodeError(f"record {record!r}: expected a tuple of values", protocol=PROTOCOL)
            out += self.record.encode(record)
        return bytes(out)

    def element_names(self) -> tuple[str, ...]:
        return self.record.element_names()


SEPARATOR = 0xAA
ACTIVE_REPORT_BYTES = 12


@dataclass(frozen=True, slots=True)
class ActiveReport:
    """04001501: 96-bit status word, AA, one new-occurrence count byte per set bit, AA.

    Values: ``(word, (count, ...))``. Count bytes are taken as plain binary (a count
    rarely exceeds 9, where BCD and binary agree) and their number is not forced to
    equal the number of set bits, since meters differ.
    """

    word: Word

    def decode(self, data: bytes, offset: int) -> tuple[Value, ...]:
        n = ACTIVE_REPORT_BYTES
        if len(data) < n + 2 or data[n] != SEPARATOR or data[-1] != SEPARATOR:
            raise ProtocolError(
                "active-report status: expected 12 bytes, AA, counts, AA", offset=offset, protocol=PROTOCOL
            )
        return (self.word.decode(data[:n]), tuple(data[n + 1 : -1]))

    def encode(self, values: Sequence[Value]) -> bytes:
        if len(values) != 2 or not isinstance(values[1], tuple):
            raise EncodeError("active-report status: expected (word, (counts...))", protocol=PROTOCOL)
        counts = values[1]
        if not all(isinstance(c, int) and 0 <= c <= 0xFF for c in counts):
            raise EncodeError(f"active-report counts {counts!r}: expected bytes", protocol=PROTOCOL)
        return self.word.encode(values[0]) + bytes([SEPARATOR, *(int(c) for c in counts), SEPARATOR])  # type: ignore[arg-type]

    def element_names(self) -> tuple[str, ...]:
        return ("status_word", "new_counts")


@dataclass(frozen=True, slots=True)
class SignatureResults:
    """A signature-current identification result event record (0308 05nn), as the Wasion meter
    firmware's ``FillTopoIdentiResult645`` writes it (see ``protocols.signature``)::

        N(1) | code length L(1) | N x ( time ss mm hh DD MM YY (6, BCD) | phase (1) | S1 | S2 |
                                        noise (float32 LE, A, 4 each) | code (L, high byte first)
                                        | extended info (12) )

    Values: one tuple per detection ``(time "20YY-MM-DD hh:mm:ss", phase, S1, S2, noise,
    code hex, ext hex)``. All-FF data (no such record) decodes to no detection.
    """

    def decode(self, data: bytes, offset: int) -> tuple[Value, ...]:
        if not data or set(data) == {0xFF}:
            return ()
        if len(data) < 2:
            raise ProtocolError(
                "signature result: no count and code length", offset=offset, protocol=PROTOCOL
            )
        n, code_len = data[0], data[1]
        size = 6 + 1 + 12 + code_len + 12
        if n > 4 or len(data) != 2 + n * size:
            raise ProtocolError(
                f"signature result: {len(data)} bytes for {n} detections of {size}",
                offset=offset,
                protocol=PROTOCOL,
            )
        out: list[Value] = []
        for k in range(n):
            at = 2 + k * size
            rec = data[at : at + size]
            when = _SIGNATURE_TIME.decode(rec[:6], offset + at)
            s1, s2, noise = struct.unpack("<3f", rec[7:19])
            code = rec[19 : 19 + code_len].hex().upper()
            ext = rec[19 + code_len :].hex().upper()
            out.append((when, rec[6], round(s1, 4), round(s2, 4), round(noise, 4), code, ext))
        return tuple(out)

    def encode(self, values: Sequence[Value]) -> bytes:
        if len(values) > 4:
            raise EncodeError("signature result: at most 4 detections", protocol=PROTOCOL)
        codes = {bytes.fromhex(str(v[5])) for v in values if isinstance(v, tuple)}
        if len(codes) > 1:
            raise EncodeError("signature result: one code length for all detections", protocol=PROTOCOL)
        code_len = len(codes.pop()) if codes else 2
        out = bytearray([len(values), code_len])
        for v in values:
            if not isinstance(v, tuple) or len(v) != 7:
                raise EncodeError(f"signature detection {v!r}: expected 7 values", protocol=PROTOCOL)
            when, phase, s1, s2, noise, code, ext = v
            extra = bytes.fromhex(str(ext))
            if len(extra) > 12:
                raise EncodeError("signature detection: extended info over 12 bytes", protocol=PROTOCOL)
            out += _SIGNATURE_TIME.encode(when)
            out.append(int(phase))  # type: ignore[arg-type]
            out += struct.pack("<3f", float(s1), float(s2), float(noise))  # type: ignore[arg-type]
            out += bytes.fromhex(str(code)) + extra.ljust(12, b"\x00")
        return bytes(out)

    def element_names(self) -> tuple[str, ...]:
        return ("time", "phase", "s1_a", "s2_a", "noise_a", "code", "ext")


@dataclass(frozen=True, slots=True)
class DataItem:
    di: int
    item: str
    layout: Fixed | Records | ActiveReport | SignatureResults

    @property
    def unit(self) -> str:
        """The unit shared by all elements, or "" when they differ."""
        layout = self.layout
        if isinstance(layout, ActiveReport | SignatureResults):
            return ""
        elements = layout.elements if isinstance(layout, Fixed) else layout.record.elements
        units = {e.unit for e in elements}
        return units.pop() if len(units) == 1 else ""


# --- element formats -------------------------------------------------------------------------
ENERGY = Bcd(4, 2)
ENERGY_SIGNED = Bcd(4, 2, signed=True)
VOLTAGE = Bcd(2, 1)
CURRENT = Bcd(3, 3, signed=True)
POWER = Bcd(3, 4, signed=True)
PF = Bcd(2, 3, signed=True)
FREQUENCY = Bcd(2, 2)
TEMPERATURE = Bcd(2, 1, signed=True)
MONEY = Bcd(4, 2)
COUNT3 = Bcd(3, 0)
_SIGNATURE_TIME = Stamp("YYMMDDhhmmss")

STATUS_WORD_3 = Word(
    2,
    MappingProxyType(
        {
            0: "time_period_set_2",
            1: "supply_aux",
            2: "supply_battery",
            3: "programming_allowed",
            4: "relay_open",
            5: "time_zone_set_2",
            6: "relay_command_open",
            7: "pre_trip_alarm",
            8: "prepaid_energy",
            9: "prepaid_money",
            10: "tariff_set_2",
            11: "step_set_2",
            12: "keep_power",
        }
    ),
)


@dataclass(frozen=True, slots=True)
class ReportEvent:
    bit: int
    name: str
    count_di: int | None
    record_di: int | None


def _report_events() -> Iterator[ReportEvent]:
    yield ReportEvent(0, "load_switch_misoperation", 0x03360000, 0x03360001)
    yield ReportEvent(10, "meter_cover_open", 0x03300D00, 0x03300D01)
    yield ReportEvent(11, "terminal_cover_open", 0x03300E00, 0x03300E01)
    yield ReportEvent(12, "constant_magnetic_field", 0x03350000, 0x03350001)
    yield ReportEvent(13, "power_supply_abnormal", 0x03370000, 0x03370001)
    yield ReportEvent(14, "relay_trip", 0x1D000001, 0x1D000101)
    yield ReportEvent(15, "relay_close", 0x1E000001, 0x1E000101)
    phase_events = (
        (0x10, "loss_of_voltage"),
        (0x11, "under_voltage"),
        (0x12, "over_voltage"),
        (0x18, "loss_of_current"),
        (0x19, "over_current"),
        (0x1C, "overload"),
        (0x1B, "power_reverse"),
        (0x13, "phase_break"),
        (0x1A, "current_break"),
    )
    for phase, base in ((1, 16), (2, 32), (3, 48)):
        letter = "abc"[phase - 1]
        for i, (di3, name) in enumerate(phase_events):
            count_di = di3 << 24 | phase << 16 | 0x0001
            yield ReportEvent(base + i, f"{name}.{letter}", count_di, count_di | 0x0100)
    for bit, name, di in (
        (64, "voltage_reverse_sequence", 0x14000001),
        (65, "current_reverse_sequence", 0x15000001),
        (66, "voltage_unbalance", 0x16000001),
        (67, "current_unbalance", 0x17000001),
    ):
        yield ReportEvent(bit, name, di, di | 0x0100)
    yield ReportEvent(68, "aux_supply_lost", 0x03060000, 0x03060001)
    yield ReportEvent(69, "power_down", 0x03110000, 0x03110001)
    yield ReportEvent(70, "demand_over_limit", 0x03120000, None)
    yield ReportEvent(71, "power_factor_under_limit", 0x1F000001, 0x1F000101)
    yield ReportEvent(72, "severe_current_unbalance", 0x20000001, 0x20000101)
    yield ReportEvent(73, "power_flow_reverse", 0x21000000, None)
    yield ReportEvent(74, "total_loss_of_voltage", 0x03050000, 0x03050001)
    programming = (
        "programming",
        "meter_clear",
        "demand_clear",
        "event_clear",
        "time_set",
        "period_table_programming",
        "time_zone_programming",
        "weekend_programming",
        "holiday_programming",
        "combination_programming",
        "settlement_day_programming",
        "tariff_programming",
        "step_programming",
        "key_update",
    )
    for i, name in enumerate(programming):
        yield ReportEvent(80 + i, name, 0x03300000 + (i << 8), 0x03300001 + (i << 8))


REPORT_EVENTS: MappingProxyType[int, ReportEvent] = MappingProxyType({e.bit: e for e in _report_events()})

ACTIVE_REPORT_WORD = Word(
    ACTIVE_REPORT_BYTES, MappingProxyType({bit: e.name for bit, e in REPORT_EVENTS.items()})
)

LOAD_RECORD = Fixed(
    (
        Element("time", Stamp("YYMMDDhhmm")),
        _q("energy.active.import.total", ENERGY),
        _q("energy.active.export.total", ENERGY),
        _q("voltage.a", VOLTAGE),
        _q("voltage.b", VOLTAGE),
        _q("voltage.c", VOLTAGE),
        _q("current.a", CURRENT),
        _q("current.b", CURRENT),
        _q("current.c", CURRENT),
        _q("power.active.total", POWER),
        _q("power_factor.total", PF),
    )
)
LOAD_CURVE_DI = 0x06000001
LOAD_RECORDS_PER_FRAME = 5
#: signature current (特征电流): result event count / records 0308 05nn (DI2 = 08, DI1 = 05 as the
#: Wasion firmware's ``api_GetRequest645Topology`` dispatches them; DI3 = 03, the event class);
#: the send-time write 0408 0001 is our choice (the firmware's 645 start command is not public)
SIGNATURE_RESULT_COUNT_DI = 0x03080500
SIGNATURE_START_DI = 0x04080001


def _energy_rows(kind: str, di2: int, item: str, fmt: Format) -> Iterator[DataItem]:
    names = [f"energy.active.{kind}.{t}" for t in ("total", "t1", "t2", "t3", "t4")]
    for tariff, name in enumerate(names):
        yield DataItem(
            0x00000000 | di2 << 16 | tariff << 8, f"{item} {name.rsplit('.', 1)[1]}", Fixed((_q(name, fmt),))
        )
    yield DataItem(0x0000FF00 | di2 << 16, f"{item} block", Fixed(tuple(_q(n, fmt) for n in names)))


def _phase_rows(di2: int, item: str, prefix: str, fmt: Format, *, total: bool) -> Iterator[DataItem]:
    names = [f"{prefix}.{p}" for p in "abc"]
    if total:
        names.insert(0, f"{prefix}.total")
    for name in names:
        phase = 0 if name.endswith("total") else "abc".index(name[-1]) + 1
        yield DataItem(
            0x02000000 | di2 << 16 | phase << 8, f"{item} {name.rsplit('.', 1)[1]}", Fixed((_q(name, fmt),))
        )
    yield DataItem(0x0200FF00 | di2 << 16, f"{item} block", Fixed(tuple(_q(n, fmt) for n in names)))


def _rows() -> Iterator[DataItem]:
    yield from _energy_rows("combined", 0x00, "combined active energy", ENERGY_SIGNED)
    yield from _energy_rows("import", 0x01, "forward active energy", ENERGY)
    yield from _energy_rows("export", 0x02, "reverse active energy", ENERGY)
    yield from _phase_rows(0x01, "voltage", "voltage", VOLTAGE, total=False)
    yield from _phase_rows(0x02, "current", "current", CURRENT, total=False)
    yield from _phase_rows(0x03, "active power", "power.active", POWER, total=True)
    yield from _phase_rows(0x06, "power factor", "power_factor", PF, total=True)
    yield DataItem(0x02800002, "grid frequency", Fixed((_q("frequency", FREQUENCY),)))
    yield DataItem(
        0x02800007, "meter internal temperature", Fixed((_q("temperature.internal", TEMPERATURE),))
    )
    yield DataItem(0x04000101, "date and weekday", Fixed((Element("date", Stamp("YYMMDDWW")),)))
    yield DataItem(0x04000102, "time", Fixed((Element("time", Stamp("hhmmss")),)))
    yield DataItem(0x04000401, "communication address", Fixed((Element("address", Digits(6)),)))
    yield DataItem(0x04000402, "meter number", Fixed((Element("meter_number", Digits(6)),)))
    yield DataItem(0x04000404, "rated voltage", Fixed((Element("rated_voltage", Ascii(6)),)))
    yield DataItem(
        0x04000503, "meter running status word 3", Fixed((Element("status_word_3", STATUS_WORD_3),))
    )
    yield DataItem(0x04001501, "active-report status word", ActiveReport(ACTIVE_REPORT_WORD))
    yield DataItem(
        0x04001503, "reset active-report status word", Fixed((Element("reset_mask", ACTIVE_REPORT_WORD),))
    )
    yield DataItem(0x00900200, "remaining credit", Fixed((_q("credit.remaining", MONEY),)))
    yield DataItem(0x00900201, "overdraft amount", Fixed((_q("credit.overdraft", MONEY),)))
    for di0, name, text in (
        (1, "credit.alarm1", "alarm credit limit 1"),
        (2, "credit.alarm2", "alarm credit limit 2"),
        (3, "credit.overdraft_limit", "overdraft limit"),
        (4, "credit.max_stored", "maximum stored credit"),
        (5, "credit.close_allowed", "close-allowed credit limit"),
    ):
        yield DataItem(0x04001000 | di0, text, Fixed((_q(name, MONEY),)))
    yield DataItem(0x03300D00, "meter cover opened count", Fixed((_q("events.cover_open.count", COUNT3),)))
    yield DataItem(0x1D000001, "relay trip count", Fixed((_q("events.relay_trip.count", COUNT3),)))
    yield DataItem(0x03110000, "power-down total count", Fixed((_q("events.power_down.count", COUNT3),)))
    for n in range(1, 11):
        yield DataItem(
            0x03110000 | n,
            f"power-down record (last {n})",
            Fixed((Element("start", Stamp("YYMMDDhhmmss")), Element("end", Stamp("YYMMDDhhmmss")))),
        )
    yield DataItem(
        0x03050000,
        "total loss-of-voltage count and time",
        Fixed((_q("events.voltage_loss.count", COUNT3), _q("events.voltage_loss.minutes", COUNT3))),
    )
    for n in range(1, 63):  # the standard keeps the last 62 daily freezes
        yield DataItem(
            0x05060000 | n, f"daily freeze time (last {n})", Fixed((Element("time", Stamp("YYMMDDhhmm")),))
        )
        for di2, kind, what in ((0x0100, "import", "forward"), (0x0200, "export", "reverse")):
            names = [f"energy.active.{kind}.{t}" for t in ("total", "t1", "t2", "t3", "t4")]
            yield DataItem(
                0x05060000 | di2 | n,
                f"daily frozen {what} active energy (last {n})",
                Fixed(tuple(_q(m, ENERGY) for m in names)),
            )
    yield DataItem(LOAD_CURVE_DI, "load curve, records from a given time", Records(LOAD_RECORD))
    # signature current (特征电流), as the Wasion meter firmware serves it; the start time is ours
    yield DataItem(
        SIGNATURE_RESULT_COUNT_DI,
        "signature identification result events, count",
        Fixed((Element("count", COUNT3),)),
    )
    for n in range(1, 11):
        yield DataItem(
            SIGNATURE_RESULT_COUNT_DI | n, f"signature identification result (last {n})", SignatureResults()
        )
    yield DataItem(
        SIGNATURE_START_DI, "signature current: send at (ours)", Fixed((Element("time", _SIGNATURE_TIME),))
    )


def _table() -> MappingProxyType[int, DataItem]:
    table: dict[int, DataItem] = {}
    for row in _rows():
        if row.di in table:
            raise AssertionError(f"duplicate DI 0x{row.di:08X}")
        table[row.di] = row
    return MappingProxyType(table)


DATA_ITEMS: MappingProxyType[int, DataItem] = _table()


def lookup(di: int) -> DataItem | None:
    return DATA_ITEMS.get(di)


def di_to_wire(di: int) -> bytes:
    if not 0 <= di <= 0xFFFFFFFF:
        raise EncodeError(f"DI {di!r}: not a 32-bit identifier", protocol=PROTOCOL)
    return di.to_bytes(4, "little")


def di_from_wire(raw: bytes) -> int:
    return int.from_bytes(raw[:4], "little")


def encode_values(di: int, values: Sequence[Value]) -> bytes:
    """Payload bytes (before +33H, without the DI) of ``values`` for a known DI."""
    row = lookup(di)
    if row is None:
        raise EncodeError(f"DI 0x{di:08X}: not in the data table, pass raw bytes", protocol=PROTOCOL)
    return row.layout.encode(values)


__all__ = [
    "ACTIVE_REPORT_WORD",
    "DATA_ITEMS",
    "LOAD_CURVE_DI",
    "LOAD_RECORD",
    "LOAD_RECORDS_PER_FRAME",
    "REPORT_EVENTS",
    "SIGNATURE_RESULT_COUNT_DI",
    "SIGNATURE_START_DI",
    "STATUS_WORD_3",
    "ActiveReport",
    "DataItem",
    "Element",
    "Fixed",
    "Records",
    "ReportEvent",
    "SignatureResults",
    "di_from_wire",
    "di_to_wire",
    "encode_values",
    "lookup",
]
