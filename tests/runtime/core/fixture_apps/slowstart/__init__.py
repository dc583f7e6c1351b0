"""Takes ``start_s`` seconds of its clock to start (opening ports, loading an archive...)."""

from typing import Any


async def run(ctx: Any, config: dict[str, Any]) -> None:
    await ctx.clock.sleep(config["start_s"])
    await ctx.ready()
    await ctx.wait_stop()
