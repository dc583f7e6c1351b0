"""Station-area network: a pandapower LV network plus the meter archive derived from it.

Layer: sim (physics). Loads networks and derives topology (phase, branch, meter box per customer);
it must not compute power flows over time (``solver``) nor generate profiles (``sim.profiles``).

Switches are honoured as set: an open line switch takes its line out, a closed bus-bus switch
fuses its buses, an open one separates them; buses left without supply are dropped (a customer
among them is an error). Loops that remain (a network operated meshed) are kept and solved;
the archive then follows the supplying tree as operated: every bus hangs below the neighbour on
its shortest cable path to the transformer, the lines left over close the loops (``loops``).

``replicate(k)`` puts k copies of the feeder below the one transformer, in parallel at its LV
busbar (``--customers-scale``): ONE electrical network, solved together (``solver``). Copy r > 0
prefixes its branch and box names with ``R<r+1>-``.

A *customer* is one single-phase Wye load. *Branches* (分支): every feeder leaving the
distribution board (the first bus below the transformer where the cable forks) is a branch, and
inside a branch every side subtree with at least ``min_branch_customers`` customers splits off as
a branch of its own (a branch box on the trunk); a customer belongs to the innermost one. Its
*box* (表箱) groups neighbours along the feeder, as Chinese meter boxes do: a branch's customers
in depth-first order from the board (a side street stays together) are cut into boxes of 4-9
meters mostly, some of 10-16 (``BOX_SIZES``), drawn from ``seed``; a branch with fewer than four
customers has one box.
"""

from __future__ import annotations

import copy
import heapq
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
from numpy.typing import NDArray

from protocols.errors import ConfigError
from sim.physics._seqnet import SequenceModel, build_sequence_model

__all__ = [
    "BOARD_BRANCH",
    "DEFAULT_NETWORK",
    "Customer",
    "StationNetwork",
    "fill_zero_sequence",
    "load_network",
    "network_with",
]

_log = logging.getLogger("ttu.sim.network")

DEFAULT_NETWORK = "ieee-eu-lv"
#: the branch of customers connected on the distribution board itself, with no line between
BOARD_BRANCH = "F0"
PHASES = ("A", "B", "C")
_P_COLS = ("p_a_mw", "p_b_mw", "p_c_mw")
_Q_COLS = ("q_a_mvar", "q_b_mvar", "q_c_mvar")


@dataclass(frozen=True)
class Customer:
    """One row of the meter archive generated from the network."""

    meter_id: str  # 12 decimal digits, usable as a DL/T 645 address
    load_index: int  # row label in net.asymmetric_load
    bus: int  # pandapower bus index
    phase: str  # "A" | "B" | "C"
    branch: str  # "F1", "F2", ... (feeder leaving the distribution board); "F0" = on the board
    box: str  # "F1-X01", ...
    replica: int = 0  # which copy of the feeder (``StationNetwork.replicate``)
    pv_kwp: float = 0.0  # the network's own PV (``sgen``) at this customer, kWp; 0: none given


