"""solve() and the Horizon: the true physics of a whole horizon, computed ahead.

Layer: sim (physics). Holds precomputed arrays and answers queries by time; must not run in or
know about the event loop, and must not add measurement errors (see ``measure``).

Values are step-held: step k covers [start + k*step_s, start + (k+1)*step_s) and its powers are
the step averages, so energies integrate exactly. Events (relay trip, outage, branch switched
out) return a new Horizon in which only the affected steps were re-solved.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from protocols.errors import ConfigError
from sim.physics.network import StationNetwork
from sim.physics.solver import power_flow
from sim.profiles.types import Profiles

FArray = NDArray[np.float64]

__all__ = ["CustomerSample", "Horizon", "solve"]


@dataclass(frozen=True)
class CustomerSample:
    """All customers at one instant (arrays of length n, customer order of the network)."""

    t: float
    voltage_v: FArray
    current_a: FArray
    p_kw: FArray
    q_kvar: FArray
    supplied: NDArray[np.bool_]  # False while the customer's supply is lost (outage)


@dataclass(frozen=True)
class Horizon:
    """Per-step arrays; shapes (T, n) per customer, (T, 3) per phase, (T, nb) per branch."""

    network: StationNetwork = field(repr=False)
    profiles: Profiles = field(repr=False)
    start: float
    step_s: float
    voltage_v: FArray  # customer phase-to-neutral voltage at the meter [V] (0 during an outage)
    current_a: FArray  # customer current [A]
    p_kw: FArray  # customer active power at the meter, negative = export
    q_kvar: FArray
    trafo_v: FArray  # transformer LV terminal, per phase [V]
    trafo_i: FArray  # [A]
    trafo_p: FArray  # [kW] into the LV network
    trafo_q: FArray  # [kvar]
    branch_p: FArray  # [kW] into each branch section, see solver.FlowResult
    branch_loss: FArray  # [kW] branch_p minus its customers' power
    line_loss: FArray  # (T,) [kW] all LV lines
    trafo_loss: FArray  # (T,) [kW] the transformer (copper + iron)
    on: FArray = field(repr=False)  # (T, n) fraction of each step the customer draws power
    supplied: NDArray[np.bool_] = field(repr=False)  # (T, n) False for steps fully in an outage

    @property
    def steps(self) -> int:
        return int(self.p_kw.shape[0])

    @property
    def end(self) -> float:
        return self.start + self.steps * self.step_s

    def step_of(self, t: float) -> int:
        """Index of the step containing ``t``; ConfigError outside the horizon."""
        k = int(np.floor((t - self.start) / self.step_s))
        if not 0 <= k < self.steps:
            raise ConfigError("horizon", f"time {t} is outside [{self.start}, {self.end})")
        return k

    def customer_at(self, t: float) -> CustomerSample:
        """Step-held values of every customer at time ``t``."""
        k = self.step_of(t)
        return CustomerSample(
            t=t,
            voltage_v=self.voltage_v[k].copy(),
            current_a=self.current_a[k].copy(),
            p_kw=self.p_kw[k].copy(),
            q_kvar=self.q_kvar[k].copy(),
            supplied=self.supplied[k].copy(),
        )

    def _integral(self, values: FArray, t0: float, t1: float) -> FArray:
        """∫ values dt over [t0, t1) in kWh for kW-valued step-held ``values`` (T, ...)."""
        if t1 < t0:
            raise ConfigError("horizon", f"interval end {t1} before start {t0}")
        cum = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])

        def at(t: float) -> FArray:
            u = min(max((t - self.start) / self.step_s, 0.0), float(self.steps))
            k = min(int(u), self.steps - 1)
            return cum[k] + (u - k) * values[k]  # type: ignore[no-any-return]

        return (at(t1) - at(t0)) * self.step_s / 3600.0

    def customer_energy_kwh(self, i: int, t0: float, t1: float, *, direction: str = "import") -> float:
        """Energy of customer ``i`` over [t0, t1): "import", "export" (both ≥ 0) or "net"."""
        p = self.p_kw[:, i]
        if direction == "import":
            p = np.maximum(p, 0.0)
        elif direction == "export":
            p = np.maximum(-p, 0.0)
        elif direction != "net":
            raise ConfigError("direction", f"must be import, export or net, got {direction!r}")
        return float(self._integral(p, t0, t1))

    def customers_energy_kwh(self, t0: float, t1: float) -> FArray:
        """Net energy of all customers over [t0, t1), shape (n,)."""
        return self._integral(self.p_kw, t0, t1)

    def trafo_energy_kwh(self, t0: float, t1: float) -> FArray:
        """Energy into the LV network per phase over [t0, t1), shape (3,)."""
        return self._integral(self.trafo_p, t0, t1)

    def branch_energy_kwh(self, t0: float, t1: float) -> FArray:
        return self._integral(self.branch_p, t0, t1)

    def line_loss_kwh(self, t0: float, t1: float) -> float:
        return float(self._integral(self.line_loss, t0, t1))

    def trafo_loss_kwh(self, t0: float, t1: float) -> float:
        return float(self._integral(self.trafo_loss, t0, t1))

    # -- events -------------------------------------------------------------------------------

    def with_customer_off(
        self, customers: int | list[int], t0: float, t1: float, *, outage: bool = False
    ) -> Horizon:
        """Customers draw nothing over [t0, t1): a relay trip, or with ``outage`` a loss of supply
        (meter voltage 0 for steps fully inside). Only the affected steps are re-solved."""
        idx = [customers] if isinstance(customers, int) else list(customers)
        on = self.on.copy()
        supplied = self.supplied.copy()
        k0 = max(int(np.floor((t0 - self.start) / self.step_s)), 0)
        k1 = min(int(np.ceil((t1 - self.start) / self.step_s)), self.steps)
        for k in range(k0, k1):
            a, b = self.start + k * self.step_s, self.start + (k + 1) * self.step_s
            off = (min(b, t1) - max(a, t0)) / self.step_s
            on[k, idx] = np.maximum(on[k, idx] - off, 0.0)
            if outage and off >= 1.0 - 1e-9:
                supplied[k, idx] = False
        return _resolve(self, on, supplied, np.arange(k0, k1))

    def with_branch_off(self, branch: str, t0: float, t1: float) -> Horizon:
        """Branch ``branch`` (and its sub-branches) switched out over [t0, t1): its customers lose
        supply. The de-energised cable's charging current is neglected (LV cables: negligible)."""
        if branch not in self.network.branches:
            raise ConfigError("branch", f"unknown branch {branch!r}; known: {self.network.branches}")
        names = {branch}
        for b, head in enumerate(self.network.heads):  # heads are listed parents first
            if head[3] >= 0 and self.network.branches[head[3]] in names:
                names.add(self.network.branches[b])
        idx = [i for i, c in enumerate(self.network.customers) if c.branch in names]
        return self.with_customer_off(idx, t0, t1, outage=True)


