"""The realtime snapshot (实时数据): key quantities of every meter, aligned to the realtime period.

Layer: apps (acquisition), one task. Reads each meter's ``realtime_items`` in the batches its
protocol allows (one DI per exchange on DL/T 645, one GET-Request-NormalList on 698.45) at
REALTIME priority; a meter that stops answering mid-cycle is not asked for its other items.
Each meter counts once per cycle in the success rate. The cycle's duration is kept next to
the wire-time lower bound of the busiest RS-485 port. Must not schedule itself.
"""

from __future__ import annotations

from collections.abc import Awaitable

from hal.interfaces import Priority
from protocols.station import Meter
from runtime.api import AppContext
from runtime.model import Reading
from runtime.scheduler import Slot

from . import items
from .output import Output
from .plan import Plan, Queue, each_meter
from .reader import MeterReader


class RealtimeTask:
    def __init__(
        self, ctx: AppContext, plan: Plan, reader: MeterReader, output: Output, *, items: tuple[str, ...]
    ) -> None:
        self._ctx = ctx
        self._plan = plan
        self._reader = reader
        self._output = output
        self._items = items

    async def run(self, slot: Slot) -> None:
        clock = self._ctx.clock
        started = clock.monotonic()
        rs485 = self._plan.rs485()
        for transport in rs485:
            transport.tally.reset()
        readings = await self._plan.per_port(lambda port, meters: self._port(port, meters, slot.epoch))
        cycle = self._reader.tracker.cycle
        cycle.started = slot.epoch
        cycle.seconds = clock.monotonic() - started
        cycle.wire_bound_seconds = max((t.bound_seconds() for t in rs485), default=0.0)
        cycle.reads = sum(t.tally.exchanges for t in rs485)
        await self._output.readings(readings)

    async def _port(self, port: str, meters: list[Meter], ts: float) -> list[Reading]:
        out: list[Reading] = []
        transport = self._plan.transport(port)
        queue = transport if isinstance(transport, Queue) else None

        async def meter_reads(meter: Meter) -> None:
            client = self._plan.client(meter.id)
            if client is None:
                return
            got_any = False
            for n, batch in enumerate(client.realtime_batches(self._items)):
                if n > 0 and queue is not None:
                    # the next batch queues behind the cycle's other meters: wait for its turn
                    # here, one coroutine, and build the read's chain of calls when it comes
                    await queue.turn(Priority.REALTIME)

                def read(batch: tuple[str, ...] = batch) -> Awaitable[dict[str, float]]:
                    return client.read_realtime(batch, priority=Priority.REALTIME)

                values = await self._reader.attempt(meter, "realtime", read, record=False)
                if values is not None:
                    got_any = True
                    out.extend(items.to_readings(meter, values, ts))
                elif not client.available():
                    break  # the meter is gone: do not spend the bus on its other items
            self._reader.record(meter, "realtime", got_any)

        await each_meter(meters, meter_reads, task="realtime", queue=queue, priority=Priority.REALTIME)
        return out


__all__ = ["RealtimeTask"]
