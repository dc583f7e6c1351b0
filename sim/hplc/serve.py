"""Serve the station's HPLC meters behind a virtual CCO on a pty (the board's ``sim:hplc``).

Layer: sim. Builds one ``SimNode`` per HPLC meter with the answer function ``sim.meters``
offers for its protocol (``make_answer``: DL/T 645 or 698.45), opens a pty and runs the
``VirtualCco`` on it until the context exits. Knows nothing of the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from base.clock import Clock
from protocols import gdw1376_2 as q
from sim.hplc.cco import VirtualCco
from sim.hplc.nodes import SimNode
from sim.meters import make_answer
from sim.pty import open_pty

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
    meters: Sequence[Any], *, clock: Clock, seed: int
) -> AsyncIterator[tuple[VirtualCco, str]]:
    """Yield (the virtual CCO, the pty slave path the terminal opens)."""
    cco = VirtualCco(station_nodes(meters, clock=clock), clock=clock, seed=seed)
    pty = open_pty("hplc")
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(cco.serve(pty), name="sim-cco")
        try:
            yield cco, pty.slave_path
        finally:
            task.cancel()


__all__ = ["PROTOCOL_TYPES", "serve_cco", "station_nodes"]
