"""A simulated station area (台区): meters on RS-485 buses, their customers and the archive.

Layer: sim. ``build_station`` creates meters with unique addresses, one load profile
each and seeded phases; ``Station.write_archive`` writes the station archive the terminal
loads (``sim.archive``); ``Station.serve`` wires one line per bus (a pty, or an in-memory
link: ``sim.wiring``) and runs its ``MeterBus`` until the context exits. Each meter speaks one
protocol (``StationMeter.protocol``: "dlt645" or "dlt698"); ``assign_protocols`` makes a seeded
share of them DL/T 698.45. Grid physics (``sim/physics``) may replace the default profiles through
``loads.LoadProfile``; this module does not know the grid.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hal.clock import Clock
from hal.interfaces import SerialSettings
from protocols.station import Meter
from sim.archive import KINDS_BY_TARIFF, station_model, write_station
from sim.loads import HouseholdProfile, LoadProfile
from sim.meters._codec import Frame
from sim.meters.bus import Delay, MeterBus
from sim.meters.model import Phase, VirtualMeter
from sim.physics.measure import ACCURACY, DeviceErrors
from sim.wiring import PtyWiring, TerminalEnd, Wiring


@dataclass(slots=True)
class Customer:
    id: str
    meter_id: str
    tariff: str = "residential"


@dataclass(slots=True)
class StationMeter:
    """A meter with its archive identity."""

    id: str
    bus: str
    meter: VirtualMeter
    customer: Customer
    profile: LoadProfile
    protocol: str = "dlt645"

    def archive_meter(self, *, baud: int) -> Meter:
        """This meter as the archive lists it (``sim.archive`` adds its branch and box)."""
        hplc = self.bus == "hplc"
        kind = KINDS_BY_TARIFF.get(self.customer.tariff, "customer")
        return Meter(
            id=self.id,
            address=self.meter.address,
            protocol=self.protocol,
            channel="hplc" if hplc else "rs485",
            port=None if hplc else self.bus,
            baud=None if hplc else baud,
            kind=kind,
            phase=self.meter.phase,
            customer=self.customer.id if kind == "customer" else None,
            tariff=self.customer.tariff if kind == "customer" else None,
        )


@dataclass(slots=True)
class Station:
    """The simulated station area. ``buses`` maps bus (board port) name to its meters."""

    buses: dict[str, list[StationMeter]]
    seed: int
    start: float
    settings: SerialSettings = field(default_factory=SerialSettings)
    response_delay_s: Delay | Mapping[str, Delay] = (0.02, 0.05)
    running: dict[str, MeterBus] = field(default_factory=dict)
    #: archive errors: entries with no meter behind them, and meter ids left out of the archive
    foreign: list[Meter] = field(default_factory=list)
    unarchived: set[str] = field(default_factory=set)
    #: per bus: probability that a reply is corrupted on the line (one flipped byte)
    corrupt_rate: dict[str, float] = field(default_factory=dict)
    #: per bus: other devices sharing the line (``sim.devices.ModbusLine``), served with the meters
    lines: dict[str, Any] = field(default_factory=dict)
    #: meters read over HPLC (archive port "hplc"), served behind the virtual CCO (``sim.hplc``)
    hplc: list[StationMeter] = field(default_factory=list)

    @property
    def meters(self) -> list[StationMeter]:
        return [m for ms in self.buses.values() for m in ms] + list(self.hplc)

    def meter(self, key: str) -> VirtualMeter:
        """A meter by device id (``m-0001``) or address."""
        for m in self.meters:
            if key in (m.id, m.meter.address):
                return m.meter
        raise KeyError(f"no meter {key!r} in the station")

    def protocols(self, bus: str) -> dict[str, str]:
        """Address -> protocol of the meters on ``bus`` (what ``MeterBus(protocols=...)`` takes)."""
        return {m.meter.address: m.protocol for m in self.buses[bus]}

    def archive(self) -> list[Meter]:
        """The meters the archive lists: ours (but the unarchived ones) and the foreign ones."""
        ours = [m.archive_meter(baud=self.settings.baud) for m in self.meters if m.id not in self.unarchived]
        return ours + list(self.foreign)

    def write_archive(self, path: str | Path) -> None:
        """The station archive of this station alone (no world, no devices)."""
        write_station(path, station_model(self))

    @asynccontextmanager
    async def serve(
        self, *, clock: Clock, wiring: Wiring | None = None
    ) -> AsyncIterator[dict[str, TerminalEnd]]:
        """Serve every bus on a line of its own (``wiring``: a pty each by default); yields
        ``{bus_name: what the terminal opens}`` (``sim.wiring``)."""
        wiring = wiring or PtyWiring()
        async with AsyncExitStack() as links, asyncio.TaskGroup() as tg:
            ends: dict[str, TerminalEnd] = {}
            tasks = []
            for i, (name, members) in enumerate(self.buses.items()):
                bus = NoisyMeterBus(
                    [m.meter for m in members],
                    corrupt_rate=self.corrupt_rate.get(name, 0.0),
                    clock=clock,
                    settings=self.settings,
                    response_delay_s=self.response_delay_s,
                    seed=self.seed * 1000 + i,
                    protocols=self.protocols(name),
                )
                self.running[name] = bus
                link, ends[name] = wiring.line(name, self.settings)
                links.push_async_callback(link.close)  # also when the task never started
                line = self.lines.get(name)
                serving = bus.serve_link(link) if line is None else line.serve_shared(link, bus)
                tasks.append(tg.create_task(serving, name=f"sim-bus-{name}"))
            try:
                yield ends
            finally:
                for task in tasks:
                    task.cancel()
                self.running.clear()


class NoisyMeterBus(MeterBus):
    """A MeterBus whose replies are corrupted (one byte flipped) with probability ``corrupt_rate``."""

    def __init__(self, meters: list[VirtualMeter], *, corrupt_rate: float = 0.0, **kw: Any) -> None:
        super().__init__(meters, **kw)
        self.corrupt_rate = corrupt_rate
        self.corrupted = 0
        self._noise = np.random.default_rng([int(kw.get("seed", 0)), 0xBAD])

    def _answer(self, frame: Frame) -> tuple[bytes | None, str | None]:
        reply, address = super()._answer(frame)
        if reply is not None and self.corrupt_rate > 0 and self._noise.random() < self.corrupt_rate:
            buf = bytearray(reply)
            buf[int(self._noise.integers(len(buf)))] ^= 1 << int(self._noise.integers(8))
            self.corrupted += 1
            reply = bytes(buf)
        return reply, address


def _addresses(rng: np.random.Generator, n: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        # Realistic-looking numbers: a fixed batch prefix and a random serial; never all 9s or AA.
        addr = f"{int(rng.integers(1000, 9999)):04d}{int(rng.integers(0, 10**8)):08d}"
        if addr not in seen and addr != "999999999999":
            seen.add(addr)
            out.append(addr)
    return out


def _errors(address: str, seed: int, phase: str) -> DeviceErrors:
    """A meter's seeded accuracy-class errors (``sim.physics.measure``)."""
    kind = "household" if phase in ("A", "B", "C") else "three_phase"
    return DeviceErrors(int(address), seed, ACCURACY[kind])


