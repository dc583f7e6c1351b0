"""Comms: a scope that cannot be computed because meters were not read -- not a loss.

Layer: apps (lineloss). Pure. One anomaly per station or branch scope that is incomputable by
coverage or because its supply meter was not read, naming the unread meters (those the topology
app says are another area's are an archive matter, not a comms one). Boxes are left out: their
unread meters already show in their branch. Must not compute balances.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..balance import Balance
from ..classify import INCOMPUTABLE, Verdict
from ..layout import Layout
from .anomaly import COMMS, Anomaly, rounded

MAX_LISTED = 20


def comms_anomalies(
    date: str, layout: Layout, days: Sequence[tuple[Balance, Verdict]], *, not_ours: Iterable[str] = ()
) -> list[Anomaly]:
    skip = set(not_ours)
    out = []
    for b, v in days:
        if v.klass != INCOMPUTABLE or b.level == "box":
            continue
        scope = layout.scope(b.scope)
        supply_id = layout.meters[scope.supply].id if scope.supply >= 0 else None
        unread = [m for m in b.unread if m not in skip]
        supply_missing = b.supply_kwh is None and supply_id is not None
        if not unread and not supply_missing:
            continue
        evidence = {
            "scope": b.scope,
            "coverage": rounded(b.coverage),
            "customers": b.customers,
            "unread_count": len(unread),
            "unread": unread[:MAX_LISTED],
            "supply_meter": supply_id,
            "supply_read": not supply_missing,
            "reason": v.reason,
        }
        target = supply_id if supply_missing and supply_id is not None else b.scope
        out.append(Anomaly(date, COMMS, target, b.branch, 0.99, evidence))
    return out


__all__ = ["MAX_LISTED", "comms_anomalies"]
