"""Billing app (本地费控): tariff contracts signed by the utility, computed at the edge, prepaid fee
control on the meters' relays, and a hash-chained ledger three parties reconcile against.

Layer: apps. Entry point ``run(ctx, config)``. The pieces: ``tariff`` (the engine), ``energy``
(intervals from registers), ``book`` (the ledger's fold), ``charging``, ``feecontrol``,
``relays``, ``contracts``, ``reconcile``, ``engine`` (all of it behind narrow interfaces),
``service`` (the wiring to the terminal), ``uplink`` (the ledger to the master station).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.api import AppContext


async def run(ctx: AppContext, config: dict[str, Any]) -> None:
    # Imported when the app starts: ``ttu cloud billing`` and the dashboard load
    # ``apps.billing.cloud``/``dashboard`` through this package without the app itself.
    from .service import run_billing

    await run_billing(ctx, config)
