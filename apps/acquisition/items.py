"""Normalized values from a ``MeterClient`` -> ``Reading`` rows; meter-clock times -> epochs.

Layer: apps (acquisition). Pure mapping, no I/O. What is read from a meter, per protocol,
is the hal's business (``hal.meters.client``); this module only knows quantity names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from hal.meters import REALTIME_ITEMS, Record
from protocols.quantities import QUANTITIES
from protocols.station import Meter
from runtime.model import Quality, Reading

DAILY_PREFIX = "daily."

__all__ = [
    "DAILY_PREFIX",
    "REALTIME_ITEMS",
    "local_to_epoch",
    "records_to_points",
    "to_readings",
]


def local_to_epoch(when: datetime, tz: ZoneInfo) -> float:
    """A meter-clock time (naive, the station's local time) as UTC epoch seconds."""
    return when.replace(tzinfo=tz).timestamp()


def to_readings(
    meter: Meter,
    values: Mapping[str, float],
    ts: float,
    *,
    quality: Quality = Quality.GOOD,
    prefix: str = "",
) -> list[Reading]:
    """One reading per normalized quantity (values the meter does not have are simply absent)."""
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
        for name, value in values.items()
        if name in QUANTITIES
    ]


def records_to_points(
    meter: Meter, records: Sequence[Record], tz: ZoneInfo, *, quality: Quality
) -> dict[float, list[Reading]]:
    """Curve records -> readings per record time (epoch)."""
    points: dict[float, list[Reading]] = {}
    for record in records:
        ts = local_to_epoch(record.at, tz)
        points[ts] = to_readings(meter, record.values, ts, quality=quality)
    return points
