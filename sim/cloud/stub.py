"""The cloud master-station stub: receives what terminals send upward and sends them signed commands.

Layer: sim (cloud stub). Talks to terminals only over MQTT (aiomqtt) with the topic
scheme and payloads of ``protocols.cloud``; stores everything in its own sqlite
(``sim.cloud.db``, on a worker thread). It must not import terminal internals
(runtime store, uplink, apps); time comes from the ``Clock`` it is given.

``async with CloudStub(broker_url=..., db_path=..., default_key=..., clock=...) as stub:``
subscribes ``ttu/+/up/#`` and ``ttu/+/state`` in a persistent MQTT session (one client id
per database: what the broker holds while the stub restarts is delivered when it is back),
reconnects with exponential backoff when the broker goes away, accepts any well-formed stream
(apps' result streams are stored in tables of their own: ``results``, ``latest``), de-duplicates
by message key, counts sequence gaps and out-of-order messages per (terminal, stream), and
stores malformed payloads as rejected instead of failing. After each batch it acknowledges,
signed, on ``ttu/T/down/ack`` the stream's highest contiguous seq now durably stored (the
terminal keeps every row until then) and answers a batch it refused with a nack naming it
(``too_large``: over ``MAX_BATCH_BYTES``, the limit both ends share).
``await stub.send_command(T, name, args)`` returns the
terminal's ``Reply`` or raises ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import aiomqtt

from hal.cancellation import cancel_requests, keep_cancel, raise_if_cancelled_since
from hal.clock import Clock, wall_timeout
from protocols.cloud import (
    MAX_BATCH_BYTES,
    NACK_BAD_BATCH,
    NACK_STORE_FAILED,
    NACK_TOO_LARGE,
    Ack,
    Chunk,
    Command,
    Nack,
    Reply,
    StoredResult,
    UpBatch,
    ack_topic,
    check_stream,
    chunk_topic,
    command_topic,
    parse_topic,
    peek_batch,
    sign_chunk,
    sign_command,
    up_wildcard,
)
from protocols.errors import ProtocolError
from sim.cloud.db import CloudDb, DbWorker, EventRow, ReadingRow, TerminalRow

_log = logging.getLogger(__name__)

T = TypeVar("T")
STATES = frozenset({"online", "offline"})
Listener = Callable[[str, dict[str, Any]], Awaitable[None]]


class CloudStubError(Exception):
    """The stub was misconfigured (bad broker URL, no key for a terminal) or is not running."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://host[:port]`` or ``tcp://host[:port]`` (port 1883 by default)."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "tcp"):
            raise CloudStubError(
                f"broker URL {url!r}: scheme {parts.scheme!r} is not supported (use mqtt://)"
            )
        try:
            port = parts.port or 1883
        except ValueError as err:
            raise CloudStubError(f"broker URL {url!r}: bad port") from err
        if not parts.hostname:
            raise CloudStubError(f"broker URL {url!r}: no host")
        return cls(parts.hostname, port)


