"""The DL/T 698.45 object table: standard OADs, their scaler and unit, and the normalized quantities.

Layer: protocols (pure data). Must not import asyncio, serial, hal or runtime.

An ``ObjectAttr`` describes one attribute of one interface object (OI + attribute id):
its elements in order (element index ``i`` is ``elements[i - 1]``), each a normalized
quantity name from ``protocols.quantities`` or a local field name, the A-XDR scaler
(value = raw x 10^scaler in ``unit``) and the 698 unit. Quantities whose normalized unit
differs by a power of ten (W -> kW, var -> kvar) are converted by ``engineering``.
Sources: PROTOCOLS.md §2.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from protocols.dlt698._axdr import OAD, Data, DataType, plain
from protocols.quantities import QUANTITIES

_UNIT_SHIFT = {("W", "kW"): -3, ("var", "kvar"): -3}
_TARIFFS = ("total", "t1", "t2", "t3", "t4")
_PHASES = ("a", "b", "c")
_TOTAL_PHASES = ("total", "a", "b", "c")


@dataclass(frozen=True, slots=True)
class ObjectAttr:
    oi: int
    attr: int
    name: str
    elements: tuple[str, ...]
    scaler: int = 0
    unit: str = ""

    @property
    def oad(self) -> OAD:
        return OAD(self.oi, self.attr, 0)


def _energy(oi: int, attr: int, base: str, name: str, scaler: int) -> ObjectAttr:
    return ObjectAttr(oi, attr, name, tuple(f"{base}.{t}" for t in _TARIFFS), scaler, "kWh")


OBJECTS: MappingProxyType[tuple[int, int], ObjectAttr] = MappingProxyType(
    {
        (o.oi, o.attr): o
        for o in (
            _energy(0x0000, 2, "energy.active.combined", "combined active energy", -2),
            _energy(0x0000, 4, "energy.active.combined", "combined active energy (high precision)", -4),
            _energy(0x0010, 2, "energy.active.import", "forward active energy", -2),
            _energy(0x0010, 4, "energy.active.import", "forward active energy (high precision)", -4),
            _energy(0x0020, 2, "energy.active.export", "reverse active energy", -2),
            _energy(0x0020, 4, "energy.active.export", "reverse active energy (high precision)", -4),
            ObjectAttr(0x2000, 2, "voltage", tuple(f"voltage.{p}" for p in _PHASES), -1, "V"),
            ObjectAttr(0x2001, 2, "current", tuple(f"current.{p}" for p in _PHASES), -3, "A"),
            ObjectAttr(0x2004, 2, "active power", tuple(f"power.active.{p}" for p in _TOTAL_PHASES), -1, "W"),
            ObjectAttr(
                0x2005, 2, "reactive power", tuple(f"power.reactive.{p}" for p in _TOTAL_PHASES), -1, "var"
            ),
            ObjectAttr(0x200A, 2, "power factor", tuple(f"power_factor.{p}" for p in _TOTAL_PHASES), -3, ""),
            ObjectAttr(0x200F, 2, "grid frequency", ("frequency",), -2, "Hz"),
            ObjectAttr(
                0x2014, 2, "meter running status words", tuple(f"status_word_{i}" for i in range(1, 8))
            ),
            ObjectAttr(0x2015, 2, "follow-report status word", ("follow_report_status",)),
            ObjectAttr(0x202C, 2, "remaining credit", ("credit.remaining", "purchase_count"), -2, "yuan"),
            ObjectAttr(0x202D, 2, "overdraft amount", ("credit.overdraft",), -2, "yuan"),
            ObjectAttr(0x401E, 2, "alarm credit limits", ("credit.alarm1", "credit.alarm2"), -2, "yuan"),
            ObjectAttr(
                0x401F,
                2,
                "other credit limits",
                ("credit.overdraft_limit", "credit.max_stored", "credit.close_allowed"),
                -2,
                "yuan",
            ),
            ObjectAttr(
                0x4020, 2, "alarm energy limits", ("energy_limit.alarm1", "energy_limit.alarm2"), -2, "kWh"
            ),
            ObjectAttr(
                0x4021,
                2,
                "other energy limits",
                ("energy_limit.max_stored", "energy_limit.overdraft", "energy_limit.close_allowed"),
                -2,
                "kWh",
            ),
            ObjectAttr(0x8000, 3, "relay actual state", ("relay_open",)),
            ObjectAttr(0x8000, 4, "relay command state", ("relay_command_trip",)),
            ObjectAttr(0x8000, 5, "relay alarm state", ("relay_alarm",)),
            ObjectAttr(0x8001, 2, "keep-power state", ("keep_power",)),
            ObjectAttr(0x3011, 2, "power-down event records", ("power_down_records",)),
            ObjectAttr(0x3011, 7, "power-down event record count", ("power_down_record_count",)),
            ObjectAttr(0x3320, 2, "new-event list", ("new_events",)),
            ObjectAttr(0x4000, 2, "date-time", ("datetime",)),
            ObjectAttr(0x4001, 2, "communication address", ("comm_address",)),
            ObjectAttr(0x4002, 2, "meter number", ("meter_number",)),
            ObjectAttr(0x4104, 2, "rated voltage", ("rated_voltage",)),
        )
    }
)

# Elements that carry no scaler even inside a scaled object (202C purchase count).
_UNSCALED = frozenset({"purchase_count"})


def lookup(oad: OAD) -> ObjectAttr | None:
    return OBJECTS.get((oad.oi, oad.attr_id))


def engineering(raw: int, scaler: int, unit: str, name: str) -> tuple[float | int, str]:
    """``raw`` x 10^scaler in the quantity's unit (W -> kW etc. when ``name`` is a quantity)."""
    q = QUANTITIES.get(name)
    if name in _UNSCALED:
        return raw, ""
    target = q.unit if q is not None else unit
    exp = scaler + _UNIT_SHIFT.get((unit, target), 0)
    if exp >= 0:
        return raw * 10**exp, target
    return round(raw / 10**-exp, -exp), target


def _element(name: str, data: Data, obj: ObjectAttr) -> dict[str, Any]:
    key = "quantity" if name in QUANTITIES else "name"
    out: dict[str, Any] = {key: name, "type": data.type.label}
    if isinstance(data.value, int) and not isinstance(data.value, bool) and (obj.scaler or obj.unit):
        value, unit = engineering(data.value, obj.scaler, obj.unit, name)
        out.update(value=value, unit=unit, raw=data.value)
    else:
        out["value"] = plain(data)[data.type.label]
    return out


def values(oad: OAD, data: Data) -> list[dict[str, Any]] | None:
    """Named, scaled elements of ``data`` read from ``oad``; ``None`` when the OAD is not in the table."""
    obj = lookup(oad)
    if obj is None:
        return None
    if oad.index:
        if oad.index > len(obj.elements):
            return None
        return [_element(obj.elements[oad.index - 1], data, obj)]
    if len(obj.elements) > 1 and data.type in (DataType.ARRAY, DataType.STRUCTURE):
        items = data.value
        names = [obj.elements[i] if i < len(obj.elements) else f"element_{i + 1}" for i in range(len(items))]
        return [_element(n, d, obj) for n, d in zip(names, items, strict=True)]
    return [_element(obj.elements[0], data, obj)]


__all__ = ["OBJECTS", "ObjectAttr", "engineering", "lookup", "values"]
