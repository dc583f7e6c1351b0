"""The CCO driver against the virtual CCO over a real pty (pyserial on the slave), for tests and bench.

Test helper (tests/hal). ``cco_pair`` yields (driver, virtual CCO, meters) with the virtual CCO
served on a pty by ``sim.hplc`` and the driver opening the slave side with ``PySerialLink``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from hal.clock import LoopClock
from hal.hplc import Cco
from hal.interfaces import SerialSettings
from hal.linux import PySerialLink
from hal.sim import memory_link_pair
from sim.hplc import SimNode, VirtualCco, meter_node
from sim.loads import HouseholdProfile
from sim.meters.model import VirtualMeter
from sim.pty import open_pty

START = 1_717_200_000.0  # 2024-06-01 00:00 UTC
UART = SerialSettings(baud=9600, parity="E")


@dataclass
class Pair:
    clock: LoopClock
    cco: Cco
    sim: VirtualCco
    meters: list[VirtualMeter]


def make_meters(n: int, *, start: float = START) -> list[VirtualMeter]:
    return [
        VirtualMeter(f"{100000000000 + i:012d}", profile=HouseholdProfile.for_customer(1, i), start=start)
        for i in range(1, n + 1)
    ]


@contextlib.asynccontextmanager
async def cco_pair(
    meters: Sequence[VirtualMeter],
    *,
    extra_nodes: Sequence[SimNode] = (),
    clock: LoopClock | None = None,
    pty: bool = False,
    **sim_options: object,
) -> AsyncIterator[Pair]:
    """``pty=True``: through a real pty and pyserial; else an in-memory link pair (deterministic
    under looptime: bytes through a pty arrive via the kernel's flip-buffer worker, late enough on
    a loaded machine for looptime to jump a reply timeout first)."""
    clock = clock or LoopClock(start=START)
    nodes = [meter_node(m) for m in meters] + list(extra_nodes)
    sim = VirtualCco(nodes, clock=clock, **sim_options)  # type: ignore[arg-type]
    if pty:
        pair = open_pty("hplc")
        cco = Cco(PySerialLink(pair.slave_path, UART, name="hplc"), clock=clock)
        serving = sim.serve(pair)
    else:
        ours, theirs = memory_link_pair(UART, names=("hplc", "virtual-cco"))
        cco = Cco(ours, clock=clock)
        serving = sim.serve_link(theirs)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(serving, name="test-virtual-cco")
        try:
            async with cco:
                yield Pair(clock, cco, sim, list(meters))
        finally:
            task.cancel()
