"""A command from outside ``ttu sim`` reaches a terminal running in accelerated, shifted time.

The simulated terminal refuses commands stamped more than ten minutes off its own clock. A tool
on the wall clock (``ttu cloud command``, ``ttu cloud app install``) reads the simulator's clock
beacon and stamps its commands in the terminal's time; without the beacon it would be refused
as ``expired``.
"""

from __future__ import annotations

from pathlib import Path

from hal.clock import LoopClock
from runtime.config import load_board
from sim.cloud.cli import load_command_key
from sim.cloud.simclock import SimClockBeacon, discover, terminal_time
from sim.cloud.stub import CloudStub
from sim.runner import SimOptions, simulate
from tests.brokers import AnyBroker
from tests.e2e.test_sim_e2e import subscribed

REPO = Path(__file__).resolve().parents[2]
START = 1717200000.0  # 2024-06-01: years away from the wall clock


def test_beacon_parsing_and_extrapolation() -> None:
    beacon = SimClockBeacon.from_json({"now": 1000.0, "wall": 50.0, "speed": 10})
    assert beacon is not None
    assert beacon.time_source(wall=lambda: 52.5)() == 1025.0
    for bad in (None, [], {"now": 1}, {"now": "x", "wall": 1, "speed": 1}, {"now": 1, "wall": 1, "speed": 0}):
        assert SimClockBeacon.from_json(bad) is None


async def test_no_simulator_means_wall_clock(broker: AnyBroker) -> None:
    assert await discover(broker.url, timeout=0.5) is None
    assert await terminal_time("mqtt://127.0.0.1:1") is None  # nothing listening: no beacon, no error


async def test_wall_clock_tool_commands_a_sped_up_terminal(tmp_path: Path, broker: AnyBroker) -> None:
    board = load_board(REPO / "board.toml")
    options = SimOptions(
        board=board, workdir=tmp_path / "run", speed=30.0, meters_per_bus=1, seed=4, start=START,
        broker_url=broker.url,
    )  # fmt: skip
    key = load_command_key(REPO / "sim" / "credentials.toml")
    terminal = board.terminal.id
    async with simulate(options) as run:
        await subscribed(run)
        beacon = await discover(broker.url, timeout=20.0)  # this loop also runs the whole sim
        assert beacon is not None and beacon.speed == 30.0
        assert abs(beacon.time_source()() - run.clock.now()) < 60.0  # within a couple of wall seconds x30

        async def command(command_time: object) -> tuple[bool, str | None]:
            async with CloudStub(
                broker_url=broker.url, db_path=":memory:", clock=LoopClock(), default_key=key,
                terminal=terminal, command_time=command_time,  # type: ignore[arg-type]
            ) as stub:  # fmt: skip
                reply = await stub.send_command(terminal, "terminal.status", {}, timeout=30)
            return reply.ok, reply.code

        assert await command(await terminal_time(broker.url, timeout=20.0)) == (True, None)
        assert await command(None) == (False, "expired")  # the wall clock is years off the terminal's
