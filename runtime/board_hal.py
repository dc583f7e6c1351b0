"""The hal nodes of one board, opened and handed to apps: ``HalAccess`` built from board.toml.

Layer: runtime. Maps each enabled board node to a hal backend object: RS-485 ports
become ``Rs485Port`` over ``PySerialLink`` (real ttys, or the ptys the simulator serves
for ``sim:`` devices), the watchdog a ``DevWatchdog`` or ``SimWatchdog``, DI/DO slots
``MemorySlot`` on the sim backend, ``modbus-rtu`` slots a ``hal.modbus_slot.ModbusIoSlot``
over an ``Rs485Port`` on the slot's own UART (named after the slot, not one of the apps'
RS-485 ports), the ``[hplc]`` UART a ``hal.hplc.Cco`` whose events
``carrier_events`` publishes as ``hplc/event/<kind>``. Knows no protocol: meters are read by apps through
the ports it opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self
from zoneinfo import ZoneInfo

from hal.clock import Clock
from hal.errors import CapabilityMissing
from hal.hplc import Cco
from hal.interfaces import (
    CarrierEvent,
    CarrierModule,
    Metrology,
    PowerMonitor,
    SerialLink,
    SerialSettings,
    Slot,
    Watchdog,
)
from hal.linux.power import InputPowerMonitor, parse_device
from hal.linux.serial import PySerialLink
from hal.linux.watchdog import DevWatchdog
from hal.metrology import DltMetrology, Ratios
from hal.modbus import ModbusMaster
from hal.modbus_slot import ModbusIoSlot
from hal.rs485 import Rs485Port
from hal.sim import MemorySlot, SimPowerMonitor, SimWatchdog
from hal.trace import FrameTrace
from runtime.config import Board, SlotConfig
from runtime.errors import ConfigError

log = logging.getLogger("ttu.hal")
SIM_PREFIX = "sim:"


class BoardHal:
    """Every hal node of a board. ``async with`` opens the ports; closing closes them.

    ``sim_devices`` maps a ``sim:<name>`` device to what the simulator serves it on: the path
    of a pty slave (opened with pyserial like a real tty), or a ready ``SerialLink`` (an
    in-memory link, for a simulation on virtual time); it is required for every ``sim:`` node
    that is a serial line. ``sim_power`` is the simulator's mains for a ``sim:`` power node
    (without one the board's own supply is simply always present).
    """

    def __init__(
        self,
        board: Board,
        *,
        clock: Clock,
        sim_devices: Mapping[str, str | SerialLink] | None = None,
        sim_power: PowerMonitor | None = None,
    ) -> None:
        self._board = board
        self._clock = clock
        self._sim_devices = dict(sim_devices or {})
        self._ports: dict[str, Rs485Port] = {}
        self._slots: dict[str, Slot] = {}
        self._slot_ports: dict[str, Rs485Port] = {}  # the UART of each modbus-rtu slot
        self._watchdog: Watchdog | None = None
        self._metrology: Metrology | None = None
        self._hplc: Cco | None = None
        self._power: PowerMonitor | None = None
        self._sim_power = sim_power
        self._stack = AsyncExitStack()

    def _link(self, path: str, device: str, settings: SerialSettings, name: str) -> SerialLink:
        """The link of a board node: its tty, or what the simulator serves ``sim:<name>`` on."""
        if not device.startswith(SIM_PREFIX):
            return PySerialLink(device, settings, name=name)
        served = self._sim_devices.get(device[len(SIM_PREFIX) :])
        if served is None:
            raise ConfigError(path, f"device {device!r} has no simulator behind it (run it with `ttu sim`)")
        return PySerialLink(served, settings, name=name) if isinstance(served, str) else served

    async def __aenter__(self) -> Self:
        board = self._board
        try:
            for i, node in enumerate(board.rs485):
                if not node.enabled:
                    continue
                settings = SerialSettings(node.baud, node.parity, node.bytesize, node.stopbits)
                link = self._link(f"rs485[{i}].device", node.device, settings, node.name)
                port = Rs485Port(link, clock=self._clock, name=node.name)
                self._ports[node.name] = await self._stack.enter_async_context(port)
            await self._open_metrology()
            await self._open_power()
            await self._open_hplc()
            for i, slot in enumerate(board.slots):
                if not slot.enabled:
                    continue
                if slot.module == "di-do" and board.hal.backend == "sim":
                    self._slots[slot.name] = MemorySlot(slot.name, kind="dio")
                elif slot.module == "modbus-rtu":
                    await self._open_modbus_slot(i, slot)
                else:
                    log.warning(
                        "slot %s (%s): no driver for this module on the %s backend; not available",
                        slot.name,
                        slot.module,
                        board.hal.backend,
                    )
            if board.watchdog is not None and board.watchdog.enabled:
                if board.hal.backend == "sim":
                    self._watchdog = SimWatchdog(self._clock, timeout=board.watchdog.timeout_s)
                else:
                    self._watchdog = await self._stack.enter_async_context(
                        DevWatchdog(board.watchdog.device, timeout=board.watchdog.timeout_s)
                    )
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _open_metrology(self) -> None:
        node = self._board.metrology
        if node is None or not node.enabled:
            return
        if node.device.startswith(SIM_PREFIX) and node.device[len(SIM_PREFIX) :] not in self._sim_devices:
            log.warning("metrology: %s has no simulator behind it; not available", node.device)
            return
        link = self._link("metrology.device", node.device, node.settings, "metrology")
        unit = DltMetrology(
            link,
            clock=self._clock,
            ratios=Ratios(ct=node.ct_ratio, pt=node.pt_ratio),
            logical_address=node.logical_address,
        )
        self._metrology = await self._stack.enter_async_context(unit)

    async def _open_power(self) -> None:
        node = self._board.power
        if node is None or not node.enabled:
            return
        if node.device.startswith(SIM_PREFIX):
            self._power = self._sim_power or SimPowerMonitor(holdup_s=node.holdup_s, since=self._clock.now())
            return
        try:
            source = parse_device(node.device, active_low=node.active_low, adc_scale=node.adc_scale,
                                  adc_threshold_v=node.adc_threshold_v)  # fmt: skip
        except ValueError as err:
            raise ConfigError("power.device", str(err)) from err
        monitor = InputPowerMonitor(
            source, clock=self._clock, holdup_s=node.holdup_s, poll_s=node.poll_ms / 1000
        )
        self._power = await self._stack.enter_async_context(monitor)

    async def _open_modbus_slot(self, i: int, slot: SlotConfig) -> None:
        if slot.device is None:  # the board validation requires it; a hand-built Board may not
            raise ConfigError(f"slots[{i}].device", "required for a modbus-rtu module")
        if slot.device.startswith(SIM_PREFIX) and slot.device[len(SIM_PREFIX) :] not in self._sim_devices:
            log.warning(
                "slot %s (modbus-rtu): %s has no simulator behind it; not available", slot.name, slot.device
            )
            return
        link = self._link(f"slots[{i}].device", slot.device, slot.settings, slot.name)
        port = await self._stack.enter_async_context(Rs485Port(link, clock=self._clock, name=slot.name))
        self._slot_ports[slot.name] = port
        self._slots[slot.name] = ModbusIoSlot(ModbusMaster(port), name=slot.name, unit_ids=slot.unit_ids)

    async def _open_hplc(self) -> None:
        node = self._board.hplc
        if node is None or not node.enabled:
            return
        if node.device.startswith(SIM_PREFIX) and node.device[len(SIM_PREFIX) :] not in self._sim_devices:
            log.warning("hplc: %s has no simulator behind it; not available", node.device)
            return
        link = self._link("hplc.device", node.device, node.settings, "hplc")
        tz = ZoneInfo(self._board.terminal.timezone)
        # The module is identified lazily (first read or archive sync), so a missing or slow
        # module does not hold up the terminal's start; its reports are taken from now on.
        self._hplc = await self._stack.enter_async_context(Cco(link, clock=self._clock, name="hplc", tz=tz))

    async def carrier_events(self, publish: Callable[[str, object], None]) -> None:
        """Publish every carrier event as ``hplc/event/<kind>`` until cancelled (no-op without HPLC).

        Payload: ``{"kind", "addresses", "ts", "payload" (hex), "extra"}``; the outage app
        takes ``power_off`` / ``power_on``, the acquisition app ``meter_event``.
        """
        if self._hplc is None:
            return
        async with self._hplc.events() as stream:
            async for event in stream:
                publish(f"hplc/event/{event.kind}", carrier_event_json(event))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    # ---- HalAccess

    @property
    def ports(self) -> Mapping[str, Rs485Port]:
        return self._ports

    def rs485(self, name: str) -> Rs485Port:
        try:
            return self._ports[name]
        except KeyError:
            raise CapabilityMissing(f"no enabled RS-485 port {name!r} on this board") from None

    def hplc(self) -> CarrierModule:
        if self._hplc is None:
            raise CapabilityMissing("HPLC carrier module: not enabled on this board (or no simulator)")
        return self._hplc

    def metrology(self) -> Metrology:
        if self._metrology is None:
            raise CapabilityMissing("metrology unit: not enabled on this board (or no simulator behind it)")
        return self._metrology

    def slot(self, name: str) -> Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise CapabilityMissing(f"no slot {name!r} with a driver on this board") from None

    def watchdog(self) -> Watchdog:
        if self._watchdog is None:
            raise CapabilityMissing("no watchdog enabled on this board")
        return self._watchdog

    def power(self) -> PowerMonitor:
        if self._power is None:
            raise CapabilityMissing("power monitor: no [power] node enabled on this board")
        return self._power

    def traces(self) -> dict[str, FrameTrace]:
        """The frame ring buffer of every open link that keeps one, by node name."""
        out: dict[str, FrameTrace] = {name: port.trace for name, port in self._ports.items()}
        out.update({name: port.trace for name, port in self._slot_ports.items()})
        if self._hplc is not None:
            out["hplc"] = self._hplc.trace
        return out

    def statistics(self) -> dict[str, object]:
        out: dict[str, object] = {name: port.statistics() for name, port in self._ports.items()}
        out.update({name: port.statistics() for name, port in self._slot_ports.items()})
        if self._hplc is not None:
            out["hplc"] = self._hplc.statistics()
        return out


def carrier_event_json(event: CarrierEvent) -> dict[str, object]:
    return {
        "kind": event.kind,
        "addresses": list(event.addresses),
        "ts": event.ts,
        "payload": event.payload.hex().upper(),
        "extra": dict(event.extra),
    }
