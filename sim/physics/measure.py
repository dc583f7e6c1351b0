"""Measurement layer: what a meter would report for the true physics.

Layer: sim (physics). Adds accuracy-class errors and DL/T 645 display resolution to true values;
must not know protocols or frames (virtual meters encode the numbers).

- Voltage 0.1 V (XXX.X), current 0.001 A (XXX.XXX), power 0.0001 kW (XX.XXXX), energy 0.01 kWh
  (XXXXXX.XX, truncated like a register).
- Instantaneous values get an independent error N(0, (class·value/3)²) per reading; the noise of
  a reading depends only on (seed, meter, time), so results do not depend on who reads first.
- Energy registers get a fixed per-meter gain error N(0, (class/3)²) so they stay monotone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from protocols.errors import ConfigError

FArray = NDArray[np.float64]

__all__ = ["Metering"]


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
