"""Normalized data records that flow from apps through the bus, the store and the uplink.

Layer: runtime. Plain frozen dataclasses with a JSON form; no protocol knowledge
(the mapping from DL/T 645 DIs, 698.45 OADs and Modbus registers to quantity names
lives in protocols/quantities).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Quality(enum.StrEnum):
    """How far a value can be trusted."""

    GOOD = "good"
    ESTIMATED = "estimated"  # filled in, not measured (e.g. interpolated curve point)
    CATCH_UP = "catch_up"  # read later from the meter's own memory (补抄)
    INVALID = "invalid"  # the device said "not supported" (FF) or the value is out of range


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value: ``(device, quantity, value, unit, ts, quality)``.

    ``ts`` is UTC epoch seconds of the value's own time (the curve point, the freeze
    time), not of when it was read. ``quantity`` is a stable name such as
    ``energy.active.import.total`` or ``voltage.a``; ``obis`` rides along where one exists.
    """

    device: str
    quantity: str
    value: float
    unit: str
    ts: float
    quality: Quality = Quality.GOOD
    obis: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "device": self.device,
            "quantity": self.quantity,
            "value": self.value,
            "unit": self.unit,
            "ts": self.ts,
            "quality": self.quality.value,
        }  # written out: dataclasses.asdict deep-copies every field (3 % of a whole simulated day)
        if self.obis is not None:
            data["obis"] = self.obis
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reading:
        return cls(
            device=str(data["device"]),
            quantity=str(data["quantity"]),
            value=float(data["value"]),
            unit=str(data["unit"]),
            ts=float(data["ts"]),
            quality=Quality(data.get("quality", "good")),
            obis=data.get("obis"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened at a point or over an interval (power-down, cover open).

    ``kind`` is a stable dotted name (``meter.power_down``); ``source`` the device or
    app that saw it; ``end`` is None while it is still going on.
    """

    kind: str
    source: str
    start: float
    end: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        end = data.get("end")
        return cls(
            kind=str(data["kind"]),
            source=str(data["source"]),
            start=float(data["start"]),
            end=None if end is None else float(end),
            data=dict(data.get("data") or {}),
        )


__all__ = ["Event", "Quality", "Reading"]
