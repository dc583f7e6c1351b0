"""Rig for the acquisition app tests (DL/T 645, DL/T 698.45 and HPLC meters), in virtual time.

Test helper (tests/apps). The app runs in a real ``Supervisor`` (``acquisition_app``) with
a real ``Store`` and a fake uplink that records what is sent and the command handlers;
RS-485 buses of virtual meters (``sim.station``) are served by ``MeterBus.serve_link`` on
in-memory link pairs, the terminal side is ``Rs485Port`` on the other ends. The station
may also have an ``hplc`` bus: its meters answer through ``FakeCarrier``,
a ``hal.interfaces.CarrierModule`` that forwards each frame to the addressed node's
``sim.meters.make_answer`` after a modeled per-node latency, with a hard concurrency limit
(exceeding it is recorded as a violation, which the tests assert never happens).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hal.clock import LoopClock
from hal.errors import CapabilityMissing, TransportTimeout
from hal.interfaces import CarrierEvent, SerialSettings
from hal.rs485 import Rs485Port
from hal.sim import memory_link_pair
from protocols.station import ARCHIVE, Meter, PatchOp, StationModel
from runtime.bus import Bus
from runtime.container import AppContextFactory, NamespacedStore, Supervisor, TerminalInfo
from runtime.container.supervisor import AppState
from runtime.model import Reading
from runtime.scheduler import Scheduler
from runtime.station import StationService
from runtime.store import Store
from sim.meters import Answer, MeterBus, VirtualMeter, make_answer
from sim.station import Station, build_station

TZ = ZoneInfo("Asia/Shanghai")
APPS_DIR = Path(__file__).resolve().parents[2] / "apps"
ENERGY = "energy.active.import.total"
HPLC = "hplc"


def local(*args: int) -> float:
    return datetime(*args, tzinfo=TZ).timestamp()  # type: ignore[misc]


def kwh(x: float) -> float:
    """What a meter displays: truncated hundredths."""
    return math.floor(x * 100 + 1e-6) / 100


class FakeUplink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.commands: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.priorities: dict[str, Any] = {}

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        self.sent.append((stream, body))
        return f"k{len(self.sent)}"

    async def send_many(self, stream: str, bodies: Sequence[dict[str, Any]]) -> list[str]:
        return [await self.send(stream, body) for body in bodies]

    def register_command(self, name: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        self.commands[name] = handler

    def unregister_command(self, name: str) -> None:
        self.commands.pop(name, None)

    def declare_stream(self, stream: str, *, priority: Any) -> None:
        self.priorities[stream] = priority


class FakeCarrier:
    """A carrier module (CCO) whose nodes answer from virtual meters after a per-node latency."""

    def __init__(
        self, answers: dict[str, Answer], clock: LoopClock, latency: dict[str, float], limit: int
    ) -> None:
        self.answers = answers
        self.clock = clock
        self.latency = latency
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self.violations = 0
        self.transactions: dict[str, int] = {}
        self.broadcasts: list[bytes] = []
        self.syncs: list[tuple[tuple[str, ...], dict[str, str]]] = []
        self.sync_failures = 0  # the next N archive syncs fail (module silent)

    async def reset(self) -> None: ...

    async def sync_archive(
        self, addresses: Sequence[str], *, protocols: Mapping[str, str] | None = None
    ) -> None:
        self.syncs.append((tuple(addresses), dict(protocols or {})))
        if self.sync_failures > 0:
            self.sync_failures -= 1
            raise TransportTimeout("hplc: running-mode query: no answer within 6 s")

    async def transact(self, address: str, frame: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight > self.limit:
            self.violations += 1
        self.transactions[address] = self.transactions.get(address, 0) + 1
        try:
            delay = self.latency.get(address, 1.0)
            await self.clock.sleep(delay)
            answer = self.answers.get(address)
            reply = None if answer is None else answer(frame)
            if reply is None:
                await self.clock.sleep(max(0.0, timeout - delay))
                raise TransportTimeout(f"hplc: node {address} did not answer within {timeout:g} s")
            return reply
        finally:
            self.in_flight -= 1

    async def broadcast(self, frame: bytes) -> None:
        self.broadcasts.append(frame)
        for answer in self.answers.values():
            answer(frame)

    async def events(self) -> AsyncIterator[CarrierEvent]:  # pragma: no cover - not used by the app
        if False:
            yield


class FakeHal:
    def __init__(
        self, ports: dict[str, Rs485Port], carrier: FakeCarrier | None = None, metrology: Any = None
    ) -> None:
        self.ports = ports
        self.carrier = carrier
        self._metrology = metrology
        self.hplc_requests = 0

    def rs485(self, name: str) -> Rs485Port:
        try:
            return self.ports[name]
        except KeyError:
            raise CapabilityMissing(f"no RS-485 port {name!r}") from None

    def hplc(self) -> FakeCarrier:
        self.hplc_requests += 1
        if self.carrier is None:
            raise CapabilityMissing("this board has no HPLC module")
        return self.carrier

    def metrology(self) -> Any:
        if self._metrology is None:
            raise CapabilityMissing("metrology unit: not enabled on this board")
        return self._metrology

    def slot(self, name: str) -> Any:
        raise CapabilityMissing(f"no slot {name!r}")

    def watchdog(self) -> Any:
        raise CapabilityMissing("no watchdog")


@dataclass
class Rig:
    clock: LoopClock
    station: Station
    store: Store
    uplink: FakeUplink
    supervisor: Supervisor
    archive: Path
    hal: FakeHal
    buses: dict[str, MeterBus] = field(default_factory=dict)
    bus: Bus | None = None  # the terminal's bus (e.g. to publish hplc/event/<kind> as the runtime does)
    model: StationService | None = None  # the terminal's station model

    @property
    def service(self) -> StationService:
        assert self.model is not None
        return self.model

    async def use_meters(self, meters: Sequence[Meter]) -> None:
        """Make ``meters`` the station model's meters (as a replace from the cloud would)."""
        await self.service.replace(StationModel(meters=tuple(meters)), by="test")

    async def patch(self, *ops: PatchOp) -> None:
        await self.service.patch(ops, provenance=ARCHIVE, by="test")

    def meter(self, meter_id: str) -> VirtualMeter:
        return self.station.meter(meter_id)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.station.meters]

    def on(self, bus: str) -> list[str]:
        return [m.id for m in self.station.buses[bus]]

    @property
    def carrier(self) -> FakeCarrier:
        assert self.hal.carrier is not None
        return self.hal.carrier

    async def until(self, epoch: float) -> None:
        await self.clock.sleep_until(epoch)

    async def stats(self) -> dict[str, Any]:
        return dict(await self.uplink.commands["acquisition.stats"]({}))

    async def readings(self, device: str, quantity: str, ts: float) -> list[Reading]:
        return await self.store.query_readings(device=device, quantity=quantity, since=ts, until=ts + 1e-3)


