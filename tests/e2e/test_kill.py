"""SIGKILL the simulated terminal mid-cycle, then recover from its store.

``ttu sim`` runs as a subprocess against a broker fixture with a fixed ``--workdir``; once
readings have reached the cloud stub it is killed with SIGKILL. Then: the terminal store
passes ``PRAGMA integrity_check``; every message the cloud received is in the terminal
outbox (nothing acknowledged was lost); a fresh ``Uplink`` on the same store delivers the
rest, and every outbox row is at the cloud exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

from hal.clock import LoopClock
from runtime.config import load_board, load_credentials
from runtime.store import Store
from runtime.uplink import Uplink
from sim.cloud.stub import CloudStub
from tests.brokers import AnyBroker

REPO = Path(__file__).resolve().parents[2]
TTU = Path(sys.executable).with_name("ttu")


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


async def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    return await asyncio.to_thread(_query, path, sql)


async def test_sigkill_mid_cycle_loses_nothing(tmp_path: Path, broker: AnyBroker) -> None:
    workdir = tmp_path / "run"
    cmd = ["sim", "--speed", "30", "--meters-per-bus", "2", "--duration", "1h", "--workdir", str(workdir)]
    cmd += ["--broker", broker.url]
    log = tmp_path / "ttu-sim.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(str(TTU), *cmd, cwd=REPO, stdout=err, stderr=err)
    cloud_db, store_db = workdir / "cloud.sqlite", workdir / "ttu.sqlite"
    try:
        wall = LoopClock()
        async with wall.timeout(60):
            while True:
                assert proc.returncode is None, log.read_text()
                if cloud_db.exists() and await query(cloud_db, "SELECT 1 FROM readings LIMIT 1"):
                    break
                await wall.sleep(0.2)
        await wall.sleep(0.7)  # somewhere inside the next realtime cycle
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    board = load_board(REPO / "board.toml")
    assert board.uplink is not None and board.uplink.credentials_file is not None
    credentials = load_credentials(board.uplink.credentials_file)
    terminal_id = board.terminal.id
    clock = LoopClock(speed=30.0)
    async with await Store.open(store_db, clock=clock) as store:
        assert await store.integrity_check() == "ok"
        outbox = {str(k) for (k,) in await query(store_db, "SELECT key FROM outbox")}
        received = {str(k) for (k,) in await query(cloud_db, "SELECT key FROM messages")}
        assert received and received <= outbox  # every acknowledged message is still accounted for

        uplink = Uplink(
            store=store,
            clock=clock,
            terminal_id=terminal_id,
            broker_url=broker.url,
            client_id=f"{board.uplink.client_id}-restart",
            command_key=credentials.command_key,
        )
        async with (
            CloudStub(
                broker_url=broker.url, db_path=cloud_db, clock=clock, default_key=credentials.command_key
            ),
            asyncio.TaskGroup() as tg,
        ):
            sender = tg.create_task(uplink.run(), name="uplink-after-restart")
            async with clock.timeout(600):
                while True:
                    keys = {str(k) for (k,) in await query(cloud_db, "SELECT key FROM messages")}
                    if not any((await store.outbox_backlog()).values()) and outbox <= keys:
                        break
                    await clock.sleep(1.0)
            sender.cancel()
    rows = await query(
        cloud_db, f"SELECT key, COUNT(*) FROM messages WHERE terminal = '{terminal_id}' GROUP BY key"
    )
    counts = {str(k): int(str(n)) for k, n in rows}
    assert outbox <= set(counts)
    assert all(n == 1 for n in counts.values())
