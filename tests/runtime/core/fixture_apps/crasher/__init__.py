"""Starts, reports ready, and crashes ten seconds later."""

from typing import Any


async def run(ctx: Any, config: dict[str, Any]) -> None:
    await ctx.ready()
    await ctx.clock.sleep(10)
    raise RuntimeError("meter table corrupt")
