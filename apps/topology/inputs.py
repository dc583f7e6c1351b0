"""What one identification works on: the station as the archive has it, and aligned curves.

Layer: apps (topology), pure data. Must not read the store, the bus or the station model
(``data.py`` builds these from them) and must not compute anything beyond shape checks.

Times are the 15-minute curve points ``t_0 .. t_{T-1}`` (UTC epoch). Per point: voltages and
currents as the devices recorded them (NaN where missing). Per interval ``[t_k, t_{k+1})``:
energy (T - 1 values), from register differences. Units: V, A, kWh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .numeric import FArray

PHASES = ("A", "B", "C")
SOURCES = ("archive", "identified", "confirmed", "none")


@dataclass(frozen=True, slots=True)
class Fact:
    """One archive value with where it came from (``source``) and, for identified facts, how sure."""

    value: str | None = None
    source: str = "archive"  # archive | identified | confirmed | none (no value)
    confidence: float | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"fact source {self.source!r} is not one of {', '.join(SOURCES)}")

    @property
    def known(self) -> bool:
        return self.value is not None and self.source != "none"


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """A customer meter of the archive (or heard on our network), with what is known of it."""

    id: str
    address: str
    channel: str = "rs485"  # rs485 | hplc
    phase: Fact = field(default_factory=Fact)  # "A" | "B" | "C" | "ABC"
    branch: Fact = field(default_factory=Fact)
    box: Fact = field(default_factory=Fact)
    #: the carrier module's view (AFN10 F31 / F21); None where it has none (RS-485 meters)
    cco_phase: str | None = None  # "A" | "B" | "C" | "ABC"
    in_cco_network: bool | None = None


@dataclass(frozen=True, slots=True)
class BranchInfo:
    id: str
    parent: str | None = None
    monitor: str | None = None  # device id of its branch monitoring unit (measures the head flow)


@dataclass(frozen=True, slots=True)
class BoxInfo:
    id: str
    branch: str | None = None
    terminal: str | None = None  # device id of its box terminal (measures the box supply)


@dataclass(frozen=True)
class Curves:
    """Aligned curves of ``devices`` (meters, units, box terminals) at ``times`` (T,).

    ``voltage`` / ``current`` (T, n, 3): per phase slot A/B/C; a single-phase meter fills slot A
    only (it does not know its phase). ``energy`` (T - 1, n): net active energy per interval
    (import minus export).
    """

    times: FArray
    devices: tuple[str, ...]
    voltage: FArray
    current: FArray
    energy: FArray

    def __post_init__(self) -> None:
        t, n = len(self.times), len(self.devices)
        if self.voltage.shape != (t, n, 3) or self.current.shape != (t, n, 3):
            raise ValueError(
                f"curves: voltage {self.voltage.shape} / current {self.current.shape}, want {(t, n, 3)}"
            )
        if self.energy.shape != (max(t - 1, 0), n):
            raise ValueError(f"curves: energy {self.energy.shape}, want {(max(t - 1, 0), n)}")

    def index(self) -> dict[str, int]:
        return {d: i for i, d in enumerate(self.devices)}

    def column(self, device: str) -> int | None:
        return self.index().get(device)


@dataclass(frozen=True, slots=True)
class UnknownNode:
    """A node of our carrier network that the archive lacks."""

    address: str
    cco_phase: str | None = None
    device: str | None = None  # its column in ``Curves`` when its curves were read

    def as_meter(self) -> MeterInfo:
        none = Fact(None, "none")
        device = self.device or f"node-{self.address}"
        return MeterInfo(device, self.address, "hplc", none, none, none, self.cco_phase, in_cco_network=True)


@dataclass(frozen=True, slots=True)
class Detection:
    """One signature-current injection by ``source`` (a meter id) and who reported it.

    ``heard_by`` are device ids of units (branch units, box terminals) that reported the code;
    ``listening`` those that were online to hear it (a unit that did not answer says nothing).
    """

    source: str
    at: float
    heard_by: tuple[str, ...]
    listening: tuple[str, ...]


@dataclass(frozen=True)
class Inputs:
    """Everything one identification uses."""

    meters: tuple[MeterInfo, ...]
    branches: tuple[BranchInfo, ...]
    boxes: tuple[BoxInfo, ...]
    curves: Curves
    transformer_energy: FArray | None = None  # (T - 1, 3) per-phase energy at the LV side
    transformer_voltage: FArray | None = None  # (T, 3)
    detections: tuple[Detection, ...] = ()
    #: meters our carrier module hears that no archive meter has (AFN10 F21): their address,
    #: F31 phase, and -- when the terminal could read their curves -- the device id in ``curves``
    unknown_nodes: tuple[UnknownNode, ...] = ()
    #: signature-current rates the scheduler assumes (missed detection, cross-talk)
    miss_rate: float = 0.1
    crosstalk_rate: float = 0.02

    @property
    def points(self) -> int:
        return len(self.curves.times)

    @property
    def days(self) -> float:
        t = self.curves.times
        return float((t[-1] - t[0]) / 86400.0) if len(t) > 1 else 0.0


def empty_curves(times: FArray, devices: tuple[str, ...]) -> Curves:
    t, n = len(times), len(devices)
    nan = np.full((t, n, 3), np.nan)
    return Curves(
        times=times,
        devices=devices,
        voltage=nan,
        current=nan.copy(),
        energy=np.full((max(t - 1, 0), n), np.nan),
    )


__all__ = [
    "PHASES",
    "SOURCES",
    "BoxInfo",
    "BranchInfo",
    "Curves",
    "Detection",
    "Fact",
    "Inputs",
    "MeterInfo",
    "UnknownNode",
    "empty_curves",
]
