"""Line loss end to end: the simulator's world, the terminal's own reads, the master station's record.

One world on virtual time (``sim.harness``), shared by the tests here: a 30-customer, three-branch
feeder (pandapower's Dickert middle-range network, not the default feeder the app was developed
on), demand and line lengths scaled for a few % technical loss, with a theft (30 % bypass) on
one branch, a stopped and a 12 % slow register on another, a third branch clean, two meter
boxes with a box terminal, and the 总表's archive CT ratio wrong (200 recorded, 300 fitted). The
terminal is up at 23:45 the evening before, every fault starts at midnight, and the run ends
once that day has been computed and delivered (25 h). The repository's board with only the apps
line loss needs (acquisition, line loss): the other apps cost CPU and prove nothing here.

What the master station has (``ttu cloud lineloss --json``, the real CLI) is checked against an
independent back office computed from the registers the cloud received
(``sim.lineloss_score``), against the physics (branches.csv) and against faults.csv. The long
runs (51 h, several networks, scenarios and seeds, the default feeder with every app) are
``bench/lineloss_world.py``'s; a clean week on five networks is ``bench/lineloss.py``'s.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocols.station import loads
from sim import lineloss_score as score
from sim.harness import DEFAULT_START, WorldRun, run_world

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TERMINAL = "TTU-SIM-0001"
TZ_S = 8 * 3600  # Asia/Shanghai
DAY1 = "2024-06-01"
START = DEFAULT_START - 900  # 23:45 local, the evening before DAY1
HOURS = 25.0  # until 00:45 after DAY1: its freezes read, the day computed (00:30) and delivered
# meters are numbered branch by branch (m-0001..m-0010 on F1, m-0011..m-0020 on F2, F3 after)
SCENARIO = """
[scenario]
description = "line loss e2e: theft on F1, a stopped and a slow register on F2, F3 clean, 总表 CT wrong"
pv_share = 0.2

[grid]
load_scale = 2.5
line_scale = 2.5

[[theft]]
meter = "m-0005"
bypass = 0.3
at = "15m"

[[meter_fault]]
meter = "m-0013"
kind = "stopped"
at = "15m"

[[meter_fault]]
meter = "m-0017"
kind = "slow"
value = 12.0
at = "15m"

[transformer]
ct_ratio_actual = 300
ct_ratio_configured = 200

