"""Numeric kernels shared by the topology methods: simplex projection, a projected-gradient
solver for assignment relaxations, robust scale, correlation in chunks.

Layer: apps (topology), pure numpy. Must not know meters, archives, the store or the event
loop; every function takes and returns arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

FArray = NDArray[np.float64]
IArray = NDArray[np.int64]
BArray = NDArray[np.bool_]

#: rows per block when a (n x n) product would be too large to hold at once
CHUNK = 512


def simplex_project(v: FArray) -> FArray:
    """Euclidean projection of every row of ``v`` onto the probability simplex."""
    n, k = v.shape
    u = -np.sort(-v, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    ind = np.arange(1, k + 1, dtype=np.float64)
    rho = (u - css / ind > 0).sum(axis=1)
    theta = css[np.arange(n), rho - 1] / rho
    return np.asarray(np.maximum(v - theta[:, None], 0.0), dtype=np.float64)


def fista_simplex(
    value_grad: Callable[[FArray], tuple[float, FArray]], value: Callable[[FArray], float], w0: FArray,
    *, curvature: FArray, iterations: int = 1500, tolerance: float = 1e-9,
) -> FArray:  # fmt: skip
    """Minimise a smooth convex function over row-stochastic matrices: accelerated projected
    gradient in a diagonal metric with backtracking.

    ``value_grad(W)`` returns the function's value and gradient, ``value(W)`` the value alone
    (cheaper: backtracking needs no gradient). ``curvature`` (one value per
    row, e.g. the row's own block of the Hessian) shapes the metric: row i steps by
    ``1 / (c * curvature_i)``, so small rows move as fast as big ones; the per-row simplex
    projection stays exact because the metric is a scalar per row. The global factor ``c``
    is found by backtracking (doubled until the quadratic upper bound holds, relaxed again
    after successful steps), with the O'Donoghue-Candès restart when momentum points uphill.
    Stops when the relative decrease of the value falls under ``tolerance``.
    """
    h = np.maximum(np.asarray(curvature, dtype=np.float64), 1e-12)[:, None]
    w = simplex_project(w0)
    z, t, c = w.copy(), 1.0, 1.0
    f_w = value(w)
    for _ in range(iterations):
        f_z, g = value_grad(z)
        while True:
            nxt = simplex_project(z - g / (c * h))
            delta = nxt - z
            f_next = value(nxt)
            bound = f_z + float((g * delta).sum()) + 0.5 * c * float((h * delta * delta).sum())
            if f_next <= bound + 1e-12 * abs(bound) or c > 1e12:
                break
            c *= 2.0
        change = nxt - w
        if f_next > f_w or float(((z - nxt) * change).sum()) > 0.0:
            t = 1.0  # restart the momentum
        done = abs(f_w - f_next) <= tolerance * max(abs(f_w), 1.0)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = nxt + ((t - 1.0) / t_next) * change
        w, f_w, t = nxt, f_next, t_next
        c = max(c / 1.25, 1e-6)
        if done:
            break
    return w


def robust_std(x: FArray, axis: int | None = None) -> FArray:
    """Standard deviation estimated from the median absolute deviation (outliers do not count)."""
    median = np.nanmedian if np.isnan(x).any() else np.median  # the same, much faster without NaN
    med = median(x, axis=axis, keepdims=True)
    mad = median(np.abs(x - med), axis=axis)
    return np.asarray(1.4826 * mad, dtype=np.float64)


def standardize(x: FArray) -> tuple[FArray, BArray]:
    """Columns scaled to zero mean and unit norm / sqrt(rows); returns (z, usable) where
    columns with no variance or missing values are zero and not usable."""
    mean = x.mean(axis=0)
    z = x - mean
    norm = np.sqrt((z * z).mean(axis=0))
    usable = np.isfinite(norm) & (norm > 1e-9)
    z = np.where(usable, z / np.where(usable, norm, 1.0), 0.0)
    return z, usable


def top_correlations(z: FArray, k: int) -> tuple[IArray, FArray]:
    """For standardized columns ``z`` (T x n): each column's ``k`` most correlated other
    columns (indices, correlations), computed in blocks so memory stays O(n k)."""
    t, n = z.shape
    k = max(0, min(k, n - 1))
    idx = np.zeros((n, k), dtype=np.int64)
    val = np.zeros((n, k), dtype=np.float64)
    if k == 0:
        return idx, val
    for a in range(0, n, CHUNK):
        block = (z[:, a : a + CHUNK].T @ z) / t  # (b, n)
        rows = np.arange(block.shape[0])
        block[rows, a + rows] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-vals, axis=1)
        idx[a : a + CHUNK] = np.take_along_axis(part, order, axis=1)
        val[a : a + CHUNK] = np.take_along_axis(vals, order, axis=1)
    return idx, val


def softmax_confidence(scores: FArray) -> FArray:
    """Row-wise softmax of log-likelihood scores (n x k) -> probabilities."""
    s = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(s)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


__all__ = [
    "CHUNK",
    "BArray",
    "FArray",
    "IArray",
    "fista_simplex",
    "robust_std",
    "simplex_project",
    "softmax_confidence",
    "standardize",
    "top_correlations",
]
