"""Issue 14 reproduction 6 as the user ran it: ``ttu sim --broker mqtt://...`` against an external
mosquitto (no persistence) that is SIGKILLed mid-run and restarted on the same port a simulated
minute later. The whole simulated station area and terminal run; at the end every reading the
acquisition app produced is at the master station or still in the terminal's outbox, none lost,
no seq missing at the cloud."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from sim.broker import MosquittoBroker, mosquitto_binary
from sim.runner import delivery
from tests.hostile.rig import Attack, station, until, uplink

pytestmark = [
    pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed"),
    pytest.mark.slow,
]

OUTAGE_SIM_S = 60.0  # simulated seconds without a broker (6 real seconds at x10)


async def test_a_broker_killed_and_restarted_mid_run_loses_no_reading(tmp_path: Path) -> None:
    async with MosquittoBroker() as broker, station(tmp_path, broker.url) as run:
        attack = await Attack.begin(run)
        connects = uplink(run).statistics()["connects"]
        cloud_connections = run.cloud.connections
        broker._proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]  # it forgets everything
        await broker.stop()
        await run.clock.sleep(OUTAGE_SIM_S)  # the station area goes on; readings pile up
        assert not uplink(run).statistics()["connected"]
        await broker.start()  # same port
        await until(run, lambda: uplink(run).statistics()["connects"] > connects, "the terminal back")
        await until(run, lambda: run.cloud.connections > cloud_connections, "the master station back")
        await attack.still_reading()  # new readings delivered, the backlog acknowledged, no hole
        counts = await delivery(run)
    assert counts["sent"] and counts["delivered"]
    assert counts["lost"] == 0, counts
