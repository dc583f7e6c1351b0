"""One conformance suite for every SerialLink backend (model: trio's testing/_check_streams.py).

Backends: the in-memory pair (hal.sim) and PySerialLink (hal.linux) on a real pty slave,
with the pty master as the peer. No sleeps: waits are on I/O readiness, each test is
bounded by a guard timeout so a broken backend fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from hal.errors import TransportBroken, TransportClosed
from hal.interfaces import SerialLink, SerialSettings
from hal.linux import PySerialLink
from hal.sim import memory_link_pair
from tests.hal._peers import MemoryPeer, Peer, PtyPeer, receive_exactly

SETTINGS = SerialSettings(baud=9600, parity="E")
GUARD = 10.0  # seconds of wall time before a hung test is failed (never reached when passing)


@dataclass
class Harness:
    link: SerialLink
    peer: Peer
    reopenable: bool = True


@pytest.fixture(params=["memory", "pty"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        a, b = memory_link_pair(SETTINGS, names=("dut", "peer"), buffer_size=4096)
        await a.open()
        await b.open()
        h = Harness(link=a, peer=MemoryPeer(b))
    else:
        pty = PtyPeer()
        link = PySerialLink(pty.slave_path, SETTINGS, name="rs485-test")
        await link.open()
        pty.release_slave()
        h = Harness(link=link, peer=pty)
    try:
        yield h
    finally:
        await h.link.close()
        await h.peer.aclose()


async def read_exactly(link: SerialLink, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += await link.read(n - len(out))
    return bytes(out)


async def spin(times: int = 20) -> None:
    """Let other tasks run until they block (no time passes)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def test_implements_protocol(harness: Harness) -> None:
    assert isinstance(harness.link, SerialLink)
    assert harness.link.settings == SETTINGS
    assert harness.link.name


async def test_bytes_arrive_in_order_both_ways(harness: Harness) -> None:
    every_byte = bytes(range(256))  # raw 8-bit path: no CR/LF translation, no parity stripping, no echo
    async with asyncio.timeout(GUARD):
        for chunk in (b"\x68\x01", every_byte, b"\x16"):
            await harness.peer.send(chunk)
        assert await read_exactly(harness.link, 259) == b"\x68\x01" + every_byte + b"\x16"
        await harness.link.write(every_byte)
        await harness.link.write(b"\xfe\xfe")
        assert await receive_exactly(harness.peer, 258) == every_byte + b"\xfe\xfe"


async def test_partial_reads_respect_max_bytes(harness: Harness) -> None:
    async with asyncio.timeout(GUARD):
        await harness.peer.send(b"0123456789")
        parts = []
        got = 0
        while got < 10:
            part = await harness.link.read(3)
            assert 1 <= len(part) <= 3
            parts.append(part)
            got += len(part)
        assert b"".join(parts) == b"0123456789"
        with pytest.raises(ValueError):
            await harness.link.read(0)


async def test_large_writes_both_ways(harness: Harness) -> None:
    blob = os.urandom(200_000)  # far more than a tty or the memory pipe buffers: needs back-pressure
    async with asyncio.timeout(GUARD), asyncio.TaskGroup() as tg:
        tg.create_task(harness.link.write(blob), name="dut-write")
        assert await receive_exactly(harness.peer, len(blob)) == blob
    async with asyncio.timeout(GUARD), asyncio.TaskGroup() as tg:
        tg.create_task(harness.peer.send(blob), name="peer-write")
        assert await read_exactly(harness.link, len(blob)) == blob


async def test_discard_input_drops_stale_bytes(harness: Harness) -> None:
    async with asyncio.timeout(GUARD):
        await harness.peer.send(b"stale reply")
        assert await harness.link.read(1) == b"s"  # the rest of that write has arrived with it
        assert harness.link.discard_input() == len(b"tale reply")  # counted, not silently gone
        await harness.peer.send(b"fresh")
        assert await read_exactly(harness.link, 5) == b"fresh"


async def test_closed_link_raises_closed(harness: Harness) -> None:
    await harness.link.close()
    with pytest.raises(TransportClosed):
        await harness.link.read()
    with pytest.raises(TransportClosed):
        await harness.link.write(b"x")
    assert harness.link.discard_input() == 0  # harmless on a closed link


async def test_never_opened_link_raises_closed() -> None:
    a, _b = memory_link_pair(SETTINGS)
    with pytest.raises(TransportClosed, match="not open"):
        await a.read()
    link = PySerialLink("/dev/does-not-exist", SETTINGS, name="rs485-9")
    with pytest.raises(TransportClosed, match="rs485-9"):
        await link.write(b"x")


async def test_open_missing_device_is_broken_and_named() -> None:
    link = PySerialLink("/dev/does-not-exist", SETTINGS, name="rs485-9")
    with pytest.raises(TransportBroken, match=r"rs485-9 \(/dev/does-not-exist\): cannot open"):
        await link.open()


async def test_waiting_read_is_cancellable_and_loses_nothing(harness: Harness) -> None:
    async with asyncio.timeout(GUARD):
        reader = asyncio.create_task(harness.link.read(), name="blocked-read")
        await spin()
        assert not reader.done()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await harness.peer.send(b"after")
        assert await read_exactly(harness.link, 5) == b"after"


async def test_close_wakes_a_waiting_read(harness: Harness) -> None:
    async with asyncio.timeout(GUARD):
        reader = asyncio.create_task(harness.link.read(), name="blocked-read")
        await spin()
        await harness.link.close()
        with pytest.raises(TransportClosed):
            await reader


async def test_peer_hang_up_breaks_the_link(harness: Harness) -> None:
    async with asyncio.timeout(GUARD):
        reader = asyncio.create_task(harness.link.read(), name="blocked-read")
        await spin()
        await harness.peer.hang_up()
        with pytest.raises((TransportBroken, TransportClosed)):
            await reader
        with pytest.raises((TransportBroken, TransportClosed)):
            await harness.link.write(b"anyone there?")


async def test_open_and_close_are_idempotent(harness: Harness) -> None:
    async with asyncio.timeout(GUARD):
        await harness.link.open()  # already open: no-op
        await harness.link.close()
        await harness.link.close()
        await harness.link.open()  # reopen after close
        await harness.link.open()
        await harness.peer.send(b"again")
        assert await read_exactly(harness.link, 5) == b"again"


async def test_async_context_manager_opens_and_closes() -> None:
    a, b = memory_link_pair(SETTINGS)
    async with a, b:
        await b.write(b"hi")
        assert await a.read() == b"hi"
    with pytest.raises(TransportClosed):
        await a.read()
