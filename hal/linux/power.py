"""The terminal's own supply on real hardware: a power-fail GPIO or an ADC channel, polled.

Layer: hal (linux backend). Boards bring the mains sense out either as a GPIO (a comparator
behind the rectifier pulls it low when the mains goes: sysfs ``/sys/class/gpio/gpioN/value``,
"0"/"1") or as an ADC channel (IIO ``/sys/bus/iio/devices/iio:deviceN/in_voltageM_raw``, raw
counts x ``scale`` = mains volts). ``InputPowerMonitor`` re-reads the value file every
``poll_s`` from the event loop (a ``pread`` of a few bytes from sysfs does not block) and
reports changes; an ADC input has hysteresis so a sagging mains does not chatter. An unreadable
file is a ``HalError`` at open, and counted (and logged once) while running: the last known
state is kept. Must not know apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from hal.errors import HalError
from hal.interfaces import HalClock, SupplyState
from hal.power import SupplyHub, SupplyStream, check_holdup

log = logging.getLogger("ttu.hal.power")


class SupplyInput(Protocol):
    """One way to read the mains sense: (powered, volts or None) from the file's bytes."""

    @property
    def path(self) -> str: ...

    def decode(self, raw: bytes, powered_before: bool) -> tuple[bool, float | None]: ...


@dataclass(frozen=True, slots=True)
class GpioInput:
    """A digital power-fail input: ``active_low`` means "0" = mains lost."""

    path: str
    active_low: bool = True

    def decode(self, raw: bytes, powered_before: bool) -> tuple[bool, float | None]:
        text = raw.strip()
        if text not in (b"0", b"1"):
            raise ValueError(f"{self.path}: expected 0 or 1, read {raw[:16]!r}")
        high = text == b"1"
        return (high if self.active_low else not high), None


@dataclass(frozen=True, slots=True)
class AdcInput:
    """An analog mains sense: volts = raw x ``scale``; lost below ``threshold_v``, back above it
    plus ``hysteresis_v``."""

    path: str
    scale: float
    threshold_v: float
    hysteresis_v: float = 5.0

    def decode(self, raw: bytes, powered_before: bool) -> tuple[bool, float | None]:
        try:
            volts = int(raw.strip()) * self.scale
        except ValueError:
            raise ValueError(f"{self.path}: expected an integer count, read {raw[:16]!r}") from None
        limit = self.threshold_v if powered_before else self.threshold_v + self.hysteresis_v
        return volts >= limit, volts


def parse_device(
    device: str, *, active_low: bool = True, adc_scale: float = 1.0, adc_threshold_v: float = 154.0
) -> SupplyInput:
    """``gpio:<value file>`` or ``adc:<raw file>`` -> the input; ValueError naming what is wrong."""
    kind, _, path = device.partition(":")
    if not path:
        raise ValueError(f"power device {device!r}: expected gpio:<path> or adc:<path>")
    if kind == "gpio":
        return GpioInput(path, active_low)
    if kind == "adc":
        if not adc_scale > 0 or not adc_threshold_v > 0:
            raise ValueError("power adc: scale and threshold must be positive")
        return AdcInput(path, adc_scale, adc_threshold_v)
    raise ValueError(f"power device {device!r}: unknown kind {kind!r} (gpio or adc)")


class InputPowerMonitor:
    """A ``PowerMonitor`` over a polled sysfs/IIO file. ``async with`` opens it and starts polling."""

    def __init__(
        self, source: SupplyInput, *, clock: HalClock, holdup_s: float, poll_s: float = 0.02
    ) -> None:
        if not poll_s > 0:
            raise ValueError(f"power poll interval must be positive, not {poll_s}")
        self._source = source
        self._clock = clock
        self._holdup_s = check_holdup(holdup_s)
        self._poll_s = poll_s
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._hub = SupplyHub(SupplyState(True, clock.now()))
        self.read_errors = 0

    @property
    def holdup_s(self) -> float:
        return self._holdup_s

    def state(self) -> SupplyState:
        return self._hub.state

    def changes(self) -> SupplyStream:
        return self._hub.stream()

    def _read(self) -> bytes:
        assert self._fd is not None
        return os.pread(self._fd, 64, 0)

    def poll_once(self) -> SupplyState:
        """Read the input now; a change is published. Raises ``HalError`` if it cannot be read."""
        try:
            powered, volts = self._source.decode(self._read(), self._hub.state.powered)
        except (OSError, ValueError) as err:
            raise HalError(f"power monitor {self._source.path}: {err}") from err
        self._hub.set(SupplyState(powered, self._clock.now(), volts))
        return self._hub.state

    async def _poll(self) -> None:
        failing = False
        while True:
            try:
                self.poll_once()
                if failing:
                    log.info("power monitor %s readable again", self._source.path)
                failing = False
            except HalError as err:
                self.read_errors += 1
                if not failing:
                    log.warning("%s (keeping the last state)", err)
                failing = True
            await self._clock.sleep(self._poll_s)

    async def __aenter__(self) -> Self:
        try:
            self._fd = os.open(self._source.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            raise HalError(f"power monitor {self._source.path}: cannot open: {err}") from err
        try:
            state = self.poll_once()
        except HalError:
            os.close(self._fd)
            self._fd = None
            raise
        self._hub = SupplyHub(SupplyState(state.powered, self._clock.now(), state.voltage_v))
        self._task = asyncio.create_task(self._poll(), name=f"power-monitor:{self._source.path}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._hub.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["AdcInput", "GpioInput", "InputPowerMonitor", "SupplyInput", "parse_device"]
