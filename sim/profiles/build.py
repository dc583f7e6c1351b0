"""build_profiles: diverse per-customer demand, prosumer PV and MV voltage for one horizon.

Layer: sim (profiles). Turns the UCI household data into many customers; must not solve power
flows or know the event loop.

Diversity: every customer gets a different week of the household (aligned on weekday and local
time of day to the horizon's start), scaled to its own mean demand. The MV voltage is the UCI
voltage of yet another, independently drawn week, normalised to the network's set-point, so the
upstream voltage varies the way a real LV supply does (common mode for all customers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from protocols.errors import ConfigError
from sim.profiles.pv import pv_profiles
from sim.profiles.types import Profiles
from sim.profiles.uci import UciData, load_uci

if TYPE_CHECKING:
    from sim.physics.network import StationNetwork

_WEEK_MIN = 7 * 1440
_DATA_TZ_H = 1.0  # the household's local time is UTC+1


def build_profiles(
    network: StationNetwork,
    *,
    start: float,
    steps: int,
    step_s: float = 900.0,
    seed: int,
    pv_share: float = 0.0,
    mean_kw: tuple[float, float] = (0.3, 0.7),
    power_factor_min: float = 0.9,
    pv_kwp: tuple[float, float] = (3.0, 8.0),
    tz_hours: float = 8.0,
    latitude: float = 30.3,
    longitude: float = 120.2,
    cache_dir: Path | None = None,
    data: UciData | None = None,
) -> Profiles:
    """Profiles for ``network``'s customers over ``steps`` steps of ``step_s`` s from ``start`` (UTC).

    ``pv_share`` of the customers (seeded choice) are prosumers with a PV system of ``pv_kwp``
    kWp -- unless the network gives its own PV systems (``Customer.pv_kwp``, from its ``sgen``),
    which are then the prosumers, with their own ratings. ``tz_hours`` is the station area's UTC
    offset, used to align household routines to local time. Same arguments -> identical arrays.
    """
    if steps <= 0:
        raise ConfigError("profiles.steps", f"must be positive, got {steps}")
    if step_s % 60 != 0:
        raise ConfigError("profiles.step_s", f"must be a whole number of minutes, got {step_s}")
    if not 0.0 <= pv_share <= 1.0:
        raise ConfigError("profiles.pv_share", f"must be within 0..1, got {pv_share}")
    uci = data if data is not None else load_uci(cache_dir=cache_dir)
    rng = np.random.default_rng([seed, 0x7117])
    n = network.n_customers
    per_step = int(step_s // 60)
    span = steps * per_step
    total = uci.p_kw.size
    # minute of the data whose local weekday + time equals the horizon start's station-local time
    local_start = start + tz_hours * 3600.0
    data_local0 = uci.first_epoch + _DATA_TZ_H * 3600.0
    first = round((local_start - data_local0) / 60.0) % _WEEK_MIN
    n_weeks = (total - span - first) // _WEEK_MIN
    if n_weeks < 2:
        raise ConfigError("profiles.steps", f"horizon of {span} min is longer than the data allow")
    weeks = rng.choice(n_weeks, size=n, replace=n > n_weeks)
    offsets = first + weeks * _WEEK_MIN
    idx = offsets[:, None] + np.arange(span)[None, :]  # (n, span)
    p_min = uci.p_kw[idx].astype(np.float64)
    q_min = uci.q_kvar[idx].astype(np.float64)
    p = p_min.reshape(n, steps, per_step).mean(axis=2).T
    q = q_min.reshape(n, steps, per_step).mean(axis=2).T
    household_mean = float(np.mean(uci.p_kw, dtype=np.float64))
    scale = rng.uniform(*mean_kw, size=n) / household_mean
    load = p * scale[None, :]
    # the household's reactive power is small (pf ~0.99); give customers their own power factor
    pf = rng.uniform(power_factor_min, 0.99, size=n)
    q_load = q * scale[None, :] + load * np.tan(np.arccos(pf))[None, :] * 0.5

    given = np.array([c.pv_kwp for c in network.customers], dtype=np.float64)
    prosumer = given > 0.0  # the network's own PV systems, when it has any, instead of pv_share
    if pv_share > 0.0 and not prosumer.any():
        count = round(pv_share * n)
        prosumer[rng.choice(n, size=count, replace=False)] = True
    pv = np.zeros_like(load)
    if prosumer.any():
        mids = start + (np.arange(steps) + 0.5) * step_s
        kwp = given[prosumer] if given.any() else rng.uniform(*pv_kwp, size=int(prosumer.sum()))
        pv[:, prosumer] = pv_profiles(
            mids, kwp, rng=rng, latitude=latitude, longitude=longitude, step_s=step_s
        )

    v_week = int(rng.integers(0, (total - span) // _WEEK_MIN))
    v0 = first + v_week * _WEEK_MIN
    volt = uci.volt[v0 : v0 + span].astype(np.float64).reshape(steps, per_step).mean(axis=1)
    mv = network.source_vm_pu * volt / float(np.mean(uci.volt, dtype=np.float64))
    return Profiles(
        start=float(start),
        step_s=float(step_s),
        p_kw=load - pv,
        q_kvar=q_load,
        mv_pu=mv,
        load_kw=load,
        pv_kw=pv,
        prosumer=prosumer,
    )
