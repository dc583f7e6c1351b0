"""The reading plan: which meters are read, over which transport, through which client.

Layer: apps (acquisition). ``Plan.use(model)`` (re)builds the plan from the station model's
meters: one transport per meter transport (an RS-485 port's ``Rs485Transport``, or the carrier
module's ``CarrierTransport`` for the ``hplc`` channel), one ``MeterClient`` per meter from
``hal.meters.MeterClients``. A board without an HPLC module makes the model's HPLC meters
unreachable: logged once per model, counted, left out of the plan (they stay in the success
tracker, where they count as failed). ``per_port`` runs one piece of work per port at once --
an RS-485 port serializes its meters by priority, the carrier transport admits ``concurrency``
at once -- so neither idles. A port the carrier module leads (``led``, module-led reading) is
left out of ``per_port``: the route task reads it.

Must not read meters itself (the tasks do, through ``reader.MeterReader``) nor keep read state.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

from hal.errors import CapabilityMissing
from hal.interfaces import Priority
from hal.meters import CarrierTransport, MeterClient, MeterClients, MeterTransport, Rs485Transport
from hal.slots import Reservation, Start
from protocols.station import Meter, StationModel
from runtime.api import AppContext
from runtime.model import Reading

HPLC = "hplc"

PortWork = Callable[[str, list[Meter]], Awaitable[list[Reading]]]


class Plan:
    """The meters of the current station model that can be read, grouped by transport."""

    def __init__(
        self,
        ctx: AppContext,
        *,
        clients: MeterClients,
        hplc_concurrency: int,
        before_port: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._ctx = ctx
        self._log = ctx.log
        self._factory = clients
        self._hplc_concurrency = hplc_concurrency
        self._before_port = before_port
        self.model = StationModel()
        self._transports: dict[str, MeterTransport] = {}
        self._readable: dict[str, Meter] = {}  # the model's meters on a transport the board has
        self._hplc_missing = False
        self.unreachable = 0
        self.led: set[str] = set()  # ports whose meters the carrier module leads (route.RouteTask)

    def use(self, model: StationModel) -> None:
        """Re-plan for ``model`` (at start and at once whenever the station model changes)."""
        self.model = model
        self._hplc_missing = False
        readable: dict[str, Meter] = {}
        unreachable = 0
        for meter in model.meters:
            transport = self._transport(meter.transport)
            if transport is None:
                unreachable += 1
                continue
            self._factory.master(transport, meter.protocol)  # now, as a time sync broadcasts to those made
            readable[meter.id] = meter
        self._readable = readable
        self.unreachable = unreachable
        self._log.info(
            "station model v%d: %d meters on %d transports (%d unreachable)",
            model.version,
            len(model.meters),
            len({m.transport for m in model.meters}),
            unreachable,
        )

    def _transport(self, port: str) -> MeterTransport | None:
        """The transport of a meter (a board port, or ``hplc``); None when the board has no carrier module."""
        known = self._transports.get(port)
        if known is not None:
            return known
        transport: MeterTransport
        if port == HPLC:
            try:
                module = self._ctx.hal.hplc()
            except CapabilityMissing as err:
                if not self._hplc_missing:  # edge-triggered: once per model that needs it
                    self._hplc_missing = True
                    self._log.warning("HPLC meters are unreachable: %s", err)
                return None
            transport = CarrierTransport(module, clock=self._ctx.clock, concurrency=self._hplc_concurrency)
        else:
            transport = Rs485Transport(self._ctx.hal.rs485(port))
        self._transports[port] = transport
        return transport

    def transport(self, port: str) -> MeterTransport | None:
        """The transport of ``port`` (a board port, or ``hplc``) once a meter of the plan uses it."""
        return self._transports.get(port)

    def client(self, meter_id: str) -> MeterClient | None:
        """The meter's client, or None when it is not (or no longer) readable. Made per call: a
        client has no state of its own (its transport's master has), and one kept a meter was
        ~0.15 MB at 2,400 meters."""
        meter = self._readable.get(meter_id)
        if meter is None:
            return None
        transport = self._transports[meter.transport]
        return self._factory.client(transport, meter.protocol, meter.address, three_phase=meter.three_phase)

    def readable(self) -> list[Meter]:
        """The model's meters that have a client, in model order."""
        return [m for m in self.model.meters if m.id in self._readable]

    def terminal_led(self) -> list[Meter]:
        """The readable meters the terminal reads itself (not on a port a module leads)."""
        return [m for m in self.readable() if m.transport not in self.led]

    def by_port(self) -> dict[str, list[Meter]]:
        ports: dict[str, list[Meter]] = {}
        for meter in self.readable():
            ports.setdefault(meter.transport, []).append(meter)
        return ports

    def rs485(self) -> list[Rs485Transport]:
        return [t for t in self._transports.values() if isinstance(t, Rs485Transport)]

    def pairs(self) -> set[tuple[str, str]]:
        """(transport name, protocol) of every readable meter: where a broadcast must go."""
        return {(m.transport, m.protocol) for m in self.readable()}

    async def per_port(self, work: PortWork) -> list[Reading]:
        """Run ``work(port, meters)`` for every port at once; the readings of all of them.
        Ports in ``led`` are left out: their module reads them when it leads the reading."""
        results: list[Reading] = []

        async def one(port: str, meters: list[Meter]) -> None:
            if self._before_port is not None:
                await self._before_port(port)
            results.extend(await work(port, meters))

        async with asyncio.TaskGroup() as tg:
            for port, meters in self.by_port().items():
                if port in self.led:
                    continue
                tg.create_task(one(port, meters), name=f"acquisition:{port}")
        return results


@runtime_checkable
class Queue(Protocol):
    """A transport that can queue places for work started later (``PrioritySlots.reserve``)."""

    def reserve(self, priority: Priority, count: int, start: Start) -> Reservation | None: ...

    async def turn(self, priority: Priority) -> None:
        """Until the calling task's next transaction may go (it must then make it at once)."""
        ...


async def each_meter(
    meters: list[Meter],
    work: Callable[[Meter], Coroutine[Any, Any, None]],
    *,
    task: str,
    queue: object = None,
    priority: Priority = Priority.REALTIME,
) -> None:
    """Queue ``work(meter)`` for every meter at once: the transport decides the order.

    With ``queue`` (the meters' transport, if it can ``reserve``) each meter's place is queued
    on it now, at ``priority``, and its task started only when the place is handed the slot --
    the same order as tasks queueing themselves now, without a waiting task a meter. ``work``
    must then ask that transport first (at ``priority``), with no other wait before; what it
    decides before that (its client, availability) is decided when its turn comes. A meter it
    skips passes its place on. Without ``queue``: one task a meter, started now."""
    async with asyncio.TaskGroup() as tg:
        reservation = None
        if isinstance(queue, Queue):
            context = contextvars.copy_context()  # the caller's, not the releaser's that starts it

            def start(index: int) -> asyncio.Task[None] | None:
                meter = meters[index]
                coro = work(meter)
                try:
                    return tg.create_task(coro, name=f"{task}:{meter.id}", context=context.copy())
                except RuntimeError:  # the group is shutting down (a task failed, or cancelled)
                    coro.close()
                    return None

            reservation = queue.reserve(priority, len(meters), start)
        if reservation is None:
            for meter in meters:
                tg.create_task(work(meter), name=f"{task}:{meter.id}")
        else:
            await reservation.wait()


__all__ = ["HPLC", "Plan", "PortWork", "Queue", "each_meter"]
