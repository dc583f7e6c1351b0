"""The transformer LV side from the terminal's own metrology unit, read every realtime cycle.

Layer: apps (acquisition). Reads ``ctx.hal.metrology()`` (CT/PT ratios already applied by
the hal) and turns the snapshot into normalized readings for device ``transformer``; the
caller publishes them like meter readings; the unit's health is retained on
``acquisition/metrology/stats``. A board without a metrology unit is logged
once and skipped; failed reads are counted, logged edge-triggered, never raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hal.errors import CapabilityMissing, HalError
from hal.interfaces import Metrology, MetrologySnapshot
from protocols.errors import ProtocolError
from protocols.quantities import QUANTITIES
from runtime.api import AppContext
from runtime.model import Reading
from runtime.scheduler import Aligned, CatchUp, Slot

DEVICE = "transformer"
STATS_TOPIC = "acquisition/metrology/stats"


def snapshot_readings(
    snap: MetrologySnapshot, *, device: str = DEVICE, ts: float | None = None
) -> list[Reading]:
    """Normalized readings of one snapshot (per phase and totals); missing values are left out."""
    when = snap.ts if ts is None else ts
    values: dict[str, float | None] = {
        "frequency": snap.frequency_hz,
        "energy.active.import.total": snap.energy_import_kwh,
        "energy.active.export.total": snap.energy_export_kwh,
    }
    for prefix, phases in (
        ("voltage", snap.voltage),
        ("current", snap.current),
        ("power.active", snap.active_power_kw),
        ("power.reactive", snap.reactive_power_kvar),
        ("power_factor", snap.power_factor),
    ):
        for ph in ("a", "b", "c"):
            values[f"{prefix}.{ph}"] = getattr(phases, ph)
    for prefix, phases in (
        ("power.active", snap.active_power_kw),
        ("power.reactive", snap.reactive_power_kvar),
    ):
        parts = [phases.a, phases.b, phases.c]
        if all(p is not None for p in parts):
            values[f"{prefix}.total"] = sum(p for p in parts if p is not None)
    out = []
    for name, value in values.items():
        if value is None:
            continue
        q = QUANTITIES[name]
        out.append(Reading(device, name, float(value), q.unit, when, obis=q.obis))
    return out


class MetrologyReader:
    """Polls the metrology unit on the realtime schedule and hands readings to ``emit``."""

    def __init__(self, ctx: AppContext, emit: Callable[[list[Reading]], Awaitable[None]]) -> None:
        self._ctx = ctx
        self._emit = emit
        self._unit: Metrology | None = None
        self._failing = False
        self.counters = {"metrology_reads_ok": 0, "metrology_reads_failed": 0}

    def start(self, interval_s: int) -> bool:
        """Schedule the reads; False (logged) when the board has no metrology unit."""
        try:
            self._unit = self._ctx.hal.metrology()
        except CapabilityMissing as err:
            self._ctx.log.info("transformer readings off: %s", err)
            return False
        self._ctx.scheduler.add("metrology", Aligned(interval_s), self.poll, catch_up=CatchUp.SKIP)
        return True

    async def poll(self, slot: Slot) -> None:
        if self._unit is None:
            return
        try:
            snap = await self._unit.snapshot()
        except (HalError, ProtocolError) as err:
            self.counters["metrology_reads_failed"] += 1
            if not self._failing:
                self._ctx.log.warning("metrology unit: %s", err)
                self._failing = True
            self._ctx.bus.publish(STATS_TOPIC, self.status(), retain=True)
            return
        if self._failing:
            self._ctx.log.info("metrology unit answers again")
            self._failing = False
        self.counters["metrology_reads_ok"] += 1
        await self._emit(snapshot_readings(snap, ts=slot.epoch))
        self._ctx.bus.publish(STATS_TOPIC, self.status(), retain=True)

    def status(self) -> dict[str, Any]:
        """Health of the unit (retained on ``acquisition/metrology/stats`` after each read)."""
        return {"online": self._unit is not None and not self._failing, **self.counters}


__all__ = ["DEVICE", "STATS_TOPIC", "MetrologyReader", "snapshot_readings"]
