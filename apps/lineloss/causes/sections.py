"""Which customer's load the loss of a section follows: the localisation regression.

Layer: apps (lineloss). Pure numpy. For one section (a supply meter against its children) over
the intervals of the window where every meter of the section was read:

    loss_t = supply_t - Σ children_t
    loss_t ≈ a + k·supply_t²            technical loss (I²R) plus a constant (meter self use)
           + β·m_c,t                    energy customer c draws past its meter (bypass, tapping,
                                        a slow register): its loss follows c's own load

Each customer is tried as the regressor m_c after projecting out the technical terms; the one
that explains most of the remaining variance is kept if its share β, its t statistic and its
partial R² pass the settings, and the search repeats (greedy forward selection) for a second
or third. A candidate that the section's own supply (a loss proportional to all load: a wrong
ratio on the supply meter, an unmetered customer) explains as well is not a customer's.
Published idea: correlating each user's consumption with the loss series (GRID.md §2; Zheng
et al., Frontiers Energy Res. 2022, doi 10.3389/fenrg.2022.892541). Must not decide the kind
(theft or a slow meter: ``theft`` does, with the meter checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..energy import FArray
from ..layout import Layout, Section
from ..window import Day, stacked


@dataclass(frozen=True, slots=True)
class FitSettings:
    min_share: float = 0.15  # β: unmetered kWh per metered kWh (0.15 = 13 % of the load bypassing)
    min_t: float = 6.0
    min_partial_r2: float = 0.2
    min_kwh_per_day: float = 0.3
    min_intervals: int = 48
    max_found: int = 3
    window_days: int = 3


@dataclass(frozen=True, slots=True)
class Candidate:
    meter: int
    share: float  # β
    t: float
    partial_r2: float
    unmetered_kwh: float  # β x the customer's metered energy over the used intervals
    metered_kwh: float


@dataclass
class SectionFit:
    section: Section
    intervals: int
    days: int
    loss_kwh: float  # over the used intervals
    supply_kwh: float
    found: list[Candidate] = field(default_factory=list)
    runner_up: Candidate | None = None  # best alternative to the first one found

    @property
    def margin(self) -> float:
        """0..1: how much better the first candidate is than the next best (1 = no rival)."""
        if not self.found or self.runner_up is None or self.found[0].partial_r2 <= 0:
            return 1.0
        return max(0.0, 1.0 - self.runner_up.partial_r2 / self.found[0].partial_r2)


def fit_sections(
    layout: Layout,
    window: list[Day],
    settings: FitSettings,
    *,
    supply_scale: dict[int, float] | None = None,
    substitute: frozenset[int] = frozenset(),
) -> list[SectionFit]:
    """A fit for every section with customers and enough fully read intervals.

    Known errors are taken out first, so that they do not show as another customer's:
    ``supply_scale`` corrects a supply meter by a factor (a wrong CT ratio found on the 总表),
    ``substitute`` meters (a stopped or slow register) count with their own V x I x PF energy."""
    days = window[-settings.window_days :]
    out = []
    for section in layout.sections:
        if section.supply < 0 or not len(section.customers):
            continue
        scale = (supply_scale or {}).get(section.supply, 1.0)
        fit = fit_section(section, days, settings, scale=scale, substitute=substitute)
        if fit is not None:
            out.append(fit)
    return out


def fit_section(
    section: Section,
    days: list[Day],
    settings: FitSettings,
    *,
    scale: float = 1.0,
    substitute: frozenset[int] = frozenset(),
) -> SectionFit | None:
    supply = stacked(days, [section.supply])[0] * scale
    feeds = stacked(days, section.feeds)
    cust = stacked(days, section.customers)
    swap = [k for k, i in enumerate(section.customers) if int(i) in substitute]
    if swap:
        cust[swap] = stacked(days, section.customers[swap], "power")
    ok = ~np.isnan(supply) & ~np.isnan(feeds).any(axis=0) & ~np.isnan(cust).any(axis=0)
    n = int(ok.sum())
    if n < settings.min_intervals:
        return None
    s, m = supply[ok], cust[:, ok]
    y = s - feeds[:, ok].sum(axis=0) - m.sum(axis=0)
    fit = SectionFit(section, n, len(days), float(y.sum()), float(s.sum()))
    scale_s2 = float(np.mean(s * s)) or 1.0
    base = [np.ones(n), s * s / scale_s2]
    chosen: set[int] = set()
    for step in range(settings.max_found):
        q, _ = np.linalg.qr(np.column_stack(base))
        r = y - q @ (q.T @ y)
        ssr = float(r @ r)
        if ssr <= 0:
            break
        mp = m - (m @ q) @ q.T  # customers with the current regressors projected out
        num = mp @ r
        den = np.einsum("ij,ij->i", mp, mp)
        usable = den > 1e-9 * np.maximum(np.einsum("ij,ij->i", m, m), 1e-12)
        beta = np.divide(num, den, out=np.zeros_like(num), where=usable)
        gain = np.divide(num * num, den, out=np.zeros_like(num), where=usable)
        gain[list(chosen)] = 0.0
        gain[beta <= 0] = 0.0
        order = np.argsort(-gain)
        best = int(order[0])
        if gain[best] <= 0:
            break
        dof = max(n - len(base) - 1, 1)
        cand = _candidate(section, best, beta, gain, den, ssr, dof, m)
        if step == 0 and len(order) > 1 and gain[int(order[1])] > 0:
            fit.runner_up = _candidate(section, int(order[1]), beta, gain, den, ssr, dof, m)
        if not _significant(cand, settings, len(days)) or _section_wide(s, q, r, gain[best]):
            break
        fit.found.append(cand)
        chosen.add(best)
        base.append(m[best])
    return fit


def _candidate(
    section: Section, c: int, beta: FArray, gain: FArray, den: FArray, ssr: float, dof: int, m: FArray
) -> Candidate:
    rest = max(ssr - float(gain[c]), 1e-18)
    se = float(np.sqrt(rest / dof / den[c])) if den[c] > 0 else float("inf")
    metered = float(m[c].sum())
    return Candidate(
        meter=int(section.customers[c]),
        share=float(beta[c]),
        t=float(beta[c]) / se if se > 0 else 0.0,
        partial_r2=float(gain[c]) / ssr,
        unmetered_kwh=float(beta[c]) * metered,
        metered_kwh=metered,
    )


def _significant(c: Candidate, settings: FitSettings, days: int) -> bool:
    return (
        c.share >= settings.min_share
        and c.t >= settings.min_t
        and c.partial_r2 >= settings.min_partial_r2
        and c.unmetered_kwh >= settings.min_kwh_per_day * days
    )


def _section_wide(s: FArray, q: FArray, r: FArray, best_gain: float) -> bool:
    """True when the supply itself (a loss proportional to all the section's load) explains the
    remaining loss at least as well as the best customer does."""
    sp = s - q @ (q.T @ s)
    den = float(sp @ sp)
    return den > 0 and float(sp @ r) > 0 and float(sp @ r) ** 2 / den >= best_gain


__all__ = ["Candidate", "FitSettings", "SectionFit", "fit_section", "fit_sections"]
