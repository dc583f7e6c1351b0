"""The Profiles container: per-customer demand and the common MV voltage over a horizon.

Layer: sim (profiles). Pure data; must not know the power-flow solver or the data sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from protocols.errors import ConfigError

FArray = NDArray[np.float64]


@dataclass(frozen=True)
class Profiles:
    """Step-averaged values; step k covers [start + k*step_s, start + (k+1)*step_s).

    p_kw / q_kvar are the customer's net demand at the meter (negative = export), shape
    (steps, customers). mv_pu is the MV source voltage (ext_grid set-point), shape (steps,).
    load_kw / pv_kw keep the two parts of p_kw (p_kw = load_kw - pv_kw).
    """

    start: float
    step_s: float
    p_kw: FArray
    q_kvar: FArray
    mv_pu: FArray
    load_kw: FArray = field(repr=False)
    pv_kw: FArray = field(repr=False)
    prosumer: NDArray[np.bool_] = field(repr=False)

    def __post_init__(self) -> None:
        steps, n = self.p_kw.shape
        for name in ("q_kvar", "load_kw", "pv_kw"):
            if getattr(self, name).shape != (steps, n):
                raise ConfigError(f"profiles.{name}", f"shape {getattr(self, name).shape} != {(steps, n)}")
        if self.mv_pu.shape != (steps,):
            raise ConfigError("profiles.mv_pu", f"shape {self.mv_pu.shape} != {(steps,)}")
        if self.step_s <= 0:
            raise ConfigError("profiles.step_s", "must be positive")

    @property
    def steps(self) -> int:
        return int(self.p_kw.shape[0])

    @property
    def n_customers(self) -> int:
        return int(self.p_kw.shape[1])

    @classmethod
    def side_by_side(cls, parts: list[Profiles]) -> Profiles:
        """The customers of ``parts`` in one horizon (same start, step and length), in order;
        the MV voltage is the first part's: one network has one source."""
        if not parts:
            raise ConfigError("profiles", "nothing to put side by side")
        first = parts[0]
        if any((p.start, p.step_s, p.steps) != (first.start, first.step_s, first.steps) for p in parts):
            raise ConfigError("profiles", "side by side needs one start, step and length")
        return cls(
            start=first.start,
            step_s=first.step_s,
            p_kw=np.concatenate([p.p_kw for p in parts], axis=1),
            q_kvar=np.concatenate([p.q_kvar for p in parts], axis=1),
            mv_pu=first.mv_pu,
            load_kw=np.concatenate([p.load_kw for p in parts], axis=1),
            pv_kw=np.concatenate([p.pv_kw for p in parts], axis=1),
            prosumer=np.concatenate([p.prosumer for p in parts]),
        )

    @classmethod
    def constant(
        cls, p_kw: FArray, q_kvar: FArray, mv_pu: FArray, *, start: float = 0.0, step_s: float = 900.0
    ) -> Profiles:
        """Profiles from explicit arrays (tests, scenarios); no PV split."""
        p = np.asarray(p_kw, dtype=np.float64)
        return cls(
            start=start,
            step_s=step_s,
            p_kw=p,
            q_kvar=np.asarray(q_kvar, dtype=np.float64),
            mv_pu=np.asarray(mv_pu, dtype=np.float64),
            load_kw=p.copy(),
            pv_kw=np.zeros_like(p),
            prosumer=np.zeros(p.shape[1], dtype=bool),
        )
