"""Skips the host's local checks and sends raw bridge requests: the bridge must refuse them."""

from typing import Any

from hal.errors import HalError
from runtime.errors import TerminalError


async def run(ctx: Any, config: dict[str, Any]) -> None:
    chan = ctx._channel  # what a hostile app in its own process can always reach
    answers = {}
    attempts = {
        "publish": ("bus.publish", {"topic": "billing/ledger", "payload": {"kwh": 1}, "retain": False}),
        "subscribe": (
            "bus.subscribe",
            {"sid": 999, "pattern": "#", "maxsize": 10, "overflow": "drop_oldest"},
        ),
        "hal": ("hal.open", {"cap": "metrology", "name": None}),
        "hal_declared": ("hal.open", {"cap": "rs485", "name": "rs485-1"}),
        "allowed": ("bus.publish", {"topic": "rogue/hello", "payload": 1, "retain": False}),
    }
    for key, (op, body) in attempts.items():
        try:
            answers[key] = {"ok": True, "result": await chan.request(op, body, timeout=10)}
        except (TerminalError, HalError) as err:
            answers[key] = {"ok": False, "type": type(err).__name__, "message": str(err)}
    ctx.bus.publish("rogue/answers", answers, retain=True)
    await ctx.ready()
    await ctx.wait_stop()
