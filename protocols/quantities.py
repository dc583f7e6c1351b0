"""Normalized quantity names: the one vocabulary every protocol maps onto.

Layer: protocols (pure data). Must not import asyncio, serial, hal or runtime.

A reading is ``(device, quantity, value, unit, ts, quality)``; ``quantity`` is a
stable dotted name from this table. DL/T 645 data identifiers (see
``protocols.dlt645``), DL/T 698.45 OADs and Modbus registers all map to these
names, so the table is keyed by quantity and says nothing about any protocol.
``obis`` is the IEC 62056-61 code where one exists (``None`` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    unit: str
    obis: str | None
    description: str


def _table(*rows: tuple[str, str, str | None, str]) -> MappingProxyType[str, Quantity]:
    table = {name: Quantity(name, unit, obis, text) for name, unit, obis, text in rows}
    if len(table) != len(rows):
        raise AssertionError("duplicate quantity name")
    return MappingProxyType(table)


QUANTITIES: MappingProxyType[str, Quantity] = _table(
    ("energy.active.import.total", "kWh", "1.0.1.8.0.255", "forward active energy, total"),
    ("energy.active.import.t1", "kWh", "1.0.1.8.1.255", "forward active energy, tariff 1 (尖 sharp)"),
    ("energy.active.import.t2", "kWh", "1.0.1.8.2.255", "forward active energy, tariff 2 (峰 peak)"),
    ("energy.active.import.t3", "kWh", "1.0.1.8.3.255", "forward active energy, tariff 3 (平 flat)"),
    ("energy.active.import.t4", "kWh", "1.0.1.8.4.255", "forward active energy, tariff 4 (谷 valley)"),
    ("energy.active.export.total", "kWh", "1.0.2.8.0.255", "reverse active energy, total"),
    ("energy.active.export.t1", "kWh", "1.0.2.8.1.255", "reverse active energy, tariff 1"),
    ("energy.active.export.t2", "kWh", "1.0.2.8.2.255", "reverse active energy, tariff 2"),
    ("energy.active.export.t3", "kWh", "1.0.2.8.3.255", "reverse active energy, tariff 3"),
    ("energy.active.export.t4", "kWh", "1.0.2.8.4.255", "reverse active energy, tariff 4"),
    ("energy.active.combined.total", "kWh", "1.0.16.8.0.255", "combined active energy (组合有功), total"),
    ("energy.active.combined.t1", "kWh", "1.0.16.8.1.255", "combined active energy, tariff 1"),
    ("energy.active.combined.t2", "kWh", "1.0.16.8.2.255", "combined active energy, tariff 2"),
    ("energy.active.combined.t3", "kWh", "1.0.16.8.3.255", "combined active energy, tariff 3"),
    ("energy.active.combined.t4", "kWh", "1.0.16.8.4.255", "combined active energy, tariff 4"),
    ("voltage.a", "V", "1.0.32.7.0.255", "phase A voltage"),
    ("voltage.b", "V", "1.0.52.7.0.255", "phase B voltage"),
    ("voltage.c", "V", "1.0.72.7.0.255", "phase C voltage"),
    ("current.a", "A", "1.0.31.7.0.255", "phase A current (signed)"),
    ("current.b", "A", "1.0.51.7.0.255", "phase B current (signed)"),
    ("current.c", "A", "1.0.71.7.0.255", "phase C current (signed)"),
    ("power.active.total", "kW", "1.0.16.7.0.255", "total active power (signed)"),
    ("power.active.a", "kW", "1.0.36.7.0.255", "phase A active power (signed)"),
    ("power.active.b", "kW", "1.0.56.7.0.255", "phase B active power (signed)"),
    ("power.active.c", "kW", "1.0.76.7.0.255", "phase C active power (signed)"),
    ("power.reactive.total", "kvar", None, "total reactive power (signed)"),
    ("power.reactive.a", "kvar", None, "phase A reactive power (signed)"),
    ("power.reactive.b", "kvar", None, "phase B reactive power (signed)"),
    ("power.reactive.c", "kvar", None, "phase C reactive power (signed)"),
    ("power_factor.total", "", "1.0.13.7.0.255", "total power factor (signed)"),
    ("power_factor.a", "", "1.0.33.7.0.255", "phase A power factor (signed)"),
    ("power_factor.b", "", "1.0.53.7.0.255", "phase B power factor (signed)"),
    ("power_factor.c", "", "1.0.73.7.0.255", "phase C power factor (signed)"),
    ("frequency", "Hz", "1.0.14.7.0.255", "grid frequency"),
    ("temperature.internal", "°C", None, "meter internal temperature"),
    ("credit.remaining", "yuan", None, "remaining prepaid credit (剩余金额)"),
    ("credit.overdraft", "yuan", None, "credit overdrawn so far (透支金额)"),
    ("credit.alarm1", "yuan", None, "credit alarm limit 1 (报警金额1)"),
    ("credit.alarm2", "yuan", None, "credit alarm limit 2 (报警金额2)"),
    ("credit.overdraft_limit", "yuan", None, "overdraft limit (透支金额限值)"),
    ("credit.max_stored", "yuan", None, "maximum stored credit (囤积金额限值)"),
    ("credit.close_allowed", "yuan", None, "credit needed to allow closing (合闸允许金额限值)"),
    ("events.power_down.count", "", None, "power-down (掉电) total count"),
    ("events.cover_open.count", "", None, "meter cover opened count"),
    ("events.relay_trip.count", "", None, "relay trip count"),
    ("events.voltage_loss.count", "", None, "total loss-of-voltage count"),
    ("events.voltage_loss.minutes", "min", None, "total loss-of-voltage cumulative time"),
)


def quantity(name: str) -> Quantity:
    """The table row for ``name``; ``KeyError`` names the unknown quantity."""
    try:
        return QUANTITIES[name]
    except KeyError:
        raise KeyError(f"unknown quantity {name!r}") from None


__all__ = ["QUANTITIES", "Quantity", "quantity"]
