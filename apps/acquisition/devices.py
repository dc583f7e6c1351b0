"""Modbus RTU field devices (breakers, RCD, capacitor bank, environment sensor): polling and commands.

Layer: apps (acquisition). Uses only its context (hal ports, bus, store, uplink, log, station).
The devices are the station model's ``[[devices]]`` (``protocols.station.FieldDevice``: id,
Modbus profile name, board port, unit id, branch); ``DevicePoller.use`` follows every change of
the model. A device whose profile this app does not know, or whose port the board lacks, is
left out with a warning (``devices_refused``).

Every device of a port is read in turn through the port's queue at EVENT priority: a
breaker's state and trip records must not wait behind a whole bus of queued meter reads
(at REALTIME, FIFO behind them, a poll of 20 breakers on a 60-meter 2400-baud bus took
minutes). Only the points that become readings or events are read (not the settings), in
as few blocks as the profile allows; readings go out like meter readings
(``meter/<id>/reading``); the poll's health is retained on ``acquisition/devices/stats``.
A breaker's trip counter rising is a ``breaker.trip`` event with its trip cause; a switch-state change is
``breaker.open`` / ``breaker.closed``. The ``breaker.control`` cloud command (and bus
request ``acquisition/breaker/control``) opens or closes a breaker at CONTROL priority,
verified by read-back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hal.errors import DeviceError, HalError
from hal.interfaces import Priority
from hal.modbus import ModbusMaster
from protocols import modbus
from protocols.errors import ProtocolError
from protocols.quantities import QUANTITIES
from protocols.station import FieldDevice
from runtime.api import AppContext
from runtime.errors import CommandError
from runtime.model import Event, Reading
from runtime.scheduler import Aligned, CatchUp, Slot

from .metrology import MetrologyReader

STATS_TOPIC = "acquisition/devices/stats"


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A field device of the station model with its Modbus profile resolved."""

    id: str
    profile: modbus.Profile
    port: str
    unit_id: int
    branch: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "profile": self.profile.name, "port": self.port}
        out["unit_id"] = self.unit_id
        if self.branch is not None:
            out["branch"] = self.branch
        return out


def device_records(
    devices: Sequence[FieldDevice], *, known_ports: Iterable[str]
) -> tuple[list[DeviceRecord], list[str]]:
    """The station model's devices this app can poll, and why each other one cannot be polled
    (a profile it does not know, a port the board does not have). The model has already checked
    ids, unit ids and references."""
    ports = set(known_ports)
    names = modbus.builtin_names()
    usable: list[DeviceRecord] = []
    problems: list[str] = []
    for i, dev in enumerate(devices):
        where = f"devices[{i}] {dev.id}"
        if dev.profile not in names:
            problems.append(f"{where}: {dev.profile!r} is not a profile; known: {', '.join(names)}")
        elif dev.port not in ports:
            known = ", ".join(sorted(ports))
            problems.append(f"{where}: {dev.port!r} is not an RS-485 port of this board ({known})")
        else:
            profile = modbus.builtin_profile(dev.profile)
            usable.append(DeviceRecord(dev.id, profile, dev.port, dev.unit_id, dev.branch))
    return usable, problems


#: breaker points behind the trip and switch events, read with the readings
EVENT_POINTS = ("switch_closed", "trip_cause", "trip_count", "last_trip_time")


def polled_points(profile: modbus.Profile) -> list[str]:
    """What a poll reads: the points with a quantity, and the ones events are made from."""
    names = [r.name for r in profile.readings]
    return names + [p for p in EVENT_POINTS if p in profile.registers and p not in names]


