"""Test helpers for the uplink: a cuttable TCP proxy (network outage) and a minimal cloud peer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from protocols.cloud import (
    Ack,
    Command,
    Reply,
    UpBatch,
    ack_topic,
    command_topic,
    sign_command,
    state_topic,
    up_wildcard,
)

KEY = b"test-command-key"
TERMINAL = "T1"
WAIT_S = 20.0


class TcpProxy:
    """Forwards 127.0.0.1:port -> target. ``cut()`` closes the listener and every connection (an outage)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        await self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Cloud:
    """The master station's side of the broker: collects up batches and state, sends commands."""

    client: aiomqtt.Client
    batches: list[UpBatch] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    acking: bool = True  # acknowledge what arrived, as the master station does (False: a silent peer)

    def ack_for(self, batch: UpBatch) -> Ack:
        """The signed ack of everything of ``batch.stream`` received contiguously so far."""
        have = {m.seq for m in self.messages(batch.stream)}
        acked = batch.acked
        while acked + 1 in have:
            acked += 1
        span = (batch.stream, batch.messages[0].seq, batch.messages[-1].seq)
        return Ack({batch.stream: acked}, {batch.stream: max(have)}, batch=span).signed(KEY)

    def messages(self, stream: str) -> list[Any]:
        return [m for b in self.batches if b.stream == stream for m in b.messages]

    def unique(self, stream: str) -> list[Any]:
        seen: set[str] = set()
        out = []
        for m in self.messages(stream):
            if m.key not in seen:
                seen.add(m.key)
                out.append(m)
        return out

    def replies(self) -> dict[str, Reply]:
        return {m.key: Reply.from_json(m.body) for m in self.unique("reply")}

    async def wait(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds; wall-time bound because real sockets are involved."""
        async with asyncio.timeout(WAIT_S), self.changed:
            await self.changed.wait_for(predicate)

    async def publish_raw(self, payload: bytes, terminal: str = TERMINAL) -> None:
        await self.client.publish(command_topic(terminal), payload, qos=1)

    async def command(
        self, cmd_id: str, name: str, args: dict[str, Any], ts: float, key: bytes = KEY
    ) -> None:
        await self.publish_raw(sign_command(Command(cmd_id, name, args, ts), key).encode())

    async def reply_to(self, cmd_id: str, *, count: int = 1) -> list[Reply]:
        def matching() -> list[Reply]:
            return [Reply.from_json(m.body) for m in self.messages("reply") if m.body.get("id") == cmd_id]

        await self.wait(lambda: len(matching()) >= count)
        return matching()


@asynccontextmanager
async def cloud_peer(host: str, port: int, terminal: str = TERMINAL) -> AsyncIterator[Cloud]:
    async with aiomqtt.Client(host, port, identifier=f"cloud-{terminal}") as client:
        cloud = Cloud(client)
        await client.subscribe(up_wildcard(terminal), qos=1)
        await client.subscribe(state_topic(terminal), qos=1)

        async def collect() -> None:
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                async with cloud.changed:
                    if msg.topic.value == state_topic(terminal):
                        cloud.states.append(payload.decode())
                    else:
                        batch = UpBatch.decode(payload)
                        cloud.batches.append(batch)
                        if cloud.acking:
                            await client.publish(ack_topic(terminal), cloud.ack_for(batch).encode(), qos=1)
                    cloud.changed.notify_all()

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(collect(), name="test-cloud-collector")
            try:
                yield cloud
            finally:
                task.cancel()


async def eventually(predicate: Callable[[], Any], clock: Any) -> None:
    """Poll ``predicate`` (sync or async) on the clock until it holds; bounded by WAIT_S of wall time."""
    async with asyncio.timeout(WAIT_S):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await clock.sleep(0.01 * clock.speed)
