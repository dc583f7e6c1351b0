"""A whole simulated station area around one terminal: broker, cloud stub, meters on ptys, terminal.

Layer: sim. Boots the terminal only through ``runtime.terminal.Terminal`` (the one
runtime entry sim may use) and talks to it over ptys and MQTT. Produces the run
report that ``ttu sim --report`` writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hal.clock import LoopClock
from hal.sim import SimPowerMonitor
from protocols.cloud import DEFAULT_MAX_COMMAND_BYTES
from protocols.station import StationModel, Transformer
from runtime.config import AppConfig, Board, load_board, load_credentials
from runtime.errors import BusError, ConfigError, TerminalDied
from runtime.terminal import Terminal
from sim.archive import station_model, write_station
from sim.billing import BillingDriver, LedgerArchive, Party, write_keys
from sim.broker import BrokerError, EmbeddedBroker, PayloadLimits
from sim.cloud.simclock import publish_beacons
from sim.cloud.stub import CloudStub
from sim.devices.station import FieldDevices, IoSlot, attach, build_devices
from sim.hplc.cco import VirtualCco
from sim.hplc.serve import serve_cco
from sim.scenarios import DEFAULT_SCENARIO, load_scenario
from sim.scenarios import Billing as BillingScenario
from sim.station import Station, build_station
from sim.terminal_life import TerminalLife
from sim.truth import write_truth
from sim.vloop import running_virtual_loop
from sim.wiring import MemoryWiring, PtyWiring, TerminalEnd, Wiring
from sim.world import World, build_world

log = logging.getLogger("ttu.sim")
#: named sets of app settings a run may take (``ttu sim --profile``): "standard" is the board as
#: it is; "analytics" reads the realtime snapshot and polls events every 15 minutes, what days
#: of data for the grid apps need (curves stay at 15 min) at a quarter of the bus load
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "standard": {},
    "analytics": {"acquisition": {"realtime_interval_s": 900, "event_poll_interval_s": 900}},
}
#: the end-of-run drain of the uplink: at most this long in simulated time ...
DRAIN_SIM_S = 120.0
#: ... and in wall time (virtual time runs the drain as fast as the loop can)
DRAIN_WALL_S = 60.0
#: the live summary's period in simulated seconds under virtual time (shown at most every 2 wall s)
VIRTUAL_TICK_S = 60.0


def sim_board(path: Path) -> Board:
    """The board at ``path``, which must be a simulated one (``[hal] backend = "sim"``)."""
    board = load_board(path)
    if board.hal.backend != "sim":
        raise ConfigError(
            "hal.backend", 'ttu sim needs a simulated board (backend = "sim")', source=str(path)
        )
    return board


@dataclass(frozen=True, slots=True)
class SimOptions:
    board: Board
    workdir: Path
    speed: float
    meters_per_bus: int
    seed: int
    start: float | None = None
    duration_s: float | None = None
    broker_url: str | None = None
    response_delay_s: tuple[float, float] = (0.02, 0.05)
    #: physics-driven station: a network ("ieee-eu-lv" or a pandapower JSON path); None = the
    #: synthetic station of ``meters_per_bus`` household meters per bus
    network: str | None = None
    scenario: str | None = None  # name in sim/scenarios or a TOML path (physics only; default "default")
    customers_scale: int = 1  # replicas of the feeder's customers (physics only)
    truth_dir: Path | None = None  # ground truth folder (physics only; default <workdir>/truth)
    #: meters behind the virtual CCO (a count; in the physics world a seeded choice of its
    #: customers); None: the board's [sim] hplc_meters; 0 without an enabled [hplc] module
    hplc_meters: int | None = None
    #: per app: config keys that replace the board's (``PROFILES``, ``--realtime-period``); an app
    #: named here that the board has not is added, enabled, with just these keys
    app_config: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    profile: str | None = None  # the name of the PROFILES entry behind app_config (for the report)

    @property
    def virtual(self) -> bool:
        """``--speed max``: everything on the virtual-time loop, lines in memory."""
        return math.isinf(self.speed)


@dataclass(slots=True)
class SimRun:
    """The running pieces, for the live summary and the report."""

    options: SimOptions
    clock: LoopClock
    station: Station
    terminal: Terminal
    cloud: CloudStub
    broker_url: str
    started_monotonic: float = 0.0
    started_wall: float = 0.0  # time.perf_counter() at the start: the achieved speed
    world: World | None = None
    truth_dir: Path | None = None
    devices: FieldDevices | None = None  # metrology unit and Modbus devices (sim/devices)
    hplc: VirtualCco | None = None  # the virtual CCO behind sim:hplc, when there are HPLC meters
    life: TerminalLife[Terminal] | None = None  # the terminal's supply, deaths and boots (station outages)
    notes: list[str] = dataclasses.field(default_factory=list)  # departures from the board, said once
    billing: BillingDriver | None = None  # the simulated utility and bank (billing app enabled)
    ledger_archive: LedgerArchive | None = None
    terminal_task: asyncio.Task[None] | None = None

    @property
    def terminal_failure(self) -> str | None:
        """Why the terminal stopped on its own (None while it runs)."""
        task = self.terminal_task
        if task is None or not task.done() or task.cancelled():
            return None
        error = task.exception()
        return "the terminal returned" if error is None else f"{type(error).__name__}: {error}"

    @property
    def mode(self) -> str:
        """``virtual`` (``--speed max``), ``realtime`` (×1) or ``scaled`` (×N on ptys)."""
        if self.options.virtual:
            return "virtual"
        return "realtime" if self.options.speed == 1.0 else "scaled"

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started_wall

    def achieved_speed(self) -> float:
        """Simulated seconds per wall second since the start."""
        return (self.clock.monotonic() - self.started_monotonic) / max(self.wall_seconds(), 1e-9)

    async def summary(self) -> dict[str, Any]:
        parts = self.terminal.parts
        stats: dict[str, Any] = {}
        backlog: dict[str, int] = {}
        apps: list[dict[str, Any]] = []
        if parts is not None:
            try:
                stats = dict(await parts.bus.request("acquisition/stats/get", None, timeout=5.0))
            except BusError:  # acquisition not running (yet): show the last published summary
                retained = parts.bus.retained("acquisition/stats")
                stats = dict(retained.payload) if retained is not None else {}
            backlog = await parts.store.outbox_backlog()
            apps = parts.supervisor.status()
        counts = await self.cloud.counts()
        events = await self.cloud.events(limit=5)
        return {
            "sim_time": self.clock.now(),
            "elapsed_s": self.clock.monotonic() - self.started_monotonic,
            "speed": self.clock.speed,
            "terminal_died": self.terminal_failure,
            "mode": self.mode,
            "achieved_speed": self.achieved_speed(),
            "wall_s": self.wall_seconds(),
            "truth_dir": None if self.truth_dir is None else str(self.truth_dir),
            "meters": len(self.station.meters),
            "acquisition": stats,
            "uplink_backlog": sum(backlog.values()),
            "cloud": counts,
            "recent_events": [dataclasses.asdict(e) if dataclasses.is_dataclass(e) else e for e in events],
            "apps": [{k: a.get(k) for k in ("name", "state", "restarts")} for a in apps],
            "devices": self._devices(),
            "hplc": self._hplc(),
        }

    def _hplc(self) -> dict[str, Any] | None:
        """The carrier network as the virtual CCO saw it: nodes, reads/s, and the power-off/on
        reports the terminal received (confirmed with AFN00 F1)."""
        cco = self.hplc
        if cco is None:
            return None
        elapsed = max(self.clock.monotonic() - self.started_monotonic, 1e-9)
        c = cco.counters
        done = c.reads - c.reads_lost
        received = {"power_off": 0, "power_on": 0}
        for sent in cco.sent:
            if sent.outage is not None and sent.confirmed_at is not None:
                received[sent.outage.kind] = received.get(sent.outage.kind, 0) + 1
        return {
            "nodes": len(cco.nodes),
            "archived_nodes": len(cco.table),
            "nodes_powered": sum(1 for n in cco.nodes.values() if n.powered),
            "reads": done,
            "reads_lost": c.reads_lost,
            "reads_per_s": done / elapsed,
            "power_off_reports": received["power_off"],
            "power_on_reports": received["power_on"],
            "report_sends": c.reports_sent,
            "dips_ignored": cco.outages.dips,
            "route_rounds": c.route_rounds,  # module-led reading (路由主动抄表)
            "route_reads": c.route_reads,
            "route_reads_lost": c.route_reads_lost,
            "route_rounds_finished": c.route_rounds_finished,
            "route_pauses": c.route_pauses,  # AFN12 F2/F3 the terminal sent around its own reads
            "route_resumes": c.route_resumes,
            "route_asks_paused": c.route_asks_paused,
            "busy_denied": c.busy_denied,  # terminal reads refused: the route held every slot
            "peak_in_flight": c.peak_in_flight,
        }

    def _devices(self) -> dict[str, Any] | None:
        """Field devices as the simulator saw them used, plus the terminal's own view (the
        acquisition app retains ``acquisition/{devices,metrology}/stats`` after each poll)."""
        if self.devices is None:
            return None
        out: dict[str, Any] = self.devices.status(self.clock.now())
        parts = self.terminal.parts
        for name in ("devices", "metrology"):
            seen = parts.bus.retained(f"acquisition/{name}/stats") if parts is not None else None
            out[f"terminal_{name}"] = dict(seen.payload) if seen is not None else None
        return out


def _with_workdir(
    board: Board,
    workdir: Path,
    archive: Path,
    *,
    virtual: bool,
    notes: list[str],
    app_config: Mapping[str, Mapping[str, Any]],
) -> Board:
    """The simulated board with its store and the station archive inside the run folder,
    and ``app_config`` over the apps' configs.

    ``virtual``: apps the board isolates run in the terminal's process instead (a separate
    process cannot follow virtual time), and the store does not fsync its commits (a power cut
    of the machine running the simulation is not a scenario; ~1 ms per commit is wall time); both
    said once in ``notes``.
    """
    store = dataclasses.replace(board.store, path=workdir / "ttu.sqlite", fsync=not virtual)
    if virtual:
        notes.append(
            "the terminal's store and the cloud database do not fsync their commits (--speed max: "
            "the disk is not the terminal's flash; a killed process still loses nothing)"
        )
    apps = dict(board.apps)
    for name, overrides in app_config.items():
        app = apps.get(name) or AppConfig(name=name, enabled=True, isolated=False, config={})
        apps[name] = dataclasses.replace(app, config={**app.config, **overrides})
    if "billing" in apps:  # the terminal's signing key in the run folder
        app = apps["billing"]
        key = str(workdir / "billing" / "terminal.key")
        apps["billing"] = dataclasses.replace(app, config={"terminal_key": key, **app.config})
    isolated = sorted(name for name, app in apps.items() if app.enabled and app.isolated)
    if virtual and isolated:
        for name in isolated:
            apps[name] = dataclasses.replace(apps[name], isolated=False)
        notes.append(
            f"apps {', '.join(isolated)} run in the terminal's process: an isolated app's own process "
            "cannot follow virtual time (--speed max)"
        )
    station = dataclasses.replace(board.station, file=archive)
    return dataclasses.replace(board, store=store, apps=apps, station=station)


def _archive(board: Board, station: Station, world: World | None, devices: FieldDevices) -> StationModel:
    """The station archive the simulated terminal starts from: the world as the utility records it
    (with the scenario's archive errors, a wrong CT of the 总表 included), its field devices, and the
    transformer (``sim.archive``; without a world, the board's metrology unit is the 总表)."""
    node = board.metrology if board.metrology is not None and board.metrology.enabled else None
    transformer = Transformer(
        "T1",
        ct_ratio=node.ct_ratio if node is not None else 1.0,
        pt_ratio=node.pt_ratio if node is not None else 1.0,
        meter="transformer",
    )
    return station_model(
        station,
        world=world,
        devices=devices.archive(),
        station_id=board.terminal.address or board.terminal.id,
        name=board.terminal.name or "",
        transformer=transformer,
    )


def _field_devices(board: Board, station: Station, world: World | None) -> FieldDevices:
    """The metrology unit and the Modbus devices on the first port with role "breakers".

    The unit's CT is the board's (a scenario's wrong CT is the assessment meter's archive
    ratio, ``sim.world``; the terminal's own unit stays right). Without a world (the synthetic
    station) there are no branches: one main breaker and a constant transformer load. Every
    enabled ``modbus-rtu`` slot with a ``sim:`` device gets I/O modules at its unit ids, served
    on a pty of its own (``FieldDevices.serve``), so ``BoardHal`` finds ``sim:<name>`` there.
    """
    breakers = board.rs485_with_role("breakers")
    node = board.metrology if board.metrology is not None and board.metrology.enabled else None
    ct = node.ct_ratio if node is not None else 1.0
    return build_devices(
        station=station,
        world=world,
        port=breakers[0].name if breakers else None,
        ct_ratio=ct,
        pt_ratio=node.pt_ratio if node is not None else 1.0,
        metrology=node is not None,
        metrology_settings=node.settings if node is not None else None,
        io_slots=_io_slots(board),
        seed=station.seed,
    )


def _io_slots(board: Board) -> list[IoSlot]:
    return [
        IoSlot(s.device[len("sim:") :], s.unit_ids, s.settings)
        for s in board.slots
        if s.enabled and s.module == "modbus-rtu" and s.device is not None and s.device.startswith("sim:")
    ]


@contextlib.asynccontextmanager
async def _broker(options: SimOptions) -> AsyncIterator[str]:
    if options.broker_url:
        yield options.broker_url
        return
    wanted = options.board.uplink.broker if options.board.uplink else "mqtt://127.0.0.1:0"
    port = urlsplit(wanted).port or 0
    # the broker forwards no more than the terminal accepts (the same command limit as board.toml)
    uplink = options.board.uplink
    limits = PayloadLimits(command=uplink.max_command_bytes) if uplink is not None else PayloadLimits()
    broker = EmbeddedBroker(port=port, limits=limits)
    try:
        await broker.start()
    except BrokerError as err:  # e.g. another `ttu sim` holds the board's port
        if port == 0:
            raise
        log.warning("%s; the embedded broker uses a free port instead", err)
        broker = EmbeddedBroker(port=0, limits=limits)
        await broker.start()
    try:
        yield broker.url
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def simulate(options: SimOptions) -> AsyncIterator[SimRun]:
    """Start everything; the terminal runs in a task until the context exits."""
    if options.workdir.exists():
        shutil.rmtree(options.workdir)
    options.workdir.mkdir(parents=True)
    wiring: Wiring = PtyWiring()
    if options.virtual:
        if running_virtual_loop() is None:
            raise ConfigError("--speed", "max needs the virtual-time loop (sim.vloop.run_virtual)")
        if options.broker_url is not None:
            raise ConfigError(
                "--broker", "an external broker cannot follow virtual time: --speed max uses the embedded one"
            )
        wiring = MemoryWiring()
    clock = LoopClock(start=options.start, speed=1.0 if options.virtual else options.speed)
    start = clock.now()
    board = options.board
    buses = [p.name for p in board.rs485 if p.enabled]
    world: World | None = None
    if options.network is not None:
        world = build_world(
            buses=buses,
            scenario=load_scenario(options.scenario or DEFAULT_SCENARIO),
            seed=options.seed,
            start=start,
            duration_s=options.duration_s,
            network=options.network,
            customers_scale=options.customers_scale,
            response_delay_s=options.response_delay_s,
            hplc_meters=_hplc_meters(options),
            station_id=station_id(board),
            hplc_from_board=options.hplc_meters is None,
        )
        station = world.station
    else:
        if options.scenario is not None:
            raise ConfigError(
                "--scenario", "scenarios need the physics station (--network), not --meters-per-bus"
            )
        station = build_station(
            buses=buses,
            meters_per_bus=options.meters_per_bus,
            seed=options.seed,
            start=start,
            response_delay_s=options.response_delay_s,
            hplc_meters=_hplc_meters(options),
        )
    devices = _field_devices(board, station, world)
    attach(devices, station, clock)
    archive = options.workdir / "station.toml"
    write_station(archive, _archive(board, station, world, devices))
    notes: list[str] = []
    run_board = _with_workdir(
        board,
        options.workdir,
        archive,
        virtual=options.virtual,
        notes=notes,
        app_config=options.app_config,
    )
    for note in notes:
        log.warning("%s", note)
    key = b""
    if board.uplink is not None and board.uplink.credentials_file is not None:
        key = load_credentials(board.uplink.credentials_file).command_key
    async with (
        _broker(options) as broker_url,
        CloudStub(
            broker_url=broker_url,
            db_path=options.workdir / "cloud.sqlite",
            clock=clock,
            default_key=key,
            fsync=not options.virtual,
        ) as cloud,
        station.serve(clock=clock, wiring=wiring) as ptys,
        devices.serve(clock=clock, wiring=wiring) as device_ptys,
        _hplc(station, clock, options, world, wiring) as (cco, hplc_ptys),
    ):
        mains = SimPowerMonitor(holdup_s=_holdup_s(board), since=clock.now())

        def make_terminal() -> Terminal:
            served = {**ptys, **device_ptys, **hplc_ptys}
            return Terminal(
                run_board, clock=clock, sim_devices=served, broker_url=broker_url, sim_power=mains
            )

        boot_s = world.scenario.terminal.boot_s if world is not None else 0.0
        life = TerminalLife(make_terminal, clock=clock, monitor=mains, boot_s=boot_s, world=world, cco=cco)
        terminal = life.terminal
        run = SimRun(
            options, clock, station, terminal, cloud, broker_url, clock.monotonic(), time.perf_counter(),
            world=world, notes=notes, life=life,
        )  # fmt: skip

        def booted(terminal: Terminal) -> None:
            run.terminal, run.terminal_task = terminal, life.task
            if life.task is not None:
                life.task.add_done_callback(_say_if_died)

        life.on_boot = booted
        run.devices = devices
        run.hplc = cco
        if world is not None:
            run.truth_dir = options.truth_dir or options.workdir / "truth"
        world_task = None if world is None else asyncio.create_task(world.run(clock), name="sim-world")
        billing_tasks = _billing(run, run_board, world)
        task = life.start()
        run.terminal_task = task
        task.add_done_callback(_say_if_died)
        beacon = asyncio.create_task(
            publish_beacons(cloud, clock, speed=run.achieved_speed if options.virtual else None),
            name="sim-clock-beacon",
        )
        try:
            started = asyncio.create_task(terminal.started.wait(), name="terminal-started")
            done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                started.cancel()
                task.result()  # raises the terminal's start-up error
            yield run
        finally:
            await life.stop()
            if world is not None and run.truth_dir is not None:
                end = clock.now() if options.duration_s is None else world.start + options.duration_s
                write_truth(world, run.truth_dir, end=min(end, clock.now() + 1.0))
            for t in (beacon, world_task, *billing_tasks):
                if t is not None:
                    t.cancel()
                    # a terminal that died is in the report (terminal_died), not raised here
                    with contextlib.suppress(asyncio.CancelledError, TerminalDied):
                        await t


def _billing(run: SimRun, board: Board, world: World | None) -> list[asyncio.Task[None]]:
    """The simulated utility and bank, when the board runs the billing app (``sim.billing``)."""
    app = board.apps.get("billing")
    if app is None or not app.enabled:
        return []
    write_keys(run.options.workdir / "keys")
    skip = ("branch-unit", "box-terminal", "assessment")  # monitoring meters, not customers
    customers = {m.id: m.customer.id for m in run.station.meters if m.customer.tariff not in skip}
    party = Party(board.terminal.id, customers, run.clock.now(), board.terminal.tz)
    scenario = world.scenario.billing if world is not None else BillingScenario()
    limit = board.uplink.max_command_bytes if board.uplink is not None else DEFAULT_MAX_COMMAND_BYTES
    run.billing = BillingDriver(run.cloud, run.clock, party, scenario, max_command_bytes=limit)
    run.ledger_archive = archive = LedgerArchive(run.cloud, run.clock)
    run.cloud.listen("billing", archive.on_message)
    return [
        asyncio.create_task(run.billing.run(), name="sim-billing-parties"),
        asyncio.create_task(archive.run(), name="sim-billing-archive"),
    ]


def station_id(board: Board) -> str:
    """The simulated station area's id in its station model (and in the outage truth)."""
    return board.terminal.address or board.terminal.id


def _holdup_s(board: Board) -> float:
    """The terminal's supercapacitor hold-up; without a [power] node it dies with the mains."""
    node = board.power
    return node.holdup_s if node is not None and node.enabled else 1e-3


def _say_if_died(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("the simulated terminal died: %s", task.exception())


def _hplc_meters(options: SimOptions) -> int:
    board = options.board
    if board.hplc is None or not board.hplc.enabled:
        return 0
    if options.hplc_meters is not None:
        return options.hplc_meters
    return board.sim.hplc_meters if board.sim is not None else 0


@contextlib.asynccontextmanager
async def _hplc(
    station: Station, clock: LoopClock, options: SimOptions, world: World | None, wiring: Wiring
) -> AsyncIterator[tuple[VirtualCco | None, dict[str, TerminalEnd]]]:
    """The virtual CCO with the station's HPLC meters, served as ``sim:hplc``; in the physics
    world every supply change of those meters reaches the CCO's power hook at its own time."""
    if not station.hplc:
        yield None, {}
        return
    loss = world.scenario.hplc.lastgasp_loss_pct / 100.0 if world is not None else 0.0
    async with serve_cco(station.hplc, clock=clock, seed=options.seed, wiring=wiring, lastgasp_loss=loss) as (
        cco,
        path,
    ):
        if world is not None:
            world.on_supply(lambda addresses, on, t: cco.node_power(addresses, on, at=t))
        yield cco, {"hplc": path}


async def run_for(
    options: SimOptions, *, on_tick: Callable[[SimRun], Any] | None = None, tick_s: float | None = None
) -> dict[str, Any]:
    """Run for ``options.duration_s`` of simulated time (forever if None); return the report.

    ``on_tick(run)`` is called every ``tick_s`` simulated seconds (default: one wall second's
    worth at the board's speed, ``VIRTUAL_TICK_S`` under virtual time).
    """
    if tick_s is None:
        tick_s = VIRTUAL_TICK_S if options.virtual else max(1.0, options.speed)
    async with simulate(options) as run:
        clock = run.clock
        end = None if options.duration_s is None else clock.monotonic() + options.duration_s
        while end is None or clock.monotonic() < end:
            step = tick_s if end is None else min(tick_s, end - clock.monotonic())
            await clock.sleep(step)
            if on_tick is not None:
                result = on_tick(run)
                if asyncio.iscoroutine(result):
                    await result
            if run.terminal_failure is not None:
                break  # nothing more will happen: report it now
        backlog = await drain(run)
        return await report(run, backlog_after_drain=backlog)


async def drain(run: SimRun) -> int | None:
    """Let the uplink deliver what the terminal has queued, bounded by ``DRAIN_SIM_S`` simulated
    and ``DRAIN_WALL_S`` wall seconds: until the outbox is empty and the cloud has every reading
    sent (the apps keep running meanwhile: a reading they add is waited for too, within the bound;
    the report counts the rest as queued).

    Returns the outbox rows left unacknowledged when the drain ended: 0 when it emptied, what was
    still queued when a bound ran out, None without a running terminal. (The apps keep running, so
    a row queued after this moment is the next run's, not a leftover of this one.)"""
    parts = run.terminal.parts
    if parts is None or run.terminal_failure is not None:
        return None
    clock = run.clock
    sim_deadline = clock.monotonic() + DRAIN_SIM_S
    wall_deadline = time.perf_counter() + DRAIN_WALL_S
    backlog = sum((await parts.store.outbox_backlog()).values())
    while clock.monotonic() < sim_deadline and time.perf_counter() < wall_deadline:
        if backlog == 0:
            await clock.sleep(2.0)  # the cloud stub stores what it received
            counted = await delivery(run)
            if (
                counted["queued"] == 0
                and counted["sent"] is not None
                and counted["delivered"] >= counted["sent"]
            ):
                return 0
        await clock.sleep(1.0)
        backlog = sum((await parts.store.outbox_backlog()).values())
    return backlog


async def delivery(run: SimRun) -> dict[str, int | None]:
    """Readings sent, delivered (at the cloud), still queued in the durable outbox, and lost.

    Queued counts the readings of outbox rows the cloud does not have (a row published but not
    yet acknowledged is delivered, not queued); lost is what is neither: sent - delivered - queued.
    Without a running terminal the outbox cannot be read: queued and lost are None.
    """
    terminal_id = run.options.board.terminal.id
    parts = run.terminal.parts
    stats = await run.cloud.statistics()
    delivered = int(stats.get(terminal_id, {}).get("readings", 0))
    retained = parts.bus.retained("acquisition/stats") if parts is not None else None
    sent: int | None = None
    if parts is not None:
        try:
            sent = int(dict(await parts.bus.request("acquisition/stats/get", None, timeout=5.0))["readings"])
        except (BusError, KeyError):
            sent = int(dict(retained.payload).get("readings", 0)) if retained is not None else None
    if parts is None or sent is None:
        return {"sent": sent, "delivered": delivered, "queued": None, "lost": None}
    pending = await parts.store.outbox_pending("readings", limit=1_000_000_000)
    at_cloud = await run.cloud.known_keys(terminal_id, [e.key for e in pending])
    queued = sum(len(e.body.get("readings", ())) for e in pending if e.key not in at_cloud)
    return {"sent": sent, "delivered": delivered, "queued": queued, "lost": sent - delivered - queued}


async def report(run: SimRun, *, backlog_after_drain: int | None = None) -> dict[str, Any]:
    """The end-of-run report. ``uplink_backlog`` is what the end-of-run drain left queued when
    one ran (``backlog_after_drain``), else the outbox backlog now."""
    summary = await run.summary()
    acq = summary["acquisition"]
    stats = await run.cloud.statistics()
    terminal_id = run.options.board.terminal.id
    cloud_terminal = stats.get(terminal_id, {})
    parts = run.terminal.parts
    uplink_stats = parts.uplink.statistics() if parts is not None and parts.uplink is not None else {}
    ports = parts.hal.statistics() if parts is not None else {}
    delivered = await delivery(run)
    return {
        "terminal": terminal_id,
        "failures": failures(summary, parts.supervisor.status() if parts is not None else []),
        "terminal_died": summary["terminal_died"],
        "mode": run.mode,
        "profile": run.options.profile,
        "speed": None if run.options.virtual else run.options.speed,
        "achieved_speed": summary["achieved_speed"],
        "wall_seconds": summary["wall_s"],
        "truth_dir": summary["truth_dir"],
        "notes": list(run.notes),
        "simulated_seconds": summary["elapsed_s"],
        "readings": delivered,
        "meters": summary["meters"],
        "readings_sent": delivered["sent"] if delivered["sent"] is not None else acq.get("readings", 0),
        "readings_received_by_cloud": delivered["delivered"],
        "reading_success_rate": acq.get("success_rate"),
        "daily_success_rate": acq.get("daily_success_rate"),
        "meters_online": acq.get("meters_online"),
        "cycle_seconds": acq.get("cycle_seconds"),
        "wire_bound_seconds": acq.get("wire_bound_seconds"),
        "uplink_backlog": summary["uplink_backlog"] if backlog_after_drain is None else backlog_after_drain,
        "cloud": {**summary["cloud"], **cloud_terminal},
        "errors": {
            "reads_failed": acq.get("reads_failed", 0),
            "device_errors": acq.get("device_errors", 0),
            "protocol_errors": acq.get("protocol_errors", 0),
            "uplink_publish_errors": uplink_stats.get("publish_errors", 0),
            "cloud_rejected": cloud_terminal.get("rejected", 0),
            "cloud_gaps": cloud_terminal.get("gaps", 0),
            "port_decode_errors": sum(int(p.get("decode_errors", 0)) for p in ports.values()),  # type: ignore[attr-defined]
        },
        "counters": {k: v for k, v in acq.items() if isinstance(v, int) and not isinstance(v, bool)},
        "apps": summary["apps"],
        "devices_online": (summary["devices"] or {}).get("devices_online"),
        "metrology_readings": (summary["devices"] or {}).get("metrology_readings"),
        "field_devices": summary["devices"],
        "hplc": _with_terminal_cco(summary["hplc"], ports.get("hplc")),
        "virtual_loop": _virtual_loop_figures(),
        "physics": None
        if run.world is None
        else {
            "network": run.options.network,
            "scenario": run.world.scenario.name,
            "customers_scale": run.options.customers_scale,
            "customer_meters": len(run.world.customers()),
            "branch_units": len(run.world.branch_units()),
            "hplc_meters": len(run.world.hplc_meters()),
            "truth_dir": str(run.truth_dir),
        },
    }


#: the terminal's CCO driver figures the report shows next to the virtual CCO's (module-led reading)
TERMINAL_CCO_KEYS = (
    "route_restarts", "route_pauses", "route_resumes", "route_lost", "route_control_failures",
    "point_reads_in_round", "point_read_max_s", "route_paused_s", "concurrency_denials", "reads_ok",
    "reads_failed",
)  # fmt: skip


def _with_terminal_cco(hplc: dict[str, Any] | None, driver: object) -> dict[str, Any] | None:
    """The virtual CCO's figures with the terminal's driver's under ``terminal``."""
    if hplc is None or not isinstance(driver, dict):
        return hplc
    return {**hplc, "terminal": {k: driver.get(k) for k in TERMINAL_CCO_KEYS}}


def _virtual_loop_figures() -> dict[str, int] | None:
    """How the virtual-time loop ran (None on a real-time loop): time jumps, executor jobs, and
    polls spent waiting for the kernel to deliver loopback bytes (should stay ~0)."""
    loop = running_virtual_loop()
    if loop is None:
        return None
    return {"jumps": loop.jumps, "executor_jobs": loop.executor_jobs, "delivery_waits": loop.delivery_waits}


def failures(summary: dict[str, Any], apps: list[dict[str, Any]]) -> list[str]:
    """What makes a run a failure (``ttu sim`` exits non-zero): the terminal died, an app ended
    quarantined, or not one reading reached the cloud."""
    out: list[str] = []
    if summary.get("terminal_died"):
        out.append(f"the terminal died: {summary['terminal_died']}")
    for app in apps:
        if app.get("state") == "quarantined":
            out.append(f"app {app.get('name')} ended quarantined: {app.get('last_error')}")
    if not summary["cloud"].get("readings"):
        out.append("no reading reached the cloud")
    return out
