"""Virtual Modbus RTU devices (breaker, RCD, capacitor bank, environment sensor, I/O module) on a line.

Layer: sim. Each device is a register image laid out by its ``protocols.modbus`` profile.
Requests are framed by ``hal.modbus.RtuDecoder`` (pymodbus's framer pieces) and executed by
pymodbus's own PDU classes (``pdu.datastore_update``) against ``ModbusLine``, which offers
the datastore calls pymodbus expects (``async_getValues`` / ``async_setValues``).

Why not ``pymodbus.server.ModbusSerialServer``: it opens the port itself and times frames
on the wall clock; here replies are timed on the simulation clock (scaled in ``make sim``,
virtual with ``--speed max`` and in tests) and the line is shared with DL/T 645 meters on the
same link (``serve_shared``), neither of which the pymodbus server can do.

Unmapped addresses answer ILLEGAL DATA ADDRESS, out-of-range writes ILLEGAL DATA VALUE;
units not on the line stay silent (another device's address). Must not import the
terminal or apps.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pymodbus.constants import ExcCodes

from hal.clock import Clock
from hal.interfaces import SerialLink, SerialSettings
from hal.modbus import RtuDecoder, RtuFrame, encode_frame
from hal.sim import memory_link_pair
from protocols import modbus
from protocols.errors import EncodeError, ProtocolError
from sim.pty import PtyPair
from sim.wiring import PtyLink

log = logging.getLogger("ttu.sim.modbus")
_FC_TABLE = {
    1: "coil",
    2: "discrete",
    3: "holding",
    4: "input",
    5: "coil",
    6: "holding",
    15: "coil",
    16: "holding",
}


class ModbusDevice:
    """A register image of one profile; ``set``/``get`` by point name in engineering units."""

    def __init__(self, profile: modbus.Profile, unit: int, *, name: str = "") -> None:
        if not 1 <= unit <= 247:
            raise ValueError(f"unit id {unit}: expected 1..247")
        self.profile = profile
        self.unit = unit
        self.name = name or f"{profile.name}-{unit}"
        self.image: dict[tuple[str, int], int | bool] = {}
        self._owner: dict[tuple[str, int], modbus.Register] = {}
        for reg in profile.registers.values():
            for k in range(reg.words):
                self.image[(reg.table, reg.address + k)] = False if reg.is_bit else 0
                self._owner[(reg.table, reg.address + k)] = reg
        self.writes = 0

    def set(self, point: str, value: float | bool) -> None:
        reg = self.profile.register(point)
        words = modbus.encode_value(
            reg, max(reg.min, min(reg.max, value)) if reg.min is not None and reg.max is not None else value
        )
        for k, w in enumerate(words):
            self.image[(reg.table, reg.address + k)] = w

    def get(self, point: str) -> float | bool:
        reg = self.profile.register(point)
        return modbus.decode_value(reg, [self.image[(reg.table, reg.address + k)] for k in range(reg.words)])

    def refresh(self, t: float) -> None:
        """Bring measured points up to time ``t`` (subclasses)."""

    def written(self, point: str, value: float | bool, t: float) -> None:
        """A master wrote ``point`` (subclasses act on it: switch, steps)."""

    # -- what pymodbus's PDUs call, per device ----------------------------------------------
    def read(self, table: str, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        keys = [(table, a) for a in range(address, address + count)]
        if any(k not in self.image for k in keys):
            return ExcCodes.ILLEGAL_ADDRESS
        return [self.image[k] for k in keys]

    def write(self, table: str, address: int, values: Sequence[int | bool], t: float) -> ExcCodes | None:
        keys = [(table, a) for a in range(address, address + len(values))]
        if any(k not in self.image for k in keys):
            return ExcCodes.ILLEGAL_ADDRESS
        regs = {self._owner[k].name: self._owner[k] for k in keys}
        if not all(r.writable for r in regs.values()):
            return ExcCodes.ILLEGAL_ADDRESS
        old = {k: self.image[k] for k in keys}
        for k, v in zip(keys, values, strict=True):
            self.image[k] = bool(v) if table == "coil" else int(v)
        for name, reg in regs.items():
            value = self.get(name)
            if isinstance(value, float) and (
                (reg.min is not None and value < reg.min) or (reg.max is not None and value > reg.max)
            ):
                self.image.update(old)
                return ExcCodes.ILLEGAL_VALUE
        self.writes += 1
        for name in regs:
            self.written(name, self.get(name), t)
        return None


class VirtualBreaker(ModbusDevice):
    """A smart MCCB: remote open/close, trip cause and count, phase currents of its branch."""

    def __init__(
        self,
        profile: modbus.Profile,
        unit: int,
        *,
        name: str = "",
        measure: Callable[[float], tuple[Sequence[float], Sequence[float], float]] | None = None,
        on_switch: Callable[[bool, float], None] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(profile, unit, name=name)
        self.measure = measure  # t -> (voltages V, currents A, active power kW) at the breaker
        self.on_switch = on_switch
        self._rng = np.random.default_rng([seed, unit, 0xB4])
        self.set("rated_current", 250)
        self.set("residual_threshold", 300)
        self._set_closed(True)

    @property
    def closed(self) -> bool:
        return bool(self.get("switch_closed"))

    def _set_closed(self, closed: bool) -> None:
        self.set("switch_closed", closed)
        self.set("switch_command", closed)

    def switch(self, closed: bool, t: float, *, cause: int = 8) -> None:
        """Open (recording ``cause``: 8 remote, 1 overload, 4 residual ...) or close the breaker."""
        if closed == self.closed:
            self.set("switch_command", closed)
            return
        self._set_closed(closed)
        if not closed:
            self.set("trip_cause", cause)
            self.set("trip_count", int(self.get("trip_count")) + 1)
            self.set("last_trip_time", int(t))
        if self.on_switch is not None:
            self.on_switch(closed, t)

    def fault(self, closed: bool, t: float, *, cause: int) -> None:
        """The simulated world opened (a trip recording ``cause``) or closed the breaker itself:
        the registers follow, without telling ``on_switch`` (the world already changed)."""
        if closed == self.closed:
            return
        self._set_closed(closed)
        if not closed:
            self.set("trip_cause", cause)
            self.set("trip_count", int(self.get("trip_count")) + 1)
            self.set("last_trip_time", int(t))

    def written(self, point: str, value: float | bool, t: float) -> None:
        if point == "switch_command":
            self.switch(bool(value), t)

    def refresh(self, t: float) -> None:
        if self.measure is None:
            return
        volts, amps, p_kw = self.measure(t)
        if not self.closed:
            amps, p_kw = (0.0, 0.0, 0.0), 0.0
        for ph, v, i in zip("abc", volts, amps, strict=True):
            self.set(f"voltage_{ph}", max(0.0, v))
            self.set(f"current_{ph}", max(0.0, i))
        self.set("active_power", p_kw)
        leak = float(self._rng.uniform(3, 25)) if self.closed and sum(amps) > 0 else 0.0
        self.set("residual_current", round(leak))


class VirtualRcd(ModbusDevice):
    def __init__(self, profile: modbus.Profile, unit: int, *, name: str = "", seed: int = 0) -> None:
        super().__init__(profile, unit, name=name)
        self._rng = np.random.default_rng([seed, unit, 0x2CD])
        self.set("switch_closed", True)
        self.set("threshold", 300)
        self.set("trip_delay", 200)
        self.max_today = 0

    def refresh(self, t: float) -> None:
        now = round(float(self._rng.uniform(20, 60)))
        self.max_today = max(self.max_today, now)
        self.set("residual_current", now)
        self.set("residual_max_today", self.max_today)


class VirtualCapacitor(ModbusDevice):
    """A capacitor bank of ``steps`` x ``step_kvar``; the load's PF rises with the steps in."""

    def __init__(
        self,
        profile: modbus.Profile,
        unit: int,
        *,
        name: str = "",
        steps: int = 8,
        step_kvar: float = 10.0,
        load: Callable[[float], tuple[float, float, float]] | None = None,  # t -> (P kW, Q kvar, V)
    ) -> None:
        super().__init__(profile, unit, name=name)
        self.steps = steps
        self.step_kvar = step_kvar
        self.load = load
        self.set("steps_total", steps)
        self.set("steps_in", 2)
        self.set("mode", 0)

    def refresh(self, t: float) -> None:
        p, q, v = self.load(t) if self.load is not None else (80.0, 30.0, 230.0)
        comp = int(self.get("steps_in")) * self.step_kvar
        net_q = q - comp
        apparent = math.hypot(p, net_q)
        self.set("reactive_power", comp)
        self.set("power_factor", abs(p) / apparent if apparent > 0 else 1.0)
        self.set("voltage", v)
        self.set("temperature", 30.0 + 1.5 * int(self.get("steps_in")))
        self.set("alarm_word", 1 if v > 253 else 0)


