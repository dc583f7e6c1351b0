"""A tiny length-prefixed test framer and a scripted fake device bus for Rs485Port tests.

Test helper (tests/hal). Deliberately not DL/T 645 (that framer is written elsewhere):

    AA  LEN  ADDR  SEQ  PAYLOAD(LEN-2 bytes)

``Framer.feed`` skips bytes before ``AA`` (reporting them as one ValueError per run of
noise) and waits on short input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from hal.clock import LoopClock
from hal.errors import TransportError
from hal.sim import MemoryLink

START = 0xAA


@dataclass(frozen=True)
class Frame:
    addr: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return bytes([START, 2 + len(self.payload), self.addr, self.seq]) + self.payload


class Framer:
    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Sequence[Frame | Exception]:
        self._buf += data
        out: list[Frame | Exception] = []
        while self._buf:
            if self._buf[0] != START:
                skip = self._buf.find(START)
                skip = len(self._buf) if skip < 0 else skip
                out.append(ValueError(f"skipped {skip} bytes of noise"))
                del self._buf[:skip]
                continue
            if len(self._buf) < 2 or len(self._buf) < 2 + self._buf[1]:
                break
            n = self._buf[1]
            body = bytes(self._buf[2 : 2 + n])
            del self._buf[: 2 + n]
            out.append(Frame(body[0], body[1], body[2:]))
        return out


def reply_to(addr: int, seq: int) -> Callable[[Frame], bool]:
    """A ``match`` predicate: the reply from ``addr`` to request ``seq``."""
    return lambda f: f.addr == addr and f.seq == seq


@dataclass
class FakeDevices:
    """Answers every request frame after ``delays[addr]`` clock seconds; unknown or ``None`` = dead.

    ``prefix`` bytes (noise, stray frames) are sent before each reply. ``served`` logs
    ``(monotonic time the request was complete, addr, seq)`` in arrival order.
    """

    clock: LoopClock
    link: MemoryLink
    delays: dict[int, float | None] = field(default_factory=dict)
    prefix: bytes = b""
    served: list[tuple[float, int, int]] = field(default_factory=list)

    async def run(self) -> None:
        framer = Framer()
        try:
            while True:
                chunk = await self.link.read()
                for item in framer.feed(chunk):
                    if isinstance(item, Exception):
                        continue
                    self.served.append((self.clock.monotonic(), item.addr, item.seq))
                    delay = self.delays.get(item.addr)
                    if delay is None:
                        continue
                    await self.clock.sleep(delay)
                    reply = Frame(item.addr, item.seq, b"R" + item.payload)
                    await self.link.write(self.prefix + reply.encode())
        except TransportError:
            return  # the port closed its end

    def order(self) -> list[int]:
        return [addr for _, addr, _ in self.served]


@asynccontextmanager
async def running(devices: FakeDevices) -> AsyncIterator[FakeDevices]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(devices.run(), name="fake-devices")
        try:
            yield devices
        finally:
            task.cancel()
