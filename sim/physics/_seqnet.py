"""Sequence-frame admittance model of a pandapower network, reduced to the customer buses.

Layer: sim (physics). Builds matrices once per network; it must not run time-series loops and
must not know about meters, profiles or the terminal.

pandapower's own ``runpp_3ph`` is run once on a zero-load copy only to obtain its sequence
admittance matrices (Ybus0/1/2, Yf, Yt) exactly as pandapower models lines, the transformer's
vector group and the external grid. From them we precompute, per sequence k,
``Z_k = Y_k^-1`` restricted to the columns of the load buses, so every later time step costs a
few small dense matrix products (see ``solver``).
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

from base.errors import ConfigError

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

    rhs = np.zeros((n_bus, load_bus.size), dtype=np.complex128)
    rhs[load_bus, np.arange(load_bus.size)] = 1.0
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
    return SequenceModel(
        base_mva=float(ppc[1]["baseMVA"]),
        n_bus=n_bus,
        slack=slack,
        z=(z0, z1, z2),
        v1_oc=v1_oc,
        yf=yf,  # type: ignore[arg-type]
        yt=yt,  # type: ignore[arg-type]
        load_bus=load_bus,
        line_rows=line_rows,
        trafo_row=int(t0),
        bus_lookup=lookup,
    )
