"""The durable uplink: outbox -> MQTT -> the cloud's ack, in order per stream, urgent streams first.

Layer: runtime. Speaks MQTT through aiomqtt; knows the ttu topic scheme and payloads from
``protocols.cloud`` and nothing of grid apps. It must not lose an upward message: every ``send``
is durable in the store before it returns, and a row counts as delivered only when the CLOUD
acknowledges it (``ttu/T/down/ack``, HMAC-signed): a broker's PUBACK only means the broker has
it, and a broker restarted without persistence forgets it.

Delivery (``_delivery.Delivery`` decides, this module does the I/O): the sender takes the next
batch from the most urgent stream (``StreamPriority``; ``declare_stream``) with rows past what it
already sent, up to ``window_bytes`` in flight per stream. A batch is bounded by the limit the
cloud shares (``MAX_BATCH_BYTES``, ``MAX_BATCH_MESSAGES``), and a body bigger than
``MAX_MESSAGE_BYTES`` is refused at ``send`` (so a batch of one always fits). Acks mark rows
delivered (the store prunes them later); a gap, a nack or ``ack_timeout_s`` without an ack sends
the unacknowledged rows again (the cloud de-duplicates on ``key``), a ``too_large`` nack in
smaller batches. After a reconnect or a reboot (a new ``Uplink`` on the same store) everything
unacknowledged is sent again. ``ack_timeout_s`` is real (loop) time: it bounds a network round
trip, which does not speed up with a simulation.

Connection: ``run()`` connects with jittered exponential backoff on the Clock (1 s .. 60 s; an
urgent message sent while disconnected cuts the wait short),
sets a retained "offline" will on ``state_topic``, publishes a retained "online" after
connecting, and subscribes the command and ack topics (and the app-package chunk topic once
``register_chunks`` gave it a handler). Commands are handled one at a time by a
``CommandDispatcher`` (size, nesting and element limits first); each reply goes up through the
outbox on stream ``reply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from hal.cancellation import cancel_requests, keep_cancel, raise_if_cancelled_since
from hal.clock import Clock
from protocols.cloud import (
    DEFAULT_MAX_COMMAND_BYTES,
    DEFAULT_PRIORITIES,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    Ack,
    StreamPriority,
    ack_topic,
    batch_overhead,
    chunk_topic,
    command_topic,
    encode_batch,
    message_json,
    state_topic,
    up_topic,
)
from protocols.errors import ProtocolError
from runtime.errors import ConfigError, StoreError
from runtime.store import Store

from ._backoff import Backoff
from ._commands import CommandDispatcher, Handler, Validator
from ._delivery import Delivery

_log = logging.getLogger(__name__)

_OFFLINE_PUBLISH_S = 2.0
MARK_EVERY_S = 0.5
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


def send_at_once(client: aiomqtt.Client) -> None:
    """Turn Nagle's algorithm off on a connected client's socket (paho leaves it on, and aiomqtt
    offers no hook). With it on, a small message written while an earlier segment is not yet
    acknowledged by TCP -- an outage report behind a batch, the cloud's ack of a batch -- waits
    for that ACK, which the peer may delay (~40 ms on Linux). Best effort: a socket that takes
    no TCP option (a websocket wrapper) is left as it is."""
    paho: Any = getattr(client, "_client", None)  # the paho client under aiomqtt
    with contextlib.suppress(AttributeError, OSError):
        paho.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
        batch_max: int = MAX_BATCH_MESSAGES,
        batch_bytes: int = MAX_BATCH_BYTES,
        window_bytes: int = 4 * MAX_BATCH_BYTES,
        ack_timeout_s: float = 30.0,
        max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES,
        keepalive_s: int = 30,
        backoff: Backoff | None = None,
    ) -> None:
        if batch_max < 1:
            raise ConfigError("uplink.batch_max", f"must be at least 1, not {batch_max}")
        try:
            self._state_topic = state_topic(terminal_id)
            self._command_topic = command_topic(terminal_id)
            self._chunk_topic = chunk_topic(terminal_id)
            self._ack_topic = ack_topic(terminal_id)
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
        self._batch_bytes = min(batch_bytes, MAX_BATCH_BYTES)  # the cloud accepts no more
        self._keepalive_s = keepalive_s
        self._backoff = backoff or Backoff(initial=1.0, maximum=60.0)
        self._key = command_key
        self._delivery = Delivery(
            max_messages=min(batch_max, MAX_BATCH_MESSAGES),
            window_bytes=window_bytes,
            ack_timeout_s=ack_timeout_s,
            priorities=dict(DEFAULT_PRIORITIES),
        )
        self._restored = False
        self._unmarked: dict[str, int] = {}  # acked seq per stream not yet written to the store
        self._marks = asyncio.Event()
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # an urgent message waits for a connection
        self._early_reconnects = 0
        self._connected = False
        self._reconnects = 0
        self._connects = 0
        self._batches = 0
        self._messages = 0
        self._publish_errors = 0
        self._acked_messages = 0
        self._bad_acks = 0
        self._commands = CommandDispatcher(
            store=store, clock=clock, key=command_key, max_bytes=max_command_bytes
        )
        self._chunk_handler: ChunkHandler | None = None
        self._commands.register("ping", self._ping)
        self._commands.register("uplink.stats", self._stats)

    # ------------------------------------------------------------------ public API

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        """Append ``body`` durably to the outbox of ``stream``; return its idempotency key.

        Bodies: ``readings`` -> ``{"readings": [Reading.to_json(), ...]}``; ``events`` ->
        ``Event.to_json()``; other streams free JSON objects of at most ``MAX_MESSAGE_BYTES``
        (``MessageTooLarge`` otherwise: nothing is stored).
        """
        (key,) = await self.send_many(stream, [body])
        return key

    async def send_many(self, stream: str, bodies: Sequence[dict[str, Any]]) -> list[str]:
        """``send`` of several bodies in order, durable together in one store transaction (one
        fsync, not one each: what one decision produced goes up at once); their keys."""
        _check_stream(stream)
        entries = await self._store.outbox_append_many(
            stream, bodies, terminal=self.terminal_id, max_bytes=MAX_MESSAGE_BYTES
        )
        if not entries:
            return []
        self._delivery.appended(stream, entries[-1].seq)
        self._wake.set()
        if not self._connected and self._delivery.priority(stream) is StreamPriority.URGENT:
            self._urgent.set()  # do not let it wait out a long reconnect backoff
        return [entry.key for entry in entries]

    def declare_stream(self, stream: str, *, priority: StreamPriority | str) -> None:
        """How urgent ``stream`` is: ``urgent`` streams (outage reports, alarms) overtake any
        backlog of ``normal`` ones, which overtake ``bulk`` (readings). Undeclared: normal."""
        _check_stream(stream)
        self._delivery.declare(stream, StreamPriority.parse(priority))
        self._wake.set()

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

    async def handle_ack(self, payload: bytes) -> bool:
        """Apply one raw ack from the cloud; False (counted, logged) when it is not a valid signed ack."""
        try:
            ack = Ack.decode(payload)
        except ProtocolError as err:
            return self._bad_ack(str(err))
        if not ack.verify(self._key):
            return self._bad_ack("bad or missing signature")
        await self._restore()
        moved = self._delivery.on_ack(ack, asyncio.get_running_loop().time())
        self._unmarked.update(moved)  # written to the store by _mark_delivered, a few at a time
        if moved:
            self._marks.set()
        for nack in ack.nacks:
            _log.warning(
                "uplink: the cloud refused %s %s..%s (%s): %s",
                nack.stream, nack.first, nack.last, nack.code, nack.reason,
            )  # fmt: skip
        self._wake.set()
        return True

    async def flush(self) -> None:
        """Write the acknowledged marks not yet in the store (delivered rows; pruned later)."""
        marks, self._unmarked = self._unmarked, {}
        for stream, seq in marks.items():
            try:
                self._acked_messages += await self._store.outbox_acknowledge(stream, seq)
            except StoreError as err:  # the rows stay undelivered, are sent again after a restart
                _log.error("uplink: cannot mark %s rows up to %d delivered: %s", stream, seq, err)

    async def _mark_delivered(self) -> None:
        """Acks arrive per batch; their store writes (each an fsync) are gathered over
        ``MARK_EVERY_S`` so the outbox writes of new messages do not queue behind them. A row
        marked late is only sent again after a restart: the cloud de-duplicates it."""
        while True:
            await self._marks.wait()
            self._marks.clear()
            await asyncio.sleep(MARK_EVERY_S)  # real time: store I/O, not the simulated world
            await self.flush()

    def _bad_ack(self, reason: str) -> bool:
        self._bad_acks += 1
        _log.warning("uplink: ignoring an ack: %s", reason)
        return False

    @property
    def connected(self) -> bool:
        return self._connected

    def statistics(self) -> dict[str, Any]:
        """Counters for health checks and the ``uplink.stats`` command (JSON-able)."""
        d = self._delivery
        return {
            "connected": self._connected,
            "connects": self._connects,
            "reconnects": self._reconnects,
            "early_reconnects": self._early_reconnects,
            "published_batches": self._batches,
            "published_messages": self._messages,
            "acked_messages": self._acked_messages,
            "publish_errors": self._publish_errors,
            "resends": d.resends,
            "nacks": d.nacks,
            "acks": d.acks,
            "bad_acks": self._bad_acks,
            "backlog": dict(sorted(d.backlog().items())),
            "blocked": d.blocked(),
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

    async def _restore(self) -> None:
        """Once: what the outbox holds (acked/newest seq per stream) from before this start."""
        if self._restored:
            return
        self._restored = True
        for stream, (acked, last) in (await self._store.outbox_streams()).items():
            self._delivery.restore(stream, acked=acked, last=last)

    async def run(self) -> None:
        """Connect, keep connected, send and receive until cancelled."""
        await self._restore()
        marker = asyncio.create_task(self._mark_delivered(), name=f"uplink-marks-{self.terminal_id}")
        try:
            await self._connect_forever()
        finally:
            marker.cancel()
            await asyncio.wait({marker})
            with contextlib.suppress(StoreError):
                await asyncio.shield(self.flush())  # what was acknowledged is delivered

    async def _connect_forever(self) -> None:
        where = f"{self._address.host}:{self._address.port}"
        while True:
            stopping = False
            requests = cancel_requests()
            try:
                async with self._client() as client:
                    try:
                        raise_if_cancelled_since(requests)  # a stop that came with the CONNACK
                        send_at_once(client)
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
            await self._backoff_wait(delay)

    async def _backoff_wait(self, delay: float) -> None:
        """Sleep ``delay`` before the next attempt; an urgent message sent meanwhile (a last gasp
        has seconds of hold-up) cuts it short, though never below the backoff's first step, so a
        burst of urgent sends cannot hammer a broker that is down."""
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(delay):
                await self._clock.sleep(min(delay, self._backoff.initial))
                await self._urgent.wait()
                self._early_reconnects += 1
        self._urgent.clear()

    async def _session(self, client: aiomqtt.Client) -> None:
        self._connected = True
        self._connects += 1
        self._urgent.clear()
        self._backoff.reset()
        _log.info("uplink connected to %s:%s as %s", self._address.host, self._address.port, self._client_id)
        try:
            await keep_cancel(client.publish(self._state_topic, b"online", qos=1, retain=True))
            await keep_cancel(client.subscribe(self._command_topic, qos=1))
            await keep_cancel(client.subscribe(self._ack_topic, qos=1))
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
        loop = asyncio.get_running_loop()
        delivery = self._delivery
        delivery.reconnected()
        while True:
            self._wake.clear()
            now = loop.time()
            for stream in delivery.expire(now):
                _log.info(
                    "uplink: no ack for %s within %g s: sending it again", stream, delivery.ack_timeout_s
                )
            nxt = delivery.next_batch(now)
            if nxt is None:
                deadline = delivery.next_deadline()
                # an ack round trip is real time, whatever the simulated clock does
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(None if deadline is None else max(0.0, deadline - now)):
                        await self._wake.wait()
                continue
            await self._publish_next(client, nxt.stream, nxt.after, nxt.max_messages)

    async def _publish_next(self, client: aiomqtt.Client, stream: str, after: int, limit: int) -> None:
        budget = self._batch_bytes - batch_overhead(self.terminal_id, stream)
        rows = await self._store.outbox_window(stream, after=after, limit=limit, max_bytes=budget)
        if not rows:
            # nothing past `after` although the outbox said so (rows acked meanwhile): in sync again
            self._delivery.stream(stream).last = after
            return
        messages = [(r.seq, message_json(r.key, r.seq, r.ts, r.body)) for r in rows]
        acked = self._delivery.stream(stream).acked
        payload = encode_batch(self.terminal_id, stream, acked, messages)
        while len(payload) > self._batch_bytes and len(messages) > 1:  # the store's estimate was short
            messages = messages[: max(1, len(messages) // 2)]
            payload = encode_batch(self.terminal_id, stream, acked, messages)
        first, last = messages[0][0], messages[-1][0]
        self._delivery.sent(stream, first, last, asyncio.get_running_loop().time(), len(payload))
        try:
            await keep_cancel(client.publish(up_topic(self.terminal_id, stream), payload, qos=1))
        except aiomqtt.MqttError:
            self._publish_errors += 1
            raise
        self._batches += 1
        self._messages += len(messages)

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, bytes | bytearray):
                payload = b"" if payload is None else str(payload).encode()
            if topic == self._ack_topic:
                await self.handle_ack(bytes(payload))
            elif topic == self._chunk_topic and self._chunk_handler is not None:
                await self._chunk_handler(bytes(payload))
            elif topic == self._command_topic:
                await self.handle_command(bytes(payload))
            else:
                _log.warning("uplink: ignoring message on unexpected topic %r", topic)

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