class DevicePoller:
    """Polls the station model's Modbus devices and runs breaker commands."""

    def __init__(
        self,
        ctx: AppContext,
        devices: Sequence[DeviceRecord] = (),
        *,
        emit: Callable[[list[Reading]], Awaitable[None]],
        emit_event: Callable[[Event], Awaitable[None]],
        timeout_s: float = 1.0,
    ) -> None:
        self._ctx = ctx
        self._emit = emit
        self._emit_event = emit_event
        self._timeout_s = timeout_s
        self.devices: dict[str, DeviceRecord] = {}
        self._masters: dict[str, ModbusMaster] = {}
        self._failing: set[str] = set()
        self.counters = {
            "device_reads_ok": 0,
            "device_reads_failed": 0,
            "device_commands": 0,
            "device_commands_failed": 0,
            "devices_refused": 0,
        }
        self.use(devices)

    def use(self, devices: Sequence[DeviceRecord]) -> None:
        """Poll ``devices`` from now on (at start and after every change of the station model)."""
        self.devices = {d.id: d for d in devices}
        self._masters = {
            p: self._masters.get(p) or ModbusMaster(self._ctx.hal.rs485(p), timeout=self._timeout_s)
            for p in sorted({d.port for d in devices})
        }
        self._failing &= set(self.devices)

    def start(self, interval_s: int) -> None:
        self._ctx.scheduler.add("devices", Aligned(interval_s), self.poll, catch_up=CatchUp.SKIP)
        self._ctx.uplink.register_command("breaker.control", self.control)
        self._ctx.bus.serve("acquisition/breaker/control", self.control)
        if self.devices:
            self._ctx.log.info(
                "devices: %d Modbus devices on %s", len(self.devices), ", ".join(sorted(self._masters))
            )

    async def poll(self, slot: Slot) -> None:
        readings: list[Reading] = []

        async def port_devices(port: str) -> None:
            for dev in (d for d in self.devices.values() if d.port == port):
                readings.extend(await self.read_device(dev, slot.epoch))

        async with asyncio.TaskGroup() as tg:
            for port in self._masters:
                tg.create_task(port_devices(port), name=f"devices:{port}")
        await self._emit(readings)
        self._ctx.bus.publish(STATS_TOPIC, self.status(), retain=True)

    def status(self) -> dict[str, Any]:
        """Health of the archive's devices (retained on ``acquisition/devices/stats`` after each poll)."""
        return {
            "devices": len(self.devices),
            "online": len(self.devices) - len(self._failing),
            "failing": sorted(self._failing),
            **self.counters,
        }

    async def read_device(self, dev: DeviceRecord, ts: float) -> list[Reading]:
        master = self._masters[dev.port]
        try:
            values = await master.read(
                dev.unit_id, dev.profile, polled_points(dev.profile), priority=Priority.EVENT
            )
        except (HalError, ProtocolError) as err:
            self.counters["device_reads_failed"] += 1
            if dev.id not in self._failing:
                self._failing.add(dev.id)
                self._ctx.log.warning("device %s (unit %d on %s): %s", dev.id, dev.unit_id, dev.port, err)
            return []
        if dev.id in self._failing:
            self._failing.discard(dev.id)
            self._ctx.log.info("device %s answers again", dev.id)
        self.counters["device_reads_ok"] += 1
        if dev.profile.kind == "breaker":
            await self._breaker_events(dev, values)
        out = []
        for reg in dev.profile.readings:
            value = values.get(reg.name)
            if value is None or reg.quantity is None:
                continue
            known = QUANTITIES.get(reg.quantity)
            out.append(
                Reading(dev.id, reg.quantity, float(value), reg.unit, ts, obis=known.obis if known else None)
            )
        return out

    async def _breaker_events(self, dev: DeviceRecord, values: Mapping[str, float | bool]) -> None:
        store = self._ctx.store
        now = self._ctx.clock.now()
        base = {"branch": dev.branch, "port": dev.port, "unit_id": dev.unit_id}
        count = int(values.get("trip_count", 0))
        known = await store.get(f"breaker_trips/{dev.id}")
        await store.set(f"breaker_trips/{dev.id}", count)
        if known is not None and count > int(known):
            cause = dev.profile.register("trip_cause").meaning(values.get("trip_cause", 0))
            at = float(values.get("last_trip_time", now)) or now
            # whether it is still open when seen: a trip closed again between two polls is over
            state = {"closed": bool(values.get("switch_closed", True)), "seen_at": now}
            data = {**base, "cause": cause, "trips": count - int(known), **state}
            await self._emit_event(Event("breaker.trip", dev.id, at, None, data))
        closed = bool(values.get("switch_closed", True))
        was = await store.get(f"breaker_closed/{dev.id}")
        await store.set(f"breaker_closed/{dev.id}", closed)
        if was is not None and bool(was) != closed:
            await self._emit_event(
                Event("breaker.closed" if closed else "breaker.open", dev.id, now, None, base)
            )

    async def control(self, args: Any) -> dict[str, Any]:
        """``{"device": "brk-F1", "action": "open" | "close"}`` -> ``{"device", "closed"}``.

        Refusals are ``CommandError`` (a reply with a code, no traceback): ``bad_args`` for the
        sender's mistakes, ``device_refused`` for a Modbus exception reply, ``device_failed``
        when the breaker does not answer or does not read back the wanted state.
        """
        if not isinstance(args, Mapping):
            raise CommandError(
                "bad_args", "breaker.control: arguments must be an object with device and action"
            )
        dev = self.devices.get(str(args.get("device")))
        if dev is None or dev.profile.kind != "breaker":
            breakers = [d.id for d in self.devices.values() if d.profile.kind == "breaker"]
            raise CommandError(
                "bad_args", f"breaker.control: no breaker {args.get('device')!r}; breakers: {breakers}"
            )
        action = args.get("action")
        if action not in ("open", "close"):
            raise CommandError("bad_args", f"breaker.control: action {action!r} is not 'open' or 'close'")
        self.counters["device_commands"] += 1
        try:
            closed = await self._masters[dev.port].command(dev.unit_id, dev.profile, str(action))
        except DeviceError as err:
            self.counters["device_commands_failed"] += 1
            raise CommandError("device_refused", f"breaker.control: {dev.id} refused: {err}") from err
        except (HalError, ProtocolError) as err:
            self.counters["device_commands_failed"] += 1
            raise CommandError("device_failed", f"breaker.control: {dev.id}: {err}") from err
        self._ctx.log.info("breaker %s: %s (read back closed=%s)", dev.id, action, closed)
        return {"device": dev.id, "closed": bool(closed), "priority": Priority.CONTROL.name}