@asynccontextmanager
async def acquisition_app(
    stack: AsyncExitStack,
    tg: asyncio.TaskGroup,
    *,
    clock: LoopClock,
    bus: Bus,
    scheduler: Scheduler,
    store: Store,
    uplink: FakeUplink,
    hal: FakeHal,
    terminal: TerminalInfo,
    config: dict[str, Any],
    station: StationService | None = None,
) -> AsyncIterator[Supervisor]:
    """The acquisition app (``config``) in a real ``Supervisor``, with the scheduler running.

    Yields once the app is RUNNING; on the way out asserts it still is and stops it. The
    tasks run in ``tg``; ``stack`` cancels / stops them if the rig unwinds early.
    """
    factory = AppContextFactory(
        clock=clock,
        bus=bus,
        scheduler=scheduler,
        stores=lambda name: NamespacedStore(store, name),
        uplinks=lambda name: uplink,  # type: ignore[arg-type,return-value]
        hal=hal,
        terminal=terminal,
        station=station,
    )
    supervisor = Supervisor(clock=clock, bus=bus, context_factory=factory)
    supervisor.load(APPS_DIR, configs={"acquisition": config}, enabled=["acquisition"])
    scheduling = tg.create_task(scheduler.run(), name="test-scheduler")
    stack.callback(scheduling.cancel)
    supervising = tg.create_task(supervisor.run(), name="test-supervisor")
    stack.push_async_callback(supervisor.stop)
    async with clock.timeout(30):
        state = await supervisor.wait_state("acquisition", AppState.RUNNING, AppState.CRASHED)
    assert state is AppState.RUNNING, supervisor.status()
    try:
        yield supervisor
    finally:
        assert supervisor.state("acquisition") is AppState.RUNNING, supervisor.status()
        await supervisor.stop()
        await supervising


