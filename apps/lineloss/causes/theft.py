"""Theft / bypass and faulty registers, told apart and located.

Layer: apps (lineloss). Pure. Combines the meter checks (register against the meter's own
V x I x PF) with the section fits (whose load the loss follows):

* a stopped or slow register is a ``meter_stopped`` / ``meter_slow`` anomaly; when the section
  fit also points at the meter with a share close to what the register misses, the balance
  confirms it (evidence ``balance_share``, higher confidence);
* a customer the section's loss follows, whose register agrees with its own V x I x PF, is a
  ``theft``: the energy flows past the meter (bypass, tapping), so the meter sees neither it nor
  its current. Evidence: the share of the load that bypasses, the unmetered kWh per day, the
  fit's t statistic, partial R², its own evidence (the loss's interval-to-interval changes follow
  its load's: ``change_share``, ``change_t``) and the margin over the next customer with such evidence;
* a section whose loss follows load past the meters while no single customer is told apart (its
  customers together explain it as well: several bypasses, or a household missing from the
  archive, or no customer whose own load changes show in the loss) is a ``theft`` located to the
  section only: target the branch or box, evidence "unexplained energy" with the candidate meters,
  and a lower confidence. Staff can start on that branch the same day; nobody is accused.

Confidence is a saturating score of the evidence (``squash``): the fit's t statistic, its own
evidence and its margin for a theft; the size of the gap and the energy behind it for a register. Must not
compute fits or checks itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..layout import Layout
from .anomaly import METER_SLOW, METER_STOPPED, THEFT, Anomaly, rounded, squash
from .archive import MissingMeter
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
    unlisted: Sequence[MissingMeter] = (),
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
            confidence *= math.sqrt(squash(c.change_t, 3.0))  # its own evidence: 0.71 at t 3, 0.87 at 6
            rate = fit.loss_kwh / fit.supply_kwh * 100.0 if fit.supply_kwh > 0 else None
            evidence = {
                "section": fit.section.id,
                "bypass_pct": rounded(c.share / (1.0 + c.share) * 100.0, 2),
                "share": rounded(c.share),
                "unmetered_kwh_per_day": rounded(c.unmetered_kwh / fit.days, 3),
                "t": rounded(c.t, 1),
                "partial_r2": rounded(c.partial_r2, 3),
                "change_share": _finite(c.change_share),
                "change_t": rounded(c.change_t, 1),
                "margin": rounded(margin, 3),
                "change_rival_t": rounded(c.change_rival_t, 1),
                "runner_up": None if fit.runner_up is None or rank else layout.meters[fit.runner_up.meter].id,
                "runner_up_change_t": None
                if fit.runner_up is None or rank
                else rounded(fit.runner_up.change_t, 1),
                "section_loss_rate_pct": None if rate is None else rounded(rate, 2),
                "days": fit.days,
                "intervals": fit.intervals,
            }
            branch = meter.branch or fit.section.branch
            out.append(Anomaly(date, THEFT, meter.id, branch, round(min(confidence, 0.99), 3), evidence))
        if not fit.found and fit.unseparated is not None:
            suspects = [c for c in (fit.unseparated, fit.unseparated_rival) if c is not None]
            low = [
                c
                for c in suspects
                if c.meter in faulty or (ratios is not None and ratios[c.meter] < slow_below)
            ]
            if low:
                continue  # a register that runs below its own V x I x PF explains it: not theft
            out.append(_section_theft(date, layout, fit, fit.unseparated, unlisted))
    return out


def _section_theft(
    date: str, layout: Layout, fit: SectionFit, best: Candidate, unlisted: Sequence[MissingMeter] = ()
) -> Anomaly:
    """Unmetered, load-following consumption located to a section (branch or box), no customer yet.
    ``unlisted``: meters missing from the archive that the carrier heard (wherever the topology app
    placed them: its placement may be early and wrong): each may draw this energy."""
    section = fit.section
    rate = fit.loss_kwh / fit.supply_kwh * 100.0 if fit.supply_kwh > 0 else None
    candidates = [c for c in (best, fit.unseparated_rival) if c is not None]
    evidence = {
        "located": section.level,
        "section": section.id,
        "finding": (
            f"unexplained energy on {section.level} {section.id}, following the customers' load; "
            f"candidate meters {', '.join(layout.meters[c.meter].id for c in candidates)} "
            "(none singled out: inspect the section)"
            + "".join(
                f"; meter {m.address}, missing from the archive, is heard on the carrier"
                f" (placed on {m.branch or 'an unknown branch'}): it may draw this energy"
                for m in unlisted
            )
        ),
        "unlisted_heard": [{"address": m.address, "placed_on": m.branch} for m in unlisted],
        "candidates": [layout.meters[c.meter].id for c in candidates],
        "unmetered_kwh_per_day": rounded(best.unmetered_kwh / fit.days, 3),
        "best_candidate": layout.meters[best.meter].id,
        "best_share": rounded(best.share),
        "t": rounded(best.t, 1),
        "partial_r2": rounded(best.partial_r2, 3),
        "best_change_t": rounded(best.change_t, 1),
        "section_loss_rate_pct": None if rate is None else rounded(rate, 2),
        "runner_up": None if fit.unseparated_rival is None else layout.meters[fit.unseparated_rival.meter].id,
        "why_no_customer": fit.unseparated_why,
        "days": fit.days,
        "intervals": fit.intervals,
    }
    confidence = 0.5 * squash(best.t, 6.0) * min(1.0, best.partial_r2 / 0.3) ** 0.5
    return Anomaly(date, THEFT, section.id, section.branch, round(min(confidence, 0.99), 3), evidence)


def _finite(x: float) -> float | None:
    return rounded(x) if math.isfinite(x) else None


__all__ = ["meter_anomalies", "theft_anomalies"]
