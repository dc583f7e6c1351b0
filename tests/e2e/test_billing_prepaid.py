"""The prepaid cycle end to end on virtual time, through every real part: the physics world, the
virtual meters on their wires, acquisition, billing, the uplink, the broker and the cloud stub with
the simulated utility and bank (``sim.billing``).

charge -> alarm -> trip -> top-up -> close, visible in the physics: while the customer is tripped
its load is gone from the power flow (interval energies of the ground truth are zero), and a
customer under 保电 (keep power) is never tripped although its balance goes below the limit."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocols.ledger import Record, audit
from runtime.cli import main
from sim.harness import DEFAULT_START, WorldRun

START = DEFAULT_START + 8 * 3600  # 2024-06-01 08:00 local: peak prices, daytime load
TOPUP_AT = 2.5 * 3600

SCENARIO = """
[scenario]
description = "prepaid cycle"
pv_share = 0.0

[grid]
load_scale = 2.0

[billing]
contract = "{contract}"
opening_yuan = "200.00"
button_delay_s = 60

[[billing.balance]]
meter = "m-0003"
yuan = "0.05"

[[billing.balance]]
meter = "m-0005"
yuan = "0.05"

[[billing.keep_power]]
meter = "m-0005"
at = "0s"
on = true

[[billing.topup]]
meter = "m-0003"
at = "{topup}s"
yuan = "20.00"
"""


def ledger(run: WorldRun) -> list[Record]:
    with sqlite3.connect(run.workdir / "ttu.sqlite") as db:
        rows = db.execute("SELECT seq, ts, kind, uid, body, prev, hash FROM ledger ORDER BY seq").fetchall()
    return [Record(s, t, k, u, json.loads(b), p, h) for s, t, k, u, b, p, h in rows]


def cloud_records(run: WorldRun) -> list[Record]:
    with run.cloud() as db:
        bodies = [stored.body for stored in db.results("billing", limit=1 << 40)]
    seen: dict[int, Record] = {}
    for body in bodies:
        for raw in body.get("records", []):
            record = Record.from_json(raw)
            seen.setdefault(record.seq, record)
    return [seen[s] for s in sorted(seen)]


def when(text: str) -> float:
    return (
        datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=UTC)
        .timestamp()
    )


def test_prepaid_cycle_visible_in_the_physics(sim_world: Any, tmp_path: Path, capsys: Any) -> None:
    demo = Path(__file__).resolve().parents[2] / "sim" / "scenarios" / "contracts" / "prepaid-demo.toml"
    contract = tmp_path / "no-overdraft.toml"  # the demo contract, tripping at zero
    contract.write_text(
        demo.read_text(encoding="utf-8").replace('overdraft_yuan = "0.50"', 'overdraft_yuan = "0.00"')
    )
    scenario = tmp_path / "prepaid.toml"
    scenario.write_text(SCENARIO.format(contract=contract, topup=int(TOPUP_AT)), encoding="utf-8")
    run = sim_world(hours=3.5, scenario=str(scenario), start=START, seed=3)
    records = ledger(run)
    c3 = next(
        r.body["customer"] for r in records if r.kind == "topup" and r.body["txn_id"] == "SIM-OPEN-m-0003"
    )
    c5 = next(
        r.body["customer"] for r in records if r.kind == "topup" and r.body["txn_id"] == "SIM-OPEN-m-0005"
    )

    # the trip: decided in the reading cycle whose debit took the balance to zero or below
    crossing = next(
        r for r in records if r.kind == "debit" and any(e[0] == c3 and e[3] <= 0 for e in r.body["entries"])
    )
    relays = [(r.ts / 1000, r.body["command"], r.body["result"]) for r in records
              if r.kind == "relay" and r.body["customer"] == c3]  # fmt: skip
    trip = next(t for t, c, res in relays if c == "trip" and res == "ok")
    assert crossing.body["cycle"] <= trip < crossing.body["cycle"] + 900  # within one reading cycle
    commands = [c for _, c, res in relays if res == "ok"]
    assert commands[:1] == ["alarm"] and "trip" in commands
    assert commands[commands.index("trip") :] == ["trip", "alarm_release", "close_allowed", "observed"]

    # the physics: the customer's load leaves the power flow while tripped, comes back after the button
    trips = [e for e in run.truth("events.csv") if e["kind"] == "relay_trip"]
    assert [e["target"] for e in trips] == ["m-0003"]
    off, on = when(trips[0]["start"]), when(trips[0]["end"])
    assert abs(off - trip) < 5.0
    assert START + TOPUP_AT + 60 <= on < START + TOPUP_AT + 600  # top-up, close allowed, button 60 s later
    energy = {
        when(row["timestamp"]): float(row["energy_kwh"])
        for row in run.truth("intervals.csv")
        if row["meter_id"] == "m-0003"
    }
    inside = [e for t, e in energy.items() if t >= off + 900 and t + 900 <= on]
    assert inside and all(e == 0.0 for e in inside)
    assert sum(e for t, e in energy.items() if t >= on + 900) > 0  # supplied again

    # 保电: below the trip limit too, never tripped, the trip held back is on record
    held = [
        r for r in records if r.kind == "relay" and r.body["customer"] == c5 and r.body["result"] == "blocked"
    ]
    assert held and all(e["target"] != "m-0005" for e in trips)
    assert any(
        r.kind == "debit" and any(e[0] == c5 and e[3] <= 0 for e in r.body["entries"]) for r in records
    )

    # the master station has the ledger, unbroken and signed-off by the archive acknowledgement
    cloud = cloud_records(run)
    assert audit(cloud).ok and len(cloud) >= len(records) - 5
    with sqlite3.connect(run.workdir / "ttu.sqlite") as db:
        archived = int(dict(db.execute("SELECT key, value FROM ledger_state").fetchall())["archived_seq"])
    assert archived >= len(records) - 20
    assert audit(records).ok

    # the master station's own commands: the summary of the shape, and verify
    terminal = records[0].body["terminal"]
    assert main(["cloud", "billing", "--db", str(run.cloud_db), "--terminal", terminal, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ledger"]["verified"] and out["terminal"] == terminal
    assert main(["cloud", "billing", "verify", "--db", str(run.cloud_db), "--terminal", terminal]) == 0
    assert f"{terminal}: OK" in capsys.readouterr().out
