"""Registers one of everything an app can register, then crashes whenever told to.

A restarted instance registers the same names again: that only works when the supervisor
released what the crashed instance held. It also starts a timer task it never awaits (kept in
``TIMERS`` for the test to look at): a crash leaves it running unless the supervisor cancels it.
"""

import asyncio
from typing import Any

from runtime.scheduler import Interval

TIMERS: list[asyncio.Task[None]] = []


async def run(ctx: Any, config: dict[str, Any]) -> None:
    async def beat() -> None:
        while True:
            await ctx.clock.sleep(5)
            ctx.bus.publish("phoenix/beat", ctx.clock.now())

    async def ping(args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": args.get("n")}

    async def job(slot: Any) -> None:
        ctx.bus.publish("phoenix/tick", slot.epoch)

    ctx.uplink.register_command("phoenix.ping", ping)
    ctx.bus.serve("phoenix/echo", lambda payload: payload)
    ctx.scheduler.add("tick", Interval(60), job)
    ctx.hal.hplc().events()  # left open on purpose: a crash never closes it
    TIMERS.append(asyncio.create_task(beat(), name="phoenix:beat"))  # never awaited, never cancelled
    inbox = ctx.bus.subscribe("phoenix/in")
    await ctx.ready()
    async for msg in inbox:
        if msg.payload == "crash":
            raise RuntimeError("told to crash")
        ctx.bus.publish("phoenix/out", msg.payload)
