"""Physics-driven station: scenario validation, ground truth (conservation, determinism), theft,
relay closed loop, and an outage seen end to end through the terminal and the cloud stub."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from runtime.config import load_board
from runtime.errors import ConfigError
from sim.runner import SimOptions, simulate
from sim.scenarios import Scenario, load_scenario, parse_scenario
from sim.truth import TRUTH_FILES, write_truth
from sim.vloop import run_virtual
from sim.world import World, build_world

REPO = Path(__file__).resolve().parents[2]
START = 1717200000.0  # 2024-06-01 00:00 UTC, on a 15-min boundary
BUSES = ["rs485-1", "rs485-2", "rs485-3", "rs485-4"]


HPLC_METERS = 12


def world(scenario: Scenario, *, duration: float = 7200.0, scale: int = 1) -> World:
    return build_world(
        buses=BUSES, scenario=scenario, seed=3, start=START, duration_s=duration, customers_scale=scale,
        hplc_meters=HPLC_METERS,
    )  # fmt: skip


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ('[[outage]]\nlevel = "feeder"\nat = 1\nduration = 5', "outage[0].level", "is not one of"),
        ('[[outage]]\nlevel = "meter"\nat = "5x"\nduration = 5\ntarget="m-0001"', "outage[0].at", "duration"),
        ('[[theft]]\nmeter = "m-0001"\nbypass = 1.5', "theft[0].bypass", "outside"),
        ("[comms]\nloss = 3", "comms.loss", "unknown key"),
        ('[[meter_fault]]\nkind = "slow"\nvalue = 3', "meter_fault[0].meter", "required"),
    ],
)
def test_scenario_errors_name_key_and_file(tmp_path: Path, text: str, path: str, reason: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scenario(f)
    assert info.value.path == path
    assert reason in str(info.value) and "bad.toml" in str(info.value)


def test_unknown_target_is_a_config_error() -> None:
    sc = parse_scenario(
        {"outage": [{"level": "box", "target": "F9-X99", "at": 0, "duration": 60}]}, name="x", source="x.toml"
    )
    with pytest.raises(ConfigError, match="matches no meter"):
        world(sc, duration=1800)


def test_shipped_scenarios_load() -> None:
    sc = load_scenario("default")
    assert sc.outages and sc.thefts and sc.meter_faults and sc.relays and sc.pv_surges
    assert any(o.duration < 3 for o in sc.outages)
    load_scenario("quiet")


def test_truth_conserves_energy_and_is_deterministic(tmp_path: Path) -> None:
    sc = load_scenario("default")
    outs = []
    for n in range(2):
        w = world(sc, scale=2)
        w.apply_due(START + 7200)
        outs.append(write_truth(w, tmp_path / f"t{n}", end=START + 7200))
    for name in TRUTH_FILES:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    t = outs[0]
    trafo = sum(float(r["energy_kwh"]) for r in rows(t / "transformer.csv"))
    cust = sum(float(r["energy_kwh"]) for r in rows(t / "intervals.csv"))
    loss = sum(float(r["loss_kwh"]) for r in rows(t / "branches.csv") if r["branch"] == "ALL")
    assert trafo > 0 and abs(trafo - cust - loss) / trafo < 0.001
    assert len({r["timestamp"] for r in rows(t / "intervals.csv")}) == 8
    topo = rows(t / "topology.csv")
    assert len([r for r in topo if r["meter_id"].startswith("m-")]) == 110  # 2 x 55 customers
    assert {r["meter_id"] for r in topo if r["meter_id"].startswith("bt-")} == {"bt-F2-X01", "bt-F4-X01"}
    # branch units and the assessment meter (总表, at the transformer) have no box
    assert all(
        r["box"] for r in topo if not r["meter_id"].startswith("bu-") and r["meter_id"] != "assessment"
    )
    assert [r["branch"] for r in topo if r["meter_id"] == "assessment"] == [""]
    by_channel = {r["meter_id"]: r["channel"] for r in topo}
    w0 = world(sc, scale=2)
    assert {k for k, ch in by_channel.items() if ch == "hplc"} == {m.id for m in w0.hplc_meters()}
    assert len(w0.hplc_meters()) == HPLC_METERS
    assert {by_channel[sm.id] for sm in w0.station.buses["rs485-2"]} == {"rs485-2"}
    lastgasp = {r["target"] for r in rows(t / "events.csv") if r["kind"] == "lastgasp"}
    assert lastgasp and lastgasp <= {k for k, ch in by_channel.items() if ch == "hplc"}  # STAs only
    kinds = {r["kind"] for r in rows(t / "events.csv")}
    assert {"outage", "dip", "relay_trip", "lastgasp"} <= kinds
    faults = {r["kind"] for r in rows(t / "faults.csv")}
    assert {
        "theft",
        "slow",
        "clock_skew",
        "ct_ratio",
        "archive_missing",
        "archive_foreign",
        "comms",
    } <= faults


def test_outage_zeroes_voltage_and_meters_record_power_down(tmp_path: Path) -> None:
    sc = load_scenario("default")
    w = world(sc)
    w.apply_due(START + 7200)
    write_truth(w, tmp_path, end=START + 7200)
    f4 = {m.id for m in w.customers() if m.branch == "F4"}
    during = [r for r in rows(tmp_path / "intervals.csv") if r["timestamp"] == "2024-06-01T00:15:00Z"]
    assert all(float(r["voltage_v"]) > 0 for r in during)  # the 20-30 min outage covers no whole step
    m = w.meters[sorted(f4)[0]].meter
    assert (
        m.power_down_count == 1
        and m.power_downs[0].start == START + 1200
        and m.power_downs[0].end == START + 1800
    )
    # the 2 s dip: no power-down anywhere except the scheduled outages
    assert w.meters["m-0001"].meter.power_down_count == 0


def test_theft_meter_sees_part_physics_sees_all() -> None:
    sc = parse_scenario({"theft": [{"meter": "m-0020", "bypass": 0.6}]}, name="t", source="t.toml")
    w = world(sc)
    m = w.meters["m-0020"]
    before = m.meter.registers(START).forward[0]
    after = m.meter.registers(START + 7200).forward[0]
    true = m.replica.horizon.customer_energy_kwh(m.customer, START, START + 7200)
    gain = m.meter.errors.energy_gain if m.meter.errors is not None else 1.0  # the meter's class error
    assert true > 0 and after - before == pytest.approx(0.4 * true * gain, rel=1e-6)


def test_relay_trip_takes_load_out_of_physics_and_close_restores(tmp_path: Path) -> None:
    sc = load_scenario("quiet")
    w = world(sc)
    m = w.meters["m-0005"]
    hz = m.replica.horizon
    trafo_before = hz.trafo_energy_kwh(START + 1800, START + 3600).sum()
    m.meter.trip(START + 900)  # as the terminal's 1C command would
    w.follow_relays(START + 900)
    hz = m.replica.horizon
    assert hz.customer_energy_kwh(m.customer, START + 900, START + 7200) == 0.0
    assert hz.trafo_energy_kwh(START + 1800, START + 3600).sum() < trafo_before
    reg = m.meter.registers(START + 900).forward[0]
    assert m.meter.registers(START + 3600).forward[0] == reg  # zero consumption on the meter too
    m.meter.close(START + 3600)
    w.follow_relays(START + 3600)
    assert m.replica.horizon.customer_energy_kwh(m.customer, START + 3600, START + 7200) > 0
    write_truth(w, tmp_path, end=START + 7200)
    trips = [r for r in rows(tmp_path / "events.csv") if r["kind"] == "relay_trip"]
    assert trips == [
        {"kind": "relay_trip", "scope": "meter", "target": "m-0005", "start": "2024-06-01T00:15:00Z",
         "end": "2024-06-01T01:00:00Z", "meters": "m-0005"}
    ]  # fmt: skip


def test_outage_reaches_the_cloud_through_the_terminal(tmp_path: Path) -> None:
    """On virtual time (``--speed max``): the whole path, independent of the machine's load."""
    scenario = tmp_path / "one.toml"
    scenario.write_text(
        '[scenario]\npv_share = 0.0\n[[outage]]\nlevel = "meter"\ntarget = "m-0003"\n'
        'at = "90s"\nduration = "45s"\n',
        encoding="utf-8",
    )
    board = load_board(REPO / "board.toml")
    acq = board.apps["acquisition"]
    apps = {
        **board.apps,
        "acquisition": dataclasses.replace(acq, config={**acq.config, "event_poll_interval_s": 60}),
    }
    board = dataclasses.replace(board, apps=apps)
    options = SimOptions(
        board=board, workdir=tmp_path / "run", speed=math.inf, meters_per_bus=1, seed=2, start=START,
        duration_s=360.0, network="ieee-eu-lv", scenario=str(scenario), truth_dir=tmp_path / "truth",
    )  # fmt: skip

    async def main() -> tuple[list[Any], int | None, object]:
        async with simulate(options) as run:
            await run.clock.sleep(360.0)
            found = []
            for _ in range(30):
                found = [e for e in await run.cloud.events(kind="meter.power_down") if e.source == "m-0003"]
                if found:
                    break
                await run.clock.sleep(5.0)
            count = run.world.meters["m-0003"].meter.power_down_count if run.world else None
            seen = (
                [(e.kind, e.source) for e in await run.cloud.events(limit=50)],
                (await run.summary())["acquisition"],
            )
        return found, count, seen

    found, count, seen = run_virtual(main)
    assert found, f"the power-down record never reached the cloud stub: count {count}, events {seen}"
    assert found[0].start == pytest.approx(START + 90, abs=1.0)
    events = rows(tmp_path / "truth" / "events.csv")
    assert events[0]["kind"] == "outage" and events[0]["target"] == "m-0003"


