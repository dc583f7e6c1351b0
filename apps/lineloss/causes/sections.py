"""Which customer's load the loss of a section follows: the localisation regression.

Layer: apps (lineloss). Pure numpy. For one section (a supply meter against its children) over
the intervals of the window where every meter of the section was read:

    loss_t = supply_t - Σ children_t
    loss_t ≈ a + g·Σ_c m_c,t·ΔV_c,t/V_c,t
                                        technical loss: in a radial feeder Σ_l R_l·I_l² equals
                                        Σ_c I_c·ΔV_c (each customer's current times the resistive
                                        drop from the supply meter to it), so the customers' own
                                        voltages measure where the I²R happens
             + k·S_t² + Σ_p k_p·S_p,t² + k_n·|N_t|²
                                        what the drops miss: the section's flow, each phase's flow
                                        (customers on it, a feed split by its customers' phases)
                                        and the neutral's (their unbalance, S_a + a·S_b + a²·S_c),
                                        plus a constant (meters' own use)
           + β·m_c,t                    energy customer c draws past its meter (bypass, tapping,
                                        a slow register): its loss follows c's own load

Each customer is tried as the regressor m_c after projecting out the technical terms. A
customer is named only on its own evidence: a bypass is in the loss at every interval, so the
loss's changes (from one 30-min sum to the next, technical terms' changes projected out) follow
the customer's load changes, with a t statistic of at least ``min_change_t`` and ``change_lead``
times what any other customer's changes reach. The level fit alone cannot tell a thief from a
look-alike: an unmetered household or a misfit of the technical loss has the loss's time of day,
and so has every customer with the same habits (the lineloss scenario's day result once named
m-0023 for m-0020's theft on the same branch). Among the customers that stand out so, the one
that explains most of the loss's level is kept if its share β, its t statistic and its partial R²
pass the settings, and the search repeats (greedy forward selection, the one found entering at
every onset) for a second or third. A candidate that the section's own supply (a loss
proportional to all load: a wrong ratio on the supply meter, an unmetered customer) explains as
well is not a customer's; when nobody is named for that reason, or because no customer's own
changes stand out, a significant best level fit with a large share (>= ``section_min_share``) is
kept as ``unseparated``: the section's balance breaks with a load-following loss, its customer
not told apart (unexplained energy, candidate meters named, nobody accused).
Published idea: correlating each user's consumption with the loss series (GRID.md §2; Zheng
et al., Frontiers Energy Res. 2022, doi 10.3389/fenrg.2022.892541). Must not decide the kind
(theft or a slow meter: ``theft`` does, with the meter checks).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..energy import FArray
from ..layout import Layout, Section
from ..window import Day, stacked, stacked_voltage
from .meters import still


@dataclass(frozen=True, slots=True)
class FitSettings:
    # β, unmetered kWh per metered kWh: 0.14 = 12 % of the load bypassing. Clean sections of five
    # networks (bench/lineloss.py, technical loss 2-5 %) stay below it, and reach 0.12-0.13 only
    # now and then: a far customer's own marginal I²R the technical terms miss. A 20 % bypass
    # (β = 0.25) is estimated 0.15-0.35, lower for a small customer on a long line
    min_share: float = 0.14
    min_t: float = 5.0
    min_partial_r2: float = 0.2
    min_kwh_per_day: float = 0.3
    # a significant candidate's share from which, when another customer explains the loss nearly
    # as well, the section is still named (no customer): twice what clean sections reach at most
    section_min_share: float = 0.28
    min_intervals: int = 64  # 16 h: half a day of one household is too little to name it
    onset_step: int = 16  # a theft may begin every 4 h of the window (0: only at its start)
    onset_min_after: int = 48  # ... with at least 12 h of data after it
    max_found: int = 3
    window_days: int = 3
    # the customer's own evidence: its load's interval-to-interval changes must show in the loss's
    # changes with this t statistic (an unmetered household or a late-afternoon PV misfit shares
    # only the time of day with a customer: its changes do not follow that customer's)
    min_change_t: float = 3.0
    # ... and stand out: at least this many times the largest |t| any other customer's changes get
    # (how well the loss's changes follow loads that are not the thief's: a foreign meter's or an
    # unmetered household's changes, a misfit)
    change_lead: float = 1.5
    # ... over sums of this many used intervals: a small customer's 15-min register steps are a
    # digit or two (0.01 kWh), so its 15-min changes are mostly rounding; 30-min sums halve it
    change_block: int = 2


@dataclass(frozen=True, slots=True)
class Candidate:
    meter: int
    share: float  # β
    t: float
    partial_r2: float
    unmetered_kwh: float  # β x the customer's metered energy over the used intervals
    metered_kwh: float
    onset: int = 0  # position (in the used intervals) from which its loss is fitted
    intervals: int = 0  # used intervals from the onset on
    #: its own evidence: the share and t statistic of its load's interval-to-interval changes
    #: in the loss's changes (technical terms' changes projected out); NaN / 0 when not computed
    change_share: float = float("nan")
    change_t: float = 0.0
    change_rival_t: float = 0.0  # the largest |t| another customer's changes reach


@dataclass
class SectionFit:
    section: Section
    intervals: int
    days: int
    loss_kwh: float  # over the used intervals
    supply_kwh: float
    found: list[Candidate] = field(default_factory=list)
    runner_up: Candidate | None = None  # the best other fit of the loss's level at the first step
    #: nobody named, yet the loss follows load past the meters: the best candidate was significant
    #: but the section's customers together explain the loss as well (several bypasses, or a
    #: household missing from the archive): unmetered consumption located to this section only
    unseparated: Candidate | None = None
    unseparated_why: str = ""
    unseparated_rival: Candidate | None = None

    @property
    def margin(self) -> float:
        """0..1: how far the first one found stands out on its own evidence: 1 - the largest |t|
        another customer's load changes reach over its own (1: nobody else's show at all)."""
        if not self.found or self.found[0].change_t <= 0:
            return 1.0
        return max(0.0, 1.0 - self.found[0].change_rival_t / self.found[0].change_t)


def fit_sections(
    layout: Layout,
    window: list[Day],
    settings: FitSettings,
    *,
    supply_scale: dict[int, float] | None = None,
    meter_scale: dict[int, float] | None = None,
    substitute: frozenset[int] = frozenset(),
) -> list[SectionFit]:
    """A fit for every section with customers and enough fully read intervals.

    Known errors are taken out first, so that they do not show as another customer's:
    ``supply_scale`` corrects a supply meter by a factor (a wrong CT ratio found on the 总表),
    ``meter_scale`` a customer's register (a slow one, by 1 / its ratio to its V x I x PF) and
    ``substitute`` meters (a stopped register) enter the technical terms with their own V x I x PF
    at both ends of each interval, free coefficients: instantaneous samples, not an integral."""
    days = window[-settings.window_days :]
    out = []
    for section in layout.sections:
        if section.supply < 0 or not len(section.customers):
            continue
        scale = (supply_scale or {}).get(section.supply, 1.0)
        fit = fit_section(
            layout,
            section,
            days,
            settings,
            scale=scale,
            meter_scale=meter_scale,
            substitute=substitute,
        )
        if fit is not None:
            out.append(fit)
    return out


def fit_section(
    layout: Layout,
    section: Section,
    days: list[Day],
    settings: FitSettings,
    *,
    scale: float = 1.0,
    meter_scale: dict[int, float] | None = None,
    substitute: frozenset[int] = frozenset(),
) -> SectionFit | None:
    supply = stacked(days, [section.supply])[0] * scale
    feeds = stacked(days, section.feeds)
    cust = stacked(days, section.customers)
    for k, i in enumerate(section.customers):
        if meter_scale and int(i) in meter_scale:
            cust[k] *= meter_scale[int(i)]
    swap = [int(i) for i in section.customers if int(i) in substitute]
    ends = _ends(days, swap, layout)  # (2 x len(swap), T): the stopped meters' power samples
    ok = ~np.isnan(supply) & ~np.isnan(feeds).any(axis=0) & ~np.isnan(cust).any(axis=0)
    ok &= ~np.isnan(ends).any(axis=0)
    n = int(ok.sum())
    if n < settings.min_intervals:
        return None
    s, m = supply[ok], cust[:, ok]
    y = s - feeds[:, ok].sum(axis=0) - m.sum(axis=0)
    fit = SectionFit(section, n, len(days), float(y.sum()), float(s.sum()))
    base = [np.ones(n)] + [_unit(x) for x in _technical(layout, section, days, ok, s, m, feeds[:, ok])]
    base += [_unit(x) for x in ends[:, ok]]
    if swap:  # a stopped register is no candidate: its energy is in the regressors above
        m = m.copy()
        m[[k for k, i in enumerate(section.customers) if int(i) in substitute]] = 0.0
    onsets = _onsets(n, settings)
    # candidate (customer c, onset g): c's energy from the g-th onset on -- a theft begins some
    # time; fitted over the whole window its share would be diluted by the time before
    masks = np.arange(n)[None, :] >= onsets[:, None]  # (G, n)
    cand_m = (m[:, None, :] * masks[None, :, :]).reshape(-1, n)  # (C x G, n)
    groups = len(onsets)
    net = cand_m.sum(axis=1)  # each candidate's metered energy from its onset on
    chosen: set[int] = set()
    for step in range(settings.max_found):
        q, _ = np.linalg.qr(np.column_stack(base))
        r = y - q @ (q.T @ y)
        ssr = float(r @ r)
        if ssr <= 0:
            break
        mp = cand_m - (cand_m @ q) @ q.T  # candidates with the current regressors projected out
        num = mp @ r
        den = np.einsum("ij,ij->i", mp, mp)
        usable = den > 1e-9 * np.maximum(np.einsum("ij,ij->i", cand_m, cand_m), 1e-12)
        beta = np.divide(num, den, out=np.zeros_like(num), where=usable)
        gain = np.divide(num * num, den, out=np.zeros_like(num), where=usable)
        # a bypass adds loss: no candidate whose fitted unmetered energy is not positive (a
        # prosumer that exports on net over its range: the loss following it is no theft)
        gain[(beta <= 0) | (net <= 0)] = 0.0
        per = gain.reshape(-1, groups)
        per[list(chosen)] = 0.0
        onset_of = np.argmax(per, axis=1)  # each customer's best onset
        best_gain = per[np.arange(len(per)), onset_of]
        order = [int(c) for c in np.argsort(-best_gain) if best_gain[c] > 0]
        if not order:
            break
        dof = max(n - len(base) - 1, 1)
        every = np.arange(len(per)) * groups + onset_of  # each customer at its best onset
        change = _changes(base, y, cand_m[every], settings.change_block)
        change[list(chosen)] = 0.0  # already in the regressors
        ranking = _Ranking(section, every, onsets[onset_of], beta, gain, den, ssr, dof, cand_m, change)
        # a customer is singled out by its own evidence: the loss's ups and downs follow its load's,
        # clearly more than anyone else's. The best fit of the loss's level alone may be a look-alike:
        # a load with the loss's time of day (an unmetered household, a misfit of the technical loss)
        own = [c for c in order if _stands_out(c, change, settings)]
        best = own[0] if own else order[0]
        k = int(every[best])
        cand = ranking.candidate(best)
        look = next((c for c in order if c != best), None)  # the best other fit of the level
        if step == 0:
            fit.runner_up = None if look is None else ranking.candidate(look)
        # the unmetered energy must be in the loss: a section that sold more than it was supplied
        # (a meter counted there that is not, a foreign one) shows a break of another kind
        significant = _significant(cand, settings, len(days)) and fit.loss_kwh >= 0.5 * cand.unmetered_kwh
        if not (significant and own):
            if significant and not fit.found and cand.share >= settings.section_min_share:
                fit.unseparated = cand
                fit.unseparated_rival = None if look is None else ranking.candidate(look)
                fit.unseparated_why = (
                    "the loss follows the customers' load, but no customer's own load changes stand out "
                    "in it (a household missing from the archive, several bypasses, or a misfit of the "
                    "technical loss)"
                )
            break
        if len(section.customers) > 2 and _generic(m * masks[onset_of[best]], q, r, float(gain[k])):
            if not fit.found:
                fit.unseparated = cand
                fit.unseparated_why = (
                    "the section's customers together explain the loss as well as any one: "
                    "several bypasses, or a household missing from the archive"
                )
            break
        fit.found.append(cand)
        chosen.add(best)
        # its load from every onset: a theft that began between two onsets leaves no part of its
        # own behind for a neighbour to be named for
        base += list(cand_m[best * groups : (best + 1) * groups])
    return fit


def _onsets(n: int, settings: FitSettings) -> NDArray[np.int64]:
    """Where a theft may have begun, as positions in the window's intervals: the start, then every
    ``onset_step`` intervals while ``min_after`` intervals are left after it."""
    if settings.onset_step <= 0:
        return np.zeros(1, dtype=np.int64)
    last = max(n - settings.onset_min_after, 0)
    return np.arange(0, last + 1, settings.onset_step, dtype=np.int64)


def _ends(days: list[Day], meters: list[int], layout: Layout) -> FArray:
    """Per stopped meter: its V x I x PF at the start and at the end of each interval where its
    register stood still (zero elsewhere: there the register counted its energy)."""
    out = []
    for i in meters:
        starts, ends = [], []
        for d in days:
            p = d.readings.curve_power[i] * layout.multipliers[i] * 0.25
            flat = still(layout, d)[i]
            starts.append(np.where(flat, np.nan_to_num(p[:-1]), 0.0))
            ends.append(np.where(flat, np.nan_to_num(p[1:]), 0.0))
        out += [np.concatenate(starts), np.concatenate(ends)]
    total = sum(len(d.power[0]) for d in days)
    return np.array(out).reshape(len(out), total) if out else np.zeros((0, total))


def _technical(
    layout: Layout, section: Section, days: list[Day], ok: FArray, s: FArray, m: FArray, feeds: FArray
) -> list[FArray]:
    """The technical-loss regressors: S², each phase's flow² and the neutral's |N|²."""
    phase = m.T @ layout.phase_share[section.customers]  # (n, 3) customers' flow per phase
    for k, f in enumerate(section.feeds):
        below = layout.below.get(int(f))
        if below is None or not len(below):
            phase += feeds[k][:, None] / 3.0
            continue
        inner = stacked(days, below)[:, ok]
        split = np.nan_to_num(inner).T @ layout.phase_share[below]  # its customers' flow per phase
        total = split.sum(axis=1, keepdims=True)
        share = np.divide(split, total, out=np.full_like(split, 1 / 3), where=np.abs(total) > 1e-9)
        phase += feeds[k][:, None] * share
    a = np.exp(2j * np.pi / 3)
    neutral = np.abs(phase[:, 0] + a * phase[:, 1] + a * a * phase[:, 2])
    out = [s * s, *(phase[:, p] ** 2 for p in range(3)), neutral**2]
    drop = _drops(layout, section, days, ok)
    if drop is not None:
        out.insert(0, (m * drop).sum(axis=0))
    return out


def _drops(layout: Layout, section: Section, days: list[Day], ok: FArray) -> FArray | None:
    """Each customer's relative voltage drop from the supply meter, (customers, intervals); None
    when the voltages are not known. A gap is filled with the interval's median drop."""
    share = layout.phase_share[section.customers]  # (c, 3)
    supply = stacked_voltage(days, [section.supply])[0][ok]  # (n, 3)
    volts = stacked_voltage(days, section.customers)[:, ok]  # (c, n, 3)
    single = share.max(axis=1) > 0.99
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are gaps, filled below
        own = np.where(single[:, None], volts[:, :, 0], np.nanmean(volts, axis=2))
        ref = supply @ share.T  # (n, c): the supply's voltage on each customer's phase
        drop = (ref.T - own) / own
        drop[~np.isfinite(drop)] = np.nan
        if np.isnan(drop).all():
            return None
        fill = np.nanmedian(drop, axis=0)
    drop = np.where(np.isnan(drop), fill[None, :], drop)
    return np.asarray(np.nan_to_num(drop), dtype=np.float64)


