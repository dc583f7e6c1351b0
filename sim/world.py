"""The physics-driven station area: virtual meters whose load is the solved power flow, scenario
events applied to both the physics and the meters, and the closed loop (relays, breakers).

Layer: sim. Builds a ``Station`` (meters on RS-485 buses) from a ``sim.physics`` Horizon and a
``sim.scenarios.Scenario``; ``World.run(clock)`` applies timed events and follows relay changes
the terminal makes. Must not import the terminal, hal backends or apps; writes no files
(``sim.truth`` does).

Scale: ``customers_scale`` K hangs K replicas of the feeder (each with its own seeded profiles)
in parallel at the one transformer's LV busbar: ONE electrical network (``Grid``), solved
together, so the transformer's loading, the busbar voltage and the losses are those of all
customers at once. Replica r > 1 prefixes branch and box names with ``R<r>-``. Customer indices
in a ``WorldMeter``, the profiles and the horizons are those of the whole network.

Assessment meter (总表): a CT-connected three-phase DL/T 645 meter at the transformer LV side
(device ``assessment``), on the last bus with the branch units. Its registers count *secondary*
energy: the transformer's primary energy divided by the CT really fitted; the archive records
the CT the utility believes is fitted (``World.assessment_ct``). A scenario's ``[transformer]``
``ct_ratio_actual`` / ``ct_ratio_configured`` makes them differ (the classic wrong 倍率, GRID.md
§2); the terminal's own metrology unit keeps its right ratio. ``[grid]`` scales demand and line
lengths so technical loss reaches a Chinese feeder's few percent.

HPLC: ``hplc_meters`` N moves N seeded customers' meters (both DL/T 645 and 698.45) from the
RS-485 buses behind the virtual CCO (``Station.hplc``, archive port "hplc"). Every change of
their supply -- scenario outages at any level, a branch breaker opening (``sim.devices``), and
dips shorter than the judgement, which leave the meters alone -- goes to the supply hooks
(``World.on_supply``) with the addresses and the exact time; the runner hangs the CCO's
``node_power`` there. A meter's own relay cuts its customer's load, not the meter, so a relay
trip is no power loss for its STA.

What stays powered through an outage and measures it: ``World.spans`` holds the intervals
during which each transformer phase ("phase:A" ...) and each tripped branch's measuring point
("unit:<branch>") have no voltage; the metrology unit, branch units, box terminals and breakers
read their voltages through it. A station-level outage (or dip) also switches the terminal's
own supply (``World.on_station`` hooks: the runner's power monitor and terminal); a branch
outage caused by a trip opens that branch's breaker (``World.on_breaker`` hooks: sim.devices).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from hal.clock import Clock
from hal.interfaces import SerialSettings
from protocols.errors import ConfigError
from protocols.signature import Detection
from protocols.station import Meter
from sim.loads import FloatArray, HouseholdProfile
from sim.meters.bus import Delay
from sim.meters.model import CURVE_PERIOD_S, Phase, RelayRefused, VirtualMeter
from sim.physics import (
    DEFAULT_NETWORK,
    Horizon,
    Profiles,
    StationNetwork,
    build_profiles,
    load_network,
    solve,
)
from sim.physics.measure import ACCURACY, DeviceErrors
from sim.physics.network import BOARD_BRANCH
from sim.profiles.uci import ProfileDataMissing
from sim.scenarios import POWER_DOWN_JUDGEMENT_S, Outage, Scenario, fitted, is_shipped
from sim.station import Customer, Station, StationMeter, assign_protocols

log = logging.getLogger("ttu.sim.world")
TRIP_CAUSE_SHORT_CIRCUIT = 2  # breaker profile: "short circuit (short delay)"

STEP_S = 900.0
LIVE_HORIZON_S = 7 * 86400.0  # without a duration: a week, then the profiles repeat
HORIZON_MARGIN_S = 3600.0
#: HPLC last-gasp timing model (GRID.md §3): judgement, STA random delay, STA + CCO aggregation
LASTGASP_STA_DELAY_S = (0.0, 0.2)
LASTGASP_AGGREGATION_S = 30.0 + 30.0


# -- load profiles from the physics ---------------------------------------------------------------


@dataclass(slots=True)
class Spans:
    """Intervals without voltage, by key ("phase:A", "unit:F2"): what stays powered but measures."""

    items: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, key: str, t0: float, t1: float) -> None:
        self.items.setdefault(key, []).append((t0, t1))

    def live(self, keys: tuple[str, ...], t: FloatArray) -> FloatArray:
        """1.0 where none of ``keys`` is off at ``t``, else 0.0."""
        t = np.asarray(t, dtype=np.float64)
        on = np.ones(np.shape(t))
        for key in keys:
            for t0, t1 in self.items.get(key, ()):
                on = np.where((t >= t0) & (t < t1), 0.0, on)
        return on

    def live_at(self, keys: tuple[str, ...], t: float) -> bool:
        """``live`` of one instant."""
        for key in keys:
            for t0, t1 in self.items.get(key, ()):
                if t0 <= t < t1:
                    return False
        return True


@dataclass(slots=True)
class Grid:
    """The one electrical network: the scenario horizon and the live one (with relay trips)."""

    network: StationNetwork  # every replica (``StationNetwork.replicate``)
    base: Horizon  # scenario outages applied
    horizon: Horizon  # base + relay trips made at run time
    offs: dict[int, list[list[float]]] = field(default_factory=dict)  # customer -> [[t0, t1], ...]

    def steps_of(self, t: FloatArray) -> np.ndarray:
        hz = self.horizon
        k = np.floor((np.asarray(t, dtype=np.float64) - hz.start) / hz.step_s).astype(np.int64)
        return np.mod(k, hz.steps)  # past the horizon the profiles repeat (live runs)

    def step_at(self, t: float) -> int:
        """``steps_of`` of one instant, on Python numbers (the same step)."""
        hz = self.horizon
        return math.floor((t - hz.start) / hz.step_s) % hz.steps

    def refresh(self) -> None:
        """Re-derive the live horizon from the scenario horizon and the relay intervals."""
        hz = self.base
        for i, intervals in sorted(self.offs.items()):
            for t0, t1 in intervals:
                hz = hz.with_customer_off(i, max(t0, hz.start), min(t1, hz.end))
        self.horizon = hz


@dataclass(slots=True)
class Replica:
    """One copy of the feeder in the ``Grid``: ``network`` is the feeder alone (local indices)."""

    index: int
    grid: Grid

    @property
    def prefix(self) -> str:
        return "" if self.index == 0 else f"R{self.index + 1}-"

    @property
    def network(self) -> StationNetwork:
        return self.grid.network.feeder

    @property
    def offset(self) -> int:
        """Index of this copy's first customer in the whole network."""
        return self.index * self.grid.network.feeder_customers

    @property
    def branch_offset(self) -> int:
        return self.index * self.grid.network.feeder_branches

    def customers(self, local: list[int]) -> list[int]:
        """Whole-network indices of this copy's customers ``local``."""
        return [self.offset + i for i in local]

    @property
    def horizon(self) -> Horizon:
        return self.grid.horizon

    def steps_of(self, t: FloatArray) -> np.ndarray:
        return self.grid.steps_of(t)


