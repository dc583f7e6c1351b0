"""The durable uplink: outbox -> MQTT (at-least-once, in order per stream) and signed commands down.

Layer: runtime. Speaks MQTT through aiomqtt; knows the ttu topic scheme and payloads from
``protocols.cloud`` and nothing of grid apps. It must not drop an upward message: every
``send`` is durable in the store before it returns, and a row is marked delivered only after
the broker's PUBACK for the batch that carried it.

Delivery: one sender publishes pending outbox rows stream by stream (round-robin, so a long
readings backlog does not starve replies), up to ``batch_max`` rows per ``UpBatch``, QoS 1,
one batch in flight at a time — which is what keeps each stream in order. After a disconnect
or a reboot (a new ``Uplink`` on the same store) it resumes from the first undelivered row;
rows whose PUBACK was lost are sent again, and the cloud de-duplicates on ``key``.

Connection: ``run()`` connects with jittered exponential backoff on the Clock (1 s .. 60 s),
sets a retained "offline" will on ``state_topic``, publishes a retained "online" after
connecting, and subscribes the command topic (and the app-package chunk topic once
``register_chunks`` gave it a handler). Commands are handled one at a time by a
``CommandDispatcher``; each reply goes up through the outbox on stream ``reply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from base.cancellation import keep_cancel
from base.clock import Clock
from protocols.cloud import UpBatch, UpMessage, chunk_topic, command_topic, state_topic, up_topic
from protocols.errors import ProtocolError
from runtime.errors import ConfigError, StoreError
from runtime.store import OutboxEntry, Store

from ._backoff import Backoff
from ._commands import CommandDispatcher, Handler, Validator

_log = logging.getLogger(__name__)

_OFFLINE_PUBLISH_S = 2.0
ChunkHandler = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; ``ConfigError`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ConfigError("uplink.broker_url", f"{url!r}: {err}") from err
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError("uplink.broker_url", f"{url!r}: expected mqtt://host:port or mqtts://host:port")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)


def _check_stream(stream: str) -> None:
    if not stream or any(c in stream for c in "/+#") or not stream.isprintable():
        raise ValueError(f"stream {stream!r} is not a valid topic level")


class Uplink:
    """Store-and-forward MQTT uplink of one terminal. Run ``await uplink.run()`` as a named task."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        terminal_id: str,
        broker_url: str,
        client_id: str,
        command_key: bytes,
        tls: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        batch_max: int = 100,
        keepalive_s: int = 30,
        backoff: Backoff | None = None,
    ) -> None:
        if batch_max < 1:
            raise ConfigError("uplink.batch_max", f"must be at least 1, not {batch_max}")
        try:
            self._state_topic = state_topic(terminal_id)
            self._command_topic = command_topic(terminal_id)
            self._chunk_topic = chunk_topic(terminal_id)
        except ProtocolError as err:
            raise ConfigError("identity.terminal_id", str(err)) from err
        self._address = parse_broker_url(broker_url)
        if self._address.tls and tls is None:
            tls = ssl.create_default_context()
        self._tls = tls
        self._store = store
        self._clock = clock
        self.terminal_id = terminal_id
        self._client_id = client_id
        self._username = username
        self._password = password
        self._batch_max = batch_max
        self._keepalive_s = keepalive_s
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self._wake = asyncio.Event()
        self._connected = False
        self._reconnects = 0
        self._connects = 0
        self._batches = 0
        self._messages = 0
        self._publish_errors = 0
        self._backlog: Counter[str] = Counter()
        self._commands = CommandDispatcher(store=store, clock=clock, key=command_key)
        self._chunk_handler: ChunkHandler | None = None
        self._commands.register("ping", self._ping)
        self._commands.register("uplink.stats", self._stats)

    # ------------------------------------------------------------------ public API

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        """Append ``body`` durably to the outbox of ``stream``; return its idempotency key.

        Bodies: ``readings`` -> ``{"readings": [Reading.to_json(), ...]}``; ``events`` ->
        ``Event.to_json()``; other streams free JSON objects.
        """
        _check_stream(stream)
        entry = await self._store.outbox_append(stream, body, terminal=self.terminal_id)
        self._backlog[stream] += 1
        self._wake.set()
        return entry.key

    def register_command(self, name: str, handler: Handler, *, validate: Validator | None = None) -> None:
        """Route command ``name`` to ``handler(args) -> result``; ``validate(args)`` raises on bad args."""
        self._commands.register(name, handler, validate=validate)

    def unregister_command(self, name: str) -> None:
        """Forget command ``name`` (the app that registered it stopped or crashed)."""
        self._commands.unregister(name)

    def register_chunks(self, handler: ChunkHandler) -> None:
        """Route raw payloads of ``ttu/T/down/chunk`` (app-package chunks) to ``handler``.

        The handler decodes and authenticates them itself and must not raise for bad input.
        """
        if self._chunk_handler is not None:
            raise ValueError("a chunk handler is already registered")
        self._chunk_handler = handler

    async def handle_command(self, payload: bytes) -> str:
        """Process one raw command payload and queue its reply; return the reply's outbox key."""
        reply = await self._commands.dispatch(payload)
        return await self.send("reply", reply.to_json())

    @property
    def connected(self) -> bool:
        return self._connected

    def statistics(self) -> dict[str, Any]:
        """Counters for health checks and the ``uplink.stats`` command (JSON-able)."""
        return {
            "connected": self._connected,
            "connects": self._connects,
            "reconnects": self._reconnects,
            "published_batches": self._batches,
            "published_messages": self._messages,
            "publish_errors": self._publish_errors,
            "backlog": {s: n for s, n in sorted(self._backlog.items()) if n > 0},
            "commands_ok": self._commands.ok,
            "commands_replayed": self._commands.replayed,
            "commands_rejected": dict(sorted(self._commands.rejected.items())),
        }

    # ------------------------------------------------------------------ connection

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self._address.host,
            self._address.port,
            username=self._username,
            password=self._password,
            identifier=self._client_id,
            clean_session=True,
            keepalive=self._keepalive_s,
            tls_context=self._tls,
            will=aiomqtt.Will(self._state_topic, b"offline", qos=1, retain=True),
            logger=_log,
        )

    async def run(self) -> None:
        """Connect, keep connected, send and receive until cancelled."""
        self._backlog = Counter(await self._store.outbox_backlog())
        where = f"{self._address.host}:{self._address.port}"
        while True:
            stopping = False
            try:
                async with self._client() as client:
                    try:
                        await self._session(client)
                    except asyncio.CancelledError:
                        stopping = True
                        raise
            except aiomqtt.MqttError as err:
                if stopping:  # the DISCONNECT failed (aiomqtt's __aexit__ raised): still a stop
                    raise asyncio.CancelledError from err
                _log.warning("uplink to %s: %s", where, err)
            if self._connected:
                self._connected = False
                self._reconnects += 1
            delay = self._backoff.next_delay()
            _log.info("uplink: reconnecting to %s in %.1f s", where, delay)
            await self._clock.sleep(delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._connected = True
        self._connects += 1
        self._backoff.reset()
        _log.info("uplink connected to %s:%s as %s", self._address.host, self._address.port, self._client_id)
        try:
            await keep_cancel(client.publish(self._state_topic, b"online", qos=1, retain=True))
            await keep_cancel(client.subscribe(self._command_topic, qos=1))
            if self._chunk_handler is not None:
                await keep_cancel(client.subscribe(self._chunk_topic, qos=1))
            await _run_both(
                asyncio.create_task(self._sender(client), name=f"uplink-sender-{self.terminal_id}"),
                asyncio.create_task(self._receiver(client), name=f"uplink-commands-{self.terminal_id}"),
            )
        except asyncio.CancelledError:
            # a clean shutdown sends DISCONNECT, so the broker will not publish the will: say it ourselves
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(_OFFLINE_PUBLISH_S):
                    await client.publish(self._state_topic, b"offline", qos=1, retain=True)
            raise

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            backlog = await self._store.outbox_backlog()
            self._backlog = Counter(backlog)
            if not backlog:
                await self._wake.wait()
                continue
            for stream in backlog:
                rows = await self._store.outbox_pending(stream, limit=self._batch_max)
                if rows:
                    await self._publish(client, stream, rows)

    async def _publish(self, client: aiomqtt.Client, stream: str, rows: list[OutboxEntry]) -> None:
        batch = UpBatch(self.terminal_id, stream, tuple(UpMessage(r.key, r.seq, r.ts, r.body) for r in rows))
        try:
            await keep_cancel(client.publish(up_topic(self.terminal_id, stream), batch.encode(), qos=1))
        except aiomqtt.MqttError:
            self._publish_errors += 1
            raise
        # the PUBACK is in: only now are these rows delivered
        try:
            await self._store.outbox_mark_delivered([r.id for r in rows])
        except StoreError as err:
            # the rows stay pending and are sent again (the cloud de-duplicates); not a lost message
            _log.error("uplink: cannot mark %d %s rows delivered: %s", len(rows), stream, err)
            raise
        self._batches += 1
        self._messages += len(rows)
        self._backlog[stream] = max(0, self._backlog[stream] - len(rows))

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            if topic != self._command_topic and (topic != self._chunk_topic or self._chunk_handler is None):
                _log.warning("uplink: ignoring message on unexpected topic %r", topic)
                continue
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, bytes | bytearray):
                payload = b"" if payload is None else str(payload).encode()
            if topic == self._chunk_topic and self._chunk_handler is not None:
                await self._chunk_handler(bytes(payload))
            else:
                await self.handle_command(bytes(payload))

    # ------------------------------------------------------------------ built-in commands

    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": self._clock.now()}

    async def _stats(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.statistics()


async def _run_both(*tasks: asyncio.Task[None]) -> None:
    """Run the session's tasks until one fails (its error is raised) or we are cancelled.

    Not a TaskGroup: on Python 3.11 a group whose child fails while it exits leaves the
    parent's ``cancelling()`` count raised, and a later stop then found the group already
    "aborting" and never cancelled the children (the uplink did not stop: a CI hang).
    Here the children are cancelled -- again, until they are gone -- whatever happens.
    """
    pending = set(tasks)
    try:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)


__all__ = ["BrokerAddress", "Uplink", "parse_broker_url"]