def _unit(x: FArray) -> FArray:
    norm = float(np.sqrt(np.mean(x * x)))
    return x / norm if norm > 0 else x


def _candidate(
    section: Section,
    c: int,
    k: int,
    beta: FArray,
    gain: FArray,
    den: FArray,
    ssr: float,
    dof: int,
    m: FArray,
    onset: int,
    n: int,
) -> Candidate:
    """Customer ``c`` of the section as fitted in candidate row ``k`` (its onset ``onset``)."""
    rest = max(ssr - float(gain[k]), 1e-18)
    se = float(np.sqrt(rest / dof / den[k])) if den[k] > 0 else float("inf")
    metered = float(np.abs(m[k]).sum())  # a prosumer's net can be export: the size counts
    return Candidate(
        meter=int(section.customers[c]),
        share=float(beta[k]),
        t=float(beta[k]) / se if se > 0 else 0.0,
        partial_r2=float(gain[k]) / ssr,
        unmetered_kwh=float(beta[k]) * metered,
        metered_kwh=metered,
        onset=int(onset),
        intervals=n - int(onset),
    )


@dataclass(frozen=True)
class _Ranking:
    """One step's fits of every customer at its best onset (``rows`` of ``m``), levels and changes."""

    section: Section
    rows: NDArray[np.int64]
    onsets: NDArray[np.int64]
    beta: FArray
    gain: FArray
    den: FArray
    ssr: float
    dof: int
    m: FArray
    change: FArray  # (customers, 2): ``_changes`` of each

    def candidate(self, c: int) -> Candidate:
        """Customer ``c`` (its position in the section), with its own evidence and the best of the
        others' (the largest |t| another customer's changes reach)."""
        row = int(self.rows[c])
        n = self.m.shape[1]
        found = _candidate(
            self.section,
            c,
            row,
            self.beta,
            self.gain,
            self.den,
            self.ssr,
            self.dof,
            self.m,
            int(self.onsets[c]),
            n,
        )
        others = np.delete(np.abs(self.change[:, 1]), c)
        return dataclasses.replace(
            found,
            change_share=float(self.change[c, 0]),
            change_t=float(self.change[c, 1]),
            change_rival_t=float(others.max()) if len(others) else 0.0,
        )