@dataclass(frozen=True)
class StationNetwork:
    """A network ready to solve. ``net`` holds only single-phase Wye asymmetric loads.

    With ``replicas`` k > 1, ``net`` and ``model`` are one feeder, and ``customers``, ``branches``
    and ``heads`` list all k copies in order (copy r holds customers r*n .. (r+1)*n - 1 and branches
    r*nb .. (r+1)*nb - 1, n and nb those of one feeder); bus and line numbers in them are the
    feeder's own.
    """

    name: str
    net: pp.pandapowerNet = field(repr=False)
    customers: tuple[Customer, ...]
    branches: tuple[str, ...]
    board_bus: int  # pandapower bus of the distribution board
    lv_bus: int  # pandapower bus of the transformer LV terminal
    #: per branch: (fork bus where it is measured, first line label, that line's from_bus is the fork,
    #: index of the branch it splits off or -1 when it leaves the board)
    heads: tuple[tuple[int, int, bool, int], ...]
    source_vm_pu: float  # ext_grid set-point, the nominal MV voltage
    source_va_degree: float
    vn_lv_kv: float  # nominal LV line-to-line voltage of the customer buses
    model: SequenceModel = field(repr=False)
    #: lines (labels) left over by the supplying tree: each closes one loop the network is operated with
    loops: tuple[int, ...] = ()
    #: per line (``net.line`` order): (branch that owns it, branch of its from bus, of its to bus),
    #: -1 for none (trunk, board, no customers below); a tree line belongs to the branch of its
    #: downstream bus, a loop line to that of its to bus. A branch's supply is what flows into
    #: its lines across its boundary (``solver``).
    line_sections: tuple[tuple[int, int, int], ...] = ()
    replicas: int = 1

    @property
    def n_customers(self) -> int:
        return len(self.customers)

    @property
    def feeder_customers(self) -> int:
        """Customers of one copy of the feeder."""
        return len(self.customers) // self.replicas

    @property
    def feeder_branches(self) -> int:
        return len(self.branches) // self.replicas

    @property
    def feeder(self) -> StationNetwork:
        """One copy of the feeder alone (the first)."""
        if self.replicas == 1:
            return self
        n, nb = self.feeder_customers, self.feeder_branches
        return replace(
            self, customers=self.customers[:n], branches=self.branches[:nb], heads=self.heads[:nb], replicas=1
        )

    def replicate(self, copies: int) -> StationNetwork:
        """``copies`` copies of this (single) feeder in parallel below its transformer."""
        if self.replicas != 1:
            raise ConfigError("network", "replicate a single feeder, not an already replicated network")
        if copies < 1:
            raise ConfigError("--customers-scale", f"must be at least 1, got {copies}")
        if copies == 1:
            return self
        nb = len(self.branches)
        customers: list[Customer] = []
        branches: list[str] = []
        heads: list[tuple[int, int, bool, int]] = []
        for r in range(copies):
            prefix = "" if r == 0 else f"R{r + 1}-"
            customers += [
                replace(c, branch=prefix + c.branch, box=prefix + c.box, replica=r) for c in self.customers
            ]
            branches += [prefix + b for b in self.branches]
            heads += [(f, line, fwd, up + r * nb if up >= 0 else -1) for f, line, fwd, up in self.heads]
        return replace(
            self, customers=tuple(customers), branches=tuple(branches), heads=tuple(heads), replicas=copies
        )

    def phase_index(self) -> NDArray[np.int64]:
        return np.array([PHASES.index(c.phase) for c in self.customers], dtype=np.int64)

    def branch_index(self) -> NDArray[np.int64]:
        """Index into ``branches`` per customer (-1 for customers on the board itself)."""
        pos = {b: i for i, b in enumerate(self.branches)}
        return np.array([pos.get(c.branch, -1) for c in self.customers], dtype=np.int64)

    def customers_in(self, sections: Iterable[int]) -> list[int]:
        """Indexes of the customers on the given branches (a customer on the board is on none)."""
        wanted = set(sections)
        return [i for i, b in enumerate(self.branch_index()) if b in wanted]

    def topology_rows(self) -> list[dict[str, object]]:
        """The meter archive as plain rows (for CSV/JSON export)."""
        return [
            {
                "meter_id": c.meter_id,
                "load_index": c.load_index,
                "bus": c.bus,
                "phase": c.phase,
                "branch": c.branch,
                "box": c.box,
            }
            for c in self.customers
        ]


def load_network(
    source: str | Path = DEFAULT_NETWORK,
    *,
    seed: int = 0,
    min_branch_customers: int = 5,
    line_scale: float = 1.0,
    transformer: str | None = None,
) -> StationNetwork:
    """Load ``"ieee-eu-lv"`` (pandapower's IEEE European LV feeder) or a pandapower JSON file.

    A file with several distribution transformers (CIGRE LV: residential, industrial and commercial
    areas behind one MV bus) is several station areas: ``transformer`` (its name or index in the
    ``trafo`` table; also ``"FILE#TRANSFORMER"`` as the source) picks one, else the one feeding the
    most loads is taken, with a warning naming the others (``_one_station_area``).

    Balanced ``load`` elements become single-phase Wye customers on a phase drawn from ``seed``;
    missing zero-sequence data is filled with typical LV cable/transformer values (see
    ``fill_zero_sequence``). ``line_scale`` multiplies every line's length (after branches and
    boxes are drawn from the real lengths), e.g. to reach the technical loss of a long overhead
    Chinese feeder (GRID.md §2). Raises ConfigError naming the file and the problem.
    """
    if not 0.0 < line_scale <= 100.0:
        raise ConfigError("grid.line_scale", f"must be within (0, 100], got {line_scale}")
    text = str(source)
    if transformer is None and "#" in text and not Path(text).is_file():
        text, _, transformer = text.rpartition("#")  # "FILE#TRANSFORMER" (``network_with``)
        source = text
    if str(source) == DEFAULT_NETWORK:
        net = pn.ieee_european_lv_asymmetric("on_peak_566")
        name = DEFAULT_NETWORK
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(str(path), "network file not found")
        try:
            net = pp.from_json(str(path))
        except (
            ValueError,
            KeyError,
            TypeError,
            UserWarning,
            json.JSONDecodeError,
            UnicodeDecodeError,
        ) as err:
            raise ConfigError(str(path), f"not a pandapower JSON network: {err}") from err
        name = path.stem
    return _prepare(
        net,
        name=name,
        seed=seed,
        min_branch_customers=min_branch_customers,
        line_scale=line_scale,
        transformer=transformer,
    )


