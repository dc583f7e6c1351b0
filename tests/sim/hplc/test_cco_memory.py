"""The virtual CCO serves weeks of a 2,000-meter area: what it keeps of the traffic is bounded."""

from __future__ import annotations

import asyncio

from hal.clock import LoopClock
from protocols import gdw1376_2 as q
from sim.hplc import VirtualCco

START = 1_717_200_000.0


async def test_the_module_remembers_only_its_newest_frames() -> None:
    sim = VirtualCco([], clock=LoopClock(start=START))
    # up frames: counted and remembered, nothing to answer
    frame = q.encode(q.make_frame(0x00, 1, q.Confirm(1, 0), up=True, seq=6))
    async with asyncio.TaskGroup() as tg:
        for _ in range(1000):
            sim._received(frame * 10, tg)
    assert sim.counters.frames_rx == 10_000
    assert 0 < len(sim.received) <= 5000  # of 10,000
    assert sim.received[-1] == q.decode(frame)
