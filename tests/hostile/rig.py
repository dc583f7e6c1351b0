"""A running simulated station area for the hostile-input tests, and what they assert after each attack.

``station(tmp_path, broker_url)`` runs ``sim.runner.simulate`` (the repo board, one meter per bus
plus its HPLC meters, x10) against a broker of the test's choosing (mosquitto forwards any
payload, so the terminal's own limits are what is tested). ``Attack`` remembers how much the
terminal had read and the cloud had received before, and ``still_reading`` asserts afterwards
that the terminal is alive, read meters again, delivered it, and lost nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.config import load_board, load_credentials
from runtime.container.supervisor import AppState
from runtime.uplink import Uplink
from sim.runner import SimOptions, SimRun, simulate

REPO = Path(__file__).resolve().parents[2]
BOARD = load_board(REPO / "board.toml")
assert BOARD.uplink is not None and BOARD.uplink.credentials_file is not None
KEY = load_credentials(BOARD.uplink.credentials_file).command_key
TERMINAL = BOARD.terminal.id
SPEED = 10.0
WAIT_SIM_S = 1200.0  # simulated seconds (two minutes of real time at x10)


@asynccontextmanager
async def station(tmp_path: Path, broker_url: str) -> AsyncIterator[SimRun]:
    options = SimOptions(
        board=BOARD, workdir=tmp_path / "run", speed=SPEED, meters_per_bus=1, seed=7, broker_url=broker_url
    )
    async with simulate(options) as run:
        await until(run, lambda: uplink(run).statistics()["acks"] > 0, "the first ack from the cloud")
        await until(run, lambda: all_running(run), "every enabled app running")
        yield run


def all_running(run: SimRun) -> bool:
    parts = run.terminal.parts
    assert parts is not None
    return all(app["state"] == AppState.RUNNING for app in parts.supervisor.status())


def uplink(run: SimRun) -> Uplink:
    parts = run.terminal.parts
    assert parts is not None and parts.uplink is not None, run.terminal_failure
    return parts.uplink


async def until(run: SimRun, predicate: Callable[[], Any], what: str, *, within: float = WAIT_SIM_S) -> None:
    """Poll (sync or async) ``predicate`` on the simulated clock until it holds."""
    try:
        async with run.clock.timeout(within):
            while True:
                assert run.terminal_failure is None, f"the terminal died: {run.terminal_failure}"
                result = predicate()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await run.clock.sleep(1.0)
    except TimeoutError:
        raise AssertionError(f"no {what} within {within:g} simulated s") from None


def cloud_query(run: SimRun, sql: str, *args: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{run.options.workdir / 'cloud.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def acquired(run: SimRun) -> int:
    """Readings the acquisition app has produced so far."""
    stats = (await run.summary())["acquisition"]
    return int(stats.get("readings", 0))


@dataclass
class Attack:
    run: SimRun
    readings_before: int = 0
    cloud_before: int = 0

    @classmethod
    async def begin(cls, run: SimRun) -> Attack:
        return cls(run, await acquired(run), (await run.cloud.counts())["readings"])

    async def still_reading(self) -> None:
        """The terminal is alive, reads meters again and delivers them, and nothing was lost."""
        run = self.run
        await until(run, lambda: self._more(), "new readings read and delivered after the attack")
        await until(run, lambda: not uplink(run).statistics()["backlog"].get("readings"), "the backlog acked")
        assert await run.cloud.holes() == {}
        assert run.terminal_failure is None

    async def _more(self) -> bool:
        return (
            await acquired(self.run) > self.readings_before
            and (await self.run.cloud.counts())["readings"] > self.cloud_before
        )