@dataclass(slots=True)
class HorizonProfile:
    """A customer's solved P/Q/voltage as a ``sim.loads.VectorLoadProfile`` for its meter.

    ``thefts`` are (t0, t1, bypass) windows: the physics sees the full load, the meter only
    ``1 - bypass`` of it."""

    replica: Replica
    index: int
    thefts: list[tuple[float, float, float]] = field(default_factory=list)

    def _seen(self, t: FloatArray) -> FloatArray:
        f = np.ones(np.shape(t))
        for t0, t1, bypass in self.thefts:
            f = np.where((t >= t0) & (t < t1), f * (1.0 - bypass), f)
        return f

    def power_kw_array(self, t: FloatArray) -> FloatArray:
        t = np.asarray(t, dtype=np.float64)
        return self.replica.horizon.p_kw[self.replica.steps_of(t), self.index] * self._seen(t)

    def reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        t = np.asarray(t, dtype=np.float64)
        return self.replica.horizon.q_kvar[self.replica.steps_of(t), self.index] * self._seen(t)

    def voltage_v_array(self, t: FloatArray, phase: str = "A") -> FloatArray:
        return self.replica.horizon.voltage_v[self.replica.steps_of(np.asarray(t)), self.index]

    # one instant (a meter's read), on Python numbers: the same values as the arrays' methods
    def _step(self, t: float) -> int:
        return self.replica.grid.step_at(t)

    def _seen_at(self, t: float) -> float:
        f = 1.0
        for t0, t1, bypass in self.thefts:
            if t0 <= t < t1:
                f = f * (1.0 - bypass)
        return f

    def power_kw(self, t: float) -> float:
        return float(self.replica.horizon.p_kw[self._step(t), self.index]) * self._seen_at(t)

    def reactive_kvar(self, t: float) -> float:
        return float(self.replica.horizon.q_kvar[self._step(t), self.index]) * self._seen_at(t)

    def voltage_v(self, t: float, phase: str = "A") -> float:
        return float(self.replica.horizon.voltage_v[self._step(t), self.index])


def _by_phase(
    replica: Replica, customers: list[int], phase_of: list[int], values: FloatArray, t: FloatArray
) -> FloatArray:
    """(len(t), 3) ``values`` (T, n) of ``customers`` summed per phase, each customer on the
    phase it is connected to at that time (``phase_of``, then its ``[[phase_move]]``s); a
    three-phase customer (3) shares its value equally."""
    hz = replica.horizon
    k = replica.steps_of(np.asarray(t))
    v = values[k][:, customers]
    out = np.zeros((len(k), 3))
    rows = np.arange(len(k))
    for j, customer in enumerate(customers):
        if phase_of[j] == 3:
            out += v[:, j : j + 1] / 3.0
            continue
        ph = np.full(len(k), phase_of[j])
        for i, phase, k0 in hz.moves:
            if i == customer:
                ph[k >= k0] = "ABC".index(phase)
        np.add.at(out, (rows, ph), v[:, j])
    return out


def _phase_index(phase: str) -> int:
    """0, 1, 2 for a single-phase customer on A, B, C; 3 for a three-phase one."""
    return "ABC".index(phase) if phase in ("A", "B", "C") else 3


@dataclass(slots=True)
class BranchProfile:
    """The flow at a branch head (the branch and its sub-branches) for its monitoring unit, per
    phase, and the phase voltages at the head (where the unit sits)."""

    replica: Replica
    sections: list[int]  # branch indices whose section flows add up to the head flow
    customers: list[int]
    spans: Spans = field(default_factory=Spans)
    name: str = ""  # the branch (with replica prefix): its unit reads 0 V while its breaker is tripped
    head: int = -1  # the branch (whole-network index) whose head the unit sits at
    phase_of: list[int] = field(default_factory=list)  # per customer: 0, 1, 2 = A, B, C; 3 = all three

    def power_kw_array(self, t: FloatArray) -> FloatArray:
        k = self.replica.steps_of(np.asarray(t))
        return self.replica.horizon.branch_p[k][:, self.sections].sum(axis=1)

    def phase_power_kw_array(self, t: FloatArray) -> FloatArray:
        k = self.replica.steps_of(np.asarray(t))
        return self.replica.horizon.branch_p3[k][:, self.sections, :].sum(axis=1)

    def reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        k = self.replica.steps_of(np.asarray(t))
        return self.replica.horizon.q_kvar[k][:, self.customers].sum(axis=1)

    def phase_reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        """Per phase, the reactive power of the customers on it: the unit's per-phase current is
        each phase's own apparent power (``sim.meters.model._phase_amps``), which a share of the
        total in proportion to the phases' active power made wrong by up to amperes (PV export
        on a phase took reactive power it does not carry)."""
        return _by_phase(self.replica, self.customers, self.phase_of, self.replica.horizon.q_kvar, t)

    def voltage_v_array(self, t: FloatArray, phase: str = "A") -> FloatArray:
        ph = "ABC".index(phase) if phase in ("A", "B", "C") else 0
        k = self.replica.steps_of(np.asarray(t))
        if self.head < 0:
            v = self.replica.horizon.trafo_v[k, ph]
        else:
            v = self.replica.horizon.head_v[k, self.head, ph]
        return v * self.spans.live((f"phase:{'ABC'[ph]}", f"unit:{self.name}"), t)

    def power_kw(self, t: float) -> float:
        return float(self.power_kw_array(np.array([t]))[0])

    def reactive_kvar(self, t: float) -> float:
        return float(self.reactive_kvar_array(np.array([t]))[0])

    def voltage_v(self, t: float, phase: str = "A") -> float:
        return float(self.voltage_v_array(np.array([t]), phase)[0])


@dataclass(slots=True)
class BoxProfile:
    """The supply into a meter box (表箱) for its box terminal: the sum of the box's customers.

    Service cables inside a box are a few metres, so their loss is left out. Phase voltages are
    those of the box's first customer on that phase (the box busbar), else of any customer in it.
    """

    replica: Replica
    customers: list[int]
    phases: dict[str, int]  # phase -> a customer index on that phase
    spans: Spans = field(default_factory=Spans)
    phase_of: list[int] = field(default_factory=list)  # per customer: 0, 1, 2 = A, B, C

    def power_kw_array(self, t: FloatArray) -> FloatArray:
        k = self.replica.steps_of(np.asarray(t))
        return self.replica.horizon.p_kw[k][:, self.customers].sum(axis=1)

    def phase_power_kw_array(self, t: FloatArray) -> FloatArray:
        """Per phase, the box's customers on it -- where each is connected at that time (a
        ``[[phase_move]]`` reconnects a customer: the box terminal sees its current move)."""
        return _by_phase(self.replica, self.customers, self.phase_of, self.replica.horizon.p_kw, t)

    def phase_reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        return _by_phase(self.replica, self.customers, self.phase_of, self.replica.horizon.q_kvar, t)

    def reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        k = self.replica.steps_of(np.asarray(t))
        return self.replica.horizon.q_kvar[k][:, self.customers].sum(axis=1)

    def voltage_v_array(self, t: FloatArray, phase: str = "A") -> FloatArray:
        i = self.phases.get(phase, self.customers[0])
        v = self.replica.horizon.voltage_v[self.replica.steps_of(np.asarray(t)), i]
        return v * self.spans.live((f"phase:{phase}",), t) if phase in ("A", "B", "C") else v

    def power_kw(self, t: float) -> float:
        return float(self.power_kw_array(np.array([t]))[0])

    def reactive_kvar(self, t: float) -> float:
        return float(self.reactive_kvar_array(np.array([t]))[0])

    def voltage_v(self, t: float, phase: str = "A") -> float:
        return float(self.voltage_v_array(np.array([t]), phase)[0])


