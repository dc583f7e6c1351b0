"""Reports ready, then blocks its process's event loop forever (no heartbeat any more)."""

import time
from typing import Any


async def run(ctx: Any, config: dict[str, Any]) -> None:
    await ctx.ready()
    await ctx.clock.sleep(0.05)
    while True:
        time.sleep(0.05)  # noqa: ASYNC251 (deliberately blocking: the bug the hang detector catches)