def _changes(base: list[FArray], y: FArray, x: FArray, block: int = 1) -> FArray:
    """(rows of ``x``, 2): the share and t statistic of each row's changes in the changes of ``y``,
    from one sum of ``block`` used intervals to the next, with the changes of the ``base``
    regressors projected out. A customer's bypassed load is in the loss at every interval, so the
    loss moves when its load moves; a load that only shares the time of day with it (another
    household, a PV misfit) does not. The model holds at every used interval, so sums of adjacent
    ones (across a gap too) hold it as well."""
    size = (len(y) // block) * block

    def sums(a: FArray) -> FArray:
        return np.asarray(
            a[..., :size].reshape(*a.shape[:-1], size // block, block).sum(axis=-1), dtype=np.float64
        )

    d = np.diff(sums(np.array(base)), axis=1).T
    d = d[:, np.linalg.norm(d, axis=0) > 1e-12]  # the constant does not change
    dy = np.diff(sums(y))
    q = np.linalg.qr(d)[0] if d.shape[1] else np.zeros((len(dy), 0))
    ry = dy - q @ (q.T @ dy)
    dx = np.diff(sums(x), axis=1)
    rx = dx - (dx @ q) @ q.T
    num = rx @ ry
    den = np.einsum("ij,ij->i", rx, rx)
    usable = den > 1e-12
    share = np.divide(num, den, out=np.zeros_like(num), where=usable)
    rest = np.maximum(float(ry @ ry) - share * num, 1e-18)
    dof = max(len(dy) - q.shape[1] - 1, 1)
    se = np.sqrt(np.divide(rest / dof, den, out=np.full_like(num, np.inf), where=usable))
    return np.column_stack([share, np.divide(share, se, out=np.zeros_like(num), where=usable)])


def _stands_out(c: int, change: FArray, settings: FitSettings) -> bool:
    """Customer ``c``'s load changes show in the loss's (``change``: share and t of every customer)
    clearly, and clearly more than any other customer's do."""
    share, t = change[c]
    others = np.delete(np.abs(change[:, 1]), c)
    lead = settings.change_lead * float(others.max()) if len(others) else 0.0
    return bool(share > 0 and t >= max(settings.min_change_t, lead))


def _significant(c: Candidate, settings: FitSettings, days: int) -> bool:
    return (
        c.share >= settings.min_share
        and c.t >= settings.min_t
        and c.partial_r2 >= settings.min_partial_r2
        and c.unmetered_kwh >= settings.min_kwh_per_day * max(c.intervals, 1) / 96.0
    )


def _generic(m: FArray, q: FArray, r: FArray, best_gain: float) -> bool:
    """True when the section's customers together (a typical household's daily shape) explain
    the remaining loss at least as well as the best single customer does: an unmetered load
    (a customer missing from the archive) that only shares the time of day with that customer.
    A customer's own bypassed load follows its own ups and downs, which the sum averages away."""
    g = m.sum(axis=0)
    gp = g - q @ (q.T @ g)
    den = float(gp @ gp)
    return den > 0 and float(gp @ r) > 0 and float(gp @ r) ** 2 / den >= best_gain


__all__ = ["Candidate", "FitSettings", "SectionFit", "fit_section", "fit_sections"]
