"""Load profiles: what each simulated customer draws, as a pure function of time.

Layer: sim. A ``LoadProfile`` answers "how much, at UTC epoch t" and nothing else: no
state, no clock, no I/O, so a meter can integrate it lazily over any interval and
the physics engine (``sim/physics``) can supply its own profiles through the same
Protocol. Profiles that can also take numpy arrays implement ``VectorLoadProfile``;
``sample_power`` uses that when available.

The default ``HouseholdProfile`` is synthetic and deterministic from its seed: a
base load, morning and evening peaks (later and broader at weekends), a per-customer
scale, and smooth seeded noise (piecewise-linear between 5-minute knots, so the
numeric integral of the curve is well defined). Local time is a fixed UTC offset
(China has no daylight saving time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

CHINA_UTC_OFFSET_S = 8 * 3600


@runtime_checkable
class LoadProfile(Protocol):
    """A customer's load as a function of UTC epoch seconds."""

    def power_kw(self, t: float) -> float:
        """Active power drawn (positive) or fed in (negative), kW."""
        ...

    def reactive_kvar(self, t: float) -> float:
        """Reactive power, kvar."""
        ...

    def voltage_v(self, t: float, phase: str = "A") -> float:
        """Phase-to-neutral voltage at the customer's connection point, V."""
        ...


@runtime_checkable
class VectorLoadProfile(LoadProfile, Protocol):
    """A profile that also evaluates many instants at once."""

    def power_kw_array(self, t: FloatArray) -> FloatArray: ...

    def reactive_kvar_array(self, t: FloatArray) -> FloatArray: ...

    def voltage_v_array(self, t: FloatArray, phase: str = "A") -> FloatArray: ...


@runtime_checkable
class PhaseLoadProfile(Protocol):
    """A three-phase load that knows what each phase carries (a branch head, a meter box)."""

    def phase_power_kw_array(self, t: FloatArray) -> FloatArray:
        """(len(t), 3) active power per phase A, B, C; sums to ``power_kw_array``."""
        ...


@runtime_checkable
class PhaseReactiveProfile(Protocol):
    """A three-phase load that also knows each phase's reactive power (a branch head, a meter box)."""

    def phase_reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        """(len(t), 3) reactive power per phase A, B, C."""
        ...


def sample_phase_reactive(profile: LoadProfile, t: FloatArray) -> FloatArray | None:
    """(len(t), 3) reactive power per phase, or None when the profile has only the total."""
    if isinstance(profile, PhaseReactiveProfile):
        return np.asarray(profile.phase_reactive_kvar_array(t), dtype=np.float64)
    return None


def sample_phase_power(profile: LoadProfile, t: FloatArray) -> FloatArray | None:
    """(len(t), 3) active power per phase, or None when the profile has only the total."""
    if isinstance(profile, PhaseLoadProfile):
        return np.asarray(profile.phase_power_kw_array(t), dtype=np.float64)
    return None


def sample_power(profile: LoadProfile, t: FloatArray) -> FloatArray:
    """Active power at each instant of ``t`` (vectorized when the profile allows)."""
    vector = getattr(profile, "power_kw_array", None)  # not isinstance: a Protocol check costs 30x more
    if vector is not None:
        return np.asarray(vector(t), dtype=np.float64)
    return np.fromiter((profile.power_kw(float(x)) for x in t), dtype=np.float64, count=len(t))


def sample_reactive(profile: LoadProfile, t: FloatArray) -> FloatArray:
    """Reactive power at each instant of ``t``."""
    vector = getattr(profile, "reactive_kvar_array", None)  # not isinstance: a Protocol check costs 30x more
    if vector is not None:
        return np.asarray(vector(t), dtype=np.float64)
    return np.fromiter((profile.reactive_kvar(float(x)) for x in t), dtype=np.float64, count=len(t))


