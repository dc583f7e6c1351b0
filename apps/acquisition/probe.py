"""Probe on request (``acquisition/probe``): read the meters another app asks about, now.

Layer: apps (acquisition), one task. The outage app asks when part of a supply group went dark
and the rest has not been heard from since, or right after a restore (to fetch the meters' own
power-down records at once). Each meter named gets one read (its power-down count, at EVENT
priority, no retries: an answer or a silence is what is wanted, fast); with ``records`` the
meters that answer also get their event read (power-down records, relay state), published as
usual. Bad requests are refused with a ``ValueError`` naming what is wrong (the bus returns it
to the requester). Must not schedule itself.

    request  {"meters": ["m-0001", ...], "records": false}
    reply    {"at": <epoch>, "answered": [...], "silent": [...], "unknown": [...]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hal.errors import DeviceError, HalError
from protocols.errors import ProtocolError
from protocols.station import Meter
from runtime.api import AppContext

from .events import EventTask
from .plan import Plan, each_meter
from .reader import MeterReader

MAX_METERS = 2000


class ProbeTask:
    def __init__(self, ctx: AppContext, plan: Plan, reader: MeterReader, events: EventTask) -> None:
        self._ctx = ctx
        self._plan = plan
        self._reader = reader
        self._events = events
        self.probes = 0

    async def handle(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, Mapping):
            raise ValueError("acquisition/probe: expected {'meters': [...], 'records': bool}")
        meters = payload.get("meters")
        records = payload.get("records", False)
        if not isinstance(meters, list) or not all(isinstance(m, str) for m in meters):
            raise ValueError("acquisition/probe: meters must be a list of meter ids")
        if len(meters) > MAX_METERS or not isinstance(records, bool):
            raise ValueError(f"acquisition/probe: at most {MAX_METERS} meters; records must be true or false")
        self.probes += 1
        by_id = {m.id: m for m in self._plan.model.meters}
        known = [by_id[m] for m in dict.fromkeys(meters) if m in by_id and self._plan.client(m) is not None]
        answered: list[str] = []
        silent: list[str] = []

        async def one(meter: Meter) -> None:
            ok = await self._ask(meter)
            (answered if ok else silent).append(meter.id)
            self._reader.health(meter, "probe", ok)
            if ok and records:
                await self._events.read(meter)

        await each_meter(known, one, task="probe")
        unknown = sorted(set(meters) - {m.id for m in known})
        return {
            "at": self._ctx.clock.now(),
            "answered": sorted(answered),
            "silent": sorted(silent),
            "unknown": unknown,
        }

    async def _ask(self, meter: Meter) -> bool:
        client = self._plan.client(meter.id)
        if client is None:
            return False
        try:
            await client.read_power_down_count()
        except DeviceError:
            return True  # an abnormal reply is an answer: the meter has supply
        except (HalError, ProtocolError):
            return False
        return True


__all__ = ["ProbeTask"]
