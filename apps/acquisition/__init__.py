"""Acquisition app (采集): reads every meter of the archive and publishes normalized readings.

Layer: apps. Entry point ``run(ctx, config)``; everything it touches comes through ``ctx``.
See ``service.py`` for the tasks and their priorities.
"""

from __future__ import annotations

from typing import Any

from runtime.api import AppContext

from .service import run_acquisition


async def run(ctx: AppContext, config: dict[str, Any]) -> None:
    await run_acquisition(ctx, config, ctx.terminal)
