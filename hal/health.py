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
import math
from array import array
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


# a device's row in a book: its counts, then its last ok / last failure clock times (NaN: never)
_AVAILABLE, _CONSECUTIVE, _OK = 0, 1, 2
_COUNTER: dict[str, int] = {"timeouts": 3, "errors": 4, "bad_frames": 5}
_INTS = 6
_NO_INTS = array("q", [1, 0, 0, 0, 0, 0])  # available, nothing counted
_NO_TIMES = array("d", [math.nan, math.nan])


def _time(value: float) -> float | None:
    return None if math.isnan(value) else value


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
        # by columns, a row a device (a book of an HPLC module has one a meter: an object and two
        # floats each were ~140 bytes): _INTS counts in ``_ints``, two clock times in ``_times``
        self._devices: dict[str, int] = {}
        self._ints = array("q")
        self._times = array("d")

    def _row(self, device: str) -> int:
        row = self._devices.get(device)
        if row is None:
            row = self._devices[device] = len(self._devices)
            self._ints.extend(_NO_INTS)
            self._times.extend(_NO_TIMES)
        return row

    def track(self, device: str) -> None:
        """List ``device`` (with clean counters) from its first transaction on, answered or not."""
        self._row(device)

    def available(self, device: str) -> bool:
        row = self._devices.get(device)
        return row is None or bool(self._ints[row * _INTS + _AVAILABLE])

    def count(self, device: str, counter: HealthCounter) -> None:
        """Count a problem that does not by itself count toward unavailability."""
        self._ints[self._row(device) * _INTS + _COUNTER[counter]] += 1

    def success(self, device: str) -> None:
        row = self._row(device)
        at = row * _INTS
        ints = self._ints
        ints[at + _OK] += 1
        self._times[row * 2] = self._clock.now()
        if not ints[at + _AVAILABLE]:
            self._log.info(
                "%s: %s %s recovered after %d failed transactions",
                self._name,
                self._noun,
                device,
                ints[at + _CONSECUTIVE],
            )
            ints[at + _AVAILABLE] = 1
        ints[at + _CONSECUTIVE] = 0

    def failure(self, device: str, counter: HealthCounter) -> None:
        """Count a failed exchange; the ``fail_threshold``-th in a row makes the device unavailable."""
        row = self._row(device)
        at = row * _INTS
        ints = self._ints
        ints[at + _COUNTER[counter]] += 1
        ints[at + _CONSECUTIVE] += 1
        self._times[row * 2 + 1] = self._clock.now()
        if ints[at + _AVAILABLE] and ints[at + _CONSECUTIVE] >= self._fail_threshold:
            ints[at + _AVAILABLE] = 0
            self._log.warning(
                "%s: %s %s unavailable after %d consecutive failures%s",
                self._name,
                self._noun,
                device,
                ints[at + _CONSECUTIVE],
                self._note,
            )

    def snapshot(self, device: str) -> DeviceHealth:
        row = self._devices.get(device)
        if row is None:
            return DeviceHealth(device=device)
        ints = self._ints[row * _INTS : (row + 1) * _INTS]
        return DeviceHealth(
            device=device,
            available=bool(ints[_AVAILABLE]),
            consecutive_failures=ints[_CONSECUTIVE],
            ok=ints[_OK],
            timeouts=ints[_COUNTER["timeouts"]],
            errors=ints[_COUNTER["errors"]],
            bad_frames=ints[_COUNTER["bad_frames"]],
            last_ok=_time(self._times[row * 2]),
            last_failure=_time(self._times[row * 2 + 1]),
        )

    def snapshots(self) -> Iterator[DeviceHealth]:
        """Every tracked device, by name."""
        for device in sorted(self._devices):
            yield self.snapshot(device)


__all__ = ["DeviceHealth", "DeviceHealthBook", "HealthCounter"]