def sample_voltage(profile: LoadProfile, t: FloatArray, phase: str = "A") -> FloatArray:
    """Voltage of ``phase`` at each instant of ``t``."""
    vector = getattr(profile, "voltage_v_array", None)  # not isinstance: a Protocol check costs 30x more
    if vector is not None:
        return np.asarray(vector(t, phase), dtype=np.float64)
    return np.fromiter((profile.voltage_v(float(x), phase) for x in t), dtype=np.float64, count=len(t))


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def _unit_noise(seed: int, stream: int, k: npt.NDArray[np.int64]) -> FloatArray:
    """Deterministic uniform noise in [-1, 1) per integer knot ``k``."""
    key = np.uint64((seed * 0x100000001B3 + stream * 0x9E3779B1) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        h = _splitmix64(k.astype(np.uint64) ^ key)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0


def _bump(hour: FloatArray, centre: float, width: float) -> FloatArray:
    d = (hour - centre + 12.0) % 24.0 - 12.0  # circular distance on the 24 h dial
    return np.exp(-0.5 * (d / width) ** 2)


@dataclass(frozen=True, slots=True)
class HouseholdProfile:
    """A seeded synthetic household: ``mean_kw`` sets the scale (daily mean ≈ mean_kw)."""

    seed: int
    mean_kw: float = 0.45
    noise: float = 0.25  # relative amplitude of the smooth noise
    power_factor: float = 0.95
    nominal_v: float = 220.0
    utc_offset_s: int = CHINA_UTC_OFFSET_S
    knot_s: float = 300.0

    @classmethod
    def for_customer(cls, seed: int, index: int) -> HouseholdProfile:
        """A profile whose scale and quirks vary per customer, all from ``(seed, index)``."""
        rng = np.random.default_rng([seed, index])
        return cls(
            seed=int(rng.integers(0, 2**31)),
            mean_kw=float(rng.lognormal(math.log(0.45), 0.45)),
            noise=float(rng.uniform(0.15, 0.35)),
            power_factor=float(rng.uniform(0.9, 0.99)),
        )

    # -- shape --------------------------------------------------------------------------------------
    def _shape(self, t: FloatArray) -> FloatArray:
        local = t + self.utc_offset_s
        hour = (local % 86400.0) / 3600.0
        weekday = ((local // 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (3)
        weekend = weekday >= 5
        morning_c = np.where(weekend, 9.5, 7.3)
        morning = 0.9 * np.exp(-0.5 * (((hour - morning_c + 12.0) % 24.0 - 12.0) / 1.0) ** 2)
        midday = np.where(weekend, 0.6, 0.25) * _bump(hour, 12.5, 1.5)
        evening = 1.6 * _bump(hour, 19.8, 1.6)
        night = -0.35 * _bump(hour, 3.5, 2.2)
        return np.asarray(1.0 + morning + midday + evening + night, dtype=np.float64)

    def _noise(self, t: FloatArray, stream: int) -> FloatArray:
        x = t / self.knot_s
        k = np.floor(x).astype(np.int64)
        frac = x - k
        a = _unit_noise(self.seed, stream, k)
        b = _unit_noise(self.seed, stream, k + 1)
        return a + (b - a) * frac

    # -- vectorized ---------------------------------------------------------------------------------
    def power_kw_array(self, t: FloatArray) -> FloatArray:
        t = np.asarray(t, dtype=np.float64)
        base = self._shape(t) / 1.36  # 1.36 ≈ the shape's daily mean: keeps the mean near mean_kw
        p = self.mean_kw * base * (1.0 + self.noise * self._noise(t, 1))
        return np.maximum(p, 0.02 * self.mean_kw)

    def reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        return self.power_kw_array(t) * math.tan(math.acos(self.power_factor))

    def voltage_v_array(self, t: FloatArray, phase: str = "A") -> FloatArray:
        t = np.asarray(t, dtype=np.float64)
        stream = 10 + "ABC".index(phase) if phase in ("A", "B", "C") else 10
        sag = 0.035 * (self._shape(t) - 1.0) / 1.6  # evening peak pulls the voltage down a few %
        return self.nominal_v * (1.03 - sag + 0.006 * self._noise(t, stream))

    # -- LoadProfile --------------------------------------------------------------------------------
    def power_kw(self, t: float) -> float:
        return float(self.power_kw_array(np.array([t]))[0])

    def reactive_kvar(self, t: float) -> float:
        return float(self.reactive_kvar_array(np.array([t]))[0])

    def voltage_v(self, t: float, phase: str = "A") -> float:
        return float(self.voltage_v_array(np.array([t]), phase)[0])


@dataclass(frozen=True, slots=True)
class ConstantProfile:
    """A flat load (tests, and devices that draw a fixed power)."""

    kw: float
    kvar: float = 0.0
    volts: float = 220.0

    def power_kw(self, t: float) -> float:
        return self.kw

    def reactive_kvar(self, t: float) -> float:
        return self.kvar

    def voltage_v(self, t: float, phase: str = "A") -> float:
        return self.volts

    def power_kw_array(self, t: FloatArray) -> FloatArray:
        return np.full(np.shape(t), self.kw, dtype=np.float64)

    def reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        return np.full(np.shape(t), self.kvar, dtype=np.float64)

    def voltage_v_array(self, t: FloatArray, phase: str = "A") -> FloatArray:
        return np.full(np.shape(t), self.volts, dtype=np.float64)


__all__ = [
    "CHINA_UTC_OFFSET_S",
    "ConstantProfile",
    "HouseholdProfile",
    "LoadProfile",
    "VectorLoadProfile",
    "sample_power",
    "sample_reactive",
    "sample_voltage",
]