async def start_field_devices(
    ctx: AppContext,
    *,
    devices: Sequence[FieldDevice],
    ports: Iterable[str],
    interval_s: int,
    emit: Callable[[list[Reading]], Awaitable[None]],
    emit_event: Callable[[Event], Awaitable[None]],
    timeout_s: float = 1.0,
) -> tuple[MetrologyReader, DevicePoller]:
    """The service's hook: transformer readings from the metrology unit, and the Modbus devices
    of the station model."""
    reader = MetrologyReader(ctx, emit)
    reader.start(interval_s)
    poller = DevicePoller(ctx, emit=emit, emit_event=emit_event, timeout_s=timeout_s)
    follow_devices(ctx, poller, devices, ports=ports)
    poller.start(interval_s)
    return reader, poller


def follow_devices(
    ctx: AppContext, poller: DevicePoller, devices: Sequence[FieldDevice], *, ports: Iterable[str]
) -> None:
    """Hand the usable ``devices`` to ``poller``; log and count the others."""
    usable, problems = device_records(devices, known_ports=ports)
    for problem in problems:
        ctx.log.warning("device left out: %s", problem)
    poller.counters["devices_refused"] = len(problems)
    poller.use(usable)


__all__ = [
    "STATS_TOPIC",
    "DevicePoller",
    "DeviceRecord",
    "device_records",
    "follow_devices",
    "polled_points",
    "start_field_devices",
]