@dataclass(slots=True)
class TransformerProfile:
    """The transformer LV side as the 总表's CT secondary sees it: the whole network's flow / CT."""

    grid: Grid
    ct_fitted: float

    def power_kw_array(self, t: FloatArray) -> FloatArray:
        k = self.grid.steps_of(np.asarray(t))
        return self.grid.horizon.trafo_p[k].sum(axis=1) / self.ct_fitted  # type: ignore[no-any-return]

    def reactive_kvar_array(self, t: FloatArray) -> FloatArray:
        k = self.grid.steps_of(np.asarray(t))
        return self.grid.horizon.trafo_q[k].sum(axis=1) / self.ct_fitted  # type: ignore[no-any-return]

    def voltage_v_array(self, t: FloatArray, phase: str = "A") -> FloatArray:
        ph = "ABC".index(phase) if phase in ("A", "B", "C") else 0
        return self.grid.horizon.trafo_v[self.grid.steps_of(np.asarray(t)), ph]

    def power_kw(self, t: float) -> float:
        return float(self.power_kw_array(np.array([t]))[0])

    def reactive_kvar(self, t: float) -> float:
        return float(self.reactive_kvar_array(np.array([t]))[0])

    def voltage_v(self, t: float, phase: str = "A") -> float:
        return float(self.voltage_v_array(np.array([t]), phase)[0])


#: IEC 61869-2 / GB/T 20840.2 rated primary currents (A) of the LV CTs an assessment meter uses
CT_PRIMARY_A = (50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 750, 800, 1000, 1200, 1500, 2000, 2500, 3000)
ASSESSMENT_ID = "assessment"


def assessment_ct(rating_kva: float, vn_lv_kv: float) -> float:
    """The CT ratio (primary / 5 A) sized to the transformer's rated LV current."""
    rated = rating_kva / (math.sqrt(3.0) * vn_lv_kv)
    return next((a for a in CT_PRIMARY_A if a >= rated), CT_PRIMARY_A[-1]) / 5.0


# -- the world ------------------------------------------------------------------------------------


@dataclass(slots=True)
class WorldMeter:
    """A device of the world: a customer meter (``customer >= 0``), a branch unit, a box
    terminal or the assessment meter (``kind``)."""

    id: str
    replica: Replica
    customer: int  # index in the whole network (``Grid``), -1 for the other kinds
    branch: str  # full name (with replica prefix); empty for the assessment meter
    box: str
    station_meter: StationMeter
    kind: str = "customer"  # customer | branch_unit | box_terminal | assessment

    @property
    def meter(self) -> VirtualMeter:
        return self.station_meter.meter

    @property
    def channel(self) -> str:
        """How the terminal reaches it: the RS-485 bus name, or "hplc"."""
        return self.station_meter.bus


#: ``hook(addresses, powered, t)``: HPLC meters lost (False) or regained (True) supply at ``t``
SupplyHook = Callable[[tuple[str, ...], bool, float], None]
#: ``hook(powered, t)``: the transformer's LV side (and the terminal on it) lost / regained supply
StationHook = Callable[[bool, float], None]
#: ``hook(branch, closed, t)``: a branch breaker tripped (False) or was closed again (True)
BreakerHook = Callable[[str, bool, float], None]


@dataclass(frozen=True, slots=True)
class TruthEvent:
    kind: str  # outage | dip | relay_trip | lastgasp | comms_loss | terminal_down ...
    scope: str  # station | phase | branch | box | meter (| bus for a comms_loss)
    target: str
    start: float
    end: float | None
    meters: tuple[str, ...] = ()


@dataclass(order=True, slots=True)
class _Action:
    t: float
    seq: int
    apply: Callable[[float], None] = field(compare=False)


@dataclass(slots=True)
class World:
    scenario: Scenario
    replicas: list[Replica]
    grid: Grid
    station: Station
    meters: dict[str, WorldMeter]
    start: float
    seed: int
    events: list[TruthEvent] = field(default_factory=list)
    faults: list[dict[str, object]] = field(default_factory=list)
    actions: list[_Action] = field(default_factory=list)
    _relay_known: dict[str, bool] = field(default_factory=dict)
    _relay_watch: set[str] | None = None  # customers whose relay moved or will (None: look at all)
    _customer_order: dict[str, int] = field(default_factory=dict)
    _open_trips: dict[str, int] = field(default_factory=dict)  # meter id -> index in events
    _seq: int = 0
    _supply_hooks: list[SupplyHook] = field(default_factory=list)
    _supplied: dict[str, bool] = field(default_factory=dict)  # HPLC meter id -> last state told
    station_id: str = "station"
    spans: Spans = field(default_factory=Spans)
    _station_hooks: list[StationHook] = field(default_factory=list)
    _breaker_hooks: list[BreakerHook] = field(default_factory=list)

    def on_station(self, hook: StationHook) -> None:
        """Call ``hook(powered, t)`` at every edge of a station-level outage or dip."""
        self._station_hooks.append(hook)

    def on_breaker(self, hook: BreakerHook) -> None:
        """Call ``hook(branch, closed, t)`` when a branch outage trips / recloses its breaker."""
        self._breaker_hooks.append(hook)

    def phases_live(self, t: float) -> tuple[bool, bool, bool]:
        """Whether each transformer LV phase has voltage at ``t`` (station and phase outages)."""
        live = self.spans.live_at
        return live(("phase:A",), t), live(("phase:B",), t), live(("phase:C",), t)

    #: the 总表's CT: (fitted, recorded in the archive); they differ under a wrong-CT scenario
    assessment_ct: tuple[float, float] = (1.0, 1.0)

    def hplc_meters(self) -> list[WorldMeter]:
        return [m for m in self.meters.values() if m.channel == "hplc"]

    def on_supply(self, hook: SupplyHook) -> None:
        """Call ``hook`` whenever HPLC meters lose or regain supply (see the module docstring)."""
        self._supply_hooks.append(hook)

    def supply_changed(self, t: float) -> None:
        """Tell the hooks which HPLC meters changed supply since the last call (at ``t``).

        Called after anything that powers meters off or on (scenario actions, breakers)."""
        changed: dict[bool, list[str]] = {False: [], True: []}
        for m in self.hplc_meters():
            on = m.meter.on
            if self._supplied.get(m.id, True) != on:
                self._supplied[m.id] = on
                changed[on].append(m.meter.address)
        for on, addresses in changed.items():
            if addresses:
                self._tell(tuple(addresses), on, t)

    def _tell(self, addresses: tuple[str, ...], on: bool, t: float) -> None:
        for hook in self._supply_hooks:
            hook(addresses, on, t)

    def _station(self, powered: bool, t: float) -> None:
        for hook in self._station_hooks:
            hook(powered, t)

    def _breaker(self, branch: str, closed: bool, t: float) -> None:
        for hook in self._breaker_hooks:
            hook(branch, closed, t)

    def by_key(self, key: str, *, path: str = "meter") -> WorldMeter:
        """A meter by device id or address; ConfigError naming the scenario key otherwise."""
        for m in self.meters.values():
            if key in (m.id, m.meter.address):
                return m
        raise ConfigError(path, f"no meter {key!r} in the station area", source=self.scenario.source)

    def customers(self) -> list[WorldMeter]:
        return [m for m in self.meters.values() if m.customer >= 0]

    def branch_units(self) -> list[WorldMeter]:
        return [m for m in self.meters.values() if m.kind == "branch_unit"]

    def box_terminals(self) -> list[WorldMeter]:
        return [m for m in self.meters.values() if m.kind == "box_terminal"]

    @property
    def assessment(self) -> WorldMeter | None:
        """The assessment meter (总表), if the world has one."""
        return self.meters.get(ASSESSMENT_ID)

    # -- run time -------------------------------------------------------------------------------
    def apply_due(self, now: float) -> None:
        """Apply every scheduled action due at ``now`` (at its own time) and follow relays."""
        while self.actions and self.actions[0].t <= now:
            action = self.actions.pop(0)
            action.apply(action.t)
        self.follow_relays(now)

    def follow_relays(self, now: float) -> None:
        """Closed loop: a relay opened or closed (by the terminal or a scenario) changes the load.

        Only the customers whose meter said its relay moved, or a press of its button is due, are
        looked at (the meters tell ``_relay_watch``); the first call looks at every customer."""
        if self._relay_watch is None:
            self._relay_watch = set()
            for i, m in enumerate(self.customers()):
                self._customer_order[m.id] = i
                m.meter.on_relay = functools.partial(self._relay_watch.add, m.id)
            due = list(self.customers())
        else:
            order = self._customer_order
            due = [self.meters[i] for i in sorted(self._relay_watch, key=order.__getitem__)]
        for m in due:
            m.meter.settle(now)  # a customer who pressed the button (close allowed)
            if m.meter.press_due is None:
                self._relay_watch.discard(m.id)
            closed = m.meter.relay_closed
            if self._relay_known.get(m.id, True) == closed:
                continue
            self._relay_known[m.id] = closed
            # the meter knows when its relay moved; the physics follows from that instant
            at = m.meter.relay_changed_at
            at = now if at is None or at > now else at
            intervals = m.replica.grid.offs.setdefault(m.customer, [])
            if not closed:
                intervals.append([at, math.inf])
                self._open_trips[m.id] = len(self.events)
                self.events.append(TruthEvent("relay_trip", "meter", m.id, at, None, (m.id,)))
            else:
                if intervals and intervals[-1][1] == math.inf:
                    intervals[-1][1] = at
                if (k := self._open_trips.pop(m.id, None)) is not None:
                    self.events[k] = dataclasses.replace(self.events[k], end=at)
            m.replica.grid.refresh()

    async def run(self, clock: Clock, *, poll_s: float = 2.0) -> None:
        """Apply the scenario's timed actions and follow relay changes until cancelled."""
        while True:
            now = clock.now()
            self.apply_due(now)
            nxt = self.actions[0].t if self.actions else math.inf
            await clock.sleep_until(min(now + poll_s, nxt))

    def schedule(self, t: float, apply: Callable[[float], None]) -> None:
        """Run ``apply(t)`` once the clock reaches ``t`` (in scheduling order for equal times)."""
        self._seq += 1
        bisect.insort(self.actions, _Action(t, self._seq, apply))


