"""A well-behaved app: answers every ping on the bus."""

from typing import Any


async def run(ctx: Any, config: dict[str, Any]) -> None:
    async with ctx.bus.subscribe("good/ping") as pings:
        await ctx.ready()
        async for msg in pings:
            ctx.bus.publish("good/pong", {"greeting": config["greeting"], "n": msg.payload})
