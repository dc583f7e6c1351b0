"""Physics vs pandapower, energy conservation, events, network loading."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from runtime.errors import ConfigError
from sim.physics import Profiles, StationNetwork, load_network, solve
from sim.physics.solver import power_flow

P_COLS = ["p_a_mw", "p_b_mw", "p_c_mw"]
Q_COLS = ["q_a_mvar", "q_b_mvar", "q_c_mvar"]


def _random_loads(nw: StationNetwork, steps: int, seed: int, mean_kw: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    p = rng.gamma(2.0, mean_kw / 2.0, size=(steps, nw.n_customers))
    q = p * rng.uniform(0.1, 0.4, size=p.shape)
    mv = nw.source_vm_pu * rng.uniform(0.98, 1.02, size=steps)
    return p, q, mv


def _pandapower_step(nw: StationNetwork, p: np.ndarray, q: np.ndarray, mv: float) -> tuple[np.ndarray, float]:
    net = copy.deepcopy(nw.net)
    ph = nw.phase_index()
    for k, c in enumerate(nw.customers):
        for j in range(3):
            net.asymmetric_load.at[c.load_index, P_COLS[j]] = p[k] / 1000.0 if j == ph[k] else 0.0
            net.asymmetric_load.at[c.load_index, Q_COLS[j]] = q[k] / 1000.0 if j == ph[k] else 0.0
    net.ext_grid.vm_pu = mv
    pp.runpp_3ph(net, numba=False)
    vb = nw.vn_lv_kv * 1000.0 / np.sqrt(3.0)
    vm = net.res_bus_3ph[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
    v = np.array([vm[c.bus, ph[k]] * vb for k, c in enumerate(nw.customers)])
    loss = float(net.res_line_3ph[["pl_a_mw", "pl_b_mw", "pl_c_mw"]].to_numpy().sum() * 1000.0)
    return v, loss


def assert_matches_pandapower(nw: StationNetwork, p: np.ndarray, q: np.ndarray, mv: np.ndarray) -> None:
    flow = power_flow(nw, p, q, mv)
    for k in range(p.shape[0]):
        v_pp, loss_pp = _pandapower_step(nw, p[k], q[k], float(mv[k]))
        assert np.max(np.abs(flow.v[k] - v_pp)) <= 0.1
        assert abs(flow.line_loss[k] - loss_pp) <= 0.01 * loss_pp


def test_ieee_eu_lv_matches_pandapower_runpp_3ph(ieee: StationNetwork) -> None:
    p, q, mv = _random_loads(ieee, steps=2, seed=1, mean_kw=2.0)
    assert_matches_pandapower(ieee, p, q, mv)


def test_kerber_from_json_with_seeded_phases_matches_pandapower(tmp_path: Path) -> None:
    path = tmp_path / "dorfnetz.json"
    pp.to_json(pn.create_kerber_dorfnetz(), str(path))
    nw = load_network(path, seed=7)
    assert nw.n_customers == 57
    phases = {c.phase for c in nw.customers}
    assert phases == {"A", "B", "C"}
    assert load_network(path, seed=7).customers == nw.customers
    assert load_network(path, seed=8).customers != nw.customers
    p, q, mv = _random_loads(nw, steps=2, seed=2, mean_kw=3.0)
    assert_matches_pandapower(nw, p, q, mv)


def test_archive_of_default_feeder(ieee: StationNetwork) -> None:
    rows = ieee.topology_rows()
    assert len(rows) == 55
    assert len({r["meter_id"] for r in rows}) == 55
    assert sum(c.phase == "A" for c in ieee.customers) == 21
    assert len(ieee.branches) >= 2 and len({c.branch for c in ieee.customers}) >= 2
    boxes = {c.box for c in ieee.customers}
    assert 1 < len(boxes) < 55
    for c in ieee.customers:
        assert c.box.startswith(c.branch + "-")


def test_energy_conservation_and_branch_balance(ieee: StationNetwork) -> None:
    p, q, mv = _random_loads(ieee, steps=96, seed=3, mean_kw=1.5)
    hz = solve(ieee, Profiles.constant(p, q, mv, start=1000.0))
    t0, t1 = hz.start, hz.end
    supplied = hz.trafo_energy_kwh(t0, t1).sum()
    sold = hz.customers_energy_kwh(t0, t1).sum()
    loss = hz.line_loss_kwh(t0, t1)
    assert loss > 0.001 * supplied
    assert abs(supplied - sold - loss) <= 0.001 * supplied
    # branch losses are positive and never exceed the total line loss
    assert (hz.branch_loss > -1e-9).all()
    assert hz.branch_loss.sum() <= hz.line_loss.sum()
    assert hz.customer_energy_kwh(0, t0, t0 + 900) == pytest.approx(p[0, 0] / 4)


def test_customer_off_resolves_only_affected_steps(ieee: StationNetwork) -> None:
    p, q, mv = _random_loads(ieee, steps=8, seed=4, mean_kw=1.5)
    hz = solve(ieee, Profiles.constant(p, q, mv, start=0.0))
    off = hz.with_customer_off(5, 1800.0, 3600.0 + 450.0, outage=True)
    assert off.p_kw[2, 5] == 0.0 and off.voltage_v[2, 5] == 0.0
    assert off.p_kw[4, 5] == pytest.approx(p[4, 5] / 2)  # half of step 4 off
    assert off.voltage_v[4, 5] > 0.0  # partly supplied
    np.testing.assert_array_equal(off.voltage_v[:2], hz.voltage_v[:2])
    np.testing.assert_array_equal(off.line_loss[5:], hz.line_loss[5:])
    assert off.line_loss[2] != hz.line_loss[2]
    assert hz.customer_energy_kwh(5, 0, 7200) - off.customer_energy_kwh(5, 0, 7200) == pytest.approx(
        (p[2, 5] + p[3, 5] + p[4, 5] / 2) / 4
    )
    sample = off.customer_at(2000.0)
    assert not sample.supplied[5] and sample.current_a[5] == 0.0


def test_customer_current_is_apparent_power_over_voltage_in_amperes(ieee: StationNetwork) -> None:
    p, q, mv = _random_loads(ieee, steps=2, seed=6, mean_kw=2.0)
    hz = solve(ieee, Profiles.constant(p, q, mv))
    expected = np.hypot(p, q) * 1000.0 / hz.voltage_v  # kVA -> VA, over volts
    np.testing.assert_allclose(hz.current_a, expected, rtol=1e-9)
    assert 1.0 < float(np.median(hz.current_a)) < 40.0  # household amperes, not kA or mA


def test_branch_off_cuts_its_customers(ieee: StationNetwork) -> None:
    p, q, mv = _random_loads(ieee, steps=4, seed=5, mean_kw=1.0)
    hz = solve(ieee, Profiles.constant(p, q, mv)).with_branch_off(ieee.branches[-1], 0.0, 1800.0)
    inside = [i for i, c in enumerate(ieee.customers) if c.branch == ieee.branches[-1]]
    assert (hz.voltage_v[:2, inside] == 0.0).all()
    assert hz.branch_p[0, -1] == pytest.approx(0.0, abs=1e-6)


def test_bad_network_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load_network(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_network(tmp_path / "missing.json")
