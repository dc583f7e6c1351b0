"""Outage reporting app (停电上报): which level went dark, when, and when it came back.

Layer: apps. Entry point ``run(ctx, config)``; everything it touches comes through ``ctx``.
``classify.py`` holds the rules (pure), ``collect.py`` turns bus messages and hal reads into
evidence, ``service.py`` runs it and reports on the uplink stream ``outage``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.api import AppContext


async def run(ctx: AppContext, config: dict[str, Any]) -> None:
    # Imported when the app starts: ``ttu cloud outages`` loads ``apps.outage.cloud`` through
    # this package without the app itself.
    from .service import run_outage

    await run_outage(ctx, config)