BASE_CONFIG: dict[str, Any] = {
    "realtime_interval_s": 300,
    "event_poll_interval_s": 600,
    "retries": 1,
    "timeout_s": 1.0,  # a 4-5 record catch-up reply is ~0.85 s on the wire at 2400 baud
    "time_sync": False,
}


@asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    start: float,
    buses: Sequence[str] = ("rs485-1", "rs485-2"),
    meters_per_bus: int = 3,
    protocol: Callable[[str, int], str] | None = None,
    config: dict[str, Any] | None = None,
    max_apdu_698: int = 200,
    hplc_present: bool = True,
    hplc_limit: int = 3,
    hplc_latency: Callable[[int], float] = lambda k: 1.0 + 0.25 * k,
) -> AsyncIterator[Rig]:
    """``buses`` may include ``"hplc"``; ``protocol(bus, index)`` picks each meter's protocol."""
    clock = LoopClock(start=start)
    station = build_station(buses=list(buses), meters_per_bus=meters_per_bus, seed=11, start=clock.now())
    if protocol is not None:
        for name, members in station.buses.items():
            for k, m in enumerate(members):
                m.protocol = protocol(name, k)
    archive = tmp_path / "station.toml"
    station.write_archive(archive)
    settings = SerialSettings()
    uplink = FakeUplink()
    rs485 = tuple(b for b in buses if b != HPLC)
    carrier: FakeCarrier | None = None
    if HPLC in buses and hplc_present:
        nodes = station.buses[HPLC]
        carrier = FakeCarrier(
            {
                m.meter.address: make_answer(m.meter, m.protocol, clock=clock, max_apdu=max_apdu_698)
                for m in nodes
            },
            clock,
            {m.meter.address: hplc_latency(k) for k, m in enumerate(nodes)},
            hplc_limit,
        )
    async with AsyncExitStack() as stack:
        store = await Store.open(tmp_path / "ttu.sqlite", clock=clock)
        stack.push_async_callback(store.close)
        bus = Bus(clock=clock)
        scheduler = Scheduler(clock=clock, tz=TZ, state=NamespacedStore(store, "scheduler"))
        ports: dict[str, Rs485Port] = {}
        meter_buses: dict[str, MeterBus] = {}
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        for i, name in enumerate(rs485):
            meters_end, terminal_end = memory_link_pair(settings, names=(f"{name}-meters", name))
            meter_bus = MeterBus(
                [m.meter for m in station.buses[name]],
                clock=clock,
                settings=settings,
                seed=i,
                protocols=station.protocols(name),
                max_apdu_698=max_apdu_698,
            )
            meter_buses[name] = meter_bus
            ports[name] = await stack.enter_async_context(Rs485Port(terminal_end, clock=clock, name=name))
            serving = tg.create_task(meter_bus.serve_link(meters_end), name=f"test-bus-{name}")
            stack.callback(serving.cancel)  # before the port closes: a hang-up ends serve_link with an error
        hal = FakeHal(ports, carrier)
        info = TerminalInfo(id="TTU-T", tz=TZ, root=tmp_path, rs485_ports=rs485)
        config = {**BASE_CONFIG, **(config or {})}
        model = StationService(
            store=store, bus=bus, clock=clock, file=archive, send=uplink.send, known_ports=rs485
        )
        await model.start()
        app = acquisition_app(
            stack,
            tg,
            clock=clock,
            bus=bus,
            scheduler=scheduler,
            store=store,
            uplink=uplink,
            hal=hal,
            terminal=info,
            config=config,
            station=model,
        )
        async with app as supervisor:
            yield Rig(clock, station, store, uplink, supervisor, archive, hal, meter_buses, bus, model)
