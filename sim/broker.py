"""MQTT brokers for the simulated world and for tests: an embedded amqtt broker and a mosquitto child.

Layer: sim. Both run on loopback only, allow anonymous clients and keep nothing on
disk. They know nothing of the terminal or of the ttu topic scheme; they only carry
bytes between the terminal's uplink and the cloud stub.

``EmbeddedBroker`` runs in the current event loop (no threads); ``MosquittoBroker``
runs ``mosquitto`` as a child process and always terminates and reaps it on exit.

The embedded broker refuses what neither end of the ttu scheme would accept (``PayloadLimits``:
the same size, nesting and element bounds as the terminal and the cloud stub): the message is
not forwarded, and it is counted (``refused``) and logged. A broker cannot answer an MQTT 3.1.1
publisher with an error, so the terminal or the stub still check everything they receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from protocols.cloud import (
    DEFAULT_MAX_COMMAND_BYTES,
    MAX_ACK_BYTES,
    MAX_BATCH_BYTES,
    MAX_PAYLOAD_BYTES,
    check_json_shape,
)
from protocols.errors import ProtocolError, TerminalError

_log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0


#: extra seconds the broker waits beyond a client's keep-alive (half of paho's default 60 s)
KEEPALIVE_GRACE_S = 30


class BrokerError(TerminalError):
    """A broker could not be started (a user-facing condition: the CLI prints it on one line)."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """The largest payload the broker forwards, per kind of ttu topic (other topics: ``other``)."""

    command: int = DEFAULT_MAX_COMMAND_BYTES  # ttu/T/down/cmd: board uplink.max_command_bytes
    up: int = MAX_BATCH_BYTES  # ttu/T/up/S: one batch
    ack: int = MAX_ACK_BYTES  # ttu/T/down/ack
    other: int = MAX_PAYLOAD_BYTES  # chunks, state, anything else

    def refusal(self, topic: str, payload: bytes) -> str | None:
        """Why ``payload`` on ``topic`` is not forwarded (None: forward it)."""
        parts = topic.split("/")
        json_topic = len(parts) == 4 and parts[0] == "ttu" and parts[2] in ("up", "down")
        if json_topic and parts[2] == "up":
            limit = self.up
        elif json_topic and parts[3] == "cmd":
            limit = self.command
        elif json_topic and parts[3] == "ack":
            limit = self.ack
        else:
            limit = self.other
        if len(payload) > limit:
            return f"payload of {len(payload)} bytes is over {limit}"
        if json_topic:
            try:
                check_json_shape(payload, what=topic, max_bytes=limit, max_elements=limit // 2)
            except ProtocolError as err:
                return err.reason
        return None


@contextlib.contextmanager
def _quiet_start_failure() -> Iterator[None]:
    """amqtt logs a failed start (a port in use) with its traceback before raising; the
    ``BrokerError`` raised here names the reason, and the caller decides what to say."""

    def no_tracebacks(record: logging.LogRecord) -> bool:
        return record.exc_info is None

    amqtt_log = logging.getLogger("amqtt.broker")
    amqtt_log.addFilter(no_tracebacks)
    try:
        yield
    finally:
        amqtt_log.removeFilter(no_tracebacks)


def _limited_broker_class() -> Any:
    """``amqtt.broker.Broker`` that drops (and counts) what ``PayloadLimits`` refuses."""
    from amqtt.broker import Broker

    class LimitedBroker(Broker):  # type: ignore[misc]
        limits = PayloadLimits()
        refused: Counter[str]

        async def _handle_message_delivery(
            self, client_session: Any, handler: Any, wait_deliver: Any
        ) -> bool:
            message = wait_deliver.result()
            if message is not None and message.topic:
                reason = self.limits.refusal(message.topic, bytes(message.data or b""))
                if reason is not None:
                    self.refused[message.topic.split("/")[-1]] += 1
                    _log.warning(
                        "embedded broker: not forwarding %s from %s: %s",
                        message.topic,
                        client_session.client_id,
                        reason,
                    )
                    return True  # keep the connection; nothing is forwarded
            result: bool = await super()._handle_message_delivery(client_session, handler, wait_deliver)
            return result

    return LimitedBroker


class EmbeddedBroker:
    """An amqtt 0.12 broker on loopback, in this event loop.

    ``async with EmbeddedBroker() as broker: ... broker.url`` -> ``mqtt://127.0.0.1:PORT``.
    ``port=0`` picks a free port (read back from the listening socket).
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, limits: PayloadLimits | None = None
    ) -> None:
        self.host = host
        self._port = port
        self._broker: Any = None
        self.limits = limits or PayloadLimits()
        self.refused: Counter[str] = Counter()  # payloads not forwarded, by the topic's last level

    @property
    def port(self) -> int:
        if self._broker is None:
            raise BrokerError("broker not started")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self._port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            # MQTT 3.1.1 §3.1.2.10: the server allows one and a half keep-alives before it drops
            # a silent client. amqtt's default grace is 0: a client that only receives (the
            # cloud stub) pings once its keep-alive has passed (paho looks every second) and
            # was cut off just before its PINGREQ arrived.
            "timeout_disconnect_delay": KEEPALIVE_GRACE_S,
        }
        broker = _limited_broker_class()(config)
        broker.limits = self.limits
        broker.refused = self.refused
        try:
            with _quiet_start_failure():
                await broker.start()
        except Exception as err:
            raise BrokerError(f"amqtt broker on {self.host}:{self._port} did not start: {err}") from err
        self._broker = broker
        if self._port == 0:
            server = broker._servers["default"].instance  # amqtt keeps the asyncio.Server here
            self._port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable, or None when it is not installed."""
    if Path("/usr/sbin/mosquitto").is_file():
        return "/usr/sbin/mosquitto"
    return shutil.which("mosquitto")


class MosquittoBroker:
    """``mosquitto`` as a child process with a temp config (loopback listener, anonymous, no persistence).

    ``port=0`` picks a free port. Entering waits until the broker accepts TCP connections;
    leaving terminates it, waits for it, and removes the config directory.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, binary: str | None = None) -> None:
        self.host = host
        self._port = port
        self._binary = binary
        self._proc: asyncio.subprocess.Process | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self._port}"

    async def start(self) -> None:
        binary = self._binary or mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto binary not found (install the mosquitto package)")
        if self._port == 0:
            self._port = _free_port(self.host)
        self._tmp = tempfile.TemporaryDirectory(prefix="ttu-mosquitto-")
        conf = Path(self._tmp.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self._port} {self.host}\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )
        try:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(conf),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            self._cleanup_tmp()
            raise BrokerError(f"cannot run {binary}: {err}") from err
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT_S
        while True:
            if self._proc.returncode is not None:
                err = b""
                if self._proc.stderr is not None:
                    err = await self._proc.stderr.read()
                raise BrokerError(
                    f"mosquitto exited with {self._proc.returncode}: {err.decode(errors='replace').strip()}"
                )
            try:
                _, writer = await asyncio.open_connection(self.host, self._port)
            except OSError:
                if loop.time() > deadline:
                    raise BrokerError(f"mosquitto did not listen on {self.host}:{self._port}") from None
                await asyncio.sleep(0.02)  # real process start-up: wall time is what matters here
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        elif proc is not None:
            await proc.wait()
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


__all__ = ["BrokerError", "EmbeddedBroker", "MosquittoBroker", "PayloadLimits", "mosquitto_binary"]