def assign_protocols(station: Station, *, dlt698_share: float, seed: int) -> None:
    """Make about ``dlt698_share`` of the household meters DL/T 698.45, drawn from ``seed``.

    Its own random stream, so addresses, phases and profiles do not change with the share.
    Branch units and the assessment meter (customer tariff "branch-unit", "assessment") keep
    DL/T 645.
    """
    if not 0.0 <= dlt698_share <= 1.0:
        raise ValueError(f"dlt698_share must be within 0..1, got {dlt698_share}")
    rng = np.random.default_rng([seed, 698])
    for m in station.meters:
        draw = rng.random()
        if m.customer.tariff not in ("branch-unit", "assessment"):
            m.protocol = "dlt698" if draw < dlt698_share else "dlt645"


def build_station(
    *,
    buses: list[str],
    meters_per_bus: int,
    seed: int,
    start: float,
    three_phase_share: float = 0.1,
    settings: SerialSettings | None = None,
    response_delay_s: Delay | Mapping[str, Delay] = (0.02, 0.05),
    dlt698_share: float = 0.1,
    hplc_meters: int = 0,
) -> Station:
    """A station with ``meters_per_bus`` household meters on each named bus, all from ``seed``;
    about ``dlt698_share`` of them speak DL/T 698.45, the rest DL/T 645."""
    if not buses or len(set(buses)) != len(buses):
        raise ValueError(f"buses: need distinct names, got {buses!r}")
    if meters_per_bus < 1:
        raise ValueError(f"meters_per_bus must be >= 1, got {meters_per_bus}")
    rng = np.random.default_rng([seed, 2007])
    addresses = _addresses(rng, len(buses) * meters_per_bus + hplc_meters)
    out: dict[str, list[StationMeter]] = {}
    k = 0
    for name in buses:
        members = []
        for _ in range(meters_per_bus):
            k += 1
            phase: Phase = (
                "ABC" if rng.random() < three_phase_share else ("A", "B", "C")[int(rng.integers(3))]
            )
            profile = HouseholdProfile.for_customer(seed, k)
            if phase == "ABC":
                profile = HouseholdProfile(
                    seed=profile.seed, mean_kw=profile.mean_kw * 3, noise=profile.noise,
                    power_factor=profile.power_factor,
                )  # fmt: skip
            meter = VirtualMeter(
                addresses[k - 1],
                profile=profile,
                start=start,
                phase=phase,
                seed=seed,
                initial_kwh=tuple(float(x) for x in rng.uniform(50, 3000) * np.array([0.1, 0.3, 0.35, 0.25])),
                errors=_errors(addresses[k - 1], seed, phase),
            )
            device = f"m-{k:04d}"
            members.append(
                StationMeter(
                    id=device, bus=name, meter=meter, customer=Customer(f"C{k:04d}", device), profile=profile
                )
            )
        out[name] = members
    hplc = []
    for _ in range(hplc_meters):
        k += 1
        profile = HouseholdProfile.for_customer(seed, k)
        kwh = tuple(float(x) for x in rng.uniform(50, 3000) * np.array([0.1, 0.3, 0.35, 0.25]))
        phase = ("A", "B", "C")[int(rng.integers(3))]
        meter = VirtualMeter(
            addresses[k - 1], profile=profile, start=start, phase=phase, seed=seed, initial_kwh=kwh,
            errors=_errors(addresses[k - 1], seed, phase),
        )  # fmt: skip
        device = f"m-{k:04d}"
        hplc.append(StationMeter(device, "hplc", meter, Customer(f"C{k:04d}", device), profile))
    station = Station(
        buses=out,
        seed=seed,
        start=start,
        settings=settings or SerialSettings(),
        response_delay_s=response_delay_s,
        hplc=hplc,
    )
    assign_protocols(station, dlt698_share=dlt698_share, seed=seed)
    return station


__all__ = ["Customer", "NoisyMeterBus", "Station", "StationMeter", "assign_protocols", "build_station"]
