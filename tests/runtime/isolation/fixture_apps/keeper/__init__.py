"""Counts pings in its store, answers each with the count and what the store read back."""

from typing import Any

from runtime.model import Reading


async def run(ctx: Any, config: dict[str, Any]) -> None:
    ctx.bus.serve("keeper/ask", lambda payload: {"answer": payload["q"] * 2, "pid_app": ctx.name})
    async with ctx.bus.subscribe("keeper/ping") as pings:
        await ctx.ready()
        async for msg in pings:
            n = (await ctx.store.get("pings", 0)) + 1
            await ctx.store.set("pings", n)
            await ctx.store.write_readings([Reading("m1", "voltage.a", 220.0 + n, "V", 1_767_225_600.0 + n)])
            rows = await ctx.store.query_readings(device="m1", quantity="voltage.a")
            ctx.bus.publish(
                "keeper/pong",
                {
                    "n": n,
                    "stored": await ctx.store.get("pings"),
                    "readings": [r.value for r in rows],
                    "ping": msg.payload,
                },
            )
            if ctx.stop_requested:
                return
