"""Vectorized unbalanced power flow over a whole horizon.

Layer: sim (physics). Pure numpy on precomputed sequence matrices (``_seqnet``); it must not call
pandapower per step, loop over time steps in Python, or know about meters and the event loop.

Method: current-injection fixed point in the sequence frame, the same equations pandapower's
``runpp_3ph`` solves, but for all time steps at once and reduced to the load buses:

    I_abc = conj(S_abc / V_abc)              (Wye constant-power customers)
    V_k   = E(t) * v1_oc * [k == 1] + Z_k I_k  for k = 0, 1, 2

where E(t) is the MV source voltage. Once converged, all bus voltages follow from the same
linear map, and line/transformer flows from pandapower's branch admittances Yf/Yt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from base.errors import ConfigError
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
        return FlowResult(z((0, n)), z((0, n)), z((0, 3)), z((0, 3)), z((0, 3)), z((0, 3)), z((0, nb)), z(0))
    return FlowResult(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in FlowResult.__dataclass_fields__)
    )


def _block(
    network: StationNetwork, p_kw: FArray, q_kvar: FArray, mv_pu: FArray, tol_pu: float, max_iter: int
) -> FlowResult:
    m = network.model
    steps, _n = p_kw.shape
    buses = np.unique(network.net.asymmetric_load.bus.to_numpy(dtype=np.int64))
    cust_bus = np.array([c.bus for c in network.customers], dtype=np.int64)
    col = np.searchsorted(buses, cust_bus)
    ph = network.phase_index()
    n_lb = buses.size
    lb = m.load_bus

    # pandapower sign/base convention: injection s = -S_phase[MW] / baseMVA
    s_cust = (p_kw + 1j * q_kvar) / 1000.0
    s = np.zeros((steps, n_lb, 3), dtype=np.complex128)
    np.add.at(s, (slice(None), col, ph), -s_cust / m.base_mva)

    e = mv_pu * np.exp(1j * np.deg2rad(network.source_va_degree))  # (T,)
    zt = [z[lb].T.copy() for z in m.z]  # (n_lb, n_lb) per sequence, for I @ zt
    v012 = np.zeros((steps, n_lb, 3), dtype=np.complex128)
    v_oc = e[:, None] * m.v1_oc[lb][None, :]
    v012[:, :, 1] = v_oc
    for _ in range(max_iter):
        v_abc = v012 @ SEQ_TO_PHASE.T
        i012 = np.conj(s / v_abc) @ PHASE_TO_SEQ.T
        new = np.empty_like(v012)
        new[:, :, 0] = i012[:, :, 0] @ zt[0]
        new[:, :, 1] = v_oc + i012[:, :, 1] @ zt[1]
        new[:, :, 2] = i012[:, :, 2] @ zt[2]
        delta = float(np.max(np.abs(new - v012))) if new.size else 0.0
        v012 = new
        if delta < tol_pu:
            break
    else:
        raise PowerFlowNotConverged("physics.solve", f"no convergence in {max_iter} iterations (overload?)")

    # all-bus voltages per sequence from the converged currents: (T, n_bus)
    v_abc = v012 @ SEQ_TO_PHASE.T
    i012 = np.conj(s / v_abc) @ PHASE_TO_SEQ.T
    v_all = [i012[:, :, k] @ m.z[k].T for k in range(3)]
    v_all[1] = v_all[1] + e[:, None] * m.v1_oc[None, :]

    def branch_flow(rows: NDArray[np.int64], ymats: tuple[object, object, object]) -> CArray:
        """Current entering branches ``rows`` at one end, phase frame: (T, len(rows), 3)."""
        seq = np.stack([(ymats[k][rows] @ v_all[k].T).T for k in range(3)], axis=-1)  # type: ignore[index]
        return seq @ SEQ_TO_PHASE.T  # type: ignore[no-any-return]

    def bus_abc(bus_ppci: NDArray[np.int64]) -> CArray:
        return np.stack([v_all[k][:, bus_ppci] for k in range(3)], axis=-1) @ SEQ_TO_PHASE.T  # type: ignore[no-any-return]

    lookup = m.bus_lookup
    line_rows = m.line_rows
    line_tbl = network.net.line
    f_bus = lookup[line_tbl.from_bus.to_numpy(dtype=np.int64)]
    t_bus = lookup[line_tbl.to_bus.to_numpy(dtype=np.int64)]
    s_f = bus_abc(f_bus) * np.conj(branch_flow(line_rows, m.yf))
    s_t = bus_abc(t_bus) * np.conj(branch_flow(line_rows, m.yt))
    line_loss = (s_f + s_t).real.sum(axis=(1, 2)) * m.base_mva * 1000.0

    lv = np.array([lookup[network.lv_bus]])
    v_lv = bus_abc(lv)[:, 0, :]
    i_tr = branch_flow(np.array([m.trafo_row]), m.yt)[:, 0, :]
    s_tr = -v_lv * np.conj(i_tr) * m.base_mva * 1000.0  # kVA per phase into the LV network

    nb = len(network.heads)
    if nb:
        forks = lookup[np.array([h[0] for h in network.heads], dtype=np.int64)]
        head_rows = line_rows[np.array([h[1] for h in network.heads], dtype=np.int64)]
        from_fork = np.array([h[2] for h in network.heads])
        v_fork = bus_abc(forks)
        i_head = np.where(
            from_fork[None, :, None], branch_flow(head_rows, m.yf), branch_flow(head_rows, m.yt)
        )
        head_p = (v_fork * np.conj(i_head)).real.sum(axis=2) * m.base_mva * 1000.0
        # a branch supplies its own section: subtract what its sub-branches take at their heads
        branch_p = head_p.copy()
        for b, (_, _, _, up) in enumerate(network.heads):
            if up >= 0:
                branch_p[:, up] -= head_p[:, b]
    else:
        branch_p = np.zeros((steps, 0))

    v_base = network.vn_lv_kv * 1000.0 / np.sqrt(3.0)
    v_cust = np.abs(v_abc[:, col, ph]) * v_base
    # |S| in MVA -> A; a customer without voltage (outage) draws nothing
    i_cust = np.divide(np.abs(s_cust) * 1e6, v_cust, out=np.zeros_like(v_cust), where=v_cust > 0)
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
    )