def solve(network: StationNetwork, profiles: Profiles) -> Horizon:
    """Solve the whole horizon at once (vectorized over all steps)."""
    if profiles.n_customers != network.n_customers:
        raise ConfigError(
            "profiles", f"{profiles.n_customers} customers, network {network.name} has {network.n_customers}"
        )
    t, n = profiles.steps, network.n_customers
    empty = _empty(network, profiles)
    return _resolve(empty, np.ones((t, n)), np.ones((t, n), dtype=bool), np.arange(t))


def _empty(network: StationNetwork, profiles: Profiles) -> Horizon:
    t, n, nb = profiles.steps, network.n_customers, len(network.branches)
    z = np.zeros
    return Horizon(
        network=network,
        profiles=profiles,
        start=profiles.start,
        step_s=profiles.step_s,
        voltage_v=z((t, n)),
        current_a=z((t, n)),
        p_kw=z((t, n)),
        q_kvar=z((t, n)),
        trafo_v=z((t, 3)),
        trafo_i=z((t, 3)),
        trafo_p=z((t, 3)),
        trafo_q=z((t, 3)),
        branch_p=z((t, nb)),
        branch_loss=z((t, nb)),
        line_loss=z(t),
        trafo_loss=z(t),
        on=np.ones((t, n)),
        supplied=np.ones((t, n), dtype=bool),
    )


def _resolve(base: Horizon, on: FArray, supplied: NDArray[np.bool_], steps: NDArray[np.int64]) -> Horizon:
    pr = base.profiles
    p = pr.p_kw[steps] * on[steps]
    q = pr.q_kvar[steps] * on[steps]
    flow = power_flow(base.network, p, q, pr.mv_pu[steps])
    arrays = {
        name: getattr(base, name).copy()
        for name in (
            "voltage_v", "current_a", "p_kw", "q_kvar", "trafo_v", "trafo_i", "trafo_p", "trafo_q",
            "branch_p", "branch_loss", "line_loss", "trafo_loss",
        )
    }  # fmt: skip
    arrays["voltage_v"][steps] = np.where(supplied[steps], flow.v, 0.0)
    arrays["current_a"][steps] = flow.i
    arrays["p_kw"][steps] = p
    arrays["q_kvar"][steps] = q
    arrays["trafo_v"][steps] = flow.trafo_v
    arrays["trafo_i"][steps] = flow.trafo_i
    arrays["trafo_p"][steps] = flow.trafo_p
    arrays["trafo_q"][steps] = flow.trafo_q
    arrays["branch_p"][steps] = flow.branch_p
    arrays["line_loss"][steps] = flow.line_loss
    arrays["trafo_loss"][steps] = flow.trafo_loss
    bidx = base.network.branch_index()
    cust_by_branch = np.zeros((p.shape[0], len(base.network.branches)))
    for b in range(len(base.network.branches)):
        cust_by_branch[:, b] = p[:, bidx == b].sum(axis=1)
    arrays["branch_loss"][steps] = flow.branch_p - cust_by_branch
    return replace(base, on=on, supplied=supplied, **arrays)
