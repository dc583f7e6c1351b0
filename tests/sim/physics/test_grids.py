"""Any network a utility brings: switches as set, loops solved, replicas as one network -- vs pandapower."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from sim.physics import StationNetwork, load_network
from sim.physics.network import fill_zero_sequence
from sim.physics.solver import power_flow
from tests.sim.physics.test_physics import P_COLS, Q_COLS, _random_loads

DATA = Path(__file__).parent / "data"


def _reference(
    original: pp.pandapowerNet, nw: StationNetwork, p: np.ndarray, q: np.ndarray, mv: float
) -> tuple:
    """pandapower's own runpp_3ph on the network AS GIVEN (its switches, its loops), with our
    customers' single-phase loads and the same typical zero-sequence data."""
    net = copy.deepcopy(original)
    net.load.drop(net.load.index, inplace=True)
    fill_zero_sequence(net)
    ph = nw.phase_index()
    for k, c in enumerate(nw.customers):
        kw = dict.fromkeys((*P_COLS, *Q_COLS), 0.0)
        kw[P_COLS[ph[k]]] = p[k] / 1000.0
        kw[Q_COLS[ph[k]]] = q[k] / 1000.0
        pp.create_asymmetric_load(net, c.bus, type="wye", **kw)
    net.ext_grid.vm_pu = mv
    pp.runpp_3ph(net, numba=False)
    vb = nw.vn_lv_kv * 1000.0 / np.sqrt(3.0)
    vm = net.res_bus_3ph[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
    rows = {b: i for i, b in enumerate(net.res_bus_3ph.index)}
    v = np.array([vm[rows[c.bus], ph[k]] * vb for k, c in enumerate(nw.customers)])
    loss = float(net.res_line_3ph[["pl_a_mw", "pl_b_mw", "pl_c_mw"]].to_numpy().sum() * 1000.0)
    return v, loss


@pytest.mark.parametrize("name", ["schutterwald_4", "schutterwald_7"])
def test_real_feeders_with_loops_match_pandapower(name: str) -> None:
    path = DATA / f"{name}.json"
    original = pp.from_json(str(path))
    nw = load_network(path, seed=3)
    assert nw.n_customers == len(original.load)
    p, q, mv = _random_loads(nw, steps=2, seed=8, mean_kw=1.5)
    flow = power_flow(nw, p, q, mv)
    for k in range(2):
        v_pp, loss_pp = _reference(original, nw, p[k], q[k], float(mv[k]))
        assert np.max(np.abs(flow.v[k] - v_pp)) <= 0.1
        assert flow.line_loss[k] == pytest.approx(loss_pp, rel=0.01)
    # energy balance per branch holds with loops: supply = customers + own line losses >= customers
    sold = np.zeros_like(flow.branch_p)
    for i, b in enumerate(nw.branch_index()):
        if b >= 0:
            sold[:, b] += p[:, i]
    assert (flow.branch_p - sold >= -1e-6).all()
    assert ((flow.branch_p - sold).sum(axis=1) <= flow.line_loss + 1e-6).all()


def test_switch_states_decide_the_loops_and_the_supplying_branch(tmp_path: Path) -> None:
    radial = load_network(DATA / "schutterwald_4.json", seed=1)
    assert radial.loops == ()  # its one loop is opened by a switch
    meshed = load_network(DATA / "schutterwald_7.json", seed=1)
    assert len(meshed.loops) == 1  # operated meshed: solved, not refused
    # close every switch of feeder 4: the loop is now operated closed
    data = json.loads((DATA / "schutterwald_4.json").read_text())
    switches = json.loads(data["_object"]["switch"]["_object"])
    closed_col = switches["columns"].index("closed")
    for row in switches["data"]:
        row[closed_col] = True
    data["_object"]["switch"]["_object"] = json.dumps(switches)
    closed = tmp_path / "closed.json"
    closed.write_text(json.dumps(data))
    looped = load_network(closed, seed=1)
    assert len(looped.loops) == 1
    assert looped.n_customers == radial.n_customers
    # the supplying tree of the operated network never runs through a switched-out line
    open_lines = {
        int(s.element)
        for _, s in pp.from_json(str(DATA / "schutterwald_4.json")).switch.iterrows()
        if not s.closed
    }
    assert open_lines and not open_lines & set(radial.net.line.index)
    p, q, mv = _random_loads(looped, steps=1, seed=2, mean_kw=1.5)
    v_pp, _ = _reference(pp.from_json(str(closed)), looped, p[0], q[0], float(mv[0]))
    assert np.max(np.abs(power_flow(looped, p, q, mv).v[0] - v_pp)) <= 0.1


def _replicated_pandapower(nw: StationNetwork, copies: int) -> tuple[pp.pandapowerNet, list[dict[int, int]]]:
    """``copies`` copies of the feeder's LV side built explicitly in pandapower, all on one LV busbar."""
    net = copy.deepcopy(nw.net)
    lv = int(net.trafo.lv_bus.iloc[0])
    source = {int(net.trafo.hv_bus.iloc[0]), *(int(b) for b in net.ext_grid.bus)}
    feeder_buses = [int(b) for b in nw.net.bus.index if int(b) not in source and int(b) != lv]
    maps = [{b: b for b in nw.net.bus.index.astype(int)}]
    for _ in range(1, copies):
        mapping = {lv: lv}
        for b in feeder_buses:
            mapping[b] = pp.create_bus(net, vn_kv=float(nw.net.bus.vn_kv.loc[b]))
        for _, line in nw.net.line.iterrows():
            new = pp.create_line_from_parameters(
                net, mapping[int(line.from_bus)], mapping[int(line.to_bus)], float(line.length_km),
                float(line.r_ohm_per_km), float(line.x_ohm_per_km), float(line.c_nf_per_km),
                float(line.max_i_ka),
            )  # fmt: skip
            for col in ("r0_ohm_per_km", "x0_ohm_per_km", "c0_nf_per_km"):
                net.line.at[new, col] = float(line[col])
        maps.append(mapping)
    net.asymmetric_load.drop(net.asymmetric_load.index, inplace=True)
    return net, maps


def test_replicas_are_one_network_and_match_pandapower(ieee: StationNetwork) -> None:
    copies = 2
    nw = ieee.replicate(copies)
    assert nw.n_customers == 2 * 55 and len(nw.branches) == 2 * len(ieee.branches)
    assert nw.branches[len(ieee.branches)].startswith("R2-") and nw.customers[55].box.startswith("R2-")
    p, q, mv = _random_loads(nw, steps=1, seed=11, mean_kw=3.0)
    flow = power_flow(nw, p, q, mv)
    net, maps = _replicated_pandapower(ieee, copies)
    ph = nw.phase_index()
    for k in range(1):
        ref = copy.deepcopy(net)
        for i, c in enumerate(nw.customers):
            kw = dict.fromkeys((*P_COLS, *Q_COLS), 0.0)
            kw[P_COLS[ph[i]]] = p[k, i] / 1000.0
            kw[Q_COLS[ph[i]]] = q[k, i] / 1000.0
            pp.create_asymmetric_load(ref, maps[c.replica][c.bus], type="wye", **kw)
        ref.ext_grid.vm_pu = float(mv[k])
        pp.runpp_3ph(ref, numba=False)
        vb = nw.vn_lv_kv * 1000.0 / np.sqrt(3.0)
        vm = ref.res_bus_3ph[["vm_a_pu", "vm_b_pu", "vm_c_pu"]]
        v_pp = np.array([vm.loc[maps[c.replica][c.bus]].iloc[ph[i]] * vb for i, c in enumerate(nw.customers)])
        assert np.max(np.abs(flow.v[k] - v_pp)) <= 0.1
        loss_pp = float(ref.res_line_3ph[["pl_a_mw", "pl_b_mw", "pl_c_mw"]].to_numpy().sum() * 1000.0)
        assert flow.line_loss[k] == pytest.approx(loss_pp, rel=0.01)
        trafo_pp = float(ref.res_trafo_3ph[["pl_a_mw", "pl_b_mw", "pl_c_mw"]].to_numpy().sum() * 1000.0)
        assert flow.trafo_loss[k] == pytest.approx(trafo_pp, rel=0.02)
        lv = ref.res_bus_3ph.loc[int(ref.trafo.lv_bus.iloc[0]), ["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
        np.testing.assert_allclose(flow.trafo_v[k], lv.astype(float) * vb, atol=0.05)


def test_busbar_drop_and_transformer_loss_rise_with_the_scale(ieee: StationNetwork) -> None:
    """The same customers' demand per copy: more copies load the one transformer more."""
    p1, q1, mv = _random_loads(ieee, steps=4, seed=12, mean_kw=1.5)
    drops, losses = [], []
    for copies in (1, 2, 4):
        nw = ieee.replicate(copies)
        flow = power_flow(nw, np.tile(p1, copies), np.tile(q1, copies), mv)
        nominal = mv[:, None] * nw.vn_lv_kv * 1000.0 / np.sqrt(3.0)
        drops.append(float((nominal - flow.trafo_v).mean()))
        losses.append(float(flow.trafo_loss.mean()))
        sold = float(np.tile(p1, copies).sum(axis=1).mean())
        assert float(flow.trafo_p.sum(axis=1).mean()) == pytest.approx(
            sold + float(flow.line_loss.mean()), rel=1e-3
        )
    assert drops[0] < drops[1] < drops[2]
    assert losses[0] < losses[1] < losses[2]
    assert losses[2] - losses[0] > 3 * (losses[1] - losses[0]) / 2  # copper loss ~ load squared
