"""Benchmark: one realtime acquisition cycle of 200 meters on 4 RS-485 buses at 2400 baud.

Not a test. The virtual meters run in a separate process on ptys (real byte timing at
2400 8E1, 20 ms response delay = the DL/T 645 minimum), the terminal runtime with the
acquisition app runs in this process on the real clock. Prints the measured cycle time,
the wire-time lower bound (every byte on the wire + 20 ms per exchange, per bus; buses in
parallel), their ratio, CPU seconds per 1000 reads and the runtime's peak RSS.
Goals (issue 2): ratio <= 1.10, RSS <= 60 MB.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hal.clock import LoopClock
from runtime.config import load_board
from runtime.terminal import Terminal

ROOT = Path(__file__).resolve().parent.parent
BUSES = 4
METERS_PER_BUS = 50
ITEMS = ["energy", "voltage", "current", "power"]


async def one_cycle(workdir: Path, ports: dict[str, str], archive: Path) -> dict[str, float]:
    board = load_board(ROOT / "board.toml")
    acq = board.apps["acquisition"]
    config = {
        **acq.config,
        "archive": str(archive),
        "realtime_items": ITEMS,
        "realtime_interval_s": 3600,
        "curve": False,
        "daily_freeze": False,
        "time_sync": False,
        "event_poll_interval_s": 86400,
    }
    board = dataclasses.replace(
        board,
        uplink=None,
        store=dataclasses.replace(board.store, path=workdir / "ttu.sqlite"),
        apps={"acquisition": dataclasses.replace(acq, config=config)},
    )
    # start 1 s before an hour boundary so the first realtime cycle starts at once
    start = math.ceil(time.time() / 3600) * 3600 - 1.0
    clock = LoopClock(start=start)
    terminal = Terminal(board, clock=clock, sim_devices=ports, state_dir=workdir / "state")
    task = asyncio.create_task(terminal.run(), name="terminal")
    await terminal.started.wait()
    parts = terminal.parts
    assert parts is not None
    sub = parts.bus.subscribe("acquisition/stats")
    cpu0 = time.process_time()
    try:
        async with asyncio.timeout(600):
            async for message in sub:
                stats = message.payload
                if stats.get("cycle_reads"):
                    break
    finally:
        sub.close()
        cpu = time.process_time() - cpu0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return {
        "cycle_seconds": stats["cycle_seconds"],
        "wire_bound_seconds": stats["wire_bound_seconds"],
        "reads": stats["cycle_reads"],
        "success_rate": stats["success_rate_realtime"],
        "cpu_seconds": cpu,
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        archive = workdir / "archive.toml"
        server = subprocess.Popen(
            [
                sys.executable,
                "-P",
                str(ROOT / "bench" / "_meter_server.py"),
                "--buses",
                str(BUSES),
                "--meters-per-bus",
                str(METERS_PER_BUS),
                "--archive",
                str(archive),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert server.stdout is not None
            ports = json.loads(server.stdout.readline())["ports"]
            result = asyncio.run(one_cycle(workdir, ports, archive))
        finally:
            if server.stdin:
                server.stdin.close()
            server.wait(timeout=30)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = result["cycle_seconds"] / result["wire_bound_seconds"]
    print(f"acquisition: {BUSES} buses x {METERS_PER_BUS} meters x {len(ITEMS)} items at 2400 8E1")
    print(f"  reads                 {result['reads']:.0f} (success {100 * result['success_rate']:.1f} %)")
    print(f"  cycle time            {result['cycle_seconds']:.2f} s")
    print(f"  wire-time bound       {result['wire_bound_seconds']:.2f} s")
    print(f"  ratio                 {ratio:.3f}   (goal <= 1.10)")
    print(f"  CPU per 1000 reads    {1000 * result['cpu_seconds'] / result['reads']:.2f} s")
    print(f"  peak RSS (runtime)    {rss_mb:.1f} MB   (goal <= 60 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
