"""Ignores the stop message and SIGTERM, and blocks: only SIGKILL ends it."""

import signal
import time
from typing import Any


async def run(ctx: Any, config: dict[str, Any]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    await ctx.ready()
    await ctx.clock.sleep(0.05)
    while True:
        time.sleep(0.05)  # noqa: ASYNC251 (deliberately deaf and blocking)