def test_comms_loss_silences_a_box_on_rs485_keeps_its_supply_and_is_ground_truth(tmp_path: Path) -> None:
    probe = world(load_scenario("quiet"))
    box = next(m.box for m in probe.meters.values() if m.channel != "hplc" and m.box and m.kind == "customer")
    sc = parse_scenario(
        {"scenario": {}, "comms_loss": [{"target": box, "at": "10m", "duration": "20m"}]},
        name="c",
        source="c.toml",
    )
    w = world(sc)
    hit = [m for m in w.meters.values() if m.box == box and m.channel != "hplc"]
    assert hit
    w.apply_due(START + 599)
    assert not any(m.meter.misses() for m in hit)
    w.apply_due(START + 600)
    assert all(m.meter.misses() for m in hit)  # it hears nothing...
    assert all(m.meter.on for m in hit) and not any(m.meter.power_downs for m in hit)  # ...with supply
    w.apply_due(START + 1800)
    assert not any(m.meter.misses() for m in hit)
    write_truth(w, tmp_path, end=START + 7200)
    events = rows(tmp_path / "events.csv")
    (loss,) = [r for r in events if r["kind"] == "comms_loss"]
    assert (loss["scope"], loss["target"]) == ("box", box)
    assert set(loss["meters"].split(";")) == {m.id for m in hit}
    assert not [r for r in events if r["kind"] == "outage"]
    with pytest.raises(ConfigError, match="comms_loss"):
        bad = {"scenario": {}, "comms_loss": [{"target": "nowhere", "at": "1m", "duration": "1m"}]}
        world(parse_scenario(bad, name="c", source="c.toml"))