# -- building -------------------------------------------------------------------------------------


def build_world(
    *,
    buses: list[str],
    scenario: Scenario,
    seed: int,
    start: float,
    duration_s: float | None = None,
    network: str = "ieee-eu-lv",
    customers_scale: int = 1,
    settings: SerialSettings | None = None,
    response_delay_s: Delay | Mapping[str, Delay] = (0.02, 0.05),
    hplc_meters: int = 0,
    station_id: str = "station",
    hplc_from_board: bool = False,
) -> World:
    """The station area of ``network`` (× ``customers_scale``) under ``scenario``, from ``start``;
    ``hplc_meters`` of its customers are read over HPLC instead of RS-485. ``hplc_from_board``:
    the count is the board's setting, not asked for this area: an area with fewer customers (a
    small network of one's own) reads half of them over HPLC instead of refusing."""
    if not buses or len(set(buses)) != len(buses):
        raise ConfigError("buses", f"need distinct bus names, got {buses!r}")
    if customers_scale < 1:
        raise ConfigError("--customers-scale", f"must be at least 1, got {customers_scale}")
    feeder = load_network(network, seed=seed, line_scale=scenario.grid.line_scale)
    nw = feeder.replicate(customers_scale)
    if hplc_from_board:
        hplc_meters = hplc_that_fit(hplc_meters, nw.n_customers)
    if is_shipped(scenario) and feeder.name != DEFAULT_NETWORK:
        scenario = _fit_shipped(scenario, nw)
    h_start = math.floor(start / STEP_S) * STEP_S
    span = (duration_s if duration_s is not None else LIVE_HORIZON_S) + HORIZON_MARGIN_S
    steps = math.ceil((start + span - h_start) / STEP_S)
    profiles = Profiles.side_by_side(
        [
            _profiles(feeder, start=h_start, steps=steps, seed=seed * 1000 + r, scenario=scenario, t0=start)
            for r in range(customers_scale)
        ]
    )
    hz = solve(nw, profiles)
    grid = Grid(nw, hz, hz)
    replicas = [Replica(r, grid) for r in range(customers_scale)]
    world = World(
        scenario=scenario,
        replicas=replicas,
        grid=grid,
        station=Station(
            buses={b: [] for b in buses},
            seed=seed,
            start=start,
            settings=settings or SerialSettings(),
            response_delay_s=response_delay_s,
        ),
        meters={},
        start=start,
        seed=seed,
        station_id=station_id,
    )
    _add_meters(world, buses, start=start, seed=seed)
    _add_box_terminals(world, buses[-1], start=start, seed=seed)
    _add_assessment(world, buses[-1], start=start, seed=seed)
    assign_protocols(world.station, dlt698_share=0.1, seed=seed)  # some DL/T 698.45 meters
    _hplc(world, hplc_meters)
    _phase_moves(world)
    for outage in scenario.outages:
        _outage(world, outage)
    grid.horizon = grid.base
    _thefts(world)
    _meter_faults(world)
    _relays(world)
    for m in world.customers():  # how long after "close allowed" (1BH) each customer presses the button
        m.meter.button_delay_s = scenario.billing.button_delay_s
    _archive_errors(world)
    if scenario.archive.foreign:
        _neighbours(world, feeder, buses, profiles, steps=steps, h_start=h_start)
    _mislabels(world)
    _comms(world)
    _signature(world)
    _comms_losses(world)
    if duration_s is not None:  # the meters' curve memory for the whole run now, not record by record
        records = math.ceil(duration_s / CURVE_PERIOD_S) + 1
        for m in world.meters.values():
            m.meter.curve.reserve(records)
    tr = scenario.transformer
    if tr.ct_ratio_actual is not None and tr.ct_ratio_configured is not None:
        world.faults.append(
            {
                "kind": "ct_ratio",
                "target": ASSESSMENT_ID,
                "start": start,
                "end": None,
                "value": tr.ct_ratio_configured / tr.ct_ratio_actual,
                "detail": f"CT ratio recorded {tr.ct_ratio_configured:g}, fitted {tr.ct_ratio_actual:g}: "
                "the assessment meter's supply comes out x recorded/fitted",
            }
        )
    for s in scenario.pv_surges:
        world.faults.append(
            {
                "kind": "pv_surge",
                "target": "station",
                "start": start + s.at,
                "end": start + s.at + s.duration,
                "value": s.factor,
                "detail": "PV output multiplied",
            }
        )
    return world


def _profiles(
    nw: StationNetwork, *, start: float, steps: int, seed: int, scenario: Scenario, t0: float
) -> Profiles:
    try:
        prof = build_profiles(nw, start=start, steps=steps, seed=seed, pv_share=scenario.pv_share)
    except ProfileDataMissing:
        log.warning("UCI household data not installed: synthetic household profiles instead")
        mids = start + (np.arange(steps) + 0.5) * STEP_S
        hh = [HouseholdProfile.for_customer(seed, i) for i in range(nw.n_customers)]
        p = np.stack([h.power_kw_array(mids) for h in hh], axis=1)
        q = np.stack([h.reactive_kvar_array(mids) for h in hh], axis=1)
        prof = Profiles.constant(p, q, np.full(steps, nw.source_vm_pu), start=start, step_s=STEP_S)
    k = scenario.grid.load_scale
    if k != 1.0:  # heavier demand; PV systems keep their size
        prof = dataclasses.replace(
            prof, load_kw=prof.load_kw * k, q_kvar=prof.q_kvar * k, p_kw=prof.load_kw * k - prof.pv_kw
        )
    if not scenario.pv_surges or not prof.prosumer.any():
        return prof
    factor = np.ones(steps)
    edges = start + np.arange(steps + 1) * STEP_S
    for s in scenario.pv_surges:
        a, b = t0 + s.at, t0 + s.at + s.duration
        overlap = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0.0, None) / STEP_S
        factor *= 1.0 + (s.factor - 1.0) * overlap
    pv = prof.pv_kw * factor[:, None]
    return dataclasses.replace(prof, pv_kw=pv, p_kw=prof.load_kw - pv)


