"""The terminal loses its own supply, the way it happens in the field: a real ``ttu run`` process.

A linux board whose ``[power]`` node is a GPIO value file (the mains-present input), a real
mosquitto broker and the cloud stub. The mains goes (the file says "0"): within the board's
hold-up the outage app's last gasp -- a station-level outage -- is at the master station; then
the supercapacitor runs out: the process is SIGKILLed, nothing flushed. The store passes its
integrity check and still holds every message the cloud had. The mains returns, the terminal
boots again, reports the restore, and every message it ever accepted reaches the cloud exactly
once, without a gap. Waits are bounded polls of the two databases, not sleeps for time to pass.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from apps.outage.cloud import iso
from hal.clock import LoopClock
from protocols.station import Branch, Meter, MeterBox, StationModel
from runtime.config import load_credentials
from sim.archive import write_station
from sim.broker import MosquittoBroker
from sim.cloud.stub import CloudStub
from sim.outage_runs import cloud_outages
from sim.outage_score import epoch

REPO = Path(__file__).resolve().parents[2]
TTU = Path(sys.executable).with_name("ttu")
TERMINAL = "TTU-PL-0001"
HOLDUP_S = 20.0
POLL_MS = 20
BOOT_S = 2.0  # the app's estimate of how long the terminal took to boot (its restore's resolution)


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


async def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    return await asyncio.to_thread(_query, path, sql)


def board_text(work: Path, broker_url: str) -> str:
    return f"""
[terminal]
id = "{TERMINAL}"
timezone = "Asia/Shanghai"

[hal]
backend = "linux"

[power]
device = "gpio:{work / "mains"}"
active_low = true
holdup_s = {HOLDUP_S}
poll_ms = {POLL_MS}

[uplink]
broker = "{broker_url}"
credentials_file = "{REPO / "sim" / "credentials.toml"}"
keepalive_s = 5

[store]
path = "{work / "ttu.sqlite"}"

[packages]
apps_dir = "{REPO / "apps"}"

[station]
file = "{work / "station.toml"}"

[apps.outage]
enabled = true

[apps.outage.config]
boot_s = {BOOT_S}
probe = false
"""


def station() -> StationModel:
    meters = tuple(
        Meter(f"m-{n}", f"{n:012d}", channel="hplc", phase="ABC"[n % 3], branch="F1", box=f"F1-X{1 + n % 2}")
        for n in range(1, 7)
    )
    return StationModel(
        id="TA-PL",
        branches=(Branch("F1"),),
        boxes=(MeterBox("F1-X1", branch="F1"), MeterBox("F1-X2", branch="F1")),
        meters=meters,
    )


@asynccontextmanager
async def terminal(work: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """A ``ttu run`` process; killed (SIGKILL) on the way out if the test did not stop it."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            str(TTU), "-v", "run", "--board", str(work / "board.toml"), cwd=REPO, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()


async def wait_for(what: str, check: Any, log: Path, *, within: float = 60.0) -> Any:
    """Poll ``check()`` (async) until it returns something truthy; fail after ``within`` s."""
    wall = LoopClock()
    try:
        async with wall.timeout(within):
            while not (found := await check()):
                await wall.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"no {what} within {within} s; terminal log:\n{tail(log)}") from None
    return found


