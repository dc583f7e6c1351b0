"""Per-meter evidence that is not a balance: archive priors weighted by provenance, the carrier
module's phase report, signature-current detections.

Layer: apps (topology), pure numpy. Must not read stores or the bus. Every function returns
log-likelihoods per label (n, K), ready to add up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .inputs import Detection, Fact
from .numeric import BArray, FArray

#: how often a fact from each source is wrong; an archive is wrong a few percent of the time
#: (State Grid archive audits find 2-10 %), an app's identification as sure as it said, the
#: master station's confirmation almost never
ERROR_RATE = {"archive": 0.1, "confirmed": 0.005}
#: the carrier module's zero-crossing phase is right but for wiring oddities (N/L swapped, relays)
CCO_ERROR_RATE = 0.03
FLOOR = 1e-6


def fact_error_rate(fact: Fact) -> float | None:
    """Probability that ``fact`` is wrong, or None when there is no fact."""
    if not fact.known:
        return None
    if fact.source == "identified":
        conf = 0.9 if fact.confidence is None else float(fact.confidence)
        return float(np.clip(1.0 - conf, 0.01, 0.5))
    return ERROR_RATE.get(fact.source, 0.1)


def prior_loglik(facts: Sequence[Fact], labels: Sequence[str], *, absent: float = 0.0) -> FArray:
    """(n, K) log-likelihood of each label from each meter's fact: ``log(1 - e)`` for the fact's
    value, ``log(e / (K - 1))`` for any other, zeros where there is no fact. A value not among
    ``labels`` counts as no fact. ``absent`` is added to every label that is not a real one
    (callers use it for "not ours")."""
    k = len(labels)
    pos = {label: j for j, label in enumerate(labels)}
    out = np.zeros((len(facts), k))
    for i, fact in enumerate(facts):
        e = fact_error_rate(fact)
        j = pos.get(fact.value or "")
        if e is None or j is None or k < 2:
            continue
        out[i, :] = np.log(max(e / (k - 1), FLOOR))
        out[i, j] = np.log(1.0 - e)
    if absent:
        out += absent
    return out


def cco_phase_loglik(phases: Sequence[str | None]) -> FArray:
    """(n, 3) log-likelihood of phases A/B/C from the carrier module's report (AFN10 F31)."""
    out = np.zeros((len(phases), 3))
    for i, ph in enumerate(phases):
        if ph in ("A", "B", "C"):
            out[i, :] = np.log(CCO_ERROR_RATE / 2)
            out[i, "ABC".index(ph)] = np.log(1.0 - CCO_ERROR_RATE)
    return out


def signature_loglik(
    meters: Sequence[str],
    detections: Sequence[Detection],
    units: Sequence[str],
    on_path: FArray,
    *,
    miss_rate: float,
    crosstalk_rate: float,
) -> tuple[FArray, FArray]:
    """(n, K) log-likelihood of each label from signature-current detections, and the number of
    injections per meter (n,).

    ``on_path`` (K, U) is 1 where unit ``units[u]`` lies on the path of label k (a branch unit
    on the branch or upstream of it; a box terminal of that box). An injection by meter i is
    heard by a unit on its path with probability ``1 - miss_rate`` and by any other unit
    with ``crosstalk_rate``; units not listening say nothing.
    """
    pos = {m: i for i, m in enumerate(meters)}
    upos = {u: j for j, u in enumerate(units)}
    k = on_path.shape[0]
    out = np.zeros((len(meters), k))
    count = np.zeros(len(meters))
    hit = np.log(max(1.0 - miss_rate, FLOOR))
    miss = np.log(max(miss_rate, FLOOR))
    cross = np.log(max(crosstalk_rate, FLOOR))
    quiet = np.log(max(1.0 - crosstalk_rate, FLOOR))
    # per listening unit u, label k gains ``on_path[k, u] * v_u`` over the constant of a unit off
    # every path (``quiet``, or ``cross`` when it heard): v_u = hit - cross (heard), miss - quiet
    # (silent). Paths are short, so the sum runs over the path entries only: O(path entries) per
    # detection, not O(K x U)
    path_label, path_unit = np.nonzero(on_path > 0)
    listened: dict[tuple[str, ...], tuple[FArray, BArray, float] | None] = {}
    for d in detections:
        i = pos.get(d.source)
        if i is None:
            continue
        if d.listening not in listened:
            on = np.zeros(len(units), dtype=bool)
            on[[upos[u] for u in d.listening if u in upos]] = True
            constant = float(on.sum()) * quiet
            listened[d.listening] = (np.where(on, miss - quiet, 0.0), on, constant) if on.any() else None
        seen = listened[d.listening]
        if seen is None:
            continue
        base, on, constant = seen
        v = base.copy()
        heard = sorted({j for j in (upos[u] for u in d.heard_by if u in upos) if on[j]})
        v[heard] = hit - cross
        constant += len(heard) * (cross - quiet)
        out[i] += constant + np.bincount(path_label, weights=v[path_unit], minlength=k)
        count[i] += 1
    return out, count


__all__ = [
    "CCO_ERROR_RATE",
    "ERROR_RATE",
    "cco_phase_loglik",
    "fact_error_rate",
    "prior_loglik",
    "signature_loglik",
]
