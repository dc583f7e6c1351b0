"""Theft / bypass and faulty registers, told apart and located.

Layer: apps (lineloss). Pure. Combines the meter checks (register against the meter's own
V x I x PF) with the section fits (whose load the loss follows):

* a stopped or slow register is a ``meter_stopped`` / ``meter_slow`` anomaly; when the section
  fit also points at the meter with a share close to what the register misses, the balance
  confirms it (evidence ``balance_share``, higher confidence);
* a customer the section's loss follows, whose register agrees with its own V x I x PF, is a
  ``theft``: the energy flows past the meter (bypass, tapping), so the meter sees neither it nor
  its current. Evidence: the share of the load that bypasses, the unmetered kWh per day, the
  fit's t statistic, partial R² and the margin over the next candidate.

Confidence is a saturating score of the evidence (``squash``): the fit's t statistic and its
margin for a theft; the size of the gap and the energy behind it for a register. Must not
compute fits or checks itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..layout import Layout
from .anomaly import METER_SLOW, METER_STOPPED, THEFT, Anomaly, rounded, squash
from .meters import MeterCheck
from .sections import Candidate, SectionFit


def meter_anomalies(
    date: str, layout: Layout, checks: Sequence[MeterCheck], confirm: dict[int, Candidate]
) -> list[Anomaly]:
    out = []
    for c in checks:
        meter = layout.meters[c.meter]
        evidence: dict[str, object] = {
            "register_kwh": rounded(c.register_kwh, 3),
            "vi_kwh": rounded(c.power_kwh, 3),
            "ratio": rounded(c.ratio),
            "intervals": c.intervals,
            "days": c.days,
        }
        if c.kind == "stopped":
            confidence = 0.8 + 0.19 * squash(c.power_kwh, 2.0)
            kind = METER_STOPPED
            evidence["since"] = c.since
        else:
            evidence["slow_pct"] = rounded(c.slow_pct, 2)
            confidence = 0.6 + 0.3 * squash(c.slow_pct - 3.0, 5.0) * squash(c.power_kwh, 5.0)
            kind = METER_SLOW
        fit = confirm.get(c.meter)
        if fit is not None:
            expected = 1.0 / max(c.ratio, 1e-6) - 1.0
            evidence["balance_share"] = rounded(fit.share)
            evidence["balance_t"] = rounded(fit.t, 1)
            if c.kind == "stopped" or abs(fit.share - expected) <= 0.5 * expected:
                confidence = min(0.99, confidence + 0.09)
        out.append(Anomaly(date, kind, meter.id, meter.branch, min(confidence, 0.99), evidence))
    return out


def theft_anomalies(
    date: str,
    layout: Layout,
    fits: Sequence[SectionFit],
    faulty: set[int],
    ratios: np.ndarray | None = None,
    *,
    slow_below: float = 0.95,
) -> list[Anomaly]:
    """Thefts among the fits' candidates: not a meter with a register fault, nor one whose
    register runs below its own V x I x PF (``ratios`` < ``slow_below``): that is a slow
    register not yet sure enough to report, and a bypass would hide from V x I x PF too."""
    out = []
    for fit in fits:
        for rank, c in enumerate(fit.found):
            if c.meter in faulty or (ratios is not None and ratios[c.meter] < slow_below):
                continue
            meter = layout.meters[c.meter]
            margin = fit.margin if rank == 0 else 1.0
            confidence = squash(c.t, 6.0) * math.sqrt(margin) * min(1.0, c.partial_r2 / 0.3) ** 0.5
            rate = fit.loss_kwh / fit.supply_kwh * 100.0 if fit.supply_kwh > 0 else None
            evidence = {
                "section": fit.section.id,
                "bypass_pct": rounded(c.share / (1.0 + c.share) * 100.0, 2),
                "share": rounded(c.share),
                "unmetered_kwh_per_day": rounded(c.unmetered_kwh / fit.days, 3),
                "t": rounded(c.t, 1),
                "partial_r2": rounded(c.partial_r2, 3),
                "margin": rounded(margin, 3),
                "runner_up": None if fit.runner_up is None or rank else layout.meters[fit.runner_up.meter].id,
                "section_loss_rate_pct": None if rate is None else rounded(rate, 2),
                "days": fit.days,
                "intervals": fit.intervals,
            }
            branch = meter.branch or fit.section.branch
            out.append(Anomaly(date, THEFT, meter.id, branch, round(min(confidence, 0.99), 3), evidence))
    return out


__all__ = ["meter_anomalies", "theft_anomalies"]