def network_with(source: str, transformer: str | None) -> str:
    """``source`` naming one of its transformers (``load_network`` reads ``"FILE#TRANSFORMER"``)."""
    return source if transformer is None else f"{source}#{transformer}"


def _prepare(
    net: pp.pandapowerNet,
    *,
    name: str,
    seed: int,
    min_branch_customers: int,
    line_scale: float = 1.0,
    transformer: str | None = None,
) -> StationNetwork:
    net = copy.deepcopy(net)
    _apply_switches(net, name)
    pp.toolbox.drop_out_of_service_elements(net)
    if len(net.trafo) > 1 or transformer is not None:
        net = _one_station_area(net, name, transformer)
    if len(net.trafo) != 1 or len(net.ext_grid) != 1:
        raise ConfigError(
            name,
            f"a station area (台区) is one distribution transformer fed from one grid connection: found"
            f" {len(net.trafo)} in-service transformers and {len(net.ext_grid)} ext_grid; keep one"
            " transformer's LV network (or set the others out of service)",
        )
    for table in ("gen", "trafo3w", "storage"):
        if table in net and len(net[table]):
            raise ConfigError(f"{name}.{table}", "not supported: model generation as negative customer load")
    pv_at = _pv_by_bus(net)
    _single_phase_customers(net, seed=seed)
    fill_zero_sequence(net)
    if not len(net.asymmetric_load):
        raise ConfigError(name, "network has no customer loads")
    lv_bus = int(net.trafo.lv_bus.iloc[0])
    _drop_unsupplied(net, name, lv_bus)
    board, children, parent, dist, loops = _tree(net, lv_bus)
    customers, branches, heads, branch_of = _archive(
        net, board, children, parent, dist, seed, min_branch_customers
    )
    customers = _with_pv(customers, pv_at, name)
    line_sections = _line_sections(net, branches, branch_of, parent)
    if line_scale != 1.0:
        net.line["length_km"] = net.line["length_km"] * line_scale
    load_buses = np.unique(net.asymmetric_load.bus.to_numpy(dtype=np.int64))
    model = build_sequence_model(net, load_buses)
    return StationNetwork(
        name=name,
        net=net,
        customers=customers,
        branches=branches,
        board_bus=board,
        lv_bus=lv_bus,
        heads=heads,
        source_vm_pu=float(net.ext_grid.vm_pu.iloc[0]),
        source_va_degree=float(net.ext_grid.va_degree.iloc[0]),
        vn_lv_kv=float(net.bus.vn_kv.loc[lv_bus]),
        model=model,
        loops=loops,
        line_sections=line_sections,
    )


#: what a station area cut out of a larger network keeps of its grid connection (``_one_station_area``)
_GRID_COLUMNS = (
    "vm_pu", "va_degree", "s_sc_max_mva", "s_sc_min_mva", "rx_max", "rx_min", "r0x0_max", "x0x_max",
)  # fmt: skip


