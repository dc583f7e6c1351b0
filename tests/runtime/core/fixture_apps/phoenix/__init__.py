"""Registers one of everything an app can register, then crashes whenever told to.

A restarted instance registers the same names again: that only works when the supervisor
released what the crashed instance held.
"""

from typing import Any

from runtime.scheduler import Interval


async def run(ctx: Any, config: dict[str, Any]) -> None:
    async def ping(args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": args.get("n")}

    async def job(slot: Any) -> None:
        ctx.bus.publish("phoenix/tick", slot.epoch)

    ctx.uplink.register_command("phoenix.ping", ping)
    ctx.bus.serve("phoenix/echo", lambda payload: payload)
    ctx.scheduler.add("tick", Interval(60), job)
    ctx.hal.hplc().events()  # left open on purpose: a crash never closes it
    inbox = ctx.bus.subscribe("phoenix/in")
    await ctx.ready()
    async for msg in inbox:
        if msg.payload == "crash":
            raise RuntimeError("told to crash")
        ctx.bus.publish("phoenix/out", msg.payload)
