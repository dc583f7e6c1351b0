"""HPLC in the physics-driven station area, end to end: a branch outage in the world makes the
virtual CCO send last-gasp power-off and restore power-on lists (AFN06 F5) that the terminal's
driver publishes on its bus as ``hplc/event/power_off|power_on``; a dip shorter than the
judgement sends nothing; HPLC meters' readings reach the cloud stub.

Runs ``sim.runner.simulate`` on the repo board (virtual time, ``--speed max``) with one feeder (55
customers, 15 of them on HPLC). Expected addresses come from the world's ground truth (the
outage's meters that are on the carrier); expected times from the GRID.md §3 timing model.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

from runtime.config import load_board
from sim.hplc import LastGaspTiming
from sim.runner import SimOptions, simulate
from sim.scenarios import load_scenario
from sim.vloop import run_virtual
from sim.world import build_world

REPO = Path(__file__).resolve().parents[2]
START = 1717200000.0  # 2024-06-01 00:00 UTC
SEED = 2
HPLC_METERS = 15
OUTAGE_AT, OUTAGE_S = 60.0, 90.0
DIP_AT, DIP_S = 240.0, 2.0
RUN_S = 330.0
SLACK_S = 5.0  # the wire and the CCO's own scheduling
TIMING = LastGaspTiming()


def busiest_hplc_branch(scenario: Path) -> str:
    """The branch with the most HPLC meters in the world the run will build (same seed)."""
    w = build_world(
        buses=["rs485-1"], scenario=load_scenario(scenario), seed=SEED, start=START, duration_s=RUN_S,
        hplc_meters=HPLC_METERS,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for m in w.hplc_meters():
        counts[m.branch] = counts.get(m.branch, 0) + 1
    return max(sorted(counts), key=lambda b: counts[b])


def test_branch_outage_reaches_the_terminal_as_power_off_and_on_lists(tmp_path: Path) -> None:
    """On virtual time (``--speed max``): the report times are the carrier model's, exactly."""
    probe = tmp_path / "probe.toml"
    probe.write_text("[scenario]\npv_share = 0.0\n", encoding="utf-8")
    branch = busiest_hplc_branch(probe)
    scenario = tmp_path / "hplc.toml"
    scenario.write_text(
        f'[scenario]\npv_share = 0.0\n[[outage]]\nlevel = "branch"\ntarget = "{branch}"\n'
        f'at = "{OUTAGE_AT:g}s"\nduration = "{OUTAGE_S:g}s"\n'
        f'[[outage]]\nlevel = "branch"\ntarget = "{branch}"\nat = "{DIP_AT:g}s"\nduration = "{DIP_S:g}s"\n',
        encoding="utf-8",
    )
    board = load_board(REPO / "board.toml")
    acq = board.apps["acquisition"]
    apps = {**board.apps, "acquisition": dataclasses.replace(acq, config={**acq.config, "curve": False})}
    options = SimOptions(
        board=dataclasses.replace(board, apps=apps), workdir=tmp_path / "run", speed=math.inf,
        meters_per_bus=1, seed=SEED, start=START, duration_s=RUN_S, network="ieee-eu-lv",
        scenario=str(scenario), customers_scale=1, truth_dir=tmp_path / "truth", hplc_meters=HPLC_METERS,
    )  # fmt: skip

    async def main() -> tuple[Any, ...]:
        seen: list[tuple[str, float, frozenset[str], float]] = []  # kind, event ts, addresses, bus time
        async with simulate(options) as run:
            assert run.world is not None and run.hplc is not None and run.terminal.parts is not None
            clock = run.clock
            t0 = run.world.start + OUTAGE_AT
            t1, dip = t0 + OUTAGE_S, run.world.start + DIP_AT
            async with run.terminal.parts.bus.subscribe("hplc/event/#") as sub:
                while clock.now() < run.world.start + RUN_S:
                    try:
                        async with clock.timeout(run.world.start + RUN_S - clock.now()):
                            msg = await sub.get()
                    except TimeoutError:
                        break
                    p: dict[str, Any] = msg.payload
                    seen.append((p["kind"], float(p["ts"]), frozenset(p["addresses"]), clock.now()))
            hplc = run.world.hplc_meters()
            outage = next(e for e in run.world.events if e.kind == "outage" and e.target == branch)
            expected = {m.meter.address for m in hplc if m.id in outage.meters}
            summary = await run.summary()
            readings = {m.id: await run.cloud.readings(device=m.id, limit=1) for m in hplc}
            dips = run.hplc.outages.dips
        return seen, t0, t1, dip, expected, summary, readings, dips, hplc

    seen, t0, t1, dip, expected, summary, readings, dips, hplc = run_virtual(main)
    assert len(expected) >= 2, f"branch {branch}: too few HPLC meters for the test"
    offs = [s for s in seen if s[0] == "power_off"]
    ons = [s for s in seen if s[0] == "power_on"]
    # exactly the HPLC meters of the branch, once each way, in one aggregated report each
    assert [s[2] for s in offs] == [frozenset(expected)], seen
    assert [s[2] for s in ons] == [frozenset(expected)], seen
    (_, off_ts, _, _), (_, on_ts, _, _) = offs[0], ons[0]
    off_earliest = t0 + TIMING.judgement_s + TIMING.sta_delay_s[0] + TIMING.off_window_s
    off_latest = t0 + TIMING.judgement_s + TIMING.sta_delay_s[1] + TIMING.off_window_s
    assert off_earliest - 0.5 <= off_ts <= off_latest + SLACK_S, (off_ts - t0, seen)
    assert off_ts < t1  # reported while the branch is still dark
    on_earliest = t1 + TIMING.restore_delay_s[0] + TIMING.restore_aggregation_s
    on_latest = t1 + TIMING.restore_delay_s[1] + TIMING.restore_aggregation_s
    assert on_earliest - 0.5 <= on_ts <= on_latest + SLACK_S, (on_ts - t1, seen)
    # the 2 s dip: every STA of the branch saw it, the CCO judged it a dip and sent nothing
    assert dips >= len(expected)
    assert not [s for s in seen if s[1] >= dip], seen
    assert summary["hplc"]["power_off_reports"] == 1 and summary["hplc"]["power_on_reports"] == 1
    # HPLC readings reach the cloud, for every HPLC meter (those of the branch answer again)
    assert all(readings.values()), {k: len(v) for k, v in readings.items()}
    assert summary["acquisition"]["hplc_syncs"] >= 1
    with (tmp_path / "truth" / "topology.csv").open(encoding="utf-8") as f:
        channels = {r["meter_id"]: r["channel"] for r in csv.DictReader(f)}
    assert {k for k, ch in channels.items() if ch == "hplc"} == {m.id for m in hplc}