def _one_station_area(net: pp.pandapowerNet, name: str, transformer: str | None) -> pp.pandapowerNet:
    """The station area of one transformer: its LV network (every bus its LV side reaches through
    lines and closed switches without passing a transformer) and its HV bus, fed from there by a
    grid connection at the voltage of the network's own (the MV network between is not ours)."""
    import pandapower.topology as top

    graph = top.create_nxgraph(net, include_trafos=False)
    areas = {
        int(t): set(top.connected_component(graph, int(net.trafo.lv_bus.at[t]))) for t in net.trafo.index
    }
    loads = {
        t: int(net.load.bus.isin(buses).sum() + net.asymmetric_load.bus.isin(buses).sum())
        for t, buses in areas.items()
    }
    names = {t: str(net.trafo.name.at[t]) if isinstance(net.trafo.name.at[t], str) else str(t) for t in areas}
    listed = ", ".join(f"{names[t]!r} (index {t}, {loads[t]} loads)" for t in areas)
    if transformer is None:
        chosen = max(areas, key=lambda t: (loads[t], -t))
        _log.warning(
            "%s: %d transformers: %s; simulating the station area of %r, the one feeding the most loads"
            " (choose another with --transformer)",
            name, len(areas), listed, names[chosen],
        )  # fmt: skip
    else:
        found = [t for t in areas if transformer in (names[t], str(t))]
        if not found:
            raise ConfigError(f"{name}.trafo", f"no transformer {transformer!r}; the network has {listed}")
        chosen = found[0]
    hv_bus = int(net.trafo.hv_bus.at[chosen])
    if hv_bus in areas[chosen]:
        raise ConfigError(f"{name}.trafo", f"{names[chosen]!r}: its LV network reaches its HV side")
    grid: dict[str, float] = {}
    if len(net.ext_grid):  # the network's own grid connection: its voltage and short-circuit data
        first = net.ext_grid.iloc[0]
        grid = {k: float(first[k]) for k in _GRID_COLUMNS if k in first.index and first[k] == first[k]}
    area = pp.toolbox.select_subnet(net, areas[chosen] | {hv_bus}, include_switch_buses=False)
    area.trafo = area.trafo.loc[[chosen]]
    area.ext_grid = area.ext_grid.iloc[0:0]
    pp.create_ext_grid(area, hv_bus, **grid)
    return area


def _pv_by_bus(net: pp.pandapowerNet) -> dict[int, float]:
    """The network's PV systems (static generators, ``sgen``) as kWp per bus, taken out of ``net``:
    the simulator draws every customer's power from its profile, a PV system's as PV output.
    A generator's rating is its ``sn_mva`` where given, else its ``p_mw``, times its ``scaling``."""
    if "sgen" not in net or not len(net.sgen):
        return {}
    sgen = net.sgen
    rating = sgen.get("sn_mva", sgen["p_mw"])
    rating = rating.where(rating.notna() & (rating > 0), sgen["p_mw"]).abs()
    scaling = sgen.get("scaling", 1.0)
    kwp: dict[int, float] = {}
    for bus, kw in zip(sgen["bus"].astype(int), (rating * scaling * 1000.0).astype(float), strict=True):
        kwp[bus] = kwp.get(bus, 0.0) + kw
    net.sgen.drop(net.sgen.index, inplace=True)
    return {bus: kw for bus, kw in kwp.items() if kw > 0.0}


def _with_pv(customers: tuple[Customer, ...], pv_at: dict[int, float], name: str) -> tuple[Customer, ...]:
    """Customers with the PV of their bus, shared evenly among the customers there. PV at a bus
    with no customer (a plant of its own, with no meter in our archive) is left out, and said."""
    at_bus: dict[int, int] = {}
    for c in customers:
        at_bus[c.bus] = at_bus.get(c.bus, 0) + 1
    alone = sorted(bus for bus in pv_at if bus not in at_bus)
    if alone:
        _log.warning(
            "%s: PV (sgen) at buses %s with no customer load there: left out (%.1f kWp)",
            name,
            alone[:10],
            sum(pv_at[b] for b in alone),
        )
    return tuple(replace(c, pv_kwp=pv_at[c.bus] / at_bus[c.bus]) if c.bus in pv_at else c for c in customers)