def _units_on_last_bus(world: World) -> int:
    """Devices besides customer meters that the last bus carries: a branch unit per branch, a box
    terminal per monitored box, and room for the Modbus breaker per branch (plus a few sensors)
    that ``sim.devices`` puts on the breakers port."""
    branches = sum(len(rep.network.branches) for rep in world.replicas)
    boxes = sum(
        1
        for rep in world.replicas
        for box in {rep.prefix + c.box for c in rep.network.customers}
        if world.scenario.monitoring.has_terminal(box)
    )
    return 2 * branches + boxes + 5  # + the assessment meter


def hplc_that_fit(count: int, customers: int) -> int:
    """A board's number of carrier meters on an area of ``customers``: itself, or half the
    customers of an area that has fewer (a small or rural feeder)."""
    return count if count <= customers else customers // 2


def _fit_shipped(scenario: Scenario, nw: StationNetwork) -> Scenario:
    """A shipped scenario (default, lineloss, topology, ...), written for the default feeder, on
    another network: what it names there and the network lacks (a branch, a box, a meter) is left
    out, and said."""
    fit, left_out = fitted(
        scenario,
        branches=set(nw.branches),
        boxes={c.box for c in nw.customers},
        meters={f"m-{k:04d}" for k in range(1, nw.n_customers + 1)},
    )
    if left_out:
        log.warning(
            "the %s scenario names the default feeder's branches, boxes and meters; on network %s"
            " it leaves out: %s (name a scenario of your own with --scenario)",
            scenario.name,
            nw.name,
            "; ".join(left_out),
        )
    return fit


def _spread(n: int, buses: list[str], *, last_bus_extra: int) -> list[str]:
    """The bus of each of ``n`` meters (in order): about the same number of devices on every bus,
    counting ``last_bus_extra`` other devices on the last one; consecutive meters share a bus."""
    per = (n + last_bus_extra) / len(buses)
    counts = [min(round(per * (j + 1)) - round(per * j), n) for j in range(len(buses) - 1)]
    counts = [max(0, min(c, n - sum(counts[:j]))) for j, c in enumerate(counts)]
    counts.append(n - sum(counts))
    return [bus for bus, count in zip(buses, counts, strict=True) for _ in range(count)]


def _add_meters(world: World, buses: list[str], *, start: float, seed: int) -> None:
    rng = np.random.default_rng([seed, 0x3A7])
    customers: list[tuple[Replica, int]] = []
    for rep in world.replicas:
        order = sorted(range(rep.network.n_customers), key=lambda i: (rep.network.customers[i].branch, i))
        customers += [(rep, i) for i in order]
    bus_of = _spread(len(customers), buses, last_bus_extra=_units_on_last_bus(world))
    for n, (rep, i) in enumerate(customers):
        k = n + 1
        c = rep.network.customers[i]
        bus = bus_of[n]
        address = f"{rep.index + 1:02d}{c.meter_id[2:]}"
        device = f"m-{k:04d}"
        meter = VirtualMeter(
            address,
            profile=HorizonProfile(rep, rep.offset + i),
            start=start,
            phase=c.phase,  # type: ignore[arg-type]
            seed=seed,
            initial_kwh=tuple(float(x) for x in rng.uniform(50, 3000) * np.array([0.1, 0.3, 0.35, 0.25])),
            errors=_errors(world, address, "household" if c.phase in ("A", "B", "C") else "three_phase"),
        )
        sm = StationMeter(device, bus, meter, Customer(f"C{k:04d}", device), meter.profile)
        world.station.buses[bus].append(sm)
        world.meters[device] = WorldMeter(
            device, rep, rep.offset + i, rep.prefix + c.branch, rep.prefix + c.box, sm
        )
    bus = buses[-1]
    for rep in world.replicas:
        net = rep.network
        for b, name in enumerate(net.branches):
            sections = _descendants(net, b)
            custs = net.customers_in(sections)
            address = f"{rep.index + 1:02d}99{b + 1:08d}"
            device = f"bu-{rep.prefix}{name}"
            phase: Phase = "ABC"
            profile = BranchProfile(
                rep,
                [rep.branch_offset + s for s in sections],
                rep.customers(custs),
                world.spans,
                rep.prefix + name,
                head=rep.branch_offset + b,
                phase_of=[_phase_index(net.customers[i].phase) for i in custs],
            )
            meter = VirtualMeter(
                address,
                profile=profile,
                start=start,
                phase=phase,
                seed=seed,
                errors=_errors(world, address, "three_phase"),
            )
            sm = StationMeter(
                device,
                bus,
                meter,
                Customer(f"branch:{rep.prefix}{name}", device, "branch-unit"),
                meter.profile,
            )
            world.station.buses[bus].append(sm)
            world.meters[device] = WorldMeter(device, rep, -1, rep.prefix + name, "", sm, "branch_unit")


def _add_box_terminals(world: World, bus: str, *, start: float, seed: int) -> None:
    """A box terminal (表箱终端, DL/T 645, three-phase) for each box the scenario monitors."""
    monitoring = world.scenario.monitoring
    known: set[str] = set()
    n = 0
    for rep in world.replicas:
        boxes: dict[str, list[int]] = {}
        for i, c in enumerate(rep.network.customers):
            boxes.setdefault(rep.prefix + c.box, []).append(i)
        known |= set(boxes)
        for box, custs in sorted(boxes.items()):
            if not monitoring.has_terminal(box):
                continue
            n += 1
            phases: dict[str, int] = {}
            for i in custs:
                phases.setdefault(rep.network.customers[i].phase, rep.offset + i)
            address = f"{rep.index + 1:02d}98{n:08d}"
            meter = VirtualMeter(
                address,
                profile=BoxProfile(
                    rep,
                    rep.customers(custs),
                    phases,
                    world.spans,
                    [_phase_index(rep.network.customers[i].phase) for i in custs],
                ),
                start=start,
                phase="ABC",
                seed=seed,
                errors=_errors(world, address, "three_phase"),
            )
            device = f"bt-{box}"
            customer = Customer(f"box:{box}", device, "box-terminal")
            sm = StationMeter(device, bus, meter, customer, meter.profile)
            world.station.buses[bus].append(sm)
            branch = rep.prefix + rep.network.customers[custs[0]].branch
            world.meters[device] = WorldMeter(device, rep, -1, branch, box, sm, "box_terminal")
    unknown = sorted(set(monitoring.box_terminals) - known)
    if unknown:
        raise ConfigError(
            "monitoring.box_terminals",
            f"no such meter box: {', '.join(unknown)}",
            source=world.scenario.source,
        )


