"""Vectorized unbalanced power flow over a whole horizon.

Layer: sim (physics). Pure numpy on precomputed sequence matrices (``_seqnet``); it must not call
pandapower per step, loop over time steps in Python, or know about meters and the event loop.

Method: current-injection fixed point in the sequence frame, the same equations pandapower's
``runpp_3ph`` solves, but for all time steps at once and reduced to the load buses:

    I_abc = conj(S_abc / V_abc)              (Wye constant-power customers)
    V_k   = E(t) * v1_oc * [k == 1] + Z_k I_k  for k = 0, 1, 2

where E(t) is the MV source voltage, written split at the transformer's LV busbar (``_seqnet``)
so that the k copies of a replicated feeder are solved as ONE network: every copy's currents
load the same transformer and busbar. Once converged, all bus voltages follow from the same
linear map, and line/transformer flows from pandapower's branch admittances Yf/Yt. A branch's
supply is what flows into its lines across its boundary (``StationNetwork.line_sections``),
which is its head line's flow in a radial feeder and stays exact with loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from protocols.errors import ConfigError
from sim.physics._seqnet import PHASE_TO_SEQ, SEQ_TO_PHASE
from sim.physics.network import StationNetwork

FArray = NDArray[np.float64]
CArray = NDArray[np.complex128]

_CHUNK = 1024  # time steps per block: bounds memory (all-bus voltages) for year-long horizons


class PowerFlowNotConverged(ConfigError):
    """The fixed point did not converge (load far beyond what the network can carry)."""


@dataclass(frozen=True)
class FlowResult:
    """Physical results for a block of steps (powers per phase in kW/kvar, voltages in V)."""

    v: FArray  # (T, n) customer phase-to-neutral voltage magnitude [V]
    i: FArray  # (T, n) customer current magnitude [A]
    trafo_v: FArray  # (T, 3) LV terminal phase voltage [V]
    trafo_i: FArray  # (T, 3) LV terminal current [A]
    trafo_p: FArray  # (T, 3) active power delivered into the LV network [kW]
    trafo_q: FArray  # (T, 3)
    branch_p: FArray  # (T, nb) active power into each branch section [kW] (head minus sub-branch heads)
    line_loss: FArray  # (T,) sum of all line losses [kW]
    trafo_loss: FArray  # (T,) transformer copper + iron loss [kW] (outside the station-area statistic)


def power_flow(
    network: StationNetwork,
    p_kw: FArray,
    q_kvar: FArray,
    mv_pu: FArray,
    *,
    tol_pu: float = 1e-10,
    max_iter: int = 100,
) -> FlowResult:
    """Solve every step of ``p_kw``/``q_kvar`` (shape (T, n)) with source voltage ``mv_pu`` (T,)."""
    steps = p_kw.shape[0]
    parts = [
        _block(network, p_kw[a : a + _CHUNK], q_kvar[a : a + _CHUNK], mv_pu[a : a + _CHUNK], tol_pu, max_iter)
        for a in range(0, steps, _CHUNK)
    ]
    if not parts:
        n, nb = network.n_customers, len(network.branches)
        z = np.zeros
        return FlowResult(
            z((0, n)), z((0, n)), z((0, 3)), z((0, 3)), z((0, 3)), z((0, 3)), z((0, nb)), z(0), z(0)
        )
    return FlowResult(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in FlowResult.__dataclass_fields__)
    )


def _block(
    network: StationNetwork, p_kw: FArray, q_kvar: FArray, mv_pu: FArray, tol_pu: float, max_iter: int
) -> FlowResult:
    m = network.model
    steps = p_kw.shape[0]
    copies, n = network.replicas, network.feeder_customers
    feeder = network.customers[:n]
    buses = np.unique(network.net.asymmetric_load.bus.to_numpy(dtype=np.int64))
    col = np.searchsorted(buses, np.array([c.bus for c in feeder], dtype=np.int64))
    ph = np.array(["ABC".index(c.phase) for c in feeder], dtype=np.int64)
    n_lb = buses.size
    lb = m.load_bus

    # pandapower sign/base convention: injection s = -S_phase[MW] / baseMVA; per copy of the feeder
    s_cust = ((p_kw + 1j * q_kvar) / 1000.0).reshape(steps, copies, n)
    s = np.zeros((steps, copies, n_lb, 3), dtype=np.complex128)
    np.add.at(s, (slice(None), slice(None), col, ph), -s_cust / m.base_mva)

    e = mv_pu * np.exp(1j * np.deg2rad(network.source_va_degree))  # (T,)
    zt = [z[lb].T.copy() for z in m.zf]  # (n_lb, n_lb) per sequence, feeder part, for I @ zt
    a_lb = [a[lb] for a in m.alpha]
    y_b = m.y_busbar(copies)

    def busbar(i012: CArray) -> list[CArray]:
        """V_b per sequence (T,) from every copy's load currents (T, copies, n_lb, 3)."""
        out = []
        for k in range(3):
            drawn = (i012[..., k] @ m.w[k]).sum(axis=1)
            out.append((drawn + (m.c1 * e if k == 1 else 0.0)) / y_b[k])
        return out

    v012 = np.zeros((steps, copies, n_lb, 3), dtype=np.complex128)
    v012[..., 1] = (e * m.v1_oc[m.lv])[:, None, None] * a_lb[1][None, None, :]
    for _ in range(max_iter):
        v_abc = v012 @ SEQ_TO_PHASE.T
        i012 = np.conj(s / v_abc) @ PHASE_TO_SEQ.T
        vb = busbar(i012)
        new = np.empty_like(v012)
        for k in range(3):
            new[..., k] = i012[..., k] @ zt[k] + vb[k][:, None, None] * a_lb[k][None, None, :]
        delta = float(np.max(np.abs(new - v012))) if new.size else 0.0
        v012 = new
        if delta < tol_pu:
            break
    else:
        raise PowerFlowNotConverged("physics.solve", f"no convergence in {max_iter} iterations (overload?)")

    v_abc = v012 @ SEQ_TO_PHASE.T
    i012 = np.conj(s / v_abc) @ PHASE_TO_SEQ.T
    vb = busbar(i012)
    lookup = m.bus_lookup
    line_tbl = network.net.line
    f_bus = lookup[line_tbl.from_bus.to_numpy(dtype=np.int64)]
    t_bus = lookup[line_tbl.to_bus.to_numpy(dtype=np.int64)]
    line_loss = np.zeros(steps)
    nb_f = network.feeder_branches
    branch_p = np.zeros((steps, copies * nb_f))
    sections = _section_matrix(network, nb_f)

    def bus_abc(v_all: list[CArray], bus_ppci: NDArray[np.int64]) -> CArray:
        return np.stack([v_all[k][:, bus_ppci] for k in range(3)], axis=-1) @ SEQ_TO_PHASE.T  # type: ignore[no-any-return]

    def branch_flow(v_all: list[CArray], rows: NDArray[np.int64], ymats: tuple[object, ...]) -> CArray:
        """Current entering branches ``rows`` at one end, phase frame: (T, len(rows), 3)."""
        seq = np.stack([(ymats[k][rows] @ v_all[k].T).T for k in range(3)], axis=-1)  # type: ignore[index]
        return seq @ SEQ_TO_PHASE.T  # type: ignore[no-any-return]

    v_all: list[CArray] = []
    for r in range(copies):
        # every bus of copy r (the source side is the same in every copy)
        v_all = [i012[:, r, :, k] @ m.zf[k].T + vb[k][:, None] * m.alpha[k][None, :] for k in range(3)]
        v_all[1] = v_all[1] + e[:, None] * m.e1[None, :]
        s_f = bus_abc(v_all, f_bus) * np.conj(branch_flow(v_all, m.line_rows, m.yf))
        s_t = bus_abc(v_all, t_bus) * np.conj(branch_flow(v_all, m.line_rows, m.yt))
        kw = m.base_mva * 1000.0
        line_loss += (s_f + s_t).real.sum(axis=(1, 2)) * kw
        if nb_f:
            ends = np.concatenate([s_f.real.sum(axis=2), s_t.real.sum(axis=2)], axis=1) * kw  # (T, 2L)
            branch_p[:, r * nb_f : (r + 1) * nb_f] = ends @ sections

    tr = np.array([m.trafo_row])
    hv = m.yf[1].tocsr()[m.trafo_row].indices  # the HV terminal (and LV) columns of the trafo row
    lv = np.array([m.lv])
    v_lv = bus_abc(v_all, lv)[:, 0, :]
    i_tr = branch_flow(v_all, tr, m.yt)[:, 0, :]
    s_tr = -v_lv * np.conj(i_tr) * m.base_mva * 1000.0  # kVA per phase into the LV network
    hv_bus = np.array([int(b) for b in hv if int(b) != m.lv][:1])
    s_hv = bus_abc(v_all, hv_bus)[:, 0, :] * np.conj(branch_flow(v_all, tr, m.yf)[:, 0, :])
    trafo_loss = (s_hv.real.sum(axis=1) * m.base_mva * 1000.0) - s_tr.real.sum(axis=1)

    v_base = network.vn_lv_kv * 1000.0 / np.sqrt(3.0)
    v_cust = (np.abs(v_abc[:, :, col, ph]) * v_base).reshape(steps, copies * n)
    s_all = s_cust.reshape(steps, copies * n)
    # |S| in MVA -> A; a customer without voltage (outage) draws nothing
    i_cust = np.divide(np.abs(s_all) * 1e6, v_cust, out=np.zeros_like(v_cust), where=v_cust > 0)
    i_base = m.base_mva * 1e6 / v_base  # A per pu current in pandapower's per-phase convention
    return FlowResult(
        v=v_cust,
        i=i_cust,
        trafo_v=np.abs(v_lv) * v_base,
        trafo_i=np.abs(i_tr) * i_base,
        trafo_p=s_tr.real,
        trafo_q=s_tr.imag,
        branch_p=branch_p,
        line_loss=line_loss,
        trafo_loss=trafo_loss,
    )


def _section_matrix(network: StationNetwork, branches: int) -> FArray:
    """(2 L, nb): power entering each line at its from end (rows 0..L-1) and to end (L..2L-1) ->
    supply of each branch section: + into a branch's own line from outside it, - into another's
    line from inside it."""
    lines = len(network.line_sections)
    out = np.zeros((2 * lines, branches))
    for i, (owner, at_from, at_to) in enumerate(network.line_sections):
        for row, end in ((i, at_from), (lines + i, at_to)):
            if end == owner:
                continue
            if owner >= 0:
                out[row, owner] += 1.0
            if end >= 0:
                out[row, end] -= 1.0
    return out
