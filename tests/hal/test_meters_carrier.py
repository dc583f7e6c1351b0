"""``MeterClient`` over the HPLC carrier: a fake ``CarrierModule`` answering from the sim's meters.

The fake forwards each frame to ``sim.meters.make_answer`` of the addressed node after a
carrier delay on the virtual clock, so concurrency and priorities are observable.
"""

from __future__ import annotations

import asyncio
import calendar
import math
from collections.abc import AsyncIterator, Sequence

import pytest

from hal.clock import LoopClock
from hal.errors import TransportTimeout
from hal.interfaces import CarrierEvent, Priority
from hal.meters import CarrierTransport, Dlt645Client, Dlt645Master, Dlt698Client, Dlt698Master
from sim.loads import HouseholdProfile
from sim.meters import Answer, VirtualMeter, make_answer

pytestmark = pytest.mark.looptime

START = calendar.timegm((2026, 1, 9, 16, 0, 0)) * 1.0
NOW = START + 86400 + 3600


class FakeCarrier:
    def __init__(self, answers: dict[str, Answer], clock: LoopClock, delay: float = 2.0) -> None:
        self.answers = answers
        self.clock = clock
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.order: list[str] = []
        self.broadcasts: list[bytes] = []

    async def reset(self) -> None: ...

    async def sync_archive(self, addresses: Sequence[str]) -> None: ...

    async def transact(self, address: str, frame: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.order.append(address)
        try:
            await self.clock.sleep(self.delay)
            reply = self.answers[address](frame) if address in self.answers else None
            if reply is None:
                await self.clock.sleep(max(0.0, timeout - self.delay))
                raise TransportTimeout(f"hplc: node {address} did not answer")
            return reply
        finally:
            self.in_flight -= 1

    async def broadcast(self, frame: bytes) -> None:
        self.broadcasts.append(frame)
        for answer in self.answers.values():
            answer(frame)

    async def events(self) -> AsyncIterator[CarrierEvent]:  # pragma: no cover - not used here
        if False:
            yield


def kwh(x: float) -> float:
    return math.floor(x * 100 + 1e-6) / 100


def station(clock: LoopClock, n: int = 6) -> tuple[dict[str, VirtualMeter], dict[str, str]]:
    meters = {
        f"0000000001{i:02d}": VirtualMeter(
            f"0000000001{i:02d}", profile=HouseholdProfile.for_customer(5, i), start=START
        )
        for i in range(n)
    }
    protocols = {a: ("dlt698" if i % 2 else "dlt645") for i, a in enumerate(meters)}
    return meters, protocols


async def test_645_and_698_meters_over_the_carrier_with_module_concurrency() -> None:
    clock = LoopClock(start=NOW)
    meters, protocols = station(clock)
    carrier = FakeCarrier({a: make_answer(m, protocols[a], clock=clock) for a, m in meters.items()}, clock)
    transport = CarrierTransport(carrier, clock=clock, concurrency=3)
    m645, m698 = Dlt645Master(transport, timeout=10), Dlt698Master(transport, timeout=10)
    clients = [Dlt698Client(m698, a) if protocols[a] == "dlt698" else Dlt645Client(m645, a) for a in meters]
    started = clock.monotonic()
    results = await asyncio.gather(*(c.read_realtime(["energy"]) for c in clients))
    elapsed = clock.monotonic() - started
    for c, got in zip(clients, results, strict=True):
        assert got["energy.active.import.total"] == kwh(meters[c.address].registers(clock.now()).forward[0])
    assert carrier.peak == 3  # the module's concurrency, never more
    assert elapsed == pytest.approx(2 * carrier.delay, abs=0.1)  # 6 reads, 3 at a time
    assert transport.max_in_flight == 3


async def test_priorities_decide_who_goes_next_on_the_carrier() -> None:
    clock = LoopClock(start=NOW)
    meters, protocols = station(clock, 4)
    carrier = FakeCarrier({a: make_answer(m, protocols[a], clock=clock) for a, m in meters.items()}, clock)
    transport = CarrierTransport(carrier, clock=clock, concurrency=1)
    master = Dlt645Master(transport, timeout=10)
    addrs = [a for a in meters if protocols[a] == "dlt645"]
    first = asyncio.ensure_future(master.read(addrs[0], 0x0001FF00, priority=Priority.CURVE))
    await asyncio.sleep(0)
    curve = asyncio.ensure_future(master.read(addrs[1], 0x0001FF00, priority=Priority.CURVE))
    control = asyncio.ensure_future(master.read(addrs[1], 0x04000503, priority=Priority.CONTROL))
    await asyncio.gather(first, curve, control)
    assert carrier.order == [addrs[0], addrs[1], addrs[1]]
    assert [t for t in (control, curve) if t.done()] == [control, curve]


async def test_silent_node_times_out_and_becomes_unavailable() -> None:
    clock = LoopClock(start=NOW)
    meters, _ = station(clock, 2)
    carrier = FakeCarrier({}, clock)
    transport = CarrierTransport(carrier, clock=clock, fail_threshold=2)
    client = Dlt698Client(Dlt698Master(transport, timeout=5), next(iter(meters)))
    for _ in range(2):
        with pytest.raises(TransportTimeout):
            await client.read_realtime(["energy"])
    assert client.available() is False


async def test_time_sync_broadcast_goes_through_the_module() -> None:
    clock = LoopClock(start=NOW)
    meters, protocols = station(clock, 2)
    carrier = FakeCarrier({a: make_answer(m, protocols[a], clock=clock) for a, m in meters.items()}, clock)
    transport = CarrierTransport(carrier, clock=clock)
    for m in meters.values():
        m.skew_s = 60.0
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(clock.now() + 8 * 3600, UTC).replace(tzinfo=None)
    await Dlt645Master(transport).broadcast_time(when)
    await Dlt698Master(transport).broadcast_time(when)
    assert len(carrier.broadcasts) == 2
    assert all(abs(m.meter_time(clock.now()) - clock.now()) < 2 for m in meters.values())
