"""A tiny fake terminal for the cloud stub tests: publishes batches, answers commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt

from hal.cancellation import keep_cancel
from protocols.cloud import Command, Reply, UpBatch, UpMessage, command_topic, up_topic, verify_command
from protocols.errors import ProtocolError
from tests.brokers import AnyBroker


def reading(device: str, quantity: str, value: float, ts: float, unit: str = "V") -> dict[str, Any]:
    return {"device": device, "quantity": quantity, "value": value, "unit": unit, "ts": ts, "quality": "good"}


def batch(terminal: str, stream: str, *messages: tuple[int, dict[str, Any]]) -> bytes:
    return UpBatch(
        terminal,
        stream,
        tuple(
            UpMessage(f"{terminal}:{stream}:{seq}", seq, 1767225600.0 + seq, body) for seq, body in messages
        ),
    ).encode()


@asynccontextmanager
async def mqtt(broker: AnyBroker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        yield client


async def publish(client: aiomqtt.Client, terminal: str, stream: str, payload: bytes | str) -> None:
    await client.publish(up_topic(terminal, stream), payload, qos=1)


async def answer_commands(
    client: aiomqtt.Client,
    terminal: str,
    key: bytes,
    *,
    seen: list[Command],
    ready: asyncio.Event,
    first_seq: int = 1,
) -> None:
    """Answer every command on the terminal's command topic, like the uplink would (until cancelled)."""
    await client.subscribe(command_topic(terminal), qos=1)  # returns after the SUBACK
    ready.set()
    seq = first_seq
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        try:
            command = Command.decode(message.payload)
        except ProtocolError:
            continue
        seen.append(command)
        if not verify_command(command, key):
            reply = Reply(command.id, False, code="unauthenticated", message="bad auth")
        elif command.name == "echo":
            reply = Reply(command.id, True, result={"echo": command.args})
        else:
            reply = Reply(command.id, False, code="unknown_command", message=f"no command {command.name!r}")
        # keep_cancel: a stop coming with the PUBACK must still end this loop (hal.cancellation)
        body = batch(terminal, "reply", (seq, reply.to_json()))
        await keep_cancel(publish(client, terminal, "reply", body))
        seq += 1


__all__ = ["answer_commands", "batch", "mqtt", "publish", "reading"]