def _single_phase_customers(net: pp.pandapowerNet, *, seed: int) -> None:
    """Turn balanced loads into single-phase Wye asymmetric loads on seeded random phases."""
    asym = net.asymmetric_load
    if len(asym) and (asym.get("type", "wye") != "wye").any():
        raise ConfigError("network.asymmetric_load", "only Wye-connected customer loads are supported")
    if len(asym):
        p = asym[list(_P_COLS)].to_numpy(dtype=float)
        if ((np.abs(p) > 0).sum(axis=1) > 1).any():
            bad = asym.index[(np.abs(p) > 0).sum(axis=1) > 1].tolist()
            raise ConfigError("network.asymmetric_load", f"loads {bad[:5]} use more than one phase")
    if len(net.load):
        rng = np.random.default_rng(seed)
        phases = rng.integers(0, 3, size=len(net.load))
        for (_, row), ph in zip(net.load.iterrows(), phases, strict=True):
            kw = dict.fromkeys((*_P_COLS, *_Q_COLS), 0.0)
            kw[_P_COLS[ph]] = float(row.p_mw)
            kw[_Q_COLS[ph]] = float(row.q_mvar)
            pp.create_asymmetric_load(net, int(row.bus), name=str(row["name"]), type="wye", **kw)
        net.load.drop(net.load.index, inplace=True)


def fill_zero_sequence(net: pp.pandapowerNet) -> None:
    """Typical values where a balanced network lacks zero-sequence data.

    Lines: R0 = 4 R1, X0 = 4 X1 (4-core cable, neutral return), C0 = C1. Transformer: Dyn with
    vk0 = vk, vkr0 = vkr. External grid: R0/X0 = 0.1, X0/X = 1.
    """
    line = net.line
    for col, src, k in (("r0_ohm_per_km", "r_ohm_per_km", 4.0), ("x0_ohm_per_km", "x_ohm_per_km", 4.0)):
        if col not in line or line[col].isna().any():
            line[col] = line[col].fillna(k * line[src]) if col in line else k * line[src]
    if "c0_nf_per_km" not in line or line["c0_nf_per_km"].isna().any():
        line["c0_nf_per_km"] = line.get("c0_nf_per_km", line["c_nf_per_km"]).fillna(line["c_nf_per_km"])
    tr = net.trafo
    vg = tr.get("vector_group")
    if vg is None or vg.isna().any() or not vg.str.lower().isin(["dyn", "ynyn", "yzn"]).all():
        tr["vector_group"] = "Dyn"
    for col, default in (
        ("vk0_percent", tr.vk_percent),
        ("vkr0_percent", tr.vkr_percent),
        ("mag0_percent", 100.0),
        ("mag0_rx", 0.0),
        ("si0_hv_partial", 0.9),
    ):
        if col not in tr or tr[col].isna().any():
            tr[col] = tr[col].fillna(default) if col in tr else default
    eg = net.ext_grid
    for col, default in (
        ("s_sc_max_mva", 1000.0),
        ("rx_max", 0.1),
        ("r0x0_max", 0.1),
        ("x0x_max", 1.0),
    ):
        if col not in eg or eg[col].isna().any():
            eg[col] = eg[col].fillna(default) if col in eg else default


def _line_sections(
    net: pp.pandapowerNet, branches: tuple[str, ...], branch_of: dict[int, str], parent: dict[int, int]
) -> tuple[tuple[int, int, int], ...]:
    index = {name: i for i, name in enumerate(branches)}

    def section(bus: int) -> int:
        return index.get(branch_of.get(bus, ""), -1)

    out = []
    for f, t in zip(net.line.from_bus.astype(int), net.line.to_bus.astype(int), strict=True):
        child = t if parent.get(t) == f else f if parent.get(f) == t else t
        out.append((section(child), section(f), section(t)))
    return tuple(out)


def _apply_switches(net: pp.pandapowerNet, name: str) -> None:
    """Honour the switch states, then drop the switches (the solver knows lines and buses only).

    Open line switch: the line is out. Bus-bus switch: closed fuses the two buses, open separates
    them. Transformer switches must be closed.
    """
    if "switch" not in net or not len(net.switch):
        return
    sw = net.switch
    if "in_service" in sw:
        sw = sw[sw.in_service.astype(bool)]
    open_trafo = sw[(sw.et == "t") & ~sw.closed.astype(bool)]
    if len(open_trafo):
        raise ConfigError(
            f"{name}.switch", f"the transformer is switched off (switch {int(open_trafo.index[0])})"
        )
    open_lines = sw[(sw.et == "l") & ~sw.closed.astype(bool)]
    net.line.loc[sorted({int(x) for x in open_lines.element}), "in_service"] = False
    for _, row in sw[(sw.et == "b") & sw.closed.astype(bool)].iterrows():
        keep, gone = int(row.bus), int(row.element)
        if keep != gone and gone in net.bus.index and keep in net.bus.index:
            pp.toolbox.fuse_buses(net, keep, gone)
    net.switch.drop(net.switch.index, inplace=True)


