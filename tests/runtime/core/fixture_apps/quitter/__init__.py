"""Does its one job and returns."""

from typing import Any


async def run(ctx: Any, config: dict[str, Any]) -> None:
    await ctx.ready()