[monitoring]
box_terminals = ["F2-X01", "F3-X01"]
"""
#: faults.csv kind -> the issue's goal in days (theft: to the customer; to its branch in 1 day)
GOALS = {"theft": 3.0, "stopped": 1.0, "slow": 3.0, "ct_ratio": 1.0}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WorldRun:
    import pandapower as pp
    import pandapower.networks as pn

    folder = tmp_path_factory.mktemp("lineloss")
    network = folder / "dickert-middle.json"
    net = pn.create_dickert_lv_network(
        feeders_range="middle", linetype="C&OHL", customer="multiple", case="good"
    )
    pp.to_json(net, str(network))
    (folder / "scenario.toml").write_text(SCENARIO, encoding="utf-8")
    return run_world(
        folder / "run",
        hours=HOURS,
        start=START,
        network=str(network),
        scenario=str(folder / "scenario.toml"),
        hplc_meters=6,
        only_apps=("acquisition", "lineloss"),
    )


def cloud_json(run: WorldRun, *args: str) -> dict[str, Any]:
    """``ttu cloud lineloss`` as a user runs it, on what the master station stored."""
    ttu = Path(sys.executable).with_name("ttu")  # the console script the venv installed
    cmd = [str(ttu), "cloud", "lineloss", "--db", str(run.cloud_db), "--terminal", TERMINAL, "--json", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_figures_equal_the_back_office_and_the_physics(world: WorldRun) -> None:
    out = cloud_json(world)
    assert out["terminal"] == TERMINAL
    # 2024-05-31 began before the terminal did, and its last 15 min are too little for a partial day
    assert {d["date"] for d in out["days"]} == {DAY1}
    for d in out["days"]:
        assert set(d) >= {
            "date",
            "scope",
            "supply_kwh",
            "sales_kwh",
            "loss_kwh",
            "loss_rate",
            "class",
            "coverage",
        }
    got = {d["scope"]: d for d in out["days"]}
    office = score.back_office(world, DAY1, TZ_S)
    assert set(office) == {"station", "F1", "F2", "F3"}  # every branch has a branch unit
    assert {"F2-X01", "F3-X01"} <= set(got)  # the boxes with a box terminal
    for scope, (supply, sales) in office.items():
        assert got[scope]["loss_rate"] == pytest.approx((supply - sales) / supply * 100.0, abs=0.01), scope
        assert got[scope]["supply_kwh"] == pytest.approx(supply, abs=0.01), scope
        assert got[scope]["sales_kwh"] == pytest.approx(sales, abs=0.01), scope
        assert got[scope]["coverage"] == 1.0
    # the clean branch: the meters' loss is the physics' loss, a few %, and qualified. Up to the
    # meters' own errors: ten class-2 customer meters (gain sigma 0.67 % each) and a class-0.5S
    # branch unit put the register figure up to about 1 pp off the power flow's
    truth = score.physics(world, TZ_S)
    supply, loss = truth[(DAY1, "F3")]
    assert got["F3"]["loss_rate"] == pytest.approx(loss / supply * 100.0, abs=1.0)
    assert got["F3"]["class"] == "qualified"
    whole_supply, whole_loss = truth[(DAY1, "ALL")]
    assert 2.0 < whole_loss / whole_supply * 100.0 < 8.0  # "normal" is a few %, not zero
    # the 总表 reads 2/3 of the true energy (CT 300 fitted, 200 recorded): far below the sales
    assert got["station"]["class"] == "negative"
    # the stopped and the slow register hide energy on F2: high loss there
    assert got["F2"]["class"] == "high"


def test_every_injected_fault_is_found_in_time_and_nothing_else(world: WorldRun) -> None:
    faults = world.truth("faults.csv")
    assert {f["kind"] for f in faults} == set(GOALS)
    since = score.midnight(DAY1, TZ_S)
    for d in score.delays(world, TERMINAL, since):
        assert d.days is not None, f"{d.kind} on {d.target} never reported"
        assert d.days <= GOALS[d.kind], d
        if d.kind == "theft":
            assert d.branch_days is not None and d.branch_days <= 1.0, d  # located to its branch in 1 day
    out = cloud_json(world)
    reported = {(a["kind"], a["target"]) for a in out["anomalies"]}
    expected = {(score.KINDS[f["kind"]], f["target"]) for f in faults}
    assert reported >= expected, expected - reported
    assert score.unexplained(world, out["anomalies"]) == set()  # nothing but the injected faults
    for a in out["anomalies"]:
        assert 0.0 < a["confidence"] <= 1.0 and a["evidence"], a
    (theft,) = [a for a in out["anomalies"] if a["kind"] == "theft" and a["target"] == "m-0005"]
    assert theft["branch"] == "F1"
    assert 20.0 <= theft["evidence"]["bypass_pct"] <= 40.0  # 30 % injected
    (ct,) = [a for a in out["anomalies"] if a["kind"] == "ct_ratio"]
    assert ct["evidence"]["nearest_standard_ct_ratio"] == 300.0  # the CT really fitted
    branches = {a["target"]: a["branch"] for a in out["anomalies"] if a["kind"].startswith("meter_")}
    assert branches == {"m-0013": "F2", "m-0017": "F2"}


def test_the_dashboard_draws_what_the_master_station_stored(world: WorldRun, tmp_path: Path) -> None:
    """The real ``make sim`` page (panels from the ``ttu.dashboard`` entry points) over this run's
    cloud database, drawn by headless Chromium fetching from the dashboard over HTTP."""
    from sim.cloud.db import CloudDb
    from sim.dashboard import Dashboard
    from tests.apps.lineloss._browser import Elements, dump_dom

    out = cloud_json(world)
    db = CloudDb(world.cloud_db, readonly=True)

    class DbCloud:  # the stub's database behind the dashboard, as CloudStub serves it (one thread here)
        async def terminals(self) -> list[object]:
            return list(db.terminals())

        async def readings(self, *args: object, **kwargs: object) -> list[object]:
            return []

        async def events(self, *args: object, **kwargs: object) -> list[object]:
            return []

        async def query(self, fn: Any) -> Any:
            return fn(db)

    async def summary() -> dict[str, object]:
        return {"meters": 0, "speed": 1, "elapsed_s": 0, "sim_time": 0, "acquisition": {}, "apps": []}

    async def page() -> str:
        async with Dashboard(summary, DbCloud(), port=0) as dash:
            return await asyncio.to_thread(dump_dom, dash.url, tmp_path / "profile", budget_ms=8000)

    try:
        html = asyncio.run(page())
    finally:
        db.close()
    dom = Elements(html)
    assert dom.find("section", id="panel-lineloss")
    series = {a["data-scope"]: a["points"].split() for a in dom.find("polyline", class_="series")}
    model = loads((world.workdir / "station.toml").read_text(encoding="utf-8"))
    level = (
        {"station": "station"} | {b.id: "branch" for b in model.branches} | {b.id: "box" for b in model.boxes}
    )
    scopes = {d["scope"] for d in out["days"] if d["loss_rate"] is not None}
    assert set(series) == scopes == {"station", "F1", "F2", "F3", "F2-X01", "F3-X01"}
    drawn = {a["data-scope"]: a["data-level"] for a in dom.find("polyline", class_="series")}
    assert drawn == {s: level[s] for s in scopes}  # boxes drawn as boxes, branches as branches
    assert dom.find("line", class_="threshold-high") and dom.find("line", class_="threshold-negative")
    rows = dom.find("tr", class_="anomaly")
    assert len(rows) == len(out["anomalies"]) >= 4
    assert {f"anomaly-{a['kind']}" for a in out["anomalies"]} == {
        c for r in rows for c in r["class"].split() if c.startswith("anomaly-")
    }