def outage_app_running(work: Path) -> Any:
    async def check() -> bool:
        try:
            doc = json.loads((work / "state" / "apps.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return any(a.get("name") == "outage" and a.get("state") == "running" for a in doc.get("apps", []))

    return check


async def test_terminal_power_loss_last_gasp_then_sigkill_loses_nothing(
    tmp_path: Path, mosquitto_broker: MosquittoBroker
) -> None:
    clock = LoopClock()  # epoch time as the terminal reads it (its reports' start, end)
    work = tmp_path / "terminal"
    work.mkdir()
    log = tmp_path / "ttu-run.log"
    (work / "board.toml").write_text(board_text(work, mosquitto_broker.url), encoding="utf-8")
    write_station(work / "station.toml", station())
    mains = work / "mains"
    mains.write_text("1\n", encoding="utf-8")
    store_db, cloud_db = work / "ttu.sqlite", tmp_path / "cloud.sqlite"
    key = load_credentials(REPO / "sim" / "credentials.toml").command_key

    async def station_outage() -> dict[str, Any] | None:
        found = await query(cloud_db, "SELECT received, body FROM results_outage ORDER BY id")
        for received, body in found:
            if json.loads(body)["level"] == "station":
                return {"received": received, **json.loads(body)}
        return None

    async with CloudStub(
        broker_url=mosquitto_broker.url, db_path=cloud_db, clock=LoopClock(), default_key=key
    ):
        async with terminal(work, log) as proc:
            await wait_for("outage app running", outage_app_running(work), log)

            async def heard_from() -> bool:  # the terminal's uplink is through: the cloud has its messages
                return bool(await query(cloud_db, f"SELECT 1 FROM messages WHERE terminal = '{TERMINAL}'"))

            await wait_for("first message at the cloud", heard_from, log)
            t_cut = clock.now()
            mains.write_text("0\n", encoding="utf-8")  # the transformer's LV side is gone
            gasp = await wait_for("last gasp", station_outage, log, within=HOLDUP_S + 10)
            # the capacitor runs out: the process dies where it stands
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert gasp["received"] - t_cut <= HOLDUP_S, gasp  # at the master station within the hold-up
        assert gasp["target"] == "TA-PL" and gasp["status"] == "ongoing" and gasp["end"] is None
        assert "power_monitor" in gasp["sources"] and len(gasp["meters"]) == 6
        assert t_cut - 0.05 <= gasp["start"] <= t_cut + 3 * POLL_MS / 1000 + 0.5, (gasp["start"], t_cut)

        # what the cloud had is still in the terminal's store, which is whole
        assert (await query(store_db, "PRAGMA integrity_check")) == [("ok",)]
        outbox = {str(k) for (k,) in await query(store_db, "SELECT key FROM outbox")}
        received = {str(k) for (k,) in await query(cloud_db, "SELECT key FROM messages")}
        assert received and received <= outbox

        # the mains returns: the terminal boots again on the same store and reports the restore
        t_back = clock.now()
        mains.write_text("1\n", encoding="utf-8")
        async with terminal(work, log) as proc:

            async def restored() -> bool:
                found = await query(cloud_db, "SELECT body FROM results_outage ORDER BY id")
                return any(json.loads(b)["id"] == gasp["id"] and json.loads(b)["end"] for (b,) in found)

            await wait_for("restore report", restored, log)

            async def all_delivered() -> bool:
                sent = dict(await query(store_db, "SELECT stream, last_seq FROM outbox_seq"))
                at_cloud = {
                    s: (last, gaps, missing)
                    for s, last, gaps, missing in await query(
                        cloud_db,
                        f"SELECT stream, last_seq, gaps, missing FROM streams WHERE terminal = '{TERMINAL}'",
                    )
                }
                return bool(sent) and all(at_cloud.get(s) == (last, 0, 0) for s, last in sent.items())

            await wait_for("every message at the cloud", all_delivered, log)
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        assert proc.returncode == 0, tail(log)

    # as the master station lists it: the same outage, ended -- not a second one
    (done,) = [r for r in cloud_outages(cloud_db, TERMINAL) if r["level"] == "station"]
    assert done["id"] == gasp["id"] and done["start"] == iso(gasp["start"])
    end = epoch(done["end"])
    assert end is not None and t_back - BOOT_S - 1.0 <= end <= clock.now(), (end, t_back)
    # every message the terminal accepted, before and after its death, is at the cloud once
    outbox = {str(k) for (k,) in await query(store_db, "SELECT key FROM outbox")}
    rows = await query(
        cloud_db, f"SELECT key, COUNT(*) FROM messages WHERE terminal = '{TERMINAL}' GROUP BY key"
    )
    counts = {str(k): int(n) for k, n in rows}
    assert outbox <= set(counts), outbox - set(counts)
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
