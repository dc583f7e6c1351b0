"""``ttu cloud trace``: a running simulated terminal's RS-485 frames fetched over MQTT and decoded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from runtime.config import load_board
from sim.broker import EmbeddedBroker
from sim.cloud.cli import CloudCliError, load_command_key
from sim.cloud.trace_cli import _fetch, decoded_frames, summary
from sim.runner import SimOptions, simulate
from tests.e2e.test_sim_e2e import subscribed

REPO = Path(__file__).resolve().parents[2]


def test_summary_of_a_bad_frame_names_error_and_offset() -> None:
    bad = {"hex": "68 01 02", "ts": 0, "direction": "rx"}
    frames = decoded_frames({"links": {"rs485-1": {"frames": [bad]}}})
    assert frames[0]["link"] == "rs485-1" and frames[0]["decoded"]["ok"] is False
    assert "at byte" in summary(frames[0]["decoded"])


async def test_trace_of_a_running_terminal(tmp_path: Path, amqtt_broker: EmbeddedBroker) -> None:
    board = load_board(REPO / "board.toml")
    options = SimOptions(
        board=board, workdir=tmp_path / "run", speed=10.0, meters_per_bus=2, seed=5,
        broker_url=amqtt_broker.url,
    )  # fmt: skip
    key = load_command_key(REPO / "sim" / "credentials.toml")

    def args(**kw: object) -> argparse.Namespace:
        return argparse.Namespace(broker=amqtt_broker.url, terminal=board.terminal.id, timeout=60.0, **kw)

    async with simulate(options) as run:
        await subscribed(run)
        async with run.clock.timeout(300):  # a first realtime cycle has put frames on the bus
            while run.terminal.parts is None or run.terminal.parts.bus.retained("acquisition/stats") is None:
                await run.clock.sleep(1.0)
        result = await _fetch(args(), key, {"link": "rs485-1", "limit": 10})
        frames = decoded_frames(result)
        assert 0 < len(frames) <= 10 and {f["link"] for f in frames} == {"rs485-1"}
        meters = {m.meter.address for m in run.station.buses["rs485-1"]}
        for f in frames:
            if not f["hex"] and "timeout" in f.get("note", ""):
                continue  # a read that timed out (a loaded machine): noted in the trace, no bytes
            assert f["decoded"]["ok"], f
            assert f["decoded"]["protocol"] in ("dlt645", "dlt698")
        assert {f["direction"] for f in frames} == {"tx", "rx"}
        assert {f["device"] for f in frames} <= meters | {"broadcast"}
        with pytest.raises(CloudCliError, match="no link 'rs485-9'"):
            await _fetch(args(), key, {"link": "rs485-9"})
