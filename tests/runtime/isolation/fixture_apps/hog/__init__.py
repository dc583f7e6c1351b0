"""Reports ready, then allocates 1 MB at a time until its memory limit stops it."""

from typing import Any

hoard: list[bytearray] = []


async def run(ctx: Any, config: dict[str, Any]) -> None:
    await ctx.ready()
    while True:
        hoard.append(bytearray(1024 * 1024))
        ctx.bus.publish("hog/size", len(hoard))
        await ctx.clock.sleep(0.001)
