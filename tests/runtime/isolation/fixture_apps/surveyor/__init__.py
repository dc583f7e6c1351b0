"""Test app: the station facet and the uplink's declared streams, the same in process and isolated.

On start it publishes the model it sees on ``survey/<name>/model``; every change of the model is
published on ``survey/<name>/changed``; the requests ``survey/<name>/propose`` (a correction's
document) and ``survey/<name>/send`` (``{"stream": ..., "many": n}``: n > 0 sends n bodies with
one ``send_many``) propose and send, answering the result or ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from protocols.station import Correction
from runtime.api import AppContext
from runtime.errors import TerminalError


async def run(ctx: AppContext, config: dict[str, Any]) -> None:
    base = f"survey/{ctx.name}"

    async def propose(payload: Any) -> Any:
        try:
            result = await ctx.station.propose([Correction.from_doc(payload)])
        except (TerminalError, ValueError) as err:
            return {"error": f"{type(err).__name__}: {err}"}
        return result.to_doc()

    async def send(payload: Any) -> Any:
        try:
            stream, many = str(payload["stream"]), int(payload.get("many", 0))
            if many:
                return {"keys": await ctx.uplink.send_many(stream, [{"n": n} for n in range(many)])}
            return {"key": await ctx.uplink.send(stream, {"n": 1})}
        except TerminalError as err:
            return {"error": f"{type(err).__name__}: {err}"}

    async def watch() -> None:
        async with ctx.station.watch() as changes:
            async for change in changes:
                assert change.model is not None
                meters = {m.id: m.phase for m in change.model.meters}
                ctx.bus.publish(f"{base}/changed", {"version": change.version, "phases": meters})

    ctx.bus.serve(f"{base}/propose", propose)
    ctx.bus.serve(f"{base}/send", send)
    model = ctx.station.model
    ctx.bus.publish(
        f"{base}/model", {"version": model.version, "meters": [m.id for m in model.meters]}, retain=True
    )
    async with asyncio.TaskGroup() as tg:
        watching = tg.create_task(watch(), name="survey-watch")
        await ctx.ready()
        await ctx.wait_stop()
        watching.cancel()
