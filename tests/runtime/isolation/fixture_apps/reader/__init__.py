"""Reads meters through ``ctx.hal`` in its own process; also tries hostile raw hal requests.

Topics (all answers are published on ``reader/<what>/reply``):
``reader/read`` {address, timeout} -> DL/T 645 total active energy, or the error it got;
``reader/raw`` -> the bridge's answers to malformed hal requests sent past the context;
``reader/io`` -> a slot read/write and a metrology snapshot; ``reader/clock`` -> ctx.clock.now();
``reader/sleep`` {until} -> published after ``ctx.clock.sleep_until(until)`` returns;
``reader/carrier`` {count} -> "listening" once subscribed to the carrier's events, then
``reader/carrier/events`` with the next ``count`` events (kind, addresses); the stream is closed;
``reader/bench`` {address, rounds} -> seconds per read, timed in the app.
"""

import asyncio
import base64
from typing import Any

from hal.errors import HalError
from hal.meters import Dlt645Master
from hal.meters.transport import Rs485Transport
from protocols import dlt645
from protocols.errors import ProtocolError
from runtime.errors import TerminalError

ENERGY = 0x00010000


def _error(err: BaseException) -> dict[str, Any]:
    return {"ok": False, "type": type(err).__name__, "message": str(err)}


async def _read(ctx: Any, master: Dlt645Master, body: dict[str, Any]) -> dict[str, Any]:
    try:
        result = await master.read(body["address"], ENERGY, timeout=float(body.get("timeout", 1.0)))
    except (HalError, ProtocolError, TerminalError) as err:
        return {**_error(err), "available": master.transport.available(body["address"])}
    return {"ok": True, "kwh": float(result.values[0]), "exchange": list(master.transport.last_exchange)}


async def _raw(ctx: Any, port: str) -> dict[str, Any]:
    chan = ctx._channel  # what a hostile app in its own process can always reach
    good = base64.b64encode(dlt645.encode(dlt645.read_request("000000000001", ENERGY))).decode()
    base = {"port": port, "protocol": "dlt645", "request": good, "device": "x", "timeout": 0.2}
    attempts = {
        "no_port": {**base, "port": "rs485-9"},
        "bad_base64": {**base, "request": "%%%not base64"},
        "not_a_frame": {**base, "request": base64.b64encode(b"\x68hello").decode()},
        "unknown_protocol": {**base, "protocol": "iec104"},
        "huge_timeout": {**base, "timeout": 1e9},
        "huge_silence": {**base, "silence": 5.0},
        "bad_silence": {**base, "silence": "long"},
        "bad_priority": {**base, "priority": "URGENT"},
        "missing_field": {"port": port},
    }
    answers: dict[str, Any] = {}
    for key, body in attempts.items():
        try:
            answers[key] = {"ok": True, "result": await chan.request("hal.rs485.transact", body, timeout=5)}
        except (TerminalError, HalError, ProtocolError) as err:
            answers[key] = _error(err)
    return answers


async def _bench(ctx: Any, master: Dlt645Master, body: dict[str, Any]) -> list[float]:
    """Seconds per transaction, measured inside the app (bench/isolation.py)."""
    out = []
    for _ in range(int(body["rounds"])):
        t0 = ctx.clock.monotonic()
        await master.read(body["address"], ENERGY)
        out.append(ctx.clock.monotonic() - t0)
    return out


async def _io(ctx: Any) -> dict[str, Any]:
    slot = ctx.hal.slot("slot-1")
    await slot.write_output("do1", True)
    snap = await ctx.hal.metrology().snapshot()
    return {
        "kind": slot.kind,
        "inputs": await slot.read_inputs(),
        "voltage_a": snap.voltage.a,
        "energy": snap.energy_import_kwh,
    }


async def _carrier(ctx: Any, count: int) -> None:
    got = []
    async with ctx.hal.hplc().events() as stream:
        ctx.bus.publish("reader/carrier/reply", "listening")
        async for event in stream:
            got.append({"kind": event.kind, "addresses": list(event.addresses)})
            if len(got) == count:
                break
    ctx.bus.publish("reader/carrier/events", got)


async def run(ctx: Any, config: dict[str, Any]) -> None:
    master = Dlt645Master(Rs485Transport(ctx.hal.rs485(config["port"])))
    tasks: set[asyncio.Task[None]] = set()

    async def sleeper(until: float) -> None:
        await ctx.clock.sleep_until(until)
        ctx.bus.publish("reader/woke", {"now": ctx.clock.now()})

    async def serve(requests: Any) -> None:
        async for msg in requests:
            what = msg.topic.split("/")[1]
            body = msg.payload or {}
            if what == "read":
                reply: Any = await _read(ctx, master, body)
            elif what == "raw":
                reply = await _raw(ctx, config["port"])
            elif what == "io":
                reply = await _io(ctx)
            elif what == "clock":
                reply = ctx.clock.now()
            elif what == "bench":
                reply = await _bench(ctx, master, body)
            elif what == "carrier":
                tasks.add(tg.create_task(_carrier(ctx, int(body["count"])), name="carrier"))
                continue  # it replies itself once subscribed
            elif what == "sleep":
                tasks.add(tg.create_task(sleeper(float(body["until"])), name="sleeper"))
                reply = "sleeping"
            else:
                continue
            ctx.bus.publish(f"reader/{what}/reply", reply)

    async with ctx.bus.subscribe("reader/+") as requests, asyncio.TaskGroup() as tg:
        tasks.add(tg.create_task(serve(requests), name="serve"))
        await ctx.ready()
        await ctx.wait_stop()
        for task in tasks:
            task.cancel()