def _drop_unsupplied(net: pp.pandapowerNet, name: str, lv_bus: int) -> None:
    """Drop buses (and what hangs on them) that no line path joins to the transformer, as switched."""
    adj: dict[int, set[int]] = {}
    for f, t in zip(net.line.from_bus.astype(int), net.line.to_bus.astype(int), strict=True):
        adj.setdefault(f, set()).add(t)
        adj.setdefault(t, set()).add(f)
    hv = {int(net.trafo.hv_bus.iloc[0]), *(int(b) for b in net.ext_grid.bus)}
    seen = {lv_bus, *hv}
    stack = [lv_bus]
    while stack:
        for nxt in adj.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    dead = sorted(set(net.bus.index.astype(int)) - seen)
    if not dead:
        return
    stranded = (
        sorted(set(net.asymmetric_load.bus.astype(int)) & set(dead)) if len(net.asymmetric_load) else []
    )
    if stranded:
        raise ConfigError(
            f"{name}.switch", f"customers at buses {stranded[:5]} have no supply as the switches are set"
        )
    pp.toolbox.drop_buses(net, dead)


def _tree(
    net: pp.pandapowerNet, lv_bus: int
) -> tuple[int, dict[int, list[tuple[int, int, bool]]], dict[int, int], dict[int, float], tuple[int, ...]]:
    """The supplying tree below the LV terminal: (board bus, children, parent, cable distance in m,
    lines closing loops).

    Every bus hangs below the neighbour on its shortest cable path to the transformer (Dijkstra,
    ties broken by bus number); in a radial network that is the one path. children[bus] =
    [(child bus, line label, line from_bus == bus)].
    """
    adj: dict[int, list[tuple[int, int, float, bool]]] = {}
    for idx, row in net.line.iterrows():
        f, t, m = int(row.from_bus), int(row.to_bus), float(row.length_km) * 1000.0
        adj.setdefault(f, []).append((t, int(idx), m, True))
        adj.setdefault(t, []).append((f, int(idx), m, False))
    parent = {lv_bus: -1}
    via: dict[int, tuple[int, bool]] = {}
    dist = {lv_bus: 0.0}
    done: set[int] = set()
    heap = [(0.0, lv_bus)]
    while heap:
        d, bus = heapq.heappop(heap)
        if bus in done:
            continue
        done.add(bus)
        for nxt, line, m, fwd in sorted(adj.get(bus, [])):
            if nxt in done or d + m >= dist.get(nxt, math.inf):
                continue
            dist[nxt], parent[nxt], via[nxt] = d + m, bus, (line, fwd)
            heapq.heappush(heap, (d + m, nxt))
    children: dict[int, list[tuple[int, int, bool]]] = {}
    for bus in sorted(via, key=lambda b: (dist[b], b)):
        line, fwd = via[bus]
        children.setdefault(parent[bus], []).append((bus, line, fwd))
    tree_lines = {line for line, _ in via.values()}
    loops = tuple(sorted(int(i) for i in net.line.index if int(i) not in tree_lines))
    load_buses = set(net.asymmetric_load.bus.astype(int))
    if missing := sorted(load_buses - set(parent)):
        raise ConfigError("network.asymmetric_load", f"buses {missing[:5]} not connected to the transformer")
    below: dict[int, int] = {}
    for bus in sorted(parent, key=lambda b: -dist[b]):
        below[bus] = int(bus in load_buses) + sum(below[c] for c, _, _ in children.get(bus, []))
    # prune subtrees without customers, then walk down the trunk to the first real fork
    children = {b: [c for c in kids if below[c[0]]] for b, kids in children.items()}
    board = lv_bus
    while len(children.get(board, [])) == 1 and board not in load_buses:
        board = children[board][0][0]
    return board, children, parent, dist, loops


#: meter-box sizes: (share, smallest, largest); most boxes hold 4-9 meters, some up to 16
BOX_SIZES = ((0.8, 4, 9), (0.2, 10, 16))


