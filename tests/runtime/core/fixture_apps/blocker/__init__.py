"""Blocks the event loop (a CPU-bound mistake) until the test releases it."""

import threading
from typing import Any

release = threading.Event()  # set by the test once the watchdog has reported the stall


def _spin(deadline_checks: int) -> None:
    n = 0
    while not release.is_set() and n < deadline_checks:
        n += 1


async def run(ctx: Any, config: dict[str, Any]) -> None:
    await ctx.ready()
    await ctx.clock.sleep(0.05)
    _spin(10**9)
    await ctx.wait_stop()