class CloudStub:
    """A thin cloud master station on one MQTT broker and one sqlite file.

    ``command_keys`` maps terminal ids to their HMAC command keys; ``default_key`` is
    used for any terminal not in the map. ``db_path=":memory:"`` keeps nothing.
    ``terminal`` narrows the subscriptions to one terminal (``"+"``: all).
    ``connect_timeout`` bounds how long entering waits for the first subscription, in real
    seconds whatever the clock's speed (``None``: do not wait; the stub keeps trying).
    """

    def __init__(
        self,
        *,
        broker_url: str,
        db_path: Path | str,
        clock: Clock,
        command_keys: Mapping[str, bytes] | None = None,
        default_key: bytes | None = None,
        terminal: str = "+",
        connect_timeout: float | None = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        command_time: Callable[[], float] | None = None,
        client_id: str | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        fsync: bool = True,
    ) -> None:
        self._broker = BrokerAddress.parse(broker_url)
        # the time commands are stamped with: the terminal's clock (a simulated terminal runs
        # in simulated time, see sim.cloud.simclock); default this stub's own clock
        self._command_time = command_time or clock.now
        self._db_path = db_path
        self._clock = clock
        self._keys = dict(command_keys or {})
        self._default_key = default_key
        if not self._keys and default_key is None:
            raise CloudStubError("CloudStub needs command_keys or default_key to sign commands")
        self._terminal = terminal
        self._connect_timeout = connect_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._client_id = client_id or _session_id(db_path, terminal)
        self._max_batch_bytes = max_batch_bytes  # what it accepts (a real master station may take less)
        self._db = DbWorker(db_path, fsync=fsync)
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._pending: dict[str, tuple[str, asyncio.Future[Reply]]] = {}
        self._changed = asyncio.Condition()
        self._listeners: dict[str, list[Listener]] = {}
        self.connections = 0  # successful (re)connections, subscriptions done
        self.disconnects = 0
        self.handled = 0  # MQTT messages processed (stored, duplicate or rejected)
        self.store_errors = 0  # messages the database failed to store (logged)
        self.acks_sent = 0
        self.nacks_sent = 0
        self.last_error: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._db.start()
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        self._task = tg.create_task(self._run(), name=f"cloud-stub-mqtt[{self._client_id}]")
        if self._connect_timeout is not None:
            try:
                # a start-up deadline: real seconds, however fast the simulated clock runs
                async with wall_timeout(self._connect_timeout), self._changed:
                    await self._changed.wait_for(lambda: self.connections > 0)
            except BaseException as err:
                await self.__aexit__(type(err), err, err.__traceback__)
                if isinstance(err, TimeoutError):
                    raise CloudStubError(
                        f"cloud stub: no connection to broker {self._broker.host}:{self._broker.port} "
                        f"within {self._connect_timeout} s ({self.last_error or 'no answer'})"
                    ) from err
                raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        try:
            if tg is not None:
                if self._task is not None:
                    self._task.cancel()
                await tg.__aexit__(None, None, None)
        finally:
            for _, fut in self._pending.values():
                if not fut.done():
                    fut.cancel()
            await self._db.close()

    async def _run(self) -> None:
        """Connect, subscribe, consume; on any broker failure wait (backoff) and start again."""
        backoff = self._backoff_initial
        while True:
            stopping = False
            requests = cancel_requests()
            try:
                async with aiomqtt.Client(
                    self._broker.host, self._broker.port, identifier=self._client_id, clean_session=False
                ) as client:
                    # acks are small: without this, Nagle holds one until TCP acknowledges the last
                    sock = client._client.socket()  # paho under aiomqtt (no hook for socket options)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    backoff = self._backoff_initial
                    try:
                        raise_if_cancelled_since(requests)  # a stop that came with the CONNACK
                        await self._session(client)
                    except asyncio.CancelledError:
                        stopping = True
                        raise
            except aiomqtt.MqttError as err:
                if stopping:  # the DISCONNECT failed (aiomqtt's __aexit__ raised): still a stop
                    raise asyncio.CancelledError from err
                self.last_error = str(err)
                _log.warning(
                    "cloud stub: broker connection lost or refused (%s); retry in %.1f s", err, backoff
                )
            finally:
                if self._client is not None:
                    self._client = None
                    self.disconnects += 1
                    await self._notify()
            await self._clock.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    async def _session(self, client: aiomqtt.Client) -> None:
        """Subscribe and consume until the connection ends (``MqttError``) or the stub stops."""
        topics = [(up_wildcard(self._terminal), 1), (f"ttu/{self._terminal}/state", 1)]
        await keep_cancel(client.subscribe(topics))
        self._client = client
        self.connections += 1
        _log.info("cloud stub connected to %s:%d", self._broker.host, self._broker.port)
        await self._notify()
        async for message in client.messages:
            await self._handle(str(message.topic), _payload_bytes(message.payload))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[CloudStub], bool], *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait (clock ``timeout``) until ``predicate(stub)`` holds; checked after each change."""
        async with self._clock.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    # -- receiving ----------------------------------------------------------------------------

    async def _handle(self, topic: str, payload: bytes) -> None:
        try:
            await self._handle_one(topic, payload)
        except sqlite3.Error as err:  # the database, not the message, failed: keep serving, say so
            self.store_errors += 1
            self.last_error = f"storing a message from {topic}: {err}"
            _log.error("cloud stub: %s", self.last_error)
        self.handled += 1
        await self._notify()

    async def _handle_one(self, topic: str, payload: bytes) -> None:
        now = self._clock.now()
        try:
            parts = parse_topic(topic)
        except ProtocolError as err:
            error = str(err)
            await self._db.run(
                lambda db: db.reject(terminal=None, topic=topic, error=error, payload=payload, now=now)
            )
        else:
            terminal = parts.terminal
            if parts.direction == "state":
                state = payload.decode("utf-8", errors="replace").strip()
                if state in STATES:
                    await self._db.run(lambda db: db.set_state(terminal=terminal, state=state, now=now))
                else:
                    error = f"state must be 'online' or 'offline', not {state[:40]!r}"
                    await self._db.run(
                        lambda db: db.reject(
                            terminal=terminal, topic=topic, error=error, payload=payload, now=now
                        )
                    )
            else:
                await self._handle_batch(topic, terminal, parts.leaf, payload, now)

    async def _handle_batch(self, topic: str, terminal: str, stream: str, payload: bytes, now: float) -> None:
        try:
            check_stream(stream)  # any well-formed stream: apps' result streams have tables of their own
            batch = UpBatch.decode(payload, max_bytes=self._max_batch_bytes)
            if batch.terminal != terminal or batch.stream != stream:
                raise ProtocolError(
                    f"batch is for {batch.terminal}/{batch.stream} but came on {terminal}/{stream}",
                    protocol="cloud",
                )
        except ProtocolError as err:
            error = str(err)
            _log.warning("cloud stub: rejected payload on %s: %s", topic, error)
            await self._db.run(
                lambda db: db.reject(terminal=terminal, topic=topic, error=error, payload=payload, now=now)
            )
            too_large = len(payload) > self._max_batch_bytes or "values" in error
            code = NACK_TOO_LARGE if too_large else NACK_BAD_BATCH
            await self._nack(terminal, stream, payload, code, error)
            return
        try:
            outcome = await self._db.run(lambda db: db.ingest_batch(topic=topic, batch=batch, now=now))
        except sqlite3.Error as err:  # not stored: the terminal keeps it and sends it again
            await self._nack(terminal, stream, payload, NACK_STORE_FAILED, f"not stored: {err}")
            raise
        first, last = batch.messages[0].seq, batch.messages[-1].seq
        await self._ack(
            terminal, Ack({stream: outcome.acked}, {stream: outcome.seen}, batch=(stream, first, last))
        )
        _log.debug(
            "cloud stub: %s: stored %d, duplicates %d, gaps %d, late %d, rejected %d",
            topic, outcome.stored, outcome.duplicates, outcome.gaps, outcome.out_of_order, outcome.rejected,
        )  # fmt: skip
        for listener in self._listeners.get(stream, ()):
            for message in batch.messages:
                try:
                    await listener(terminal, message.body)
                except Exception:  # a listener's bug must not stop the stub from receiving
                    _log.exception("cloud stub: %s listener failed on a message from %s", stream, terminal)
        for reply in outcome.replies:
            pending = self._pending.get(reply.id)
            if pending is None:
                continue
            expected, fut = pending
            if expected != terminal:
                _log.warning(
                    "cloud stub: reply %s from %s, but the command went to %s", reply.id, terminal, expected
                )
            elif not fut.done():
                fut.set_result(reply)

    async def _ack(self, terminal: str, ack: Ack) -> None:
        """Tell the terminal what is durably stored (signed with its key; QoS 1)."""
        key = self._keys.get(terminal, self._default_key)
        client = self._client
        if key is None or client is None:
            return  # no key: unsigned acks would be ignored; no client: the terminal sends again
        try:
            await keep_cancel(client.publish(ack_topic(terminal), ack.signed(key).encode(), qos=1))
        except aiomqtt.MqttError as err:  # lost acks only cost a resend
            _log.warning("cloud stub: ack to %s not published: %s", terminal, err)
        else:
            self.acks_sent += 1

    async def _nack(self, terminal: str, stream: str, payload: bytes, code: str, reason: str) -> None:
        span = peek_batch(payload)
        first, last = (None, None) if span is None else span
        self.nacks_sent += 1
        await self._ack(terminal, Ack({}, {}, (Nack(stream, first, last, code, reason[:300]),)))

    def listen(self, stream: str, listener: Listener) -> None:
        """Call ``await listener(terminal, body)`` for every message of ``stream`` received
        (duplicates included: delivery is at-least-once)."""
        self._listeners.setdefault(stream, []).append(listener)

    # -- commands -----------------------------------------------------------------------------

    async def publish_chunk(self, terminal: str, chunk: Chunk, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Sign ``chunk`` with the terminal's key and publish it on its chunk topic (QoS 1)."""
        signed = sign_chunk(chunk, self._key_for(terminal))
        try:
            await self.wait_until(lambda s: s._client is not None, timeout=timeout)
            client = self._client
            assert client is not None
            await keep_cancel(client.publish(chunk_topic(terminal), signed.encode(), qos=1))
        except aiomqtt.MqttError as err:
            # lost chunks are asked for again by the terminal (fetch after a stall)
            _log.warning(
                "cloud stub: chunk %d of %s to %s not published: %s", chunk.index, chunk.job, terminal, err
            )

    async def publish_retained(self, topic: str, body: Mapping[str, Any], *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Publish ``body`` as JSON, retained (QoS 1), once connected (within ``timeout`` clock s)."""
        try:
            await self.wait_until(lambda s: s._client is not None, timeout=timeout)
            client = self._client
            assert client is not None
            await keep_cancel(client.publish(topic, json.dumps(body).encode(), qos=1, retain=True))
        except (TimeoutError, aiomqtt.MqttError) as err:
            _log.warning("cloud stub: %s not published: %s", topic, err or "not connected")

    def _key_for(self, terminal: str) -> bytes:
        key = self._keys.get(terminal, self._default_key)
        if key is None:
            raise CloudStubError(f"no command key for terminal {terminal!r}")
        return key

    async def send_command(
        self,
        terminal: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - clock seconds (scaled), part of the contract
    ) -> Reply:
        """Sign and publish a command (QoS 1) and return the terminal's reply.

        Raises ``TimeoutError`` when no reply with the command's id arrives within
        ``timeout`` clock seconds (including waiting for the broker connection).
        """
        key = self._key_for(terminal)
        topic = command_topic(terminal)
        cmd_id = f"c-{uuid.uuid4().hex}"
        command = sign_command(Command(cmd_id, name, dict(args or {}), ts=self._command_time()), key)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = (terminal, fut)
        try:
            async with self._clock.timeout(timeout):
                await self._db.run(
                    lambda db: db.record_command(
                        command_id=cmd_id, terminal=terminal, name=name, args=command.args, now=command.ts
                    )
                )
                await self.wait_until(lambda s: s._client is not None, timeout=timeout)
                client = self._client
                assert client is not None
                await keep_cancel(client.publish(topic, command.encode(), qos=1))
                return await fut
        except TimeoutError as err:
            raise TimeoutError(
                f"command {name!r} ({cmd_id}) to terminal {terminal!r}: no reply within {timeout:g} s"
            ) from err
        except aiomqtt.MqttError as err:
            raise CloudStubError(f"command {name!r} to terminal {terminal!r}: publish failed: {err}") from err
        finally:
            self._pending.pop(cmd_id, None)

    # -- queries ------------------------------------------------------------------------------

    async def terminals(self) -> list[TerminalRow]:
        return await self._db.run(lambda db: db.terminals())

    async def readings(
        self,
        terminal: str | None = None,
        device: str | None = None,
        quantity: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ReadingRow]:
        return await self._db.run(
            lambda db: db.readings(
                terminal=terminal, device=device, quantity=quantity, since=since, limit=limit
            )
        )

    async def events(
        self,
        terminal: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[EventRow]:
        return await self._db.run(
            lambda db: db.events(terminal=terminal, kind=kind, since=since, limit=limit)
        )

    async def holes(self) -> dict[tuple[str, str], int]:
        """Seq numbers missing now per (terminal, stream) (see ``CloudDb.holes``)."""
        return await self._db.run(lambda db: db.holes())

    async def results(
        self, stream: str, *, terminal: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[StoredResult]:
        """What arrived on a result stream (an app's, or ``station``), newest first."""
        return await self._db.run(lambda db: db.results(stream, terminal=terminal, since=since, limit=limit))

    async def latest(self, stream: str, *, terminal: str | None = None) -> StoredResult | None:
        return await self._db.run(lambda db: db.latest(stream, terminal=terminal))

    async def result_streams(self) -> dict[str, dict[str, int]]:
        """Every result stream with its rows per terminal."""
        return await self._db.run(lambda db: db.result_counts())

    async def query(self, fn: Callable[[CloudDb], T]) -> T:
        """Run ``fn(db)`` on the database thread (for views such as dashboard panels)."""
        return await self._db.run(fn)

    async def counts(self) -> dict[str, int]:
        return await self._db.run(lambda db: db.counts())

    async def known_keys(self, terminal: str, keys: list[str]) -> set[str]:
        """Those of ``keys`` (message idempotency keys) already stored for ``terminal``."""
        return await self._db.run(lambda db: db.known_keys(terminal, keys))

    async def statistics(self) -> dict[str, dict[str, int]]:
        """Counters per terminal (see ``CloudDb.statistics``)."""
        return await self._db.run(lambda db: db.statistics())


def _session_id(db_path: Path | str, terminal: str) -> str:
    """One MQTT client id per cloud database (and terminal filter): a restarted stub resumes its
    persistent session, so what the broker queued meanwhile reaches it."""
    if str(db_path) == ":memory:":
        return f"ttu-cloud-{uuid.uuid4().hex[:12]}"
    where = f"{Path(db_path).resolve()}|{terminal}"
    return f"ttu-cloud-{hashlib.sha1(where.encode()).hexdigest()[:12]}"


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    if payload is None:
        return b""
    return str(payload).encode()


__all__ = ["BrokerAddress", "CloudStub", "CloudStubError"]
