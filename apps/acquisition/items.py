"""What to read from a meter, and how a DL/T 645 reply becomes normalized readings.

Layer: apps (acquisition). Pure mapping: realtime item names -> DIs (single- or
three-phase meter), decoded read results -> ``Reading`` rows. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from protocols import dlt645
from protocols.quantities import QUANTITIES
from runtime.model import Quality, Reading

from .archive import MeterRecord

# item -> (DI on a single-phase meter, DI on a three-phase meter)
REALTIME_ITEMS: dict[str, tuple[int, int]] = {
    "energy": (0x0001FF00, 0x0001FF00),
    "energy_export": (0x00020000, 0x00020000),
    "voltage": (0x02010100, 0x0201FF00),
    "current": (0x02020100, 0x0202FF00),
    "power": (0x02030000, 0x0203FF00),
    "power_factor": (0x02060000, 0x02060000),
    "frequency": (0x02800002, 0x02800002),
}

DAILY_PREFIX = "daily."
POWER_DOWN_COUNT_DI = 0x03110000
STATUS_WORD_3_DI = 0x04000503


def realtime_dis(meter: MeterRecord, items: Sequence[str]) -> list[int]:
    return [REALTIME_ITEMS[item][1 if meter.three_phase else 0] for item in items]


def freeze_time_di(times_ago: int) -> int:
    """DI of the time of the n-th most recent daily freeze (05 06 00 nn)."""
    return 0x05060000 | times_ago


def freeze_energy_di(times_ago: int) -> int:
    """DI of the forward active energy block of the n-th most recent daily freeze (05 06 01 nn)."""
    return 0x05060100 | times_ago


def power_down_record_di(times_ago: int) -> int:
    return POWER_DOWN_COUNT_DI | times_ago


def meter_time_to_epoch(text: str, tz: ZoneInfo) -> float:
    """A DL/T 645 stamp as the codec renders it ("2026-01-01 00:15[:ss]") in the meter's local time."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=tz).timestamp()


def _numeric(values: Sequence[dlt645.Value], names: Sequence[str]) -> Iterator[tuple[str, float]]:
    for name, value in zip(names, values, strict=False):
        if name in QUANTITIES and isinstance(value, int | float) and not isinstance(value, bool):
            yield name, float(value)


def to_readings(
    meter: MeterRecord,
    result: dlt645.ReadResult,
    ts: float,
    *,
    quality: Quality = Quality.GOOD,
    prefix: str = "",
) -> list[Reading]:
    """Readings of every normalized quantity in a read result; FF ("not supported") values are skipped."""
    return [
        Reading(
            device=meter.id,
            quantity=prefix + name,
            value=value,
            unit=QUANTITIES[name].unit,
            ts=ts,
            quality=quality,
            obis=QUANTITIES[name].obis,
        )
        for name, value in _numeric(result.values, result.names)
    ]


def curve_readings(
    meter: MeterRecord, result: dlt645.ReadResult, tz: ZoneInfo, *, quality: Quality
) -> dict[float, list[Reading]]:
    """Load-curve records -> readings per record time (epoch)."""
    names = result.names
    points: dict[float, list[Reading]] = {}
    for record in result.values:
        if not isinstance(record, tuple) or not record or not isinstance(record[0], str):
            continue
        ts = meter_time_to_epoch(record[0], tz)
        points[ts] = [
            Reading(meter.id, name, value, QUANTITIES[name].unit, ts, quality, QUANTITIES[name].obis)
            for name, value in _numeric(record[1:], names[1:])
        ]
    return points
