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
  and a lower confidence. Staff can start on that branch the same day; nobody is accused;
* unless a meter the carrier hears but the archive lacks draws it: when the section the topology
  app placed that meter in has no room for the energy (its whole loss is far below it), the
  finding is an ``archive`` one (target the meter's address, status ``missing``), located to the
  section that misses the energy, with the placed section's loss as evidence.

Confidence is a saturating score of the evidence (``squash``): the fit's t statistic, its own
evidence and its margin for a theft; the size of the gap and the energy behind it for a register. Must not
compute fits or checks itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..layout import Layout
from .anomaly import ARCHIVE, METER_SLOW, METER_STOPPED, THEFT, Anomaly, rounded, squash
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
    room: Mapping[str, float] | None = None,
) -> list[Anomaly]:
    """Thefts among the fits' candidates: not a meter with a register fault, nor one whose
    register runs below its own V x I x PF (``ratios`` < ``slow_below``): that is a slow
    register not yet sure enough to report, and a bypass would hide from V x I x PF too.

    A section's unexplained energy that a meter heard on the carrier but missing from the archive
    (``unlisted``) draws is an ``archive`` finding, not a theft, when the balance of the section
    the topology app placed that meter in has no room for it: ``room`` maps a section id to its
    whole loss, kWh a day, over its fitted intervals (technical loss included)."""
    out = []
    drawers = _drawers(fits, unlisted, room or {})
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
            drawer = drawers.get(fit.section.id)
            if drawer is not None:
                out.append(_unlisted_draws(date, layout, fit, fit.unseparated, *drawer))
                continue
            out.append(_section_theft(date, layout, fit, fit.unseparated, unlisted))
    return out


#: a heard unlisted meter's placement is contested when the placed section's whole loss is below
#: this share of the energy the other section misses: it cannot hold a load that size
ROOM_SHARE = 0.5


def _per_day(c: Candidate) -> float:
    """The candidate's unmetered energy, kWh a day of the intervals it was fitted on."""
    return c.unmetered_kwh / max(c.intervals, 1) * 96.0


def _drawers(
    fits: Sequence[SectionFit], unlisted: Sequence[MissingMeter], room: Mapping[str, float]
) -> dict[str, tuple[MissingMeter, str, float]]:
    """Section id -> the heard unlisted meter that draws its unexplained energy (``_unlisted_drawer``);
    a meter draws in one section at most: the sections with the strongest evidence choose first."""
    claimed: set[str] = set()
    out = {}
    open_ = [(f, f.unseparated) for f in fits if not f.found and f.unseparated is not None]
    for fit, best in sorted(open_, key=lambda pair: -pair[1].t):
        drawer = _unlisted_drawer(fit, best, unlisted, room, claimed)
        if drawer is not None:
            claimed.add(drawer[0].address)
            out[fit.section.id] = drawer
    return out


def _unlisted_drawer(
    fit: SectionFit,
    best: Candidate,
    unlisted: Sequence[MissingMeter],
    room: Mapping[str, float],
    claimed: set[str],
) -> tuple[MissingMeter, str, float] | None:
    """The heard unlisted meter that most likely draws ``fit``'s unexplained energy, with the
    section it was placed in and that section's loss a day: one whose placed section (its box,
    else its branch) was balanced and has no room for that much energy. None when no heard meter
    is contested so (its placement unknown, or its section's loss could hold it)."""
    need = _per_day(best)
    found = []
    for m in unlisted:
        if not m.heard or m.address in claimed:
            continue
        placed = next((s for s in (m.box, m.branch) if s is not None and s in room), None)
        if placed is None or placed == fit.section.id:
            continue
        if room[placed] < ROOM_SHARE * need:
            found.append((room[placed], m, placed))
    if not found:
        return None
    loss, m, placed = min(found, key=lambda x: x[0])
    return m, placed, loss


def _unlisted_draws(
    date: str, layout: Layout, fit: SectionFit, best: Candidate, miss: MissingMeter, placed: str, loss: float
) -> Anomaly:
    """The archive finding: meter ``miss`` is missing from the archive (heard on the carrier) and
    draws the energy ``fit``'s section misses, not in section ``placed`` where the topology app put it
    (whose whole loss, ``loss`` kWh a day, has no room for it)."""
    section = fit.section
    need = _per_day(best)
    rate = fit.loss_kwh / fit.supply_kwh * 100.0 if fit.supply_kwh > 0 else None
    evidence = {
        "status": "missing",
        "source": "line loss balance and topology",
        "located": section.level,
        "section": section.id,
        "finding": (
            f"meter {miss.address}, missing from the archive, is heard on the carrier; {section.level} "
            f"{section.id} misses {need:.1f} kWh a day following a household's load, no listed customer's "
            f"own load changes explain it, and {placed}, where the topology app placed the meter, loses "
            f"only {loss:.1f} kWh a day in all: the meter most likely draws it on {section.id}"
        ),
        "placed_on": placed,
        "placed_loss_kwh_per_day": rounded(loss, 3),
        "unmetered_kwh_per_day": rounded(need, 3),
        "t": rounded(best.t, 1),
        "partial_r2": rounded(best.partial_r2, 3),
        "best_change_t": rounded(best.change_t, 1),
        "section_loss_rate_pct": None if rate is None else rounded(rate, 2),
        "intervals": fit.intervals,
    }
    # the carrier heard it (the topology app's confidence it is missing) times how sure the section
    # is: the level fit's evidence, and a placement contested by the balance, not measured directly
    contested = 1.0 - max(loss, 0.0) / need if need > 0 else 0.0
    confidence = miss.confidence * 0.7 * squash(best.t, 4.0) * contested
    confidence = round(min(max(confidence, 0.0), 0.99), 3)
    return Anomaly(date, ARCHIVE, miss.address, section.branch, confidence, evidence)


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
