"""The night's signature-current (特征电流) injections: order them, collect what the units heard.

Layer: apps (topology). At the start of the off-peak window it plans the night
(``injections.plan``: least sure meters first, one at a time per branch, bounded per day), orders
each meter to send at its slot (DL/T 645 ``04080001`` write / DL/T 698.45 ACTION 4E08 method 127,
``MeterClient.start_signature``) a few minutes ahead, polls every branch unit and box terminal
for the result events it recorded (645 ``030805nn`` / 698 OI 4E08 attribute 2,
``MeterClient.read_signature_results``) every ``POLL_S`` through the window, and ties them to
the injections (``injections.attribute``). The detections of the last ``KEEP_DAYS`` days are
kept in the app's store, and in memory as columns (``kept.Kept``). Must not weigh the
detections (``evidence.signature_loglik`` does).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from hal.errors import HalError
from hal.interfaces import Priority
from protocols.errors import ProtocolError
from protocols.signature import Detection as Heard
from protocols.station import StationModel
from runtime.api import AppContext

from . import archive as arch
from . import injections
from .devices import Devices
from .inputs import Detection
from .kept import Kept

LEAD_S = 300.0  # orders go out this long before the slot
POLL_S = 300.0  # units are read this often through the window (a unit keeps its last 10 events)
AFTER_S = 120.0  # and once more this long after the window closed
KEEP_DAYS = 7
UNIT_EVENTS = 10


class Night:
    """The injection log (what was sent when, and who heard it), and the night's work."""

    def __init__(self, ctx: AppContext, devices: Devices, policy: injections.Policy) -> None:
        self._ctx = ctx
        self._devices = devices
        self.policy = policy
        #: injections and what was heard, newest night last; every meter's last injection
        self.kept = Kept()
        self.counters = {"injections": 0, "orders_failed": 0, "unit_reads_failed": 0}

    async def load(self) -> None:
        kept = Kept()
        saved = await self._ctx.store.get("detections")
        if isinstance(saved, list):
            one: dict[tuple[str, ...], tuple[str, ...]] = {}  # a night's detections share their units
            kept.extend(
                Detection(
                    str(d["source"]),
                    float(d["at"]),
                    tuple(d["heard_by"]),
                    one.setdefault(tuple(d["listening"]), tuple(d["listening"])),
                )
                for d in saved
                if isinstance(d, dict) and {"source", "at", "heard_by", "listening"} <= set(d)
            )
        sent = await self._ctx.store.get("sent")
        if isinstance(sent, dict):
            kept.set_last({str(k): float(v) for k, v in sent.items() if isinstance(v, int | float)})
        self.kept = kept

    async def save(self) -> None:
        await self._ctx.store.set(
            "detections",
            [
                {"source": d.source, "at": d.at, "heard_by": list(d.heard_by), "listening": list(d.listening)}
                for d in self.kept
            ],
        )
        await self._ctx.store.set("sent", self.kept.last())

    def recent(self, since: float) -> tuple[Detection, ...]:
        return self.kept.since(since)

    async def run(self, model: StationModel, epoch: float, doubt: dict[str, float]) -> int:
        """The night starting at ``epoch`` (the window's start); returns the injections planned.
        ``doubt`` per meter id: 0 = sure of where it hangs, 1 = nothing known."""
        tz = self._ctx.terminal.tz
        local = datetime.fromtimestamp(epoch, tz).replace(tzinfo=None)
        offset = (tz.utcoffset(local) or timedelta(0)).total_seconds()
        planned, units, branch_of_unit = self._plan(model, local, epoch, offset, doubt)
        if not planned or not units:
            return 0
        reports: dict[str, list[Heard]] = {u: [] for u in units}
        end = injections.window_of(local, self.policy)[1].replace(tzinfo=tz).timestamp()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._order_all(model, planned), name="topology-orders")
            tg.create_task(self._poll_units(model, units, reports, end + AFTER_S), name="topology-units")
        heard = injections.attribute(
            planned,
            reports,
            branch_of_unit,
            slot_s=self.policy.slot_s,
            utc_offset_s=offset,
            listening=units,
        )
        self.kept.mark(heard)

        def share(device: str) -> str:  # the model's own string for the id, where it has one
            found = model.meter(device)
            return found.id if found is not None else device

        self.kept.keep_since(epoch - KEEP_DAYS * 86400, share)
        self.kept.extend(heard)
        await self.save()
        return len(planned)

    def _plan(
        self, model: StationModel, local: datetime, epoch: float, offset: float, doubt: dict[str, float]
    ) -> tuple[list[injections.Injection], list[str], dict[str, str | None]]:
        """The night's injections, the units to poll and each unit's branch. Apart from ``run``:
        its archive and a candidate a meter (~0.5 MB at 2,400 meters) are gone before the hours
        of orders and polls."""
        archive = arch.from_model(model)
        last_sent = self.kept.last_of()
        candidates = [
            injections.Candidate(m.id, m.branch.value, doubt.get(m.id, 1.0), last_sent(m.id))
            for m in archive.meters
        ]
        planned = injections.plan(
            candidates, night=local, now_utc=epoch, policy=self.policy, utc_offset_s=offset
        )
        units = [u for u in archive.units if model.meter(u) is not None]
        return planned, units, arch.unit_branches(archive)

    async def _order_all(self, model: StationModel, planned: list[injections.Injection]) -> None:
        tz = self._ctx.terminal.tz
        for inj in planned:
            due = inj.at.replace(tzinfo=tz).timestamp() - LEAD_S
            if due > self._ctx.clock.now():
                await self._ctx.clock.sleep_until(due)
            client = self._devices.client(model, inj.meter)
            if client is None:
                self.counters["orders_failed"] += 1
                continue
            try:
                await client.start_signature(inj.at, priority=Priority.CONTROL)
                self.counters["injections"] += 1
            except (HalError, ProtocolError) as err:
                self.counters["orders_failed"] += 1
                self._ctx.log.debug("topology: signature order to %s: %s", inj.meter, err)

    async def _poll_units(
        self, model: StationModel, units: list[str], reports: dict[str, list[Heard]], until: float
    ) -> None:
        clock = self._ctx.clock
        while True:
            last_round = clock.now() >= until
            for unit in units:
                client = self._devices.client(model, unit)
                if client is None:
                    continue
                try:
                    got = await client.read_signature_results(last=UNIT_EVENTS, priority=Priority.EVENT)
                except (HalError, ProtocolError):
                    self.counters["unit_reads_failed"] += 1
                    continue
                seen = {(d.at, d.phase) for d in reports[unit]}
                reports[unit] += [d for d in got if (d.at, d.phase) not in seen]
            if last_round:
                return
            await clock.sleep(min(POLL_S, max(until - clock.now(), 1.0)))

    def to_json(self) -> dict[str, Any]:
        return {"detections": len(self.kept), **self.counters}


__all__ = ["LEAD_S", "Night"]
