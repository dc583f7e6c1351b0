"""Serve a simulated station's DL/T 645 meters on ptys in their own process (bench helper).

Prints one JSON line ``{"ports": {bus: pty path}}`` once serving, writes the meter archive,
and serves until its standard input closes. Not a test, not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from hal.clock import LoopClock
from sim.station import build_station


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--buses", type=int, default=4)
    parser.add_argument("--meters-per-bus", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.02, help="meter response delay, seconds")
    parser.add_argument("--archive", type=Path, required=True)
    args = parser.parse_args()
    clock = LoopClock()
    station = build_station(
        buses=[f"rs485-{i + 1}" for i in range(args.buses)],
        meters_per_bus=args.meters_per_bus,
        seed=7,
        start=clock.now(),
        three_phase_share=0.0,
        response_delay_s=args.delay,
    )
    station.write_archive(args.archive)
    async with station.serve(clock=clock) as ports:
        print(json.dumps({"ports": ports}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin


if __name__ == "__main__":
    asyncio.run(main())
