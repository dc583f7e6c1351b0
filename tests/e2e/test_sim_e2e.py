"""The whole simulated station area: virtual meters on real ptys, the terminal, a real broker, the cloud stub.

Runs ``sim.runner.simulate`` / ``run_for`` on the repo board (store and archive moved into
tmp_path) at 10x speed (real ptys on the wall clock: a loaded machine must keep up) against the
embedded amqtt broker and mosquitto (the ``broker`` fixture). Virtual time: test_sim_max.py.
"""

from __future__ import annotations

from pathlib import Path

from runtime.config import Board, load_board
from sim.runner import SimOptions, SimRun, run_for, simulate
from tests.brokers import AnyBroker

REPO = Path(__file__).resolve().parents[2]
SPEED = 5.0  # x10 left a 1 s reply timeout 0.1 s of wall time: on a 2-core machine a read failed now and then


def repo_board() -> Board:
    return load_board(REPO / "board.toml")


def options(tmp_path: Path, broker_url: str, *, duration_s: float | None = None) -> SimOptions:
    return SimOptions(
        board=repo_board(),
        workdir=tmp_path / "run",
        speed=SPEED,
        meters_per_bus=2,
        seed=3,
        duration_s=duration_s,
        broker_url=broker_url,
    )


async def subscribed(run: SimRun) -> None:
    """Wait (bounded) until the terminal's uplink has subscribed its command topic and sent a batch,
    and every app is up (has registered its commands: the first batch may be any app's)."""
    async with run.clock.timeout(300):
        while True:
            parts = run.terminal.parts
            uplink = parts.uplink if parts is not None else None
            if uplink is not None and uplink.statistics()["published_batches"] > 0:
                states = {a["state"] for a in parts.supervisor.status()} if parts is not None else set()
                if states <= {"ready", "running"}:
                    return
            await run.clock.sleep(1.0)


async def test_readings_reach_the_cloud(tmp_path: Path, broker: AnyBroker) -> None:
    broker_url = broker.url
    report = await run_for(options(tmp_path, broker_url, duration_s=150.0))
    meters = report["meters"]
    board = repo_board()
    assert board.sim is not None and board.sim.hplc_meters > 0
    assert meters == 2 * len([p for p in board.rs485 if p.enabled]) + board.sim.hplc_meters
    hplc = report["hplc"]  # every HPLC meter answered through driver -> pty -> virtual CCO
    assert hplc["nodes"] == hplc["archived_nodes"] == board.sim.hplc_meters
    assert hplc["reads"] > 0 and hplc["reads_lost"] == 0
    assert report["readings_sent"] > 0
    assert report["readings_received_by_cloud"] == report["readings_sent"]
    assert report["reading_success_rate"] == 1.0
    assert report["meters_online"] == meters
    assert report["uplink_backlog"] == 0
    assert report["errors"]["reads_failed"] == 0
    assert report["errors"]["cloud_rejected"] == 0 and report["errors"]["cloud_gaps"] == 0
    assert 0 < report["wire_bound_seconds"] <= report["cycle_seconds"]


async def test_signed_commands_round_trip(tmp_path: Path, broker: AnyBroker) -> None:
    """The station model file -> store -> bus -> cloud, then a signed patch from the cloud -> bus,
    with its provenance, and its change event back at the cloud; refusals change nothing."""
    broker_url = broker.url
    async with simulate(options(tmp_path, broker_url)) as run:
        terminal = run.options.board.terminal.id
        archive_file = run.options.workdir / "station.toml"
        before = archive_file.read_text()
        parts = run.terminal.parts
        assert parts is not None
        await subscribed(run)
        got = await run.cloud.send_command(terminal, "station.get", {}, timeout=120)
        assert got.ok and got.result is not None and got.result["version"] == 1
        assert sorted(m["address"] for m in got.result["model"]["meters"]) == sorted(
            m.meter.address for m in run.station.meters
        )
        status = await run.cloud.send_command(terminal, "terminal.status", {}, timeout=120)
        assert status.ok and status.result is not None
        assert status.result["running"] is True and status.result["terminal"] == terminal
        assert any(a["name"] == "acquisition" for a in status.result["apps"])
        assert status.result["station"]["version"] == 1

        bad = await run.cloud.send_command(
            terminal,
            "station.replace",
            {"model": {"meters": [{"id": "x", "address": "12", "port": "rs485-9"}]}},
            timeout=120,
        )
        assert not bad.ok and bad.code == "bad_args" and bad.message is not None
        assert "meters[0].address" in bad.message
        unknown = await run.cloud.send_command(terminal, "no.such.command", {}, timeout=120)
        assert not unknown.ok
        assert archive_file.read_text() == before

        target = run.station.meters[0]
        phase = "C" if target.meter.phase != "C" else "A"
        op = {"op": "set", "kind": "meter", "id": target.id, "field": "phase", "value": phase}
        patched = await run.cloud.send_command(
            terminal, "station.patch", {"ops": [op], "by": "op-7"}, timeout=120
        )
        assert patched.ok and patched.result == {"version": 2, "changes": 1}
        retained = parts.bus.retained("station/model")
        assert retained is not None and retained.payload.version == 2
        meter = retained.payload.meter(target.id)
        assert meter.phase == phase and meter.source_of("phase").source == "confirmed"
        assert meter.source_of("phase").by == "op-7"

        async with run.clock.timeout(120):  # the master station has the snapshot and the change
            while not any(
                r.body.get("type") == "change" and r.body.get("version") == 2
                for r in await run.cloud.results("station", terminal=terminal)
            ):
                await run.clock.sleep(1.0)
        bodies = [r.body for r in reversed(await run.cloud.results("station", terminal=terminal))]
        snapshot = next(b for b in bodies if b["type"] == "snapshot")
        assert snapshot["version"] == 1 and len(snapshot["model"]["meters"]) == len(
            got.result["model"]["meters"]
        )
        (change,) = [b for b in bodies if b["type"] == "change" and b["version"] == 2]
        assert change["cause"] == "patch" and change["by"] == "op-7"
        assert change["changes"] == [
            {
                "kind": "meter",
                "id": target.id,
                "field": "phase",
                "before": target.meter.phase,
                "after": phase,
                "provenance": meter.source_of("phase").to_doc(),
            }
        ]
