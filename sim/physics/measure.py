"""Measurement layer: what a meter would report for the true physics.

Layer: sim (physics). Adds accuracy-class errors and DL/T 645 display resolution to true values;
must not know protocols or frames (virtual meters encode the numbers). ``Metering`` does it for
arrays of meters (analysis, tests); ``DeviceErrors`` for one device, which every virtual meter,
branch unit, box terminal and the metrology unit of the simulated station carries.

- Voltage 0.1 V (XXX.X), current 0.001 A (XXX.XXX), power 0.0001 kW (XX.XXXX), energy 0.01 kWh
  (XXXXXX.XX, truncated like a register).
- Instantaneous values get an independent error N(0, (class·value/3)²) per reading; the noise of
  a reading depends only on (seed, meter, time), so results do not depend on who reads first.
- Energy registers get a fixed per-meter gain error N(0, (class/3)²) so they stay monotone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from protocols.errors import ConfigError

FArray = NDArray[np.float64]

__all__ = ["ACCURACY", "AccuracyClass", "DeviceErrors", "Metering", "normals"]


@dataclass(frozen=True)
class Metering:
    """Seeded meter error model for ``n`` meters of accuracy class ``accuracy_pct``."""

    n: int
    seed: int
    accuracy_pct: float = 0.5
    gain: FArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.accuracy_pct < 10.0:
            raise ConfigError("metering.accuracy_pct", f"must be within 0..10, got {self.accuracy_pct}")
        rng = np.random.default_rng([self.seed, 0x645])
        sigma = self.accuracy_pct / 100.0 / 3.0
        object.__setattr__(self, "gain", 1.0 + rng.normal(0.0, sigma, size=self.n))

    def _noise(self, t: float, salt: int) -> FArray:
        rng = np.random.default_rng([self.seed, salt, round(t * 1000.0)])
        return rng.normal(0.0, self.accuracy_pct / 100.0 / 3.0, size=self.n)

    def voltage(self, v: FArray, *, t: float) -> FArray:
        return np.round(np.asarray(v) * (1.0 + self._noise(t, 1)), 1)

    def current(self, i: FArray, *, t: float) -> FArray:
        return np.round(np.asarray(i) * (1.0 + self._noise(t, 2)), 3)

    def power(self, p_kw: FArray, *, t: float) -> FArray:
        return np.round(np.asarray(p_kw) * (1.0 + self._noise(t, 3)), 4)

    def energy(self, e_kwh: FArray) -> FArray:
        """Register value for true cumulative energy ``e_kwh`` (≥ 0), truncated to 0.01 kWh."""
        return np.floor(np.asarray(e_kwh) * self.gain * 100.0 + 1e-9) / 100.0


# -- per device --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccuracyClass:
    """Accuracy classes of one kind of device, in percent (IEC/GB: class 2 = ±2 % ...)."""

    energy_pct: float
    voltage_pct: float
    current_pct: float
    power_pct: float


#: the classes of the station area's devices: a household meter is class 2 for energy (GB/T 17215),
#: a three-phase meter, branch unit or box terminal class 1, the 总表 and the terminal's own AC
#: sampling 0.5S; voltage is measured to 0.5 % in a meter, 0.2 % in the metrology unit
ACCURACY: dict[str, AccuracyClass] = {
    "household": AccuracyClass(energy_pct=2.0, voltage_pct=0.5, current_pct=1.0, power_pct=1.0),
    "three_phase": AccuracyClass(energy_pct=1.0, voltage_pct=0.5, current_pct=0.5, power_pct=0.5),
    "assessment": AccuracyClass(energy_pct=0.5, voltage_pct=0.5, current_pct=0.5, power_pct=0.5),
    "metrology": AccuracyClass(energy_pct=0.5, voltage_pct=0.2, current_pct=0.2, power_pct=0.5),
}


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64 finaliser: a well-spread 64-bit hash of each element."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_M64 = 0xFFFFFFFFFFFFFFFF
_SECOND = 0xD1B54A32D192ED03
_SMALL = 8  # up to this many times: Python integers (numpy's per-call overhead dominates there)


def _mix_int(z: int) -> int:
    """``_mix`` of one value, on Python integers (the same bits)."""
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@functools.lru_cache(maxsize=1 << 16)
def _base(seed: int, key: int, salt: int) -> int:
    return (_mix_int(seed & 0xFFFFFFFF) + _mix_int(key & 0xFFFFFFFFFFFF) + _mix_int(salt & _M64)) & _M64


def _normal_at(base: int, t: float) -> float:
    a = _mix_int((round(t * 1000.0) & _M64) ^ base)
    b = _mix_int(a ^ _SECOND)
    u1 = ((a >> 11) + 0.5) / 2.0**53
    u2 = (b >> 11) / 2.0**53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def normals(seed: int, key: int, t: FArray, salt: int) -> FArray:
    """Standard normal draws that depend only on (seed, device key, time to the ms, salt): the same
    reading gets the same noise whoever reads it, whenever, in whatever order."""
    times = np.asarray(t, dtype=np.float64)
    base = _base(seed, key, salt)
    if times.size <= _SMALL:  # a reading or a few curve points: the common case, kept cheap
        flat = [_normal_at(base, x) for x in times.ravel().tolist()]
        return np.array(flat, dtype=np.float64).reshape(times.shape)
    ms = np.round(times * 1000.0).astype(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        a = _mix(ms ^ np.uint64(base))
        b = _mix(a ^ np.uint64(_SECOND))
    u1 = ((a >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    u2 = (b >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class DeviceErrors:
    """The measurement errors of one device (meter, branch unit, box terminal, metrology unit).

    ``gain`` errors are fixed per device, drawn once: N(0, (class / 3)^2), within +-class -- the
    calibration a meter left the factory with; energy registers use only this (they stay
    monotone). Instantaneous values also get a noise per reading, N(0, (class / 6)^2), that depends
    only on (seed, device, time). ``scale`` multiplies every error (a scenario's
    ``[metering] error_scale``; 0 = ideal instruments). The resolution is the protocol's: the
    meter encodes 0.1 V, 0.001 A, 0.0001 kW, 0.01 kWh.
    """

    key: int
    seed: int
    accuracy: AccuracyClass
    scale: float = 1.0
    gains: FArray = field(init=False, repr=False)  # energy, voltage a/b/c, current a/b/c, power a/b/c

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale <= 10.0:
            raise ConfigError("metering.error_scale", f"must be within 0..10, got {self.scale}")
        a = self.accuracy
        classes = np.array([a.energy_pct, *[a.voltage_pct] * 3, *[a.current_pct] * 3, *[a.power_pct] * 3])
        z = np.clip(np.random.default_rng([self.seed, self.key & 0xFFFFFFFF, 0x6A1]).normal(size=10), -3, 3)
        object.__setattr__(self, "gains", 1.0 + self.scale * z * classes / 300.0)

    @property
    def energy_gain(self) -> float:
        return float(self.gains[0])

    def _apply(self, values: FArray, t: FArray, phase: int, first: int, pct: float, salt: int) -> FArray:
        if self.scale == 0.0:
            return values
        noise = normals(self.seed, self.key, t, salt + phase) * (self.scale * pct / 600.0)
        return values * self.gains[first + phase] * (1.0 + noise)  # type: ignore[no-any-return]

    def _apply_at(self, value: float, t: float, phase: int, first: int, pct: float, salt: int) -> float:
        """``_apply`` of one value at one instant, on Python floats (the same bits)."""
        if self.scale == 0.0:
            return value
        noise = _normal_at(_base(self.seed, self.key, salt + phase), t) * (self.scale * pct / 600.0)
        return value * float(self.gains[first + phase]) * (1.0 + noise)

    def voltage_at(self, v: float, t: float, phase: int = 0) -> float:
        return self._apply_at(v, t, phase, 1, self.accuracy.voltage_pct, 0x10)

    def current_at(self, i: float, t: float, phase: int = 0) -> float:
        return self._apply_at(i, t, phase, 4, self.accuracy.current_pct, 0x20)

    def power_at(self, p: float, t: float, phase: int = 0) -> float:
        return self._apply_at(p, t, phase, 7, self.accuracy.power_pct, 0x30)

    def voltage(self, v: FArray, t: FArray, phase: int = 0) -> FArray:
        return self._apply(v, t, phase, 1, self.accuracy.voltage_pct, 0x10)

    def current(self, i: FArray, t: FArray, phase: int = 0) -> FArray:
        return self._apply(i, t, phase, 4, self.accuracy.current_pct, 0x20)

    def power(self, p: FArray, t: FArray, phase: int = 0) -> FArray:
        return self._apply(p, t, phase, 7, self.accuracy.power_pct, 0x30)
