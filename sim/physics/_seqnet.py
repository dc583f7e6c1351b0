"""Sequence-frame admittance model of a pandapower network, reduced to the customer buses.

Layer: sim (physics). Builds matrices once per network; it must not run time-series loops and
must not know about meters, profiles or the terminal.

pandapower's own ``runpp_3ph`` is run once on a zero-load copy only to obtain its sequence
admittance matrices (Ybus0/1/2, Yf, Yt) exactly as pandapower models lines, the transformer's
vector group and the external grid. From them we precompute, per sequence k,
``Z_k = Y_k^-1`` restricted to the columns of the load buses, so every later time step costs a
few small dense matrix products (see ``solver``). Loops inside the feeder need nothing special.

The transformer's LV terminal b separates the source side (grid, transformer) from the feeder,
so the feeder sees the source only through b. Split at b (``Z_bb``: b's self-impedance,
``alpha_i = Z_ib / Z_bb``: how a voltage at b reaches bus i, ``w_j = Z_bj / Z_bb``: how much of a
current injected at j reaches b):

    V_i = sum_j Zf_ij I_j + alpha_i V_b (+ e_i E on the source side)      Zf = Z - alpha (x) Z_b.
    V_b = (c E + sum_j w_j I_j) / Y_b                                    c = v_oc_b / Z_bb

With k copies of the feeder in parallel at b (``StationNetwork.replicate``) the sum runs over
every copy's currents and ``Y_b = 1 / Z_bb + (k - 1) y_feeder``, y_feeder being the admittance
one unloaded feeder (its cable capacitance) adds at b: exact, one feeder's matrices for all copies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandapower as pp
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray
from pandapower.pypower.idx_bus import BUS_TYPE, REF
from pandapower.pypower.makeYbus import makeYbus

from protocols.errors import ConfigError

CArray = NDArray[np.complex128]

_A = np.exp(2j * np.pi / 3)
#: V_abc = SEQ_TO_PHASE @ V_012 (pandapower's convention)
SEQ_TO_PHASE: CArray = np.array([[1, 1, 1], [1, _A**2, _A], [1, _A, _A**2]], dtype=np.complex128)
PHASE_TO_SEQ: CArray = np.linalg.inv(SEQ_TO_PHASE)


@dataclass(frozen=True)
class SequenceModel:
    """Reduced sequence model. Bus indices are pandapower-internal (ppci) positions."""

    base_mva: float
    n_bus: int
    slack: int
    z: tuple[CArray, CArray, CArray]  # per sequence: (n_bus, n_load_bus), all buses x load buses
    v1_oc: CArray  # (n_bus,) positive-sequence voltage with no load for a slack of 1 pu at 0 deg
    yf: tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]  # branch from-end current = yf @ v
    yt: tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]
    load_bus: NDArray[np.int64]  # ppci index of every distinct load bus (columns of z)
    line_rows: NDArray[np.int64]  # ppci branch row of every line, in net.line order
    trafo_row: int  # ppci branch row of the (single) transformer; its LV side is the "to" end
    bus_lookup: NDArray[np.int64]  # pandapower bus index -> ppci position
    line_pos: dict[int, int]  # pandapower line label -> position in net.line (and line_rows)
    lv: int  # ppci index of the transformer LV terminal (the busbar b)
    # the split at b, per sequence (see the module docstring): all buses x load buses, all buses, ...
    zf: tuple[CArray, CArray, CArray]
    alpha: tuple[CArray, CArray, CArray]
    w: tuple[CArray, CArray, CArray]  # (n_load_bus,)
    e1: CArray  # (n_bus,) source term of the positive sequence (0 in the feeder)
    c1: complex  # positive-sequence Norton current at b per unit of source voltage
    z_bb: tuple[complex, complex, complex]
    y_feeder: tuple[complex, complex, complex]

    def y_busbar(self, copies: int) -> tuple[complex, complex, complex]:
        """``Y_b`` per sequence with ``copies`` feeders in parallel at b."""
        return tuple(1.0 / self.z_bb[k] + (copies - 1) * self.y_feeder[k] for k in range(3))  # type: ignore[return-value]


def build_sequence_model(net: pp.pandapowerNet, load_buses_pp: NDArray[np.int64]) -> SequenceModel:
    """Run pandapower once (zero load) and reduce its sequence matrices to ``load_buses_pp``."""
    work = copy.deepcopy(net)
    for col in ("p_a_mw", "p_b_mw", "p_c_mw", "q_a_mvar", "q_b_mvar", "q_c_mvar"):
        work.asymmetric_load[col] = 0.0
    try:
        pp.runpp_3ph(work, numba=False)
    except Exception as err:  # pandapower raises many unrelated types for bad networks
        raise ConfigError("network", f"pandapower cannot build its three-phase model: {err}") from err
    ppc = (work["_ppc0"], work["_ppc1"], work["_ppc2"])
    if any(p["bus"].shape[0] != len(work.bus) for p in ppc):
        raise ConfigError("network.bus", "merged or isolated buses are not supported")
    # pandapower keeps only Ybus1 after runpp_3ph; rebuild all three the way it does
    built = [makeYbus(p["baseMVA"], p["bus"], p["branch"]) for p in ppc]
    ybus = tuple(sp.csc_matrix(b[0]) for b in built)
    yf = tuple(sp.csr_matrix(b[1]) for b in built)
    yt = tuple(sp.csr_matrix(b[2]) for b in built)
    ref = np.flatnonzero(ppc[1]["bus"][:, BUS_TYPE].real == REF)
    if ref.size != 1:
        raise ConfigError("network.ext_grid", f"exactly one external grid is supported, found {ref.size}")
    slack = int(ref[0])
    n_bus = ybus[1].shape[0]
    lookup = np.asarray(work._pd2ppc_lookups["bus"], dtype=np.int64)
    load_bus = lookup[load_buses_pp]
    branch_lookup = work._pd2ppc_lookups["branch"]
    l0, _ = branch_lookup["line"]
    t0, _ = branch_lookup["trafo"]
    line_rows = l0 + np.arange(len(work.line), dtype=np.int64)

    lv = int(lookup[int(net.trafo.lv_bus.iloc[0])])
    cols = np.append(load_bus, lv)  # the load buses, then b
    rhs = np.zeros((n_bus, cols.size), dtype=np.complex128)
    rhs[cols, np.arange(cols.size)] = 1.0
    z0 = spla.splu(ybus[0]).solve(rhs)
    z2 = spla.splu(ybus[2]).solve(rhs)
    # positive sequence: the slack bus has a fixed voltage, so solve on the other buses only
    keep = np.setdiff1d(np.arange(n_bus), [slack])
    y1 = ybus[1].tocsr()
    lu1 = spla.splu(sp.csc_matrix(y1[keep][:, keep]))
    z1 = np.zeros_like(rhs)
    z1[keep] = lu1.solve(rhs[keep])
    v1_oc = np.zeros(n_bus, dtype=np.complex128)
    v1_oc[slack] = 1.0
    v1_oc[keep] = lu1.solve(-np.asarray(y1[keep][:, [slack]].todense()).ravel())

    ends = (
        lookup[work.line.from_bus.to_numpy(dtype=np.int64)],
        lookup[work.line.to_bus.to_numpy(dtype=np.int64)],
    )
    line_lv = [(i, True) for i, b in enumerate(ends[0]) if b == lv]
    line_lv += [(i, False) for i, b in enumerate(ends[1]) if b == lv]
    neighbours = sorted({int(ends[1][i] if at_from else ends[0][i]) for i, at_from in line_lv})
    zf, alpha, w, z_bb, y_feeder = [], [], [], [], []
    for k, z in enumerate((z0, z1, z2)):
        zb = z[:, -1]
        bb = complex(zb[lv])
        a = zb / bb
        zf.append(z[:, :-1] - np.outer(a, z[lv, :-1]))
        alpha.append(a)
        w.append(z[lv, :-1] / bb)
        z_bb.append(bb)
        # what one unloaded feeder adds at b: its lines' own admittance at b, and through them
        # the rest of the feeder (alpha): the current the feeder draws per volt at b
        mats = (yf[k], yt[k])
        y_own = sum(complex(mats[0 if at_from else 1][line_rows[i], lv]) for i, at_from in line_lv)
        row = ybus[k].tocsr()[lv].toarray().ravel()
        y_feeder.append(y_own + complex(row[neighbours] @ a[neighbours]))
    e1 = v1_oc - alpha[1] * v1_oc[lv]
    return SequenceModel(
        base_mva=float(ppc[1]["baseMVA"]),
        n_bus=n_bus,
        slack=slack,
        z=(z0[:, :-1], z1[:, :-1], z2[:, :-1]),
        v1_oc=v1_oc,
        yf=yf,  # type: ignore[arg-type]
        yt=yt,  # type: ignore[arg-type]
        load_bus=load_bus,
        line_rows=line_rows,
        trafo_row=int(t0),
        bus_lookup=lookup,
        line_pos={int(label): i for i, label in enumerate(work.line.index)},
        lv=lv,
        zf=tuple(zf),  # type: ignore[arg-type]
        alpha=tuple(alpha),  # type: ignore[arg-type]
        w=tuple(w),  # type: ignore[arg-type]
        e1=e1,
        c1=complex(v1_oc[lv] / z_bb[1]),
        z_bb=tuple(z_bb),  # type: ignore[arg-type]
        y_feeder=tuple(y_feeder),  # type: ignore[arg-type]
    )
