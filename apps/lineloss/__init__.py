"""Line-loss app (线损): station, branch and meter-box loss per day and per 15 min, classified,
with the causes of abnormal loss found, located and given evidence and a confidence.

Layer: apps. Entry point ``run(ctx, config)``; everything it touches comes through ``ctx``.
``service`` decides when and publishes; ``engine`` computes a day from pure parts: ``layout``
(scopes and sections of the station model), ``energy`` / ``balance`` (GRID.md §2 statistic),
``classify`` (thresholds), ``causes`` (CT ratio, registers, theft, archive, comms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.api import AppContext


async def run(ctx: AppContext, config: dict[str, Any]) -> None:
    # Imported when the app starts: ``ttu cloud lineloss`` and the dashboard load
    # ``apps.lineloss.cloud`` / ``.dashboard`` through this package without the app (nor numpy).
    from .service import run_lineloss

    await run_lineloss(ctx, config)
