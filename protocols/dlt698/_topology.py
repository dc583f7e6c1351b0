"""DL/T 698.45 objects of the signature current (特征电流) for topology identification.

Layer: protocols (pure codec: Data <-> ``protocols.signature`` dataclasses). Must not import
asyncio, serial, hal or runtime.

Objects as the public Wasion (东方威思顿) meter firmware serves them (``topoApp.c``:
``api_GetTopoIdentResult698``, ``api_GetTopoModulatSignalInfo698``, ``api_SetTopoPara698``; see
``protocols.signature`` for the source)::

    OI 4E08 attribute 2   identification results: array of identification info, newest first
                          (the records of event 4E07 that carry OAD 4E080200)
        identification info ::= structure(7) {
            date_time_s   time heard
            enum          phase (0 unknown, 1 A, 2 B, 3 C)
            double-long   S1, strength at 783 Hz   [mA]
            double-long   S2, strength at 883 Hz   [mA]
            double-long   background noise         [mA]
            bit-string    signature code (16 bits)
            octet-string  extended information (<= 12 bytes)
        }
    OI 4E08 attribute 4   modulation signal info ::= structure(6) {
            long-unsigned bit width [ms] (600), long-unsigned high pulse [ms] (400),
            long-unsigned low pulse [ms] (800), bit-string signature code (E9AA),
            double-long-unsigned modulation frequency [0.01 Hz] (833xx), octet-string extension }
    OI 4E07               signature identification result event (event class; sub-status 77)

    ACTION 4E08 method 127 (start sending at) ::= date_time_s
        -- the firmware sends at the time held with its modulation info (``ModulatSignalInfo_t.Time``,
           checked every second); the method that sets that time is not in the public source, so
           method 127 with the start time is OUR choice, named here and nowhere assumed standard.
"""

from __future__ import annotations

from datetime import datetime

from protocols.dlt698._axdr import OAD, OMD, BitString, Data, DataType, DateTimeS
from protocols.errors import ProtocolError
from protocols.signature import Detection, SignalInfo

PROTOCOL = "dlt698"
TOPOLOGY_OI = 0x4E08
RESULT_EVENT_OI = 0x4E07
RESULTS = OAD(TOPOLOGY_OI, 2, 0)
SIGNAL_INFO = OAD(TOPOLOGY_OI, 4, 0)
START_SENDING = OMD(TOPOLOGY_OI, 127, 0)


def _fail(reason: str) -> ProtocolError:
    return ProtocolError(f"signature current: {reason}", protocol=PROTOCOL)


def _when(value: object) -> datetime:
    if not isinstance(value, DateTimeS):
        raise _fail(f"time is {type(value).__name__}, not date_time_s")
    try:
        return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second)
    except ValueError as err:
        raise _fail(f"time {value} is not a date") from err


def _date_time_s(when: datetime) -> Data:
    return Data(
        DataType.DATE_TIME_S, DateTimeS(when.year, when.month, when.day, when.hour, when.minute, when.second)
    )


def start_sending(at: datetime) -> Data:
    """The ACTION parameter of ``START_SENDING``: the device's local time to send at."""
    return _date_time_s(at)


def parse_start_sending(data: Data) -> datetime:
    return _when(data.value)


def detection_data(d: Detection) -> Data:
    """One identification info structure."""
    return Data(
        DataType.STRUCTURE,
        (
            _date_time_s(d.at),
            Data(DataType.ENUM, d.phase),
            Data(DataType.DOUBLE_LONG, round(d.s1_a * 1000)),
            Data(DataType.DOUBLE_LONG, round(d.s2_a * 1000)),
            Data(DataType.DOUBLE_LONG, round(d.noise_a * 1000)),
            Data(DataType.BIT_STRING, BitString(len(d.code) * 8, d.code)),
            Data(DataType.OCTET_STRING, d.ext),
        ),
    )


def parse_detection(data: Data) -> Detection:
    items = data.value
    if data.type is not DataType.STRUCTURE or not isinstance(items, tuple) or len(items) != 7:
        raise _fail("identification info is not a structure of 7")
    when, phase, s1, s2, noise, code, ext = items
    if phase.type is not DataType.ENUM or not 0 <= int(phase.value) <= 3:
        raise _fail(f"phase {phase.value!r} is not 0..3")
    for x in (s1, s2, noise):
        if x.type is not DataType.DOUBLE_LONG:
            raise _fail("signal strengths are not double-long")
    if code.type is not DataType.BIT_STRING or not isinstance(code.value, BitString) or code.value.bits % 8:
        raise _fail("signature code is not a whole-byte bit-string")
    if ext.type is not DataType.OCTET_STRING or not isinstance(ext.value, bytes):
        raise _fail("extended information is not an octet-string")
    return Detection(
        _when(when.value), int(phase.value), s1.value / 1000.0, s2.value / 1000.0, noise.value / 1000.0,
        code.value.data, ext.value,
    )  # fmt: skip


def results_data(detections: list[Detection]) -> Data:
    """Attribute 2: newest first."""
    return Data(DataType.ARRAY, tuple(detection_data(d) for d in detections))


def parse_results(data: Data) -> list[Detection]:
    if data.type is DataType.NULL:
        return []
    if data.type is not DataType.ARRAY or not isinstance(data.value, tuple):
        raise _fail("identification results are not an array")
    return [parse_detection(item) for item in data.value]


def signal_info_data(info: SignalInfo) -> Data:
    return Data(
        DataType.STRUCTURE,
        (
            Data(DataType.LONG_UNSIGNED, info.bit_ms),
            Data(DataType.LONG_UNSIGNED, info.high_ms),
            Data(DataType.LONG_UNSIGNED, info.low_ms),
            Data(DataType.BIT_STRING, BitString(len(info.code) * 8, info.code)),
            Data(DataType.DOUBLE_LONG_UNSIGNED, round(info.frequency_hz * 100)),
            Data(DataType.OCTET_STRING, info.ext),
        ),
    )


def parse_signal_info(data: Data) -> SignalInfo:
    items = data.value
    if data.type is not DataType.STRUCTURE or not isinstance(items, tuple) or len(items) != 6:
        raise _fail("modulation signal info is not a structure of 6")
    bit, high, low, code, freq, ext = items
    if not isinstance(code.value, BitString) or not isinstance(ext.value, bytes):
        raise _fail("modulation signal info: code or extension malformed")
    return SignalInfo(
        int(bit.value), int(high.value), int(low.value), code.value.data, freq.value / 100.0, ext.value
    )


__all__ = [
    "RESULTS",
    "RESULT_EVENT_OI",
    "SIGNAL_INFO",
    "START_SENDING",
    "TOPOLOGY_OI",
    "detection_data",
    "parse_detection",
    "parse_results",
    "parse_signal_info",
    "parse_start_sending",
    "results_data",
    "signal_info_data",
    "start_sending",
]