def _add_assessment(world: World, bus: str, *, start: float, seed: int) -> None:
    """The 总表 at the transformer LV side: registers in secondary kWh of the CT really fitted."""
    net = world.replicas[0].network
    rating_kva = float(net.net.trafo.sn_mva.iloc[0]) * 1000.0  # one transformer, however many replicas
    standard = assessment_ct(rating_kva, net.vn_lv_kv)
    tr = world.scenario.transformer
    fitted = tr.ct_ratio_actual or standard
    recorded = tr.ct_ratio_configured or fitted
    world.assessment_ct = (fitted, recorded)
    meter = VirtualMeter(
        "019700000001",
        profile=TransformerProfile(world.grid, fitted),
        start=start,
        phase="ABC",
        seed=seed,
        initial_kwh=(100.0, 300.0, 350.0, 250.0),
        errors=_errors(world, "019700000001", "assessment"),
    )
    customer = Customer("station:assessment", ASSESSMENT_ID, "assessment")
    sm = StationMeter(ASSESSMENT_ID, bus, meter, customer, meter.profile)
    world.station.buses[bus].append(sm)
    world.meters[ASSESSMENT_ID] = WorldMeter(ASSESSMENT_ID, world.replicas[0], -1, "", "", sm, "assessment")


def _errors(world: World, address: str, kind: str) -> DeviceErrors:
    """The seeded measurement errors of the device at ``address`` (``sim.physics.measure``)."""
    return DeviceErrors(int(address), world.seed, ACCURACY[kind], world.scenario.metering.error_scale)


def _descendants(net: StationNetwork, b: int) -> list[int]:
    out = [b]
    for j, head in enumerate(net.heads):  # parents are listed first
        if head[3] in out:
            out.append(j)
    return out


def _outage(world: World, o: Outage) -> None:
    t0, t1 = world.start + o.at, world.start + o.at + o.duration
    path = f"outage[{world.scenario.outages.index(o)}].target"
    hit: list[WorldMeter] = []
    for rep in world.replicas:
        net = rep.network
        if o.level == "station":
            idx = list(range(net.n_customers))
            units = [m for m in world.branch_units() if m.replica is rep]
            if rep.index == 0 and world.assessment is not None:
                units.append(world.assessment)
        elif o.level == "branch" and o.target == rep.prefix + BOARD_BRANCH:
            # the board's own outlets (customers on the busbar, no line of ours between): no unit
            idx = [i for i, b in enumerate(net.branch_index()) if b < 0]
            units = []
        elif o.level == "branch":
            if not o.target.startswith(rep.prefix) or o.target[len(rep.prefix) :] not in net.branches:
                continue
            b = net.branches.index(o.target[len(rep.prefix) :])
            sections = _descendants(net, b)
            idx = net.customers_in(sections)
            names = {rep.prefix + net.branches[s] for s in sections[1:]}
            units = [m for m in world.branch_units() if m.replica is rep and m.branch in names]
        elif o.level == "phase":  # a transformer LV phase: its single-phase customers go dark
            idx = [i for i, c in enumerate(net.customers) if c.phase == o.target]
            units = []
        elif o.level == "box":
            idx = [i for i, c in enumerate(net.customers) if rep.prefix + c.box == o.target]
            units = []
        else:
            m = world.by_key(o.target, path=path)
            idx = [m.customer - rep.offset] if m.replica is rep and m.customer >= 0 else []
            units = []
        idx = rep.customers(idx)
        grid = world.grid
        if idx:
            grid.base = grid.base.with_customer_off(
                idx, max(t0, grid.base.start), min(t1, grid.base.end), outage=True
            )
        inside = set(idx)
        hit += [m for m in world.customers() if m.replica is rep and m.customer in inside] + units
        for m in world.box_terminals():  # a box terminal goes dark with the supply of its whole box
            profile = m.station_meter.profile
            whole_box = isinstance(profile, BoxProfile) and set(profile.customers) <= inside
            # a meter-level outage is the meter's own fuse, downstream of the box terminal; a
            # three-phase box terminal rides through the loss of one phase
            if m.replica is rep and idx and whole_box and o.level not in ("meter", "phase"):
                hit.append(m)
    if not hit:
        raise ConfigError(path, f"{o.level} {o.target!r} matches no meter", source=world.scenario.source)
    ids = tuple(m.id for m in hit)
    target = world.station_id if o.level == "station" else o.target
    _measured_supply(world, o, t0, t1)
    if o.duration < POWER_DOWN_JUDGEMENT_S:
        world.events.append(TruthEvent("dip", o.level, target, t0, t1, ids))
        _dip_at_stas(world, [m for m in hit if m.channel == "hplc"], t0, t1)
        return
    world.events.append(TruthEvent("outage", o.level, target, t0, t1, ids))
    if o.level == "branch" and o.cause == "trip":
        world.schedule(t0, functools.partial(world._breaker, o.target, False))
        world.schedule(t1, functools.partial(world._breaker, o.target, True))
    rng = np.random.default_rng([world.seed, 0x1A57, len(world.events)])
    for m in hit:
        if m.channel != "hplc":
            continue  # only an HPLC STA sends a last gasp; RS-485 meters are found by polling
        sta = t0 + POWER_DOWN_JUDGEMENT_S + float(rng.uniform(*LASTGASP_STA_DELAY_S))
        world.events.append(TruthEvent("lastgasp", "meter", m.id, sta, sta + LASTGASP_AGGREGATION_S, (m.id,)))
    meters = [m.meter for m in hit]

    def off(t: float) -> None:
        for vm in meters:
            vm.power_off(t)
        world.supply_changed(t)

    def on(t: float) -> None:
        for vm in meters:
            vm.power_on(t)
        world.supply_changed(t)

    world.schedule(t0, off)
    world.schedule(t1, on)


def _measured_supply(world: World, o: Outage, t0: float, t1: float) -> None:
    """What the devices that stay powered measure: phases without voltage at the transformer (a
    station or phase outage, dips included), the branch unit of a tripped branch; and the
    terminal's own supply at every edge of a station-level outage or dip."""
    if o.level in ("station", "phase"):
        for p in "ABC" if o.level == "station" else o.target:
            world.spans.add(f"phase:{p}", t0, t1)
    if o.level == "station":
        world.schedule(t0, lambda t: world._station(False, t))
        world.schedule(t1, lambda t: world._station(True, t))
    if o.level == "branch" and o.cause == "trip" and o.duration >= POWER_DOWN_JUDGEMENT_S:
        world.spans.add(f"unit:{o.target}", t0, t1)


def _dip_at_stas(world: World, hplc: list[WorldMeter], t0: float, t1: float) -> None:
    """A dip: the meters ride through it, but their STAs see the supply go and come back, so the
    CCO's judgement decides (and sends nothing). Meters already out of supply are left alone."""
    if not hplc:
        return
    dipped: list[str] = []

    def off(t: float) -> None:
        dipped[:] = [m.meter.address for m in hplc if m.meter.on]
        if dipped:
            world._tell(tuple(dipped), False, t)

    def on(t: float) -> None:
        if dipped:
            world._tell(tuple(dipped), True, t)

    world.schedule(t0, off)
    world.schedule(t1, on)


def _hplc(world: World, count: int) -> None:
    """Move ``count`` seeded customer meters from their RS-485 bus behind the CCO.

    Its own random stream (addresses, protocols and the RS-485 meters' order do not change with
    the count). About a third speak DL/T 698.45 (at least one of each protocol from 2 up), so
    both carried protocols are exercised whatever the seed."""
    customers = world.customers()
    if count < 0 or count > len(customers):
        raise ConfigError("sim.hplc_meters", f"{count}: the station area has {len(customers)} customers")
    if count == 0:
        return
    rng = np.random.default_rng([world.seed, 0x1376])
    chosen = sorted(rng.choice(len(customers), size=count, replace=False).tolist())
    n698 = max(1, round(count / 3)) if count >= 2 else 0
    speaks698 = set(rng.permutation(count)[:n698].tolist())
    station = world.station
    for j, k in enumerate(chosen):
        sm = customers[k].station_meter
        station.buses[sm.bus].remove(sm)
        sm.bus = "hplc"
        sm.protocol = "dlt698" if j in speaks698 else "dlt645"
        station.hplc.append(sm)
        world._supplied[customers[k].id] = True


