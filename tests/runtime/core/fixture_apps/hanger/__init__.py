"""Never reports ready."""

from typing import Any


async def run(ctx: Any, config: dict[str, Any]) -> None:
    await ctx.clock.sleep(3600)
