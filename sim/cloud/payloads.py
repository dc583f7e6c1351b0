"""Validation of the bodies that terminals send upward, as the cloud master station sees them.

Layer: sim (cloud stub). Pure functions: a message body (already JSON-decoded by
``protocols.cloud.UpBatch``) in, plain tuples out, or a ``BodyError`` naming the
field that is wrong. Terminals are not trusted: every field is type-checked here.
Must not do I/O or touch the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

QUALITIES = frozenset({"good", "estimated", "catch_up", "invalid"})


class BodyError(ValueError):
    """A message body does not have the shape its stream requires; ``path`` names the field."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class ReadingRecord:
    device: str
    quantity: str
    value: float
    unit: str
    ts: float
    quality: str
    obis: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    kind: str
    source: str
    start: float
    end: float | None
    data: dict[str, Any]


def _text(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise BodyError(f"{where}.{name}", "missing or not a non-empty string")
    return value


def _unit(item: dict[str, Any], where: str) -> str:
    value = item.get("unit")
    if not isinstance(value, str):  # "" is fine: power factor has no unit
        raise BodyError(f"{where}.unit", "missing or not a string")
    return value


def _number(item: dict[str, Any], name: str, where: str) -> float:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BodyError(f"{where}.{name}", f"not a number ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise BodyError(f"{where}.{name}", "not a finite number")
    return number


def reading_list(body: dict[str, Any]) -> list[Any]:
    """The raw items of a readings body ``{"readings": [...]}``."""
    items = body.get("readings")
    if not isinstance(items, list):
        raise BodyError("body.readings", "missing or not a list")
    return items


def parse_reading(item: Any, where: str) -> ReadingRecord:
    """One item of a readings body: ``{"device","quantity","value","unit","ts","quality"[,"obis"]}``."""
    if not isinstance(item, dict):
        raise BodyError(where, "not an object")
    quality = item.get("quality", "good")
    if quality not in QUALITIES:
        raise BodyError(f"{where}.quality", f"{quality!r} is not one of {sorted(QUALITIES)}")
    obis = item.get("obis")
    if obis is not None and not isinstance(obis, str):
        raise BodyError(f"{where}.obis", "not a string")
    return ReadingRecord(
        device=_text(item, "device", where),
        quantity=_text(item, "quantity", where),
        value=_number(item, "value", where),
        unit=_unit(item, where),
        ts=_number(item, "ts", where),
        quality=str(quality),
        obis=obis,
    )


def parse_event(body: dict[str, Any]) -> EventRecord:
    """An events body: ``Event.to_json()`` = ``{"kind","source","start","end","data"}``."""
    end = body.get("end")
    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BodyError("body.data", "not an object")
    return EventRecord(
        kind=_text(body, "kind", "body"),
        source=_text(body, "source", "body"),
        start=_number(body, "start", "body"),
        end=None if end is None else _number(body, "end", "body"),
        data=data,
    )


__all__ = [
    "QUALITIES",
    "BodyError",
    "EventRecord",
    "ReadingRecord",
    "parse_event",
    "parse_reading",
    "reading_list",
]