def _thefts(world: World) -> None:
    for n, th in enumerate(world.scenario.thefts):
        m = world.by_key(th.meter, path=f"theft[{n}].meter")
        if not isinstance(m.station_meter.profile, HorizonProfile):
            raise ConfigError(
                f"theft[{n}].meter", f"{th.meter} is a branch unit", source=world.scenario.source
            )
        t0 = world.start + th.at
        t1 = math.inf if th.duration is None else t0 + th.duration
        m.station_meter.profile.thefts.append((t0, t1, th.bypass))
        world.faults.append(
            {
                "kind": "theft",
                "target": m.id,
                "start": t0,
                "end": None if t1 == math.inf else t1,
                "value": th.bypass,
                "detail": "share of the load bypassing the meter",
            }
        )


def _meter_faults(world: World) -> None:
    for n, f in enumerate(world.scenario.meter_faults):
        m = world.by_key(f.meter, path=f"meter_fault[{n}].meter")
        vm = m.meter

        def apply(t: float, vm: VirtualMeter = vm, kind: str = f.kind, value: float = f.value) -> None:
            vm.advance(t)
            if kind == "stopped":
                vm.faults.stopped = True
            elif kind == "slow":
                vm.faults.slow_pct = value
            else:
                vm.skew_s += value

        world.schedule(world.start + f.at, apply)
        world.faults.append(
            {
                "kind": f.kind,
                "target": m.id,
                "start": world.start + f.at,
                "end": None,
                "value": f.value,
                "detail": {"stopped": "register stopped", "slow": "% slow", "clock_skew": "s clock offset"}[
                    f.kind
                ],
            }
        )


def _relays(world: World) -> None:
    for n, r in enumerate(world.scenario.relays):
        m = world.by_key(r.meter, path=f"relay[{n}].meter")

        def apply(t: float, m: WorldMeter = m, action: str = r.action) -> None:
            try:
                m.meter.trip(t) if action == "trip" else m.meter.close(t)
            except RelayRefused as err:
                log.info("scenario relay %s on %s refused: %s", action, m.id, err)
            world.follow_relays(t)

        world.schedule(world.start + r.at, apply)


def _archive_errors(world: World) -> None:
    a = world.scenario.archive
    rng = np.random.default_rng([world.seed, 0xA2C])
    customers = world.customers()
    if a.missing > len(customers):
        raise ConfigError(
            "archive.missing", f"{a.missing} > {len(customers)} meters", source=world.scenario.source
        )
    for j in sorted(rng.choice(len(customers), size=a.missing, replace=False).tolist()):
        world.station.unarchived.add(customers[j].id)
        sm = customers[j].station_meter
        if sm.bus != "hplc":  # an unlisted meter still joins our carrier network (its STA does)
            world.station.buses[sm.bus].remove(sm)
            sm.bus = "hplc"
            world.station.hplc.append(sm)
            world._supplied[customers[j].id] = True
        world.faults.append(
            {
                "kind": "archive_missing",
                "target": customers[j].id,
                "start": world.start,
                "end": None,
                "value": 1,
                "detail": "meter not in the archive",
            }
        )
    buses = list(world.station.buses)
    for j in range(a.phantom):
        entry = Meter(
            id=f"m-{9001 + j}",
            address=f"88{int(rng.integers(0, 10**10)):010d}",
            port=buses[j % len(buses)],
            baud=world.station.settings.baud,
            phase="ABC"[j % 3],
            customer=f"N{9001 + j}",
            tariff="residential",
        )
        world.station.foreign.append(entry)
        world.faults.append(
            {
                "kind": "archive_phantom",
                "target": entry.id,
                "start": world.start,
                "end": None,
                "value": 1,
                "detail": f"address {entry.address}: listed, but no meter answers at it",
            }
        )


def _phase_moves(world: World) -> None:
    """Scenario ``[[phase_move]]``: the customer's service reconnected to another phase."""
    for n, mv in enumerate(world.scenario.phase_moves):
        where = f"phase_move[{n}].meter"
        m = world.by_key(mv.meter, path=where)
        if m.customer < 0:
            raise ConfigError(where, f"{m.id} is not a customer meter", source=world.scenario.source)
        hz = world.grid.base
        before = hz.phase_at(m.customer, world.start + mv.at)
        phase = mv.phase or "ABC"[("ABC".index(before) + 1) % 3]
        if phase == before:
            raise ConfigError(
                f"phase_move[{n}].phase", f"{m.id} is on phase {phase} already", source=world.scenario.source
            )
        world.grid.base = hz.with_customer_phase(m.customer, phase, world.start + mv.at)
        k0 = max(k for i, _, k in world.grid.base.moves if i == m.customer)
        world.faults.append(
            {
                "kind": "phase_moved",
                "target": m.id,
                "start": hz.start + k0 * hz.step_s,
                "end": None,
                "value": phase,
                "detail": f"reconnected from phase {before} to {phase} (the archive keeps {before})",
            }
        )


def _neighbours(
    world: World, feeder: StationNetwork, buses: list[str], ours: Profiles, *, steps: int, h_start: float
) -> None:
    """``[archive] foreign``: meters of the neighbouring station area -- a feeder like ours (the
    same layout) with its own transformer and its own load, solved on our MV supply -- listed in our
    archive (on a branch and box of ours) and answering on our RS-485 buses. Their voltage and
    energy follow the neighbour's network; our transformer and units never see them."""
    count = world.scenario.archive.foreign
    seed = world.seed + 7919
    if count > feeder.n_customers:
        raise ConfigError(
            "archive.foreign",
            f"{count} > {feeder.n_customers} customers next door",
            source=world.scenario.source,
        )
    prof = _profiles(feeder, start=h_start, steps=steps, seed=seed, scenario=world.scenario, t0=world.start)
    prof = dataclasses.replace(prof, mv_pu=ours.mv_pu[: prof.steps])
    hz = solve(feeder, prof)
    rep = Replica(0, Grid(feeder, hz, hz))
    rng = np.random.default_rng([world.seed, 0x4E1])
    places = [(m.branch, m.box) for m in world.customers() if m.replica.index == 0]
    rs485 = [b for b in buses if b in world.station.buses]
    for j, k in enumerate(sorted(rng.choice(feeder.n_customers, size=count, replace=False).tolist())):
        device = f"m-{9101 + j}"
        meter = VirtualMeter(
            f"88{int(rng.integers(0, 10**10)):010d}",
            profile=HorizonProfile(rep, k),
            start=world.start,
            phase=feeder.customers[k].phase,  # type: ignore[arg-type]
            seed=seed,
            initial_kwh=tuple(float(x) for x in rng.uniform(50, 3000) * np.array([0.1, 0.3, 0.35, 0.25])),
        )
        branch, box = places[int(rng.integers(0, len(places)))]
        sm = StationMeter(
            device, rs485[j % len(rs485)], meter, Customer(f"N{9101 + j}", device), meter.profile
        )
        sm.labels = {"phase": "ABC"[int(rng.integers(0, 3))], "branch": branch, "box": box}
        world.station.buses[sm.bus].append(sm)
        world.meters[device] = WorldMeter(device, rep, -1, "", "", sm, "neighbour")
        world.faults.append(
            {
                "kind": "archive_foreign",
                "target": device,
                "start": world.start,
                "end": None,
                "value": 1,
                "detail": f"address {meter.address}: fed by the neighbouring transformer (phase "
                f"{feeder.customers[k].phase} there), answering on {sm.bus}; the archive says {branch} {box}",
            }
        )


