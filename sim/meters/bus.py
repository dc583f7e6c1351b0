"""Several virtual meters sharing one RS-485 line, served on a pty.

Layer: sim. Serves one ``SerialLink`` (a pty or an in-memory link, ``sim.wiring``): feeds the
``MixedFramer`` (645 and 698), hands each request to the meters it addresses and writes the
reply back with RS-485 timing taken from the clock:

    request on the wire  settings.wire_seconds(request bytes)      (11 bits/byte at 8E1)
    meter response delay response_delay_s (20-500 ms by the standard)
    reply on the wire    settings.wire_seconds(reply bytes)
    -> reply bytes written to the pty

Meters on one line may speak DL/T 645 or DL/T 698.45 (``protocols``: address -> name);
the line is framed by ``MixedFramer`` and each frame goes only to the meters that speak its
protocol (a 645 meter ignores 698 frames and vice versa).

Half-duplex: one exchange at a time, requests queue behind it. Only the addressed
meter answers; broadcast (99..99 in 645, address type 3 in 698) is acted on by every
meter and answered by none;
a wildcard (AA bytes) that matches several meters makes them all talk at once, which
comes out as one garbled collision frame. This module knows the line, not the meter
semantics (those are in ``responder``) and not the terminal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hal.clock import Clock
from hal.interfaces import SerialLink, SerialSettings
from protocols import dlt698
from protocols.errors import ProtocolError
from sim.meters._codec import BROADCAST_ADDRESS
from sim.meters._mixed import Frame, MixedFramer
from sim.meters.model import VirtualMeter
from sim.meters.responder import MeterResponder
from sim.meters.responder698 import DEFAULT_MAX_APDU, Dlt698Responder
from sim.pty import PtyPair
from sim.wiring import PtyLink

log = logging.getLogger(__name__)

Delay = float | tuple[float, float]
PROTOCOLS = ("dlt645", "dlt698")


@dataclass(slots=True)
class BusCounters:
    requests: int = 0  # well-formed frames received
    replies: int = 0  # replies written (a collision counts once)
    ignored: int = 0  # requests nobody answered (not ours, broadcast, meter off / missed)
    garbage: int = 0  # rejected frames (bad CS, length, delimiters)
    collisions: int = 0  # several meters answered at once


def address_matches(pattern: str, address: str) -> bool:
    """True if ``address`` is selected by ``pattern`` (exact, or AA wildcard bytes)."""
    if pattern == address:
        return True
    return all(p == "AA" or p == a for p, a in zip(_pairs(pattern), _pairs(address), strict=True))


def _pairs(s: str) -> list[str]:
    return [s[i : i + 2] for i in range(0, 12, 2)]


class MeterBus:
    """One RS-485 line with its meters; ``await serve(pty)`` or ``serve_link(link)`` runs it."""

    def __init__(
        self,
        meters: Sequence[VirtualMeter],
        *,
        clock: Clock,
        settings: SerialSettings | None = None,
        response_delay_s: Delay | Mapping[str, Delay] = (0.02, 0.05),
        seed: int = 0,
        preamble: int = 4,
        protocols: Mapping[str, str] | None = None,
        max_apdu_698: int = DEFAULT_MAX_APDU,
    ) -> None:
        addresses = [m.address for m in meters]
        if len(set(addresses)) != len(addresses):
            raise ValueError("meter addresses on one bus must be unique")
        self.protocols = {a: (protocols or {}).get(a, "dlt645") for a in addresses}
        bad = {a: p for a, p in self.protocols.items() if p not in PROTOCOLS}
        if bad:
            raise ValueError(f"unknown meter protocols {bad}; known: {', '.join(PROTOCOLS)}")
        self.meters = list(meters)
        self.clock = clock
        self.settings = settings or SerialSettings()
        self.response_delay_s = response_delay_s
        self.counters = BusCounters()
        self.responders = {m.address: MeterResponder(m, preamble=preamble) for m in self.meters}
        self.responders698 = {
            m.address: Dlt698Responder(m, preamble=preamble, max_apdu=max_apdu_698) for m in self.meters
        }
        # who speaks what, by address: a request picks its meter in O(1), not O(meters)
        self._speakers: dict[str, list[VirtualMeter]] = {p: [] for p in PROTOCOLS}
        for m in self.meters:
            self._speakers[self.protocols[m.address]].append(m)
        self._by_address = {m.address: m for m in self.meters}
        self._rng = np.random.default_rng([seed, 645])
        self._framer = MixedFramer()
        self._last_end = 0  # stream offset just past the last request
        self.last_error: ProtocolError | None = None

    @property
    def noise_bytes(self) -> int:
        """Bytes outside any frame (preamble FE included)."""
        return self._framer.skipped

    def delay_for(self, address: str) -> float:
        """This exchange's response delay for the meter at ``address`` (seeded draw for ranges)."""
        spec = self.response_delay_s
        if isinstance(spec, Mapping):
            spec = spec.get(address, (0.02, 0.05))
        if isinstance(spec, tuple):
            lo, hi = spec
            return float(self._rng.uniform(lo, hi))
        return float(spec)

    # -- receive ------------------------------------------------------------------------------------
    def _received(self, data: bytes, queue: asyncio.Queue[tuple[Frame, int]]) -> None:
        # Each request is charged exactly the bytes it took on the wire since the previous
        # frame's end (preamble and noise included), also when several arrive in one read.
        for item, end in self._framer.feed_marked(data):
            if isinstance(item, ProtocolError):
                self.counters.garbage += 1
                self.last_error = item
                log.info("bus garbage: %s", item)
                continue
            size, self._last_end = end - self._last_end, end
            self.counters.requests += 1
            queue.put_nowait((item, size))

    # -- answer -------------------------------------------------------------------------------------
    def _answer(self, frame: Frame) -> tuple[bytes | None, str | None]:
        """Let every addressed meter act; return (reply bytes or None, address that sets the delay)."""
        now = self.clock.now()
        replies: list[tuple[str, bytes]] = []
        if isinstance(frame, dlt698.Frame):
            if frame.from_server:
                return None, None
            for meter in self._targets_698(frame):
                if meter.on and not meter.misses():
                    reply = self.responders698[meter.address].handle(frame, now=now)
                    if reply is not None:
                        replies.append((meter.address, reply))
            return self._merge(replies)
        alone = len(self.meters) == 1
        if frame.is_response:
            return None, None  # another station's reply on the line (or our echo): not a request
        if frame.address == BROADCAST_ADDRESS:
            targets = self._speakers["dlt645"]
        else:
            targets = self._addressed(frame.address, "dlt645")
        for meter in targets:
            if not meter.on:
                continue
            if meter.misses():
                continue
            reply = self.responders[meter.address].handle(frame, now=now, alone=alone)
            if reply is not None:
                replies.append((meter.address, reply))
        return self._merge(replies)

    def _targets_698(self, frame: dlt698.Frame) -> list[VirtualMeter]:
        if frame.sa_type is dlt698.AddressType.BROADCAST:
            return self._speakers["dlt698"]
        if len(frame.sa) != 12:
            return []
        return self._addressed(frame.sa, "dlt698")

    def _addressed(self, pattern: str, protocol: str) -> list[VirtualMeter]:
        """The meters speaking ``protocol`` that ``pattern`` selects (one, or a wildcard's many)."""
        if "AA" not in pattern.upper():
            meter = self._by_address.get(pattern)
            return [meter] if meter is not None and self.protocols[meter.address] == protocol else []
        return [m for m in self._speakers[protocol] if address_matches(pattern, m.address)]

    def _merge(self, replies: list[tuple[str, bytes]]) -> tuple[bytes | None, str | None]:
        if not replies:
            return None, None
        if len(replies) == 1:
            return replies[0][1], replies[0][0]
        self.counters.collisions += 1
        size = max(len(r) for _, r in replies)
        garbled = bytearray(size)
        for _, r in replies:
            for i, b in enumerate(r):
                garbled[i] |= b  # RS-485 drivers fighting: dominant bits win
        return bytes(garbled), replies[0][0]

    async def _exchange(
        self, frame: Frame, request_len: int, write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        reply, address = self._answer(frame)
        if reply is None or address is None:
            self.counters.ignored += 1
            return
        wire = self.settings.wire_seconds
        await self.clock.sleep(wire(request_len) + self.delay_for(address) + wire(len(reply)))
        await write(reply)
        self.counters.replies += 1

    async def serve(self, pty: PtyPair) -> None:
        """Serve the line on the master side of ``pty`` until cancelled; closes the pty."""
        await self.serve_link(PtyLink(pty, self.settings))

    async def serve_link(self, link: SerialLink) -> None:
        """Serve the line over any hal ``SerialLink`` until cancelled (``sim.wiring``).

        Opens the link and closes it on the way out (cancellation, or the peer hanging up:
        ``TransportBroken`` propagates).
        """
        async with link:
            await self._serve(link.read, link.write, link.name)

    async def _serve(
        self,
        read: Callable[[], Awaitable[bytes]],
        write: Callable[[bytes], Awaitable[None]],
        name: str,
    ) -> None:
        # Requests are framed as their bytes arrive, also while a reply is on its way, so
        # each is charged the bytes it took on the wire; they are answered one at a time.
        queue: asyncio.Queue[tuple[Frame, int]] = asyncio.Queue()

        async def receive() -> None:
            while True:
                self._received(await read(), queue)

        async def answer() -> None:
            while True:
                await self._exchange(*(await queue.get()), write)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(receive(), name=f"sim-bus-rx-{name}")
            tg.create_task(answer(), name=f"sim-bus-tx-{name}")


__all__ = ["BusCounters", "MeterBus", "address_matches"]
