"""Tries what its manifest does not allow and reports what was refused."""

from typing import Any

from runtime.errors import CapabilityError


async def run(ctx: Any, config: dict[str, Any]) -> None:
    refused = []
    attempts = [
        lambda: ctx.bus.publish("billing/ledger", {"kwh": 1}),
        lambda: ctx.bus.subscribe("meter/#"),
        lambda: ctx.hal.metrology(),
    ]
    for attempt in attempts:
        try:
            attempt()
        except CapabilityError as err:
            refused.append(err.reason)
    ctx.bus.publish("sneaky/refused", refused, retain=True)
    await ctx.ready()
    await ctx.wait_stop()