def _mislabels(world: World) -> None:
    """``[archive] phase / branch / box``: the archive's label is wrong (the meter is where the
    physics has it). Missing meters are not listed, so they are not mislabelled."""
    a = world.scenario.archive
    rng = np.random.default_rng([world.seed, 0x1AB])
    pool = [m for m in world.customers() if m.id not in world.station.unarchived]
    boxes: dict[str, list[str]] = {}
    for m in world.customers():
        if m.box not in boxes.setdefault(m.branch, []):
            boxes[m.branch].append(m.box)
    taken: set[str] = set()

    def eligible(kind: str, m: WorldMeter) -> list[str]:
        if kind == "phase":
            phase = world.grid.base.phase_at(m.customer, world.start)
            return [p for p in "ABC" if p != phase]
        if kind == "branch":
            prefix = m.replica.prefix
            return [
                b
                for b in sorted(boxes)
                if b != m.branch and b.startswith(prefix) and (prefix or b[:1] != "R")
            ]
        return [] if m.id in taken else [x for x in boxes[m.branch] if x != m.box]

    for kind, spec in (("phase", a.phase), ("branch", a.branch), ("box", a.box)):
        if not spec:
            continue
        if spec.meters:
            chosen = [world.by_key(key, path=f"archive.{kind}") for key in spec.meters]
            for m in chosen:
                if m.customer < 0 or not eligible(kind, m):
                    raise ConfigError(
                        f"archive.{kind}", f"{m.id}: no wrong {kind} to give it", source=world.scenario.source
                    )
        else:
            cands = [m for m in pool if eligible(kind, m)]
            size = min(round(spec.pct / 100.0 * len(pool)), len(cands))
            chosen = [cands[i] for i in sorted(rng.choice(len(cands), size=size, replace=False).tolist())]
        for m in chosen:
            options = eligible(kind, m)
            wrong = options[int(rng.integers(0, len(options)))]
            labels = m.station_meter.labels
            if kind == "branch":
                labels["branch"] = wrong
                labels["box"] = boxes[wrong][int(rng.integers(0, len(boxes[wrong])))]
                taken.add(m.id)
                true = f"{m.branch} {m.box}"
                wrong = f"{wrong} {labels['box']}"
            else:
                labels[kind] = wrong
                true = world.grid.base.phase_at(m.customer, world.start) if kind == "phase" else m.box
            world.faults.append(
                {
                    "kind": f"archive_{kind}",
                    "target": m.id,
                    "start": world.start,
                    "end": None,
                    "value": wrong,
                    "detail": f"the archive says {wrong}, true {true}",
                }
            )


def _signature(world: World) -> None:
    """Signature current (特征电流): a send is heard by every branch unit and box terminal on the
    sender's true path (its branch, the branches above it, its box) but for ``miss_rate``, and by
    any other unit with ``crosstalk_rate``; a neighbour's meter is on none of our paths."""
    units = sorted([*world.branch_units(), *world.box_terminals()], key=lambda u: u.id)
    if not units:
        return
    parent: dict[str, str] = {}
    for rep in world.replicas:
        net = rep.network
        for b, name in enumerate(net.branches):
            up = net.heads[b][3]
            if up >= 0:
                parent[rep.prefix + name] = rep.prefix + net.branches[up]
    sig = world.scenario.signature
    for m in world.meters.values():
        if m.kind not in ("customer", "neighbour"):
            continue
        path: set[str] = set()
        if m.kind == "customer":
            here: str | None = m.branch
            while here is not None and here not in path:
                path.add(here)
                here = parent.get(here)
        on_path = {
            u.id
            for u in units
            if (u.kind == "branch_unit" and u.branch in path) or (u.box and u.box == m.box)
        }

        def sent(at: float, m: WorldMeter = m, on_path: set[str] = on_path) -> None:
            rng = np.random.default_rng([world.seed, 0x5167, int(m.meter.address), round(at)])
            phase = world.grid.horizon.phase_at(m.customer, at) if m.kind == "customer" else m.meter.phase
            for u in units:
                near = u.id in on_path
                draw = rng.random(4)
                if draw[0] >= (1.0 - sig.miss_rate if near else sig.crosstalk_rate):
                    continue
                t = at + 1.0 + 8.0 * float(draw[1])  # heard while the 9.6 s frame is on the wire
                s1 = (0.3 + 0.2 * float(draw[2])) if near else (0.05 + 0.05 * float(draw[2]))
                world.schedule(t, functools.partial(_hear, u, s1=s1, phase=phase, noise=float(draw[3])))

        m.meter.signature.on_send = sent


def _hear(unit: WorldMeter, t: float, *, s1: float, phase: str, noise: float) -> None:
    vm = unit.meter
    local = datetime.fromtimestamp(vm.meter_time(t) + vm.utc_offset_s, UTC).replace(
        tzinfo=None, microsecond=0
    )
    detection = Detection(
        at=local,
        phase="ABC".index(phase) + 1 if phase in ("A", "B", "C") else 0,
        s1_a=round(s1, 3),
        s2_a=round(s1 * 0.95, 3),
        noise_a=round(0.01 + 0.02 * noise, 3),
    )
    vm.signature.hear(detection, t)


def _comms(world: World) -> None:
    c = world.scenario.comms
    if not c.loss_pct and not c.corrupt_pct:
        return
    buses = list(c.buses) or list(world.station.buses)
    for b in buses:
        if b not in world.station.buses:
            raise ConfigError(
                "comms.buses",
                f"no bus {b!r}; buses: {list(world.station.buses)}",
                source=world.scenario.source,
            )
        for sm in world.station.buses[b]:
            sm.meter.faults.miss_rate = c.loss_pct / 100.0
        world.station.corrupt_rate[b] = c.corrupt_pct / 100.0
        world.faults.append(
            {
                "kind": "comms",
                "target": b,
                "start": world.start,
                "end": None,
                "value": c.loss_pct,
                "detail": f"loss {c.loss_pct:g} %, corruption {c.corrupt_pct:g} %",
            }
        )


def _comms_losses(world: World) -> None:
    """Devices that stop answering while they keep their supply: a meter, a box (its RS-485 lead
    cut: its RS-485 meters and its box terminal) or a whole bus ("rs485-N", or "hplc": every
    carrier meter). Ground truth: a ``comms_loss`` event (no outage)."""
    for n, c in enumerate(world.scenario.comms_losses):
        path = f"comms_loss[{n}].target"
        if c.target in world.station.buses or c.target == "hplc":
            scope = "bus"
            hit = [m for m in world.meters.values() if m.channel == c.target]
        elif any(m.box == c.target for m in world.meters.values()):
            scope = "box"  # its RS-485 lead: carrier meters in the box go on answering
            hit = [m for m in world.meters.values() if m.box == c.target and m.channel != "hplc"]
        else:
            scope = "meter"
            hit = [world.by_key(c.target, path=path)]
        if not hit:
            raise ConfigError(path, f"{c.target!r}: no meter to silence there", source=world.scenario.source)
        t0, t1 = world.start + c.at, world.start + c.at + c.duration
        meters = [m.meter for m in hit]

        def mute(t: float, meters: list[VirtualMeter] = meters, on: bool = True) -> None:
            for vm in meters:
                vm.faults.mute = on

        world.schedule(t0, mute)
        world.schedule(t1, functools.partial(mute, on=False))
        world.events.append(TruthEvent("comms_loss", scope, c.target, t0, t1, tuple(m.id for m in hit)))


__all__ = [
    "ASSESSMENT_ID",
    "TRIP_CAUSE_SHORT_CIRCUIT",
    "BranchProfile",
    "HorizonProfile",
    "Replica",
    "Spans",
    "TransformerProfile",
    "TruthEvent",
    "World",
    "WorldMeter",
    "assessment_ct",
    "build_world",
]
