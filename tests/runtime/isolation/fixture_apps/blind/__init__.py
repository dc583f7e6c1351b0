"""Uses an RS-485 port without declaring it: through its context, then past it with a raw request."""

import base64
from typing import Any

from protocols import dlt645
from runtime.errors import CapabilityError, TerminalError


async def run(ctx: Any, config: dict[str, Any]) -> None:
    answers: dict[str, Any] = {}
    try:
        ctx.hal.rs485("rs485-1")
        answers["context"] = {"ok": True}
    except CapabilityError as err:
        answers["context"] = {"ok": False, "type": type(err).__name__, "reason": err.reason}
    frame = base64.b64encode(dlt645.encode(dlt645.read_request("000000000001", 0x00010000))).decode()
    body = {"port": "rs485-1", "protocol": "dlt645", "request": frame, "device": "000000000001"}
    try:
        await ctx._channel.request("hal.rs485.transact", body, timeout=5)
        answers["raw"] = {"ok": True}
    except TerminalError as err:
        answers["raw"] = {"ok": False, "type": type(err).__name__, "message": str(err)}
    ctx.bus.publish("blind/answers", answers, retain=True)
    await ctx.ready()
    await ctx.wait_stop()