class VirtualEnvironment(ModbusDevice):
    """Cabinet temperature/humidity with a daily cycle; ``water``/``door_open`` are knobs."""

    def __init__(self, profile: modbus.Profile, unit: int, *, name: str = "", seed: int = 0) -> None:
        super().__init__(profile, unit, name=name)
        self._rng = np.random.default_rng([seed, unit, 0xE7])
        self.water = False
        self.door_open = False

    def refresh(self, t: float) -> None:
        day = 2 * math.pi * ((t + 8 * 3600) % 86400) / 86400  # local (UTC+8) time of day
        temp = 24.0 - 6.0 * math.cos(day - math.pi / 6) + float(self._rng.normal(0, 0.2))
        rh = min(99.0, max(10.0, 65.0 + 15.0 * math.cos(day - math.pi / 6)))
        a, b = 17.62, 243.12  # Magnus formula
        gamma = math.log(rh / 100.0) + a * temp / (b + temp)
        self.set("temperature", temp)
        self.set("humidity", rh)
        self.set("dew_point", b * gamma / (a - gamma))
        self.set("water", self.water)
        self.set("door_open", self.door_open)


def loop_current_ma(value: float, lo: float, hi: float) -> float:
    """The 4-20 mA loop current of a transmitter ranged ``lo``..``hi`` reading ``value``,
    saturating at 3.8 and 20.5 mA like a NAMUR NE 43 transmitter."""
    return min(20.5, max(3.8, 4.0 + 16.0 * (value - lo) / (hi - lo)))


