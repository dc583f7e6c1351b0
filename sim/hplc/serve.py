"""Serve the station's HPLC meters behind a virtual CCO on a pty (the board's ``sim:hplc``).

Layer: sim. Builds one ``SimNode`` per HPLC meter with the answer function ``sim.meters``
offers for its protocol (``make_answer``: DL/T 645 or 698.45), wires its line (``sim.wiring``) and runs the
``VirtualCco`` on it until the context exits. Knows nothing of the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from hal.clock import Clock
from protocols import gdw1376_2 as q
from sim.hplc.cco import VirtualCco
from sim.hplc.nodes import SimNode
from sim.meters import make_answer
from sim.wiring import PtyWiring, TerminalEnd, Wiring

PROTOCOL_TYPES = {"dlt645": q.DLT645_2007, "dlt698": q.DLT698}


def station_nodes(meters: Sequence[Any], *, clock: Clock) -> list[SimNode]:
    """Nodes for ``sim.station.StationMeter``s (``.meter``, ``.protocol``)."""
    nodes = []
    for sm in meters:
        answer = make_answer(sm.meter, sm.protocol, clock=clock)
        phase = {"A": 1, "B": 2, "C": 3}.get(sm.meter.phase, 0)
        nodes.append(
            SimNode(
                sm.meter.address,
                lambda frame, now, answer=answer: answer(frame),
                PROTOCOL_TYPES[sm.protocol],
                phase,
                meter=sm.meter,
            )
        )
    return nodes


@contextlib.asynccontextmanager
async def serve_cco(
    meters: Sequence[Any], *, clock: Clock, seed: int, wiring: Wiring | None = None, **options: Any
) -> AsyncIterator[tuple[VirtualCco, TerminalEnd]]:
    """Yield (the virtual CCO, what the terminal opens: ``sim.wiring``; a pty by default).
    ``options`` go to ``VirtualCco`` (latency, loss, concurrency ...)."""
    cco = VirtualCco(station_nodes(meters, clock=clock), clock=clock, seed=seed, **options)
    link, end = (wiring or PtyWiring()).line("hplc", cco.settings)
    async with contextlib.AsyncExitStack() as links, asyncio.TaskGroup() as tg:
        links.push_async_callback(link.close)  # also when the task never started
        task = tg.create_task(cco.serve_link(link), name="sim-cco")
        try:
            yield cco, end
        finally:
            task.cancel()


__all__ = ["PROTOCOL_TYPES", "serve_cco", "station_nodes"]
