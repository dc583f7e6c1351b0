"""The physics world tells the CCO's power hook about every supply change of its HPLC meters:
scenario outages and dips at their own times, a branch breaker opening and closing; a meter's
own relay trip is no supply loss for its STA."""

from __future__ import annotations

from sim.devices.station import BranchSwitch
from sim.scenarios import parse_scenario
from sim.world import World, build_world

START = 1717200000.0
Call = tuple[frozenset[str], bool, float]


def world(outages: list[dict[str, object]]) -> tuple[World, list[Call]]:
    sc = parse_scenario({"scenario": {"pv_share": 0.0}, "outage": outages}, name="t", source="t.toml")
    w = build_world(
        buses=["rs485-1", "rs485-2"], scenario=sc, seed=5, start=START, duration_s=3600, hplc_meters=20
    )
    calls: list[Call] = []
    w.on_supply(lambda addresses, on, t: calls.append((frozenset(addresses), on, t)))
    return w, calls


def branch_with_hplc(w: World) -> str:
    return sorted(m.branch for m in w.hplc_meters())[0]


def test_branch_outage_and_dip_reach_the_hook_at_their_times() -> None:
    probe, _ = world([])
    branch = branch_with_hplc(probe)
    w, calls = world(
        [
            {"level": "branch", "target": branch, "at": 100, "duration": 60},
            {"level": "branch", "target": branch, "at": 600, "duration": 2},
        ]
    )
    outage = next(e for e in w.events if e.kind == "outage")
    on_branch = frozenset(m.meter.address for m in w.hplc_meters() if m.id in outage.meters)
    assert on_branch
    w.apply_due(START + 1200)
    assert calls == [
        (on_branch, False, START + 100),
        (on_branch, True, START + 160),
        (on_branch, False, START + 600),  # the dip: the STAs see it ...
        (on_branch, True, START + 602),
    ]
    dip_meters = [m for m in w.hplc_meters() if m.meter.address in on_branch]
    assert all(m.meter.power_down_count == 1 for m in dip_meters)  # ... the meters ride through it
    rs485 = [m for m in w.customers() if m.id in outage.meters and m.channel != "hplc"]
    assert rs485 and all(m.meter.address not in on_branch for m in rs485)


def test_breaker_opening_cuts_the_hplc_nodes_it_feeds_and_a_relay_trip_does_not() -> None:
    w, calls = world([])
    branch = branch_with_hplc(w)
    rep = w.replicas[0]
    switch = BranchSwitch(w, rep, rep.network.branches.index(branch))
    _, hit = switch._scope()
    fed = frozenset(m.meter.address for m in hit if m.channel == "hplc")
    assert fed
    switch.switched(False, START + 50)
    switch.switched(True, START + 500)
    assert calls == [(fed, False, START + 50), (fed, True, START + 500)]
    calls.clear()
    meter = w.hplc_meters()[0]
    meter.meter.trip(START + 700)
    w.follow_relays(START + 700)
    assert not meter.meter.relay_closed and meter.meter.on
    w.apply_due(START + 800)
    assert calls == []
