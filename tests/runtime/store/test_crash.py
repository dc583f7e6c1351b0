"""Durability: rows acknowledged by the store survive a SIGKILL of the writing process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from hal.clock import LoopClock
from runtime.store import Store

REPO = Path(__file__).resolve().parents[3]

CHILD = """
import asyncio, sys
from hal.clock import LoopClock
from runtime.model import Reading
from runtime.store import Store

async def main(path):
    store = await Store.open(path, clock=LoopClock(start=1767225600.0))
    i = 0
    while True:
        i += 1
        entry = await store.outbox_append("readings", {"i": i}, terminal="T")
        await store.write_readings([Reading("m", "e", float(i), "kWh", 1767225600.0 + i)])
        print("ack", entry.seq, flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_acknowledged_rows_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE, env=env, cwd=REPO
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while len(acked) < 200:
                line = await proc.stdout.readline()
                assert line, "child died before acknowledging enough rows"
                acked.append(int(line.split()[1]))
        proc.send_signal(signal.SIGKILL)  # mid-stream: it is still appending
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert acked == list(range(1, len(acked) + 1))

    async with await Store.open(path, clock=LoopClock(start=1767225600.0)) as store:
        assert await store.integrity_check() == "ok"
        rows = await store.outbox_pending("readings", limit=100_000)
        seqs = [r.seq for r in rows]
        assert set(acked) <= set(seqs)
        assert seqs == list(range(1, len(seqs) + 1))  # no holes, in order
        assert [r.body["i"] for r in rows] == seqs
        readings = await store.query_readings(limit=100_000)
        assert len(readings) >= len(acked)  # each ack came after its reading was written
