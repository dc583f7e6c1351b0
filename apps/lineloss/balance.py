"""The statistic (统计线损): supply, sales, PV export, loss and coverage of every scope.

Layer: apps (lineloss). Pure numpy over ``Energies``; works on a day (one column) and on its
15-min intervals (96 columns) alike. Must not classify (``classify``) or look for causes.

GRID.md §2, for a scope with supply meter S and customers c:

    supply (供电量) = S.forward + Σ c.reverse        (PV export read by the customers' reverse
                                                      registers is energy supplied into the scope)
    sales  (售电量) = Σ c.forward + S.reverse         (energy sent back up through S is sold on)
    loss = supply - sales;   rate = loss / supply x 100 %

Unread customers are left out of the sums (the back office sums what it has) and lower the
coverage: the share of the scope's expected customer energy that was read, each customer
weighted by its ``expected`` energy (e.g. its recent median day). Without a supply reading, or
with no supply at all, supply, loss and rate are None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .energy import Energies, FArray
from .layout import Layout


@dataclass(frozen=True, slots=True)
class Balance:
    """One scope over one period (a day, or one 15-min interval)."""

    scope: str
    level: str
    branch: str | None
    supply_kwh: float | None
    sales_kwh: float
    pv_kwh: float
    loss_kwh: float | None
    loss_rate: float | None  # percent
    coverage: float  # 0..1
    customers: int
    read: int
    unread: tuple[str, ...]


@dataclass(frozen=True)
class Balances:
    """Every scope over T periods: arrays of shape (scopes, T)."""

    supply: FArray  # NaN where the supply meter was not read
    sales: FArray
    pv: FArray
    loss: FArray
    rate: FArray  # percent, NaN where supply is missing or not positive
    coverage: FArray
    read: NDArray[np.int64]


def balances(layout: Layout, energies: Energies, expected: FArray | None = None) -> Balances:
    """Every scope of ``layout`` over the periods of ``energies`` ((n,) or (n, T))."""
    fwd = energies.forward.reshape(layout.n, -1)
    rev = energies.reverse.reshape(layout.n, -1)
    read = ~np.isnan(fwd)
    weights = np.ones(layout.n) if expected is None else np.where(expected > 0, expected, 0.0)
    scopes = layout.scopes
    member = np.zeros((len(scopes), layout.n))
    for k, s in enumerate(scopes):
        member[k, s.customers] = 1.0
    f0, r0 = np.nan_to_num(fwd), np.nan_to_num(rev)
    cust_fwd = member @ f0
    cust_rev = member @ r0
    read_n = (member @ read.astype(np.float64)).astype(np.int64)
    wm = member * weights[None, :]
    total_w = wm.sum(axis=1, keepdims=True)
    coverage = np.divide(wm @ read, total_w, out=np.ones_like(cust_fwd), where=total_w > 0)
    supply_idx = np.array([s.supply for s in scopes], dtype=np.int64)
    has = supply_idx >= 0
    sup_f = np.full_like(cust_fwd, np.nan)
    sup_r = np.full_like(cust_fwd, np.nan)
    sup_f[has] = fwd[supply_idx[has]]
    sup_r[has] = rev[supply_idx[has]]
    supply = sup_f + cust_rev
    sales = cust_fwd + np.nan_to_num(sup_r)
    loss = supply - sales
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(supply > 0, loss / supply * 100.0, np.nan)
    return Balances(supply, sales, cust_rev, loss, rate, coverage, read_n)


def day_balances(layout: Layout, energies: Energies, expected: FArray | None = None) -> list[Balance]:
    """One ``Balance`` per scope for a single period (energies of shape (n,))."""
    b = balances(layout, energies, expected)
    read = energies.read.reshape(layout.n, -1)[:, 0]
    out = []
    for k, s in enumerate(layout.scopes):
        supply = _opt(b.supply[k, 0])
        out.append(
            Balance(
                scope=s.id,
                level=s.level,
                branch=s.branch,
                supply_kwh=supply,
                sales_kwh=float(b.sales[k, 0]),
                pv_kwh=float(b.pv[k, 0]),
                loss_kwh=None if supply is None else float(b.loss[k, 0]),
                loss_rate=_opt(b.rate[k, 0]),
                coverage=float(b.coverage[k, 0]),
                customers=len(s.customers),
                read=int(b.read[k, 0]),
                unread=tuple(layout.ids(i for i in s.customers if not read[i])),
            )
        )
    return out


def _opt(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


__all__ = ["Balance", "Balances", "balances", "day_balances"]