class VirtualIoModule(ModbusDevice):
    """An 8 DI / 4 DO / 2 AI I/O module (``io-module`` profile) in the station cabinet.

    Wired as the simulator's station has it (the profile knows no wiring): di1 the
    transformer-room door contact (true = closed), di2 the surge protector's health contact
    (true = healthy), di3..di8 unwired (false); do1..do4 relays latch what the master writes
    and read back as written; ai1 a top-oil thermometer transmitter (0..150 °C on 4-20 mA)
    whose oil follows the transformer loading (``loading``: t -> S/S_rated) with the thermal
    lag of IEC 60076-7 (ONAN: 55 K top-oil rise at rated load, R = 6, x = 0.8, 180 min);
    ai2 a transformer-room ambient transmitter (-40..+80 °C) with a daily cycle.
    ``door_closed`` and ``surge_protector_ok`` are knobs for scenarios and tests.
    """

    OIL_RANGE_C = (0.0, 150.0)
    AMBIENT_RANGE_C = (-40.0, 80.0)
    OIL_RISE_K = 55.0
    LOSS_RATIO = 6.0
    OIL_EXPONENT = 0.8
    OIL_TAU_S = 180 * 60.0

    def __init__(
        self,
        profile: modbus.Profile,
        unit: int,
        *,
        name: str = "",
        loading: Callable[[float], float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(profile, unit, name=name)
        self.loading = loading
        self._rng = np.random.default_rng([seed, unit, 0x10])
        self.door_closed = True
        self.surge_protector_ok = True
        self.oil_c: float | None = None
        self._oil_t: float | None = None

    def ambient_c(self, t: float) -> float:
        day = 2 * math.pi * ((t + 8 * 3600) % 86400) / 86400  # local (UTC+8) time of day
        return 22.0 - 5.0 * math.cos(day - math.pi / 6)

    def oil_steady_c(self, t: float) -> float:
        k = self.loading(t) if self.loading is not None else 0.3
        r = self.LOSS_RATIO
        return self.ambient_c(t) + self.OIL_RISE_K * ((1 + r * k * k) / (1 + r)) ** self.OIL_EXPONENT

    def refresh(self, t: float) -> None:
        steady = self.oil_steady_c(t)
        if self.oil_c is None or self._oil_t is None:
            self.oil_c = steady  # switched on in a running station: the oil is already warm
        elif t > self._oil_t:
            self.oil_c += (steady - self.oil_c) * (1 - math.exp(-(t - self._oil_t) / self.OIL_TAU_S))
        self._oil_t = t
        noise = float(self._rng.normal(0, 0.005))  # mA of transmitter noise
        self.set("di1", self.door_closed)
        self.set("di2", self.surge_protector_ok)
        self.set("ai1", loop_current_ma(self.oil_c, *self.OIL_RANGE_C) + noise)
        self.set("ai2", loop_current_ma(self.ambient_c(t), *self.AMBIENT_RANGE_C) + noise)


@dataclass(slots=True)
class ModbusLine:
    """The Modbus devices on one RS-485 line, answering with clock-based RS-485 timing."""

    devices: list[ModbusDevice]
    clock: Clock
    settings: SerialSettings = field(default_factory=SerialSettings)
    response_delay_s: float = 0.015
    requests: int = 0
    replies: int = 0
    exceptions: int = 0
    garbage: int = 0
    #: unit id -> simulated time of its last reply (the live summary's "online")
    answered: dict[int, float] = field(default_factory=dict)
    _now: float = 0.0
    _decoder: RtuDecoder = field(default_factory=lambda: RtuDecoder(is_server=True))

    def __post_init__(self) -> None:
        units = [d.unit for d in self.devices]
        if len(set(units)) != len(units):
            raise ValueError(f"unit ids on one line must be unique: {units}")

    def device(self, unit: int) -> ModbusDevice | None:
        return next((d for d in self.devices if d.unit == unit), None)

    # -- the datastore interface pymodbus's PDUs call ---------------------------------------
    async def async_getValues(  # noqa: N802 (pymodbus's name)
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        dev = self.device(device_id)
        if dev is None or func_code not in _FC_TABLE:
            return ExcCodes.ILLEGAL_FUNCTION
        return dev.read(_FC_TABLE[func_code], address, count)

    async def async_setValues(  # noqa: N802 (pymodbus's name)
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        dev = self.device(device_id)
        if dev is None or func_code not in _FC_TABLE:
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            return dev.write(_FC_TABLE[func_code], address, values, self._now)
        except EncodeError:
            return ExcCodes.ILLEGAL_VALUE

    async def answer(self, request: bytes) -> list[bytes]:
        """Replies to the requests in ``request`` (tests drive this directly)."""
        return [r for r, _ in await self._handle(self._decoder.feed(request))]

    async def _handle(self, items: Sequence[RtuFrame | ProtocolError]) -> list[tuple[bytes, int]]:
        out = []
        for frame in items:
            if isinstance(frame, ProtocolError):
                self.garbage += 1
                continue
            dev = self.device(frame.unit)
            if dev is None:
                continue  # another station's frame (a 645 meter, a device not here)
            self.requests += 1
            self._now = self.clock.now()
            dev.refresh(self._now)
            response = await frame.pdu.datastore_update(self, frame.unit)  # type: ignore[arg-type]  # duck-typed datastore
            if response.isError():
                self.exceptions += 1
            self.answered[frame.unit] = self._now
            size = len(encode_frame(frame.unit, frame.pdu))
            out.append((encode_frame(frame.unit, response), size))
        return out

    async def _reply(
        self, chunk: bytes, decoder: RtuDecoder, write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        wire = self.settings.wire_seconds
        for reply, size in await self._handle(decoder.feed(chunk)):
            await self.clock.sleep(wire(size) + self.response_delay_s + wire(len(reply)))
            await write(reply)
            self.replies += 1

    async def serve(self, pty: PtyPair) -> None:
        """The line alone on a pty, until cancelled; closes the pty."""
        await self.serve_link(PtyLink(pty, self.settings))

    async def serve_link(self, link: SerialLink) -> None:
        """The line alone over any hal ``SerialLink`` (``sim.wiring``), until cancelled."""
        decoder = RtuDecoder(is_server=True)
        async with link:
            while True:
                await self._reply(await link.read(), decoder, link.write)

    async def serve_shared(self, link: SerialLink, meters: _LinkServer) -> None:
        """Share ``link`` with a DL/T 645 ``MeterBus``: every byte reaches both; both may reply."""
        decoder = RtuDecoder(is_server=True)
        ours, theirs = memory_link_pair(self.settings, names=(f"{link.name}-line", f"{link.name}-meters"))

        async def to_line() -> None:
            while True:
                await link.write(await ours.read())

        async with link, ours, asyncio.TaskGroup() as tg:
            tg.create_task(meters.serve_link(theirs), name=f"sim-meters-{link.name}")
            tg.create_task(to_line(), name=f"sim-line-tx-{link.name}")
            while True:
                chunk = await link.read()
                await ours.write(chunk)
                await self._reply(chunk, decoder, link.write)


class _LinkServer(Protocol):
    """What ``serve_shared`` needs of a meter bus (``sim.meters.bus.MeterBus``)."""

    async def serve_link(self, link: SerialLink) -> None: ...


__all__ = [
    "ModbusDevice",
    "ModbusLine",
    "VirtualBreaker",
    "VirtualCapacitor",
    "VirtualEnvironment",
    "VirtualIoModule",
    "VirtualRcd",
    "loop_current_ma",
]
