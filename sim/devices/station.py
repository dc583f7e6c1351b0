"""Field devices of the simulated station area, tied to the world: metrology unit and Modbus devices.

Layer: sim. ``build_devices`` puts the virtual metrology unit at the transformer LV side
(per phase, from the physics when there is a ``World``), a Modbus breaker at the head of
every branch, an RCD, a capacitor bank and an environment sensor on the RS-485 port with
role "breakers" (sharing the line with that port's DL/T 645 meters), and an I/O module
(``VirtualIoModule``: door contact, surge protector, top-oil thermometer following the
transformer loading) at every unit id of each simulated ``modbus-rtu`` expansion slot, on the
slot's own line. Opening a breaker takes its branch out of the physics -- customers and
downstream branch units lose supply, their meters write power-down records -- and closing
it restores them, like a scenario outage (``sim.world``). ``write_archive`` writes the device
archive the terminal's acquisition app loads. Must not import the terminal or apps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import numpy as np

from hal.clock import Clock
from hal.interfaces import SerialLink, SerialSettings
from protocols import modbus
from protocols.station import FieldDevice
from sim.devices.metrology import ConstantSource, FunctionSource, TransformerSample, VirtualMetrology
from sim.devices.modbus import (
    ModbusDevice,
    ModbusLine,
    VirtualBreaker,
    VirtualCapacitor,
    VirtualEnvironment,
    VirtualIoModule,
    VirtualRcd,
)
from sim.physics import Horizon
from sim.physics.measure import ACCURACY, DeviceErrors
from sim.station import Station
from sim.wiring import PtyWiring, TerminalEnd, Wiring
from sim.world import TRIP_CAUSE_SHORT_CIRCUIT, Replica, TruthEvent, World, WorldMeter, _descendants

log = logging.getLogger("ttu.sim.devices")
MAX_BREAKERS = 200  # unit ids 1..200; 201.. are the other devices
SOLVE_AHEAD_S = 3600.0  # an open branch is re-solved out of the physics this far ahead ...
SOLVE_MARGIN_S = 900.0  # ... and extended this long (one 15-min step) before that runs out
TRANSFORMER_KVA = 800.0  # the IEEE European LV test feeder's 11/0.416 kV transformer
METROLOGY_KEY = 0x7E1  # the metrology unit's key for its seeded measurement errors


@dataclass(frozen=True, slots=True)
class IoSlot:
    """A ``modbus-rtu`` expansion slot the simulator serves: its ``sim:`` name (the pty's key in
    the terminal's ``sim_devices``), the unit ids of its I/O modules and its line settings."""

    device: str
    unit_ids: tuple[int, ...]
    settings: SerialSettings


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One row of the device archive."""

    id: str
    profile: str
    port: str
    unit_id: int
    branch: str | None = None


@dataclass(slots=True)
class FieldDevices:
    metrology: VirtualMetrology | None
    line: ModbusLine | None
    port: str | None
    entries: list[DeviceEntry] = field(default_factory=list)
    breakers: dict[str, VirtualBreaker] = field(default_factory=dict)  # device id -> breaker
    environment: VirtualEnvironment | None = None
    io_lines: dict[str, ModbusLine] = field(default_factory=dict)  # sim: name -> the slot's modules

    def archive(self) -> list[FieldDevice]:
        """The devices as the station archive lists them (``sim.archive``)."""
        return [FieldDevice(e.id, e.profile, e.port, e.unit_id, e.branch) for e in self.entries]

    @asynccontextmanager
    async def serve(
        self, *, clock: Clock, wiring: Wiring | None = None
    ) -> AsyncIterator[dict[str, TerminalEnd]]:
        """Serve the metrology unit and each expansion slot's I/O modules on a line of their own
        (``wiring``: a pty each by default); yields ``{"metrology": end, "<slot sim: name>": end}``
        with what the terminal opens (``sim.wiring``).

        The Modbus line of the breakers is served by the station (``Station.lines``) on the
        shared bus line.
        """
        wiring = wiring or PtyWiring()
        served: list[tuple[str, SerialSettings, Callable[[SerialLink], Coroutine[object, object, None]]]] = []
        metrology = self.metrology
        if metrology is not None:
            served.append(
                ("metrology", metrology.settings, lambda link: metrology.serve_link(link, clock=clock))
            )
        for name, line in self.io_lines.items():
            line.clock = clock
            served.append((name, line.settings, line.serve_link))
        ends: dict[str, TerminalEnd] = {}
        async with AsyncExitStack() as links, asyncio.TaskGroup() as tg:
            tasks = []
            for name, settings, serve in served:
                link, ends[name] = wiring.line(name, settings)
                links.push_async_callback(link.close)  # also when the task never started
                task_name = "sim-metrology" if name == "metrology" else f"sim-io-{name}"
                tasks.append(tg.create_task(serve(link), name=task_name))
            try:
                yield ends
            finally:
                for task in tasks:
                    task.cancel()

    def status(self, now: float, *, window_s: float = 180.0) -> dict[str, object]:
        """What the terminal gets from the devices, as the simulator sees it (live summary, report).

        A device is online when it answered a request within ``window_s`` simulated seconds.
        """
        answered = self.line.answered if self.line is not None else {}
        units = {e.unit_id: e.id for e in self.entries}
        online = sorted(units[u] for u, t in answered.items() if u in units and now - t <= window_s)
        unit = self.metrology
        return {
            "devices": len(self.entries),
            "devices_online": len(online),
            "devices_never_polled": len(set(units) - set(answered)),
            "breakers_open": sorted(name for name, b in self.breakers.items() if not b.closed),
            "modbus_requests": self.line.requests if self.line is not None else 0,
            "modbus_exceptions": self.line.exceptions if self.line is not None else 0,
            "metrology_readings": unit.replies if unit is not None else 0,
            "metrology_online": unit is not None
            and unit.last_reply_t is not None
            and now - unit.last_reply_t <= window_s,
        }


# -- world coupling ---------------------------------------------------------------------------------


def _step(rep: Replica, t: float) -> int:
    return rep.grid.step_at(t)


def _world_source(world: World) -> FunctionSource:
    """The transformer LV side from the physics; a phase without voltage (station or phase outage,
    dips included: ``World.spans``) reads zero on every quantity of that phase."""

    def sample(t: float) -> TransformerSample:
        grid = world.grid
        k = grid.step_at(t)
        hz = grid.horizon
        live = [float(on) for on in world.phases_live(t)]

        def phases(row: np.ndarray) -> tuple[float, float, float]:
            a, b, c = (x * on for x, on in zip(row.tolist(), live, strict=True))
            return a, b, c

        return TransformerSample(
            phases(hz.trafo_v[k]),
            phases(hz.trafo_i[k]),
            phases(hz.trafo_p[k]),
            phases(hz.trafo_q[k]),
            50.0 + 0.02 * math.sin(t / 600.0),
        )

    return FunctionSource(sample)


@dataclass(slots=True)
class BranchSwitch:
    """Closed loop of one branch breaker: open = the branch loses supply in the physics."""

    world: World
    replica: Replica
    branch: int
    _opened: tuple[Horizon, float, int] | None = None  # (base horizon, t0, event index)
    _generation: int = 0  # opens so far: a booked extension of an earlier open is stale

    @property
    def name(self) -> str:
        return self.replica.prefix + self.replica.network.branches[self.branch]

    def _scope(self) -> tuple[list[int], list[WorldMeter]]:
        net = self.replica.network
        sections = _descendants(net, self.branch)
        idx = self.replica.customers(net.customers_in(sections))
        names = {self.replica.prefix + net.branches[s] for s in sections[1:]}
        inside = set(idx)
        hit = [m for m in self.world.customers() if m.replica is self.replica and m.customer in inside]
        hit += [m for m in self.world.branch_units() if m.replica is self.replica and m.branch in names]
        return idx, hit

    def measure(self, t: float) -> tuple[tuple[float, float, float], tuple[float, float, float], float]:
        rep = self.replica
        k = _step(rep, t)
        hz = rep.horizon
        idx, _ = self._scope()
        amps = [0.0, 0.0, 0.0]
        for i in idx:
            volts = float(hz.voltage_v[k, i])
            if volts <= 0:
                continue  # out of supply
            # from S and V per customer (a three-phase customer shares S over its phases)
            s_kva = math.hypot(float(hz.p_kw[k, i]), float(hz.q_kvar[k, i]))
            phase = self.world.grid.network.customers[i].phase
            phases = [0, 1, 2] if phase not in ("A", "B", "C") else ["ABC".index(phase)]
            for ph in phases:
                amps[ph] += s_kva * 1000.0 / volts / len(phases)
        p_kw = float(hz.p_kw[k, idx].sum()) if idx else 0.0
        live = self.world.phases_live(t)  # the breaker's line side: the transformer's phases
        v = [float(x) if on else 0.0 for x, on in zip(hz.trafo_v[k], live, strict=True)]
        amps = [a if on else 0.0 for a, on in zip(amps, live, strict=True)]
        return (v[0], v[1], v[2]), (amps[0], amps[1], amps[2]), p_kw

    def switched(self, closed: bool, t: float) -> None:
        grid = self.world.grid
        idx, hit = self._scope()
        if not closed and self._opened is None:
            self._opened = (grid.base, t, len(self.world.events))
            self._generation += 1
            self.world.events.append(
                TruthEvent("outage", "branch", self.name, t, None, tuple(m.id for m in hit))
            )
            self._cut(t, self._generation)
            grid.refresh()
            for m in hit:
                m.meter.power_off(t)
            self.world.supply_changed(t)  # the HPLC STAs of the branch go dark too (last gasp)
            log.info("breaker of branch %s opened: %d meters lose supply", self.name, len(hit))
        elif closed and self._opened is not None:
            base, t0, k = self._opened
            self._opened = None
            grid.base = base.with_customer_off(idx, t0, t, outage=True) if idx else base
            grid.refresh()
            for m in hit:
                m.meter.power_on(t)
            self.world.supply_changed(t)
            self.world.events[k] = dataclasses.replace(self.world.events[k], end=t)
            log.info("breaker of branch %s closed: supply restored", self.name)

    def _cut(self, t0: float, generation: int) -> None:
        """Take the branch out of the physics over the next ``SOLVE_AHEAD_S`` from ``t0``, and book
        the next extension with the world (``World.run`` applies it on time) while it stays open.

        An hour at a time because the open happens while the breaker answers its Modbus write:
        re-solving a live run's week-long horizon at once takes ~0.2 s of CPU, which would stall
        every simulated bus (and the terminal's reply timeouts) at ``make sim`` speeds.
        """
        if self._opened is None or generation != self._generation:
            return  # closed, or opened again, since this extension was booked
        grid = self.world.grid
        idx, _ = self._scope()
        end = min(t0 + SOLVE_AHEAD_S, grid.base.end)
        if idx and t0 < end:
            grid.base = grid.base.with_customer_off(idx, t0, end, outage=True)
            grid.refresh()
        if end < grid.base.end:
            self.world.schedule(end - SOLVE_MARGIN_S, lambda _t: self._cut(end, generation))


def _fault(breakers: dict[str, VirtualBreaker], branch: str, closed: bool, t: float) -> None:
    """A scenario's branch outage tripped (or the crew closed again) this branch's breaker: its
    state and trip records follow; the physics already knows (``sim.world``)."""
    dev = breakers.get(branch)
    if dev is not None:
        dev.fault(closed, t, cause=TRIP_CAUSE_SHORT_CIRCUIT)


def build_devices(
    *,
    station: Station,
    world: World | None,
    port: str | None,
    settings: SerialSettings | None = None,
    ct_ratio: float = 1.0,
    pt_ratio: float = 1.0,
    ct_ratio_actual: float | None = None,
    metrology: bool = True,
    metrology_settings: SerialSettings | None = None,
    io_slots: Sequence[IoSlot] = (),
    transformer_kva: float = TRANSFORMER_KVA,
    seed: int = 0,
) -> FieldDevices:
    """The station's field devices; the Modbus ones go on ``port`` (shared with its meters), the
    I/O modules of each of ``io_slots`` on that slot's own line."""
    if world is not None:
        source: ConstantSource | FunctionSource = _world_source(world)
    else:
        source = ConstantSource(TransformerSample((230.0,) * 3, (120.0,) * 3, (26.0,) * 3, (8.0,) * 3))

    def loading(t: float) -> float:
        s = source.sample(t)
        return math.hypot(sum(s.p_kw), sum(s.q_kvar)) / transformer_kva

    unit = (
        VirtualMetrology(
            source,
            ct_ratio=ct_ratio,
            pt_ratio=pt_ratio,
            ct_ratio_actual=ct_ratio_actual,
            settings=metrology_settings or SerialSettings(9600, "E"),
            errors=DeviceErrors(
                METROLOGY_KEY,
                seed,
                ACCURACY["metrology"],
                world.scenario.metering.error_scale if world is not None else 1.0,
            ),
        )
        if metrology
        else None
    )
    out = FieldDevices(metrology=unit, line=None, port=port)
    io_profile = modbus.builtin_profile("io-module")
    for slot in io_slots:
        modules: list[ModbusDevice] = [
            VirtualIoModule(io_profile, u, name=f"{slot.device}-u{u}", loading=loading, seed=seed)
            for u in slot.unit_ids
        ]
        out.io_lines[slot.device] = ModbusLine(modules, clock=None, settings=slot.settings)  # type: ignore[arg-type]  # set by serve
    if port is None:
        return out
    devices: list[ModbusDevice] = []
    breaker = modbus.builtin_profile("breaker")
    switches: list[BranchSwitch] = []
    if world is not None:
        for rep in world.replicas:
            switches += [BranchSwitch(world, rep, b) for b in range(len(rep.network.branches))]
    if len(switches) > MAX_BREAKERS:
        log.warning("%d branches: only the first %d get a Modbus breaker", len(switches), MAX_BREAKERS)
    by_branch: dict[str, VirtualBreaker] = {}
    for n, sw in enumerate(switches[:MAX_BREAKERS], start=1):
        dev = VirtualBreaker(
            breaker, n, name=f"brk-{sw.name}", measure=sw.measure, on_switch=sw.switched, seed=seed
        )
        devices.append(dev)
        out.breakers[dev.name] = dev
        by_branch[sw.name] = dev
        out.entries.append(DeviceEntry(dev.name, "breaker", port, n, sw.name))
    if world is not None:
        world.on_breaker(lambda branch, closed, t: _fault(by_branch, branch, closed, t))
    if not switches:
        dev = VirtualBreaker(breaker, 1, name="brk-main", seed=seed)
        devices.append(dev)
        out.breakers[dev.name] = dev
        out.entries.append(DeviceEntry(dev.name, "breaker", port, 1))

    def load(t: float) -> tuple[float, float, float]:
        s = source.sample(t)
        return sum(s.p_kw), sum(s.q_kvar), s.voltage_v[0]

    others: list[tuple[ModbusDevice, str]] = [
        (VirtualRcd(modbus.builtin_profile("rcd"), 201, name="rcd-1", seed=seed), "rcd"),
        (VirtualCapacitor(modbus.builtin_profile("capacitor"), 202, name="cap-1", load=load), "capacitor"),
        (
            VirtualEnvironment(modbus.builtin_profile("environment"), 203, name="env-1", seed=seed),
            "environment",
        ),
    ]
    for other, profile in others:
        devices.append(other)
        out.entries.append(DeviceEntry(other.name, profile, port, other.unit))
        if isinstance(other, VirtualEnvironment):
            out.environment = other
    out.line = ModbusLine(devices, clock=None, settings=settings or station.settings)  # type: ignore[arg-type]  # set by attach
    return out


def attach(devices: FieldDevices, station: Station, clock: Clock) -> None:
    """Put the Modbus line on its bus: the station serves it together with that bus's meters."""
    if devices.line is None or devices.port is None:
        return
    devices.line.clock = clock
    station.lines[devices.port] = devices.line


__all__ = ["BranchSwitch", "DeviceEntry", "FieldDevices", "IoSlot", "attach", "build_devices"]
