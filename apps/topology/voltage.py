"""Voltage evidence: meter voltage curves -> common-mode-free features, and how well a meter
follows each group of its neighbours.

Layer: apps (topology), pure numpy. Must not know archives or the store.

Why features and not raw voltages: the upstream (MV) voltage moves every meter of the
station area together by volts, while what tells a phase apart is the drop its own load
makes along its own conductor, a few tenths of a volt (GRID.md §1.2). So each curve is
high-passed (minus a 2-hour moving mean, which the slow daily swing of every phase shares),
the common mode (the median over all meters at each instant) is removed, and each meter's
series is standardized. Missing points are interpolated before and are few by then
(the acquisition catches up from the meters' own memory).

The evidence for meter ``i`` and group ``g`` (a phase, optionally within one branch) is the
profile log-likelihood of ``x_i = a * c_g + noise`` with ``c_g`` the mean feature of the
group's other members (and any fixed anchors of the group): ``-T/2 * log(1 - r^2)`` for a
positive correlation ``r``, 0 otherwise, tempered because neighbouring points are not
independent.
"""

from __future__ import annotations

import numpy as np

from .numeric import BArray, FArray, IArray, standardize

#: moving-mean window of the high-pass, in points (8 x 15 min = 2 h)
HIGHPASS_POINTS = 8
#: weight of the voltage log-likelihood (consecutive points of a feature are correlated)
TEMPER = 0.5
#: the largest |r| used in the log-likelihood (keeps a near-copy from dominating everything)
R_MAX = 0.98


def fill_gaps(v: FArray) -> tuple[FArray, BArray]:
    """Interpolate missing (NaN, or 0 = no supply) points of every column; returns the filled
    curves and which columns had enough data (at least half the points) to be used."""
    out = np.array(v, dtype=np.float64)
    out[out <= 0] = np.nan
    t = np.arange(out.shape[0], dtype=np.float64)
    usable = np.zeros(out.shape[1], dtype=bool)
    for j in range(out.shape[1]):
        ok = np.isfinite(out[:, j])
        if ok.sum() * 2 >= len(t) and ok.sum() >= 4:
            usable[j] = True
            if not ok.all():
                out[:, j] = np.interp(t, t[ok], out[ok, j])
        else:
            out[:, j] = 0.0
    return out, usable


def features(v: FArray, *, common: FArray | None = None) -> tuple[FArray, BArray]:
    """(T', n) standardized, common-mode-free, high-passed features of voltage curves (T, n).

    ``common`` (T,) is the common mode to remove; by default the median over the columns
    after the high-pass. Returns (features, usable columns).
    """
    z, usable, _ = features_scaled(v, common=common)
    return z, usable


def features_scaled(v: FArray, *, common: FArray | None = None) -> tuple[FArray, BArray, FArray]:
    """``features`` and each column's scale before standardizing (V rms of its own variation)."""
    filled, usable = fill_gaps(v)
    w = HIGHPASS_POINTS
    if filled.shape[0] <= 2 * w + 4:
        w = max(1, filled.shape[0] // 6)
    kernel = np.ones(w) / w
    cums = np.cumsum(np.vstack([np.zeros((1, filled.shape[1])), filled]), axis=0)
    mean = (cums[w:] - cums[:-w]) / w  # (T - w + 1, n): mean of points [k, k + w)
    half = w // 2
    centre = filled[half : half + mean.shape[0]]
    hp = centre - mean
    del kernel
    if common is None:
        cm = np.median(hp[:, usable], axis=1) if usable.any() else np.zeros(hp.shape[0])
    else:
        cm = common[half : half + mean.shape[0]]
    resid = hp - cm[:, None]
    z, ok = standardize(resid)
    scale = np.sqrt(((resid - resid.mean(axis=0)) ** 2).mean(axis=0))
    return z, usable & ok, scale


def group_references(
    z: FArray, groups: IArray, n_groups: int, *, weights: FArray | None = None
) -> tuple[FArray, FArray]:
    """Sum of features per group (T', G) and the members' weight per group (G,)."""
    w = np.ones(z.shape[1]) if weights is None else weights
    onehot = np.zeros((z.shape[1], n_groups))
    ok = groups >= 0
    onehot[np.nonzero(ok)[0], groups[ok]] = w[ok]
    return z @ onehot, onehot.sum(axis=0)


def correlation_loglik(r: FArray | float, t: int) -> FArray:
    """The voltage log-likelihood of a correlation ``r`` (clipped to 0 .. ``R_MAX``) over ``t``
    points, tempered (``TEMPER``: neighbouring points are not independent)."""
    r = np.clip(np.asarray(r, dtype=float), 0.0, R_MAX)
    out: FArray = -0.5 * t * TEMPER * np.log1p(-(r**2))
    return out


def loo_loglik(z: FArray, usable: BArray, groups: IArray, n_groups: int, *, anchors: FArray | None = None,
               anchor_groups: IArray | None = None) -> FArray:  # fmt: skip
    """Leave-one-out voltage log-likelihood (n, G): each usable meter against the mean feature of
    every group's *other* members plus the group's anchors (e.g. the phase voltages of a
    three-phase meter on the same branch). Unusable meters get zeros (no evidence)."""
    t, n = z.shape
    member = np.where(usable, groups, -1)
    sums, counts = group_references(z, member, n_groups)
    if anchors is not None and anchor_groups is not None and anchors.size:
        a_sums, a_counts = group_references(anchors, anchor_groups, n_groups)
        sums, counts = sums + a_sums, counts + a_counts
    out = np.zeros((n, n_groups))
    norms = np.sqrt((sums * sums).mean(axis=0))  # (G,)
    cross = (z.T @ sums) / t  # (n, G): z_i . sum_g
    for i in np.nonzero(usable)[0]:
        g = member[i]
        c = cross[i].copy()
        nrm = norms.copy()
        if g >= 0:
            # remove the meter itself from its own group's sum: ||s - z||^2 = ||s||^2 - 2 z.s + ||z||^2
            c[g] -= 1.0
            nrm[g] = np.sqrt(max(nrm[g] ** 2 - 2.0 * cross[i, g] + 1.0, 0.0))
        valid = nrm > 1e-9
        r = np.zeros(n_groups)
        r[valid] = c[valid] / nrm[valid]
        out[i] = correlation_loglik(r, t)
    return out


__all__ = [
    "HIGHPASS_POINTS",
    "R_MAX",
    "TEMPER",
    "correlation_loglik",
    "features",
    "features_scaled",
    "fill_gaps",
    "group_references",
    "loo_loglik",
]
