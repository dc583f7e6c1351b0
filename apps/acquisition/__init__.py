"""Acquisition app (采集): reads every meter of the archive and publishes normalized readings.

Layer: apps. Entry point ``run(ctx, config)``; everything it touches comes through ``ctx``.
See ``service.py`` for the tasks and their priorities; ``cloud`` is the master station's side
(``ttu cloud acquisition stats``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.api import AppContext


async def run(ctx: AppContext, config: dict[str, Any]) -> None:
    # Imported when the app starts: ``ttu cloud acquisition`` loads ``apps.acquisition.cloud``
    # through this package without the app itself.
    from .service import run_acquisition

    await run_acquisition(ctx, config, ctx.terminal)