def _boxes(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Cut ``n`` customers in feeder order into consecutive boxes: [(start, end), ...]."""
    out: list[tuple[int, int]] = []
    at = 0
    while at < n:
        share = float(rng.random())
        kind = 0
        while kind < len(BOX_SIZES) - 1 and share >= BOX_SIZES[kind][0]:
            share -= BOX_SIZES[kind][0]
            kind += 1
        size = int(rng.integers(BOX_SIZES[kind][1], BOX_SIZES[kind][2] + 1))
        end = min(at + size, n)
        if out and end - at < 3 and end - out[-1][0] <= BOX_SIZES[-1][2]:
            out[-1] = (out[-1][0], end)  # a short remainder joins the box before it
        else:
            out.append((at, end))
        at = end
    return out


def _archive(
    net: pp.pandapowerNet,
    board: int,
    children: dict[int, list[tuple[int, int, bool]]],
    parent: dict[int, int],
    dist: dict[float | int, float],
    seed: int,
    min_branch_customers: int,
) -> tuple[tuple[Customer, ...], tuple[str, ...], tuple[tuple[int, int, bool, int], ...], dict[int, str]]:
    branch_of: dict[int, str] = {board: BOARD_BRANCH}
    load_count: dict[int, int] = {}
    for b in net.asymmetric_load.bus.astype(int):
        load_count[b] = load_count.get(b, 0) + 1
    n_loads_below: dict[int, int] = {}
    for bus in sorted(parent, key=lambda b: -dist[b]):
        n_loads_below[bus] = load_count.get(bus, 0) + sum(
            n_loads_below[c] for c, _, _ in children.get(bus, [])
        )
    branches: list[str] = []
    heads: list[tuple[int, int, bool, int]] = []  # (fork bus, head line, line from_bus == fork, parent)

    def grow(fork: int, head: tuple[int, int, bool], parent_branch: int) -> None:
        index = len(branches)
        name = f"F{index + 1}"
        branches.append(name)
        heads.append((fork, head[1], head[2], parent_branch))
        stack = [head[0]]
        while stack:
            bus = stack.pop()
            branch_of[bus] = name
            kids = children.get(bus, [])
            main = max(kids, key=lambda k: n_loads_below[k[0]], default=None)
            for kid in kids:
                if kid is not main and n_loads_below[kid[0]] >= min_branch_customers:
                    grow(bus, kid, index)
                else:
                    stack.append(kid[0])

    for head in children.get(board, []):
        grow(board, head, -1)

    # neighbours along the feeder: buses in depth-first order from the board, side branches whole
    order: dict[int, int] = {}
    stack = [board]
    while stack:
        bus = stack.pop()
        order[bus] = len(order)
        stack.extend(c for c, _, _ in reversed(children.get(bus, [])))
    p = net.asymmetric_load[list(_P_COLS)].to_numpy(dtype=float)
    q = net.asymmetric_load[list(_Q_COLS)].to_numpy(dtype=float)
    rows = list(net.asymmetric_load.iterrows())
    members: dict[str, list[int]] = {}
    for i, (_, row) in enumerate(rows):
        members.setdefault(branch_of[int(row.bus)], []).append(i)
    box_of: dict[int, str] = {}
    for b, name in enumerate([BOARD_BRANCH, *branches]):
        along = sorted(members.get(name, []), key=lambda i: (order.get(int(rows[i][1].bus), 0), i))
        for k, chunk in enumerate(_boxes(len(along), np.random.default_rng([seed, 0xB0C5, b]))):
            for i in along[chunk[0] : chunk[1]]:
                box_of[i] = f"{name}-X{k + 1:02d}"
    customers = []
    for i, (idx, row) in enumerate(rows):
        ph = int(np.argmax(np.abs(p[i]) + np.abs(q[i])))
        bus = int(row.bus)
        customers.append(
            Customer(
                meter_id=f"{i + 1:012d}",
                load_index=int(idx),
                bus=bus,
                phase=PHASES[ph],
                branch=branch_of[bus],
                box=box_of[i],
            )
        )
    if any(line < 0 for _, line, _, _ in heads):
        raise ConfigError("network.switch", "a branch must start with a line, not a bus-bus switch")
    return tuple(customers), tuple(branches), tuple(heads), branch_of
