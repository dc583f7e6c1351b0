"""Networks a utility brings that are not the default feeder: customers on the distribution board
itself, and the shipped default scenario (written for the default feeder) run on them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from protocols.errors import ConfigError
from sim.archive import station_model
from sim.physics import build_profiles, load_network
from sim.scenarios import fitted, is_shipped, load_scenario, parse_scenario
from sim.world import World, build_world

START = 1717200000.0  # 2024-06-01 00:00 UTC (08:00 local)


def saved(factory: pytest.TempPathFactory, name: str, net: pp.pandapowerNet) -> Path:
    """``net`` as the pandapower JSON file a utility would bring."""
    path = factory.mktemp("net") / f"{name}.json"
    pp.to_json(net, str(path))
    return path


@pytest.fixture(scope="module")
def rural_overhead(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Kerber Landnetz Freileitung 1: 13 customers, the first on the distribution board's own bus
    return saved(tmp_path_factory, "landnetz_freileitung_1", pn.create_kerber_landnetz_freileitung_1())


def test_customers_on_the_board_belong_to_no_branch_and_the_archive_names_their_outlet(
    rural_overhead: Path,
) -> None:
    net = load_network(rural_overhead, seed=1)
    on_board = [i for i, c in enumerate(net.customers) if c.bus == net.board_bus]
    assert on_board and all(net.customers[i].branch == "F0" for i in on_board)
    assert "F0" not in net.branches
    below = net.customers_in(range(len(net.branches)))
    assert sorted(below + on_board) == list(range(net.n_customers))
    world = build_world(
        buses=["rs485-1"], scenario=load_scenario("quiet"), seed=1, start=START, duration_s=3600.0,
        network=str(rural_overhead), customers_scale=2,
    )  # fmt: skip
    unit_scopes = [set(u.meter.profile.customers) for u in world.branch_units()]  # type: ignore[attr-defined]
    board_meters = {m.customer for m in world.customers() if m.branch.endswith("F0")}
    assert len(board_meters) == 2 * len(on_board)
    assert all(scope.isdisjoint(board_meters) for scope in unit_scopes)
    model = station_model(world.station, world=world)
    branches = {b.id: b for b in model.branches}
    assert {"F0", "R2-F0"} <= set(branches)
    assert branches["F0"].monitor is None and branches["F0"].breaker is None
    board_ids = {w.id for w in world.customers() if w.branch.endswith("F0")}
    assert {m.branch for m in model.meters if m.id in board_ids} == {"F0", "R2-F0"}


def test_an_outage_of_the_boards_own_outlet_darkens_the_customers_on_the_board(rural_overhead: Path) -> None:
    # the archive lists the board's outlet as branch "F0" (random outage scenarios pick it): an
    # outage of it was "matches no meter"
    scenario = parse_scenario(
        {"outage": [{"level": "branch", "target": "F0", "at": 600, "duration": 300}]}, name="f0", source="t"
    )
    world = build_world(
        buses=["rs485-1"], scenario=scenario, seed=1, start=START, duration_s=3600.0,
        network=str(rural_overhead), customers_scale=1,
    )  # fmt: skip
    (event,) = [e for e in world.events if e.kind == "outage"]
    on_board = {m.id for m in world.customers() if m.branch == "F0"}
    assert (event.scope, event.target) == ("branch", "F0") and on_board and set(event.meters) == on_board


def fitted_world(name: str, network: Path, caplog: pytest.LogCaptureFixture) -> tuple[World, str]:
    """The shipped scenario ``name`` built on ``network`` (x4: 52 meters), and the warnings it gave."""
    shipped = load_scenario(name)
    assert is_shipped(shipped)
    with caplog.at_level(logging.WARNING, logger="ttu.sim.world"):
        world = build_world(
            buses=["rs485-1"], scenario=shipped, seed=1, start=START, duration_s=3600.0,
            network=str(network), customers_scale=4,
        )  # fmt: skip
    return world, " ".join(r.getMessage() for r in caplog.records)


def test_the_default_scenario_leaves_out_what_another_network_lacks_and_says_so(
    rural_overhead: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world, said = fitted_world("default", rural_overhead, caplog)
    assert "branch outage of F4" in said and "box terminal on F2-X01" in said
    kept = world.scenario
    assert [o.target for o in kept.outages if o.level == "branch"] == []
    assert {o.target for o in kept.outages if o.level == "meter"} == {"m-0010"}  # 52 meters: it exists
    assert [t.meter for t in kept.thefts] == ["m-0020"]
    assert kept.monitoring.box_terminals == ()


def test_every_shipped_scenario_runs_on_another_network_with_what_it_has(
    rural_overhead: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the shipped line-loss scenario names the default feeder's boxes: it was refused there
    world, said = fitted_world("lineloss", rural_overhead, caplog)
    assert "the lineloss scenario" in said and "box terminal on F2-X01" in said
    assert [t.meter for t in world.scenario.thefts] == [t.meter for t in load_scenario("lineloss").thefts]


def test_a_shipped_scenarios_stress_that_overloads_another_network_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the lineloss scenario doubles demand and line lengths (for the short default feeder): a long,
    # weak Dickert feeder then has no power-flow solution ("physics.solve: no convergence")
    path = tmp_path / "dickert_long_bad.json"
    net = pn.create_dickert_lv_network(feeders_range="long", customer="multiple", case="bad")
    pp.to_json(net, str(path))
    with caplog.at_level(logging.WARNING, logger="ttu.sim.world"):
        world = build_world(
            buses=["rs485-1"], scenario=load_scenario("lineloss"), seed=1, start=START, duration_s=900.0,
            network=str(path), customers_scale=1,
        )  # fmt: skip
    assert "overload network dickert_long_bad: it runs as drawn" in caplog.text
    assert (world.scenario.grid.load_scale, world.scenario.grid.line_scale) == (1.0, 1.0)
    assert [t.meter for t in world.scenario.thefts] == [t.meter for t in load_scenario("lineloss").thefts]


def test_a_scenario_of_ones_own_is_not_fitted_silently(rural_overhead: Path, tmp_path: Path) -> None:
    own = tmp_path / "default.toml"  # the same name and text as the shipped one, but the user's
    own.write_text(Path("sim/scenarios/default.toml").read_text(encoding="utf-8"), encoding="utf-8")
    mine = load_scenario(own)
    assert not is_shipped(mine)
    with pytest.raises(ConfigError, match="F2-X01"):
        build_world(
            buses=["rs485-1"], scenario=mine, seed=1, start=START, duration_s=3600.0,
            network=str(rural_overhead), customers_scale=4,
        )  # fmt: skip


def test_fitting_keeps_what_exists_and_lists_every_thing_left_out() -> None:
    sc = parse_scenario(
        {
            "outage": [
                {"level": "branch", "target": "F1", "at": 0, "duration": 60},
                {"level": "branch", "target": "F9", "at": 0, "duration": 60},
                {"level": "box", "target": "F1-X02", "at": 0, "duration": 60},
                {"level": "meter", "target": "m-0099", "at": 0, "duration": 60},
                {"level": "meter", "target": "010000000003", "at": 0, "duration": 60},
                {"level": "phase", "target": "B", "at": 0, "duration": 60},
            ],
            "theft": [
                {"meter": "m-0002", "bypass": 0.5, "at": 0},
                {"meter": "m-0050", "bypass": 0.5, "at": 0},
            ],
            "comms_loss": [
                {"target": "rs485-1", "at": 0, "duration": 60},
                {"target": "F7-X01", "at": 0, "duration": 60},
            ],
            "monitoring": {"box_terminals": ["F1-X01", "F3-X01"]},
            "archive": {"phase": ["m-0001", "m-0077"]},
        },
        name="t",
        source="t.toml",
    )
    fit, left_out = fitted(sc, branches={"F1"}, boxes={"F1-X01"}, meters={f"m-{k:04d}" for k in range(1, 11)})
    assert [(o.level, o.target) for o in fit.outages] == [
        ("branch", "F1"),
        ("meter", "010000000003"),
        ("phase", "B"),
    ]
    assert [t.meter for t in fit.thefts] == ["m-0002"]
    assert [c.target for c in fit.comms_losses] == ["rs485-1"]
    assert fit.monitoring.box_terminals == ("F1-X01",)
    assert fit.archive.phase.meters == ("m-0001",)
    assert sorted(left_out) == sorted(
        [
            "branch outage of F9",
            "box outage of F1-X02",
            "meter outage of m-0099",
            "theft at m-0050",
            "comms loss of F7-X01",
            "box terminal on F3-X01",
            "wrong phase label of m-0077",
        ]
    )


def test_the_networks_own_pv_systems_are_its_prosumers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a network with static generators (PV) was refused ("model generation as negative load")
    raw = pn.create_synthetic_voltage_control_lv_network("rural_1")
    empty = sorted(set(raw.bus.index) - set(raw.load.bus) - set(raw.trafo.hv_bus) - set(raw.ext_grid.bus))[-1]
    pp.create_sgen(raw, bus=empty, p_mw=0.05)  # a plant with no customer at its bus
    path = tmp_path / "rural_1.json"
    pp.to_json(raw, str(path))
    with caplog.at_level(logging.WARNING, logger="ttu.sim.network"):
        net = load_network(path, seed=1)
    assert f"PV (sgen) at buses [{empty}]" in caplog.text
    rated = raw.sgen.groupby("bus")["p_mw"].sum() * 1000.0
    customers_at = raw.load.groupby("bus").size()
    for c in net.customers:
        expected = rated.get(c.bus, 0.0) / customers_at[c.bus] if c.bus in customers_at.index else 0.0
        assert c.pv_kwp == pytest.approx(expected)
    has_pv = np.array([c.pv_kwp > 0 for c in net.customers])
    assert 0 < has_pv.sum() < len(has_pv)
    prof = build_profiles(net, start=START, steps=96, seed=1, pv_share=0.5)  # the network's PV wins
    assert (prof.prosumer == has_pv).all()
    noon = 16  # 12:00 local
    assert (prof.pv_kw[noon, has_pv] > 0.05 * np.array([c.pv_kwp for c in net.customers])[has_pv]).all()
    assert (prof.pv_kw[:, ~has_pv] == 0).all()


@pytest.mark.parametrize(
    ("argv", "scale"),
    [
        ([], 4),  # the 55-customer IEEE feeder x 4: a station area of 220 meters
        (["--network", "ieee-eu-lv"], 4),
        (["--network", "NET"], 1),  # a network of one's own is its station area as drawn
        (["--network", "NET", "--customers-scale", "3"], 3),
    ],
)
def test_a_network_of_ones_own_runs_as_drawn(
    argv: list[str], scale: int, rural_overhead: Path, tmp_path: Path
) -> None:
    import argparse

    from sim.cli import _options, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = [str(rural_overhead) if a == "NET" else a for a in argv]
    options = _options(parser.parse_args(["sim", *args, "--workdir", str(tmp_path / "run")]))
    assert options.customers_scale == scale


def test_the_boards_carrier_meters_fit_a_small_network_of_ones_own(rural_overhead: Path) -> None:
    def world(*, from_board: bool) -> int:
        w = build_world(
            buses=["rs485-1"], scenario=load_scenario("quiet"), seed=1, start=START, duration_s=3600.0,
            network=str(rural_overhead), hplc_meters=30, hplc_from_board=from_board,
        )  # fmt: skip
        return len(w.hplc_meters())

    assert world(from_board=True) == 13 // 2  # the board's 30 is the default area's; 13 customers here
    with pytest.raises(ConfigError, match="30: the station area has 13 customers"):
        world(from_board=False)  # asked for: refused


@pytest.fixture(scope="module")
def cigre_lv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # three station areas (residential, industrial, commercial) behind one MV bus
    return saved(tmp_path_factory, "cigre_lv", pn.create_cigre_network_lv())


def test_a_network_of_several_transformers_is_simulated_one_station_area_at_a_time(
    cigre_lv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert len(pp.from_json(str(cigre_lv)).trafo) == 3  # was refused: "found 3 in-service transformers"
    with caplog.at_level(logging.WARNING, logger="ttu.sim.network"):
        default = load_network(cigre_lv, seed=1)
    assert "Trafo C0-C1" in caplog.text and "--transformer" in caplog.text and "Trafo R0-R1" in caplog.text
    residential = load_network(cigre_lv, seed=1, transformer="Trafo R0-R1")
    by_index = load_network(f"{cigre_lv}#0", seed=1)
    assert [c.bus for c in by_index.customers] == [c.bus for c in residential.customers]
    assert len(default.customers) == 8 and len(residential.customers) == 6
    assert {c.bus for c in residential.customers}.isdisjoint(c.bus for c in default.customers)
    assert len(residential.net.trafo) == 1 and len(residential.net.ext_grid) == 1
    assert residential.vn_lv_kv == pytest.approx(0.4)
    with pytest.raises(ConfigError, match=r"no transformer 'X1'.*'Trafo I0-I1' \(index 1"):
        load_network(cigre_lv, seed=1, transformer="X1")
