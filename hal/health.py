"""Edge-triggered health of the devices behind one medium (an RS-485 port, the carrier module).

Layer: hal. A ``DeviceHealthBook`` keeps per-device counters (ok, timeouts, errors,
bad frames, last ok / last failure clock times) and the *available* flag of STYLE.md §9:
a device becomes unavailable after ``fail_threshold`` consecutive failures and available
again on its next success, each edge logged once (not every failed poll).

Which outcomes are failures is the owner's call: a port counts only timeouts toward
unavailability (a transport error is the port's fault, not the device's), the carrier
transport counts every failed exchange. Must not: time, retry or schedule anything, know
any protocol, or import runtime/ (the clock is taken structurally).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from hal.interfaces import HalClock

HealthCounter = Literal["timeouts", "errors", "bad_frames"]


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """A snapshot of one device's standing on the bus.

    ``timeouts`` count toward unavailability; ``errors`` are transactions that ended
    in a transport error (the port's fault, not the device's); ``bad_frames`` are decode
    errors and non-matching frames seen during the device's transactions.
    """

    device: str
    available: bool = True
    consecutive_failures: int = 0
    ok: int = 0
    timeouts: int = 0
    errors: int = 0
    bad_frames: int = 0
    last_ok: float | None = None
    last_failure: float | None = None


@dataclass(slots=True)
class _State:
    available: bool = True
    consecutive_failures: int = 0
    ok: int = 0
    timeouts: int = 0
    errors: int = 0
    bad_frames: int = 0
    last_ok: float | None = None
    last_failure: float | None = None


class DeviceHealthBook:
    """Health of every device one medium has talked to.

    ``log`` is the owner's logger, so the edges are reported under the driver's name;
    ``noun`` names a device in those lines ("device", "node"); ``unavailable_note`` is
    appended to the unavailable line (e.g. what the owner does about it).
    """

    def __init__(
        self,
        *,
        clock: HalClock,
        name: str,
        fail_threshold: int,
        log: logging.Logger,
        noun: str = "device",
        unavailable_note: str = "",
    ) -> None:
        if fail_threshold < 1:
            raise ValueError(f"fail_threshold must be >= 1, not {fail_threshold}")
        self._clock = clock
        self._name = name
        self._fail_threshold = fail_threshold
        self._log = log
        self._noun = noun
        self._note = unavailable_note
        self._devices: dict[str, _State] = {}

    def _state(self, device: str) -> _State:
        state = self._devices.get(device)
        if state is None:
            state = self._devices[device] = _State()
        return state

    def track(self, device: str) -> None:
        """List ``device`` (with clean counters) from its first transaction on, answered or not."""
        self._state(device)

    def available(self, device: str) -> bool:
        state = self._devices.get(device)
        return state is None or state.available

    def count(self, device: str, counter: HealthCounter) -> None:
        """Count a problem that does not by itself count toward unavailability."""
        state = self._state(device)
        setattr(state, counter, getattr(state, counter) + 1)

    def success(self, device: str) -> None:
        state = self._state(device)
        state.ok += 1
        state.last_ok = self._clock.now()
        if not state.available:
            self._log.info(
                "%s: %s %s recovered after %d failed transactions",
                self._name,
                self._noun,
                device,
                state.consecutive_failures,
            )
            state.available = True
        state.consecutive_failures = 0

    def failure(self, device: str, counter: HealthCounter) -> None:
        """Count a failed exchange; the ``fail_threshold``-th in a row makes the device unavailable."""
        state = self._state(device)
        setattr(state, counter, getattr(state, counter) + 1)
        state.consecutive_failures += 1
        state.last_failure = self._clock.now()
        if state.available and state.consecutive_failures >= self._fail_threshold:
            state.available = False
            self._log.warning(
                "%s: %s %s unavailable after %d consecutive failures%s",
                self._name,
                self._noun,
                device,
                state.consecutive_failures,
                self._note,
            )

    def snapshot(self, device: str) -> DeviceHealth:
        s = self._devices.get(device) or _State()
        return DeviceHealth(
            device=device,
            available=s.available,
            consecutive_failures=s.consecutive_failures,
            ok=s.ok,
            timeouts=s.timeouts,
            errors=s.errors,
            bad_frames=s.bad_frames,
            last_ok=s.last_ok,
            last_failure=s.last_failure,
        )

    def snapshots(self) -> Iterator[DeviceHealth]:
        """Every tracked device, by name."""
        for device in sorted(self._devices):
            yield self.snapshot(device)


__all__ = ["DeviceHealth", "DeviceHealthBook", "HealthCounter"]
