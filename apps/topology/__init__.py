"""Topology identification app (拓扑识别): which phase, branch and meter box every meter hangs on,
and which meters the archive has wrong about their transformer (户变关系).

Layer: apps. Entry point ``run(ctx, config)``; everything it touches comes through ``ctx``.
The methods are pure modules (``identify`` and what it uses); ``service`` runs them on the
terminal with ``carrier`` (the CCO's view), ``night`` (signature-current injections) and
``proposals`` (station-model corrections). ``cloud`` is the master station's view of the
results (``ttu cloud topology``, the dashboard's tree).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.api import AppContext


async def run(ctx: AppContext, config: dict[str, Any]) -> None:
    # Imported when the app starts: ``ttu cloud topology`` loads ``apps.topology.cloud`` through
    # this package without the app itself (nor numpy).
    from .service import Settings, TopologyService

    service = TopologyService(ctx, Settings.from_config(config))
    await service.start()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.feed(), name="topology-feed")
        await ctx.ready()
