"""Scenario files: what happens in the simulated station area, loaded from TOML and validated.

Layer: sim. Pure data + validation: parses ``sim/scenarios/<name>.toml`` (or any path) into frozen
dataclasses; must not know meters, physics or the event loop (``sim.world`` applies them).
Every error names the key path and the file: ``default.toml: outage[2].level: ...``.

Times (``at``, ``duration``) are offsets from the start of the run: a number of seconds or a
string like ``90s``, ``15m``, ``2h``, ``1d``. Targets name meters by device id (``m-0007``) or
address, branches (``F2``) and boxes (``F2-X03``) as in the topology ground truth.

    [scenario]
    description = "..."
    pv_share = 0.2                      # share of prosumers (PV) among customers

    [[outage]]     level = "station" | "phase" | "branch" | "box" | "meter"; target; at; duration;
                   cause (branch only) = "trip" (default: its breaker trips, its branch unit reads
                   0 V) | "cut" (the cable is cut below the branch unit: breaker closed, unit live);
                   a phase outage's target is "A" | "B" | "C" (a transformer LV phase lost)
    [[theft]]      meter; bypass (0..1, the share of the load the meter does not see); at; duration?
    [[meter_fault]] meter; kind = "stopped" | "slow" | "clock_skew"; value (% slow or s skew); at
    [[relay]]      meter; action = "trip" | "close"; at   (a local fee-control trip, say)
    [[comms_loss]] target; at; duration: devices that stop answering while they keep their supply
                   (a pure communication loss, no outage): target a meter (id or address), a meter
                   box (its RS-485 meters and box terminal: the box's RS-485 lead cut) or a bus
                   ("rs485-1", ...: the bus's A/B pair cut at the terminal; "hplc": every carrier
                   meter, the CCO's network lost)
    [[pv_surge]]   at; duration; factor (PV output multiplier)
    [transformer]  ct_ratio_actual, ct_ratio_configured   (wrong CT ratio: ground truth only)
    [[phase_move]] meter; at; phase (A|B|C, default the next one): an electrician reconnects the
                   customer to another phase mid-run (the physics re-solves; the archive keeps
                   the old phase)
    [archive]      foreign (meters of a neighbouring station area, fed by its own transformer and
                   load, listed in our archive and answering on our RS-485 buses: 户变关系错误);
                   missing (ours, left out of the archive; they join our carrier network);
                   phantom (listed entries no meter answers at); phase, branch, box: wrong archive
                   labels, a percentage of our customer meters (number) or a list of meters
    [signature]    miss_rate (a unit on the send's path misses it), crosstalk_rate (a unit off the
                   path hears it): signature current (特征电流) detection, default 0.05 / 0.002
    [comms]        loss_pct, corrupt_pct; buses = [...] (default all)
    [monitoring]   box_terminals = "all" | ["F2-X01", ...]  (meter-box terminals 表箱终端; default none)
    [hplc]         lastgasp_loss_pct (share of STA power-off frames that never reach the CCO)
    [terminal]     boot_s (after a station outage took the terminal down: start-up time once the
                   supply is back; default 5 s)
    [grid]         load_scale (x every customer's demand, not PV), line_scale (x every line length):
                   heavier, longer Chinese feeders, so technical loss reaches a few % (GRID.md §2)
    [metering]     error_scale: x every device's measurement error (accuracy-class gain and
                   noise, ``sim.physics.measure.DeviceErrors``); 1 = as their classes say, 0 = ideal
    [billing]      (the utility and the bank of the prepaid app, ``sim.billing``) contract = an example
                   of protocols/billing/examples or a TOML/JSON path (default "zhejiang-residential",
                   re-dated to start on the run's first day); opening_yuan = every customer's first
                   top-up (default "200.00"); button_delay_s = how long after "close allowed" the
                   customer presses the meter's button (default 60, -1 = never)
    [[billing.balance]]    meter; yuan        (this customer's opening top-up instead, e.g. "3.00")
    [[billing.topup]]      meter; at; yuan    (a bank top-up during the run)
    [[billing.keep_power]] meter; at; on      (保电 ordered / lifted by the utility)
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from protocols.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent
OUTAGE_LEVELS = ("station", "phase", "branch", "box", "meter")
BRANCH_CAUSES = ("trip", "cut")
PHASE_TARGETS = ("A", "B", "C")
FAULT_KINDS = ("stopped", "slow", "clock_skew")
RELAY_ACTIONS = ("trip", "close")
#: a meter judges a supply loss as a power-down only after this long (GRID.md §3)
POWER_DOWN_JUDGEMENT_S = 3.0

#: signature current: a unit on the path misses a send / a unit off the path hears it (defaults)
MISS_RATE = 0.05
CROSSTALK_RATE = 0.002

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Outage:
    level: str
    target: str
    at: float
    duration: float
    cause: str = "trip"  # branch outages: "trip" (breaker) | "cut" (cable below the branch unit)


@dataclass(frozen=True, slots=True)
class Theft:
    meter: str
    bypass: float
    at: float
    duration: float | None


@dataclass(frozen=True, slots=True)
class MeterFault:
    meter: str
    kind: str
    value: float
    at: float


@dataclass(frozen=True, slots=True)
class RelayAction:
    meter: str
    action: str
    at: float


@dataclass(frozen=True, slots=True)
class CommsLoss:
    target: str
    at: float
    duration: float


@dataclass(frozen=True, slots=True)
class PvSurge:
    at: float
    duration: float
    factor: float


@dataclass(frozen=True, slots=True)
class Transformer:
    ct_ratio_actual: float | None = None
    ct_ratio_configured: float | None = None


@dataclass(frozen=True, slots=True)
class Mislabel:
    """Wrong archive labels of one kind: a share of the customer meters, or these meters."""

    pct: float = 0.0
    meters: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pct or self.meters)


@dataclass(frozen=True, slots=True)
class ArchiveErrors:
    foreign: int = 0
    missing: int = 0
    phantom: int = 0
    phase: Mislabel = field(default_factory=Mislabel)
    branch: Mislabel = field(default_factory=Mislabel)
    box: Mislabel = field(default_factory=Mislabel)


@dataclass(frozen=True, slots=True)
class PhaseMove:
    meter: str
    at: float
    phase: str | None = None  # None: the next phase (A -> B -> C -> A)


@dataclass(frozen=True, slots=True)
class Signature:
    """Signature-current (特征电流) detection by branch units and box terminals."""

    miss_rate: float = MISS_RATE
    crosstalk_rate: float = CROSSTALK_RATE


@dataclass(frozen=True, slots=True)
class Monitoring:
    """Which meter boxes have a box terminal (表箱终端) measuring the box's incoming supply."""

    all_boxes: bool = False
    box_terminals: tuple[str, ...] = ()

    def has_terminal(self, box: str) -> bool:
        return self.all_boxes or box in self.box_terminals


@dataclass(frozen=True, slots=True)
class Comms:
    loss_pct: float = 0.0
    corrupt_pct: float = 0.0
    buses: tuple[str, ...] = ()  # empty = every bus


@dataclass(frozen=True, slots=True)
class Hplc:
    lastgasp_loss_pct: float = 0.0


@dataclass(frozen=True, slots=True)
class TerminalKnobs:
    boot_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Grid:
    """How the network is stressed: demand and line length multipliers (1 = as loaded)."""

    load_scale: float = 1.0
    line_scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Measurement:
    """How good the instruments are: a multiplier of every accuracy-class error (0 = ideal)."""

    error_scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Billing:
    """What the simulated utility and bank do for the billing app (``sim.billing``)."""

    contract: str = "zhejiang-residential"
    opening_yuan: str = "200.00"
    button_delay_s: float | None = 60.0
    balances: tuple[tuple[str, str], ...] = ()  # (meter, yuan)
    topups: tuple[tuple[str, float, str], ...] = ()  # (meter, at, yuan)
    keep_power: tuple[tuple[str, float, bool], ...] = ()  # (meter, at, on)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    source: str
    description: str = ""
    pv_share: float = 0.2
    outages: tuple[Outage, ...] = ()
    thefts: tuple[Theft, ...] = ()
    meter_faults: tuple[MeterFault, ...] = ()
    relays: tuple[RelayAction, ...] = ()
    comms_losses: tuple[CommsLoss, ...] = ()
    pv_surges: tuple[PvSurge, ...] = ()
    transformer: Transformer = field(default_factory=Transformer)
    archive: ArchiveErrors = field(default_factory=ArchiveErrors)
    comms: Comms = field(default_factory=Comms)
    monitoring: Monitoring = field(default_factory=Monitoring)
    hplc: Hplc = field(default_factory=Hplc)
    terminal: TerminalKnobs = field(default_factory=TerminalKnobs)
    grid: Grid = field(default_factory=Grid)
    metering: Measurement = field(default_factory=Measurement)
    billing: Billing = field(default_factory=Billing)
    phase_moves: tuple[PhaseMove, ...] = ()
    signature: Signature = field(default_factory=Signature)


def available() -> list[str]:
    """Names of the scenarios shipped in ``sim/scenarios``."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


#: the shipped scenario ``make sim`` and ``ttu sim`` run when none is named (written for the default feeder)
DEFAULT_SCENARIO = "default"
_DEVICE_ID = re.compile(r"^m-\d+$")


def is_shipped(scenario: Scenario) -> bool:
    """True for a scenario shipped in ``sim/scenarios`` (default, lineloss, topology, ...: written for
    the default feeder), not a file of the user's that happens to share its name."""
    return Path(scenario.source).parent == SCENARIO_DIR


def fitted(
    scenario: Scenario, *, branches: set[str], boxes: set[str], meters: set[str]
) -> tuple[Scenario, list[str]]:
    """``scenario`` without what it names and the station area lacks -- a branch, a meter box, a
    customer meter by device id (``m-0040``; ``meters`` holds every one there is) -- and a line for
    each thing left out. For a shipped scenario on another network, whose branches,
    boxes and meters are not the default feeder's: the rest of it still happens there. A meter
    named by its address is kept (the world checks it)."""
    left_out: list[str] = []

    def meter_there(meter: str, what: str) -> bool:
        if _DEVICE_ID.match(meter) is None or meter in meters:
            return True
        left_out.append(f"{what} {meter}")
        return False

    def outage_there(o: Outage) -> bool:
        known = {"branch": branches, "box": boxes}.get(o.level)
        if o.level == "meter":
            return meter_there(o.target, "meter outage of")
        if known is None or o.target in known:
            return True
        left_out.append(f"{o.level} outage of {o.target}")
        return False

    def labels(m: Mislabel, what: str) -> Mislabel:
        return replace(m, meters=tuple(x for x in m.meters if meter_there(x, f"wrong {what} label of")))

    def place_there(target: str, what: str) -> bool:
        if target in branches or target in boxes or not re.match(r"^(R\d+-)?F\d+", target):
            return meter_there(target, what)
        left_out.append(f"{what} {target}")
        return False

    monitored = tuple(b for b in scenario.monitoring.box_terminals if b in boxes)
    left_out += [f"box terminal on {b}" for b in scenario.monitoring.box_terminals if b not in boxes]
    archive = scenario.archive
    billing = scenario.billing
    out = replace(
        scenario,
        outages=tuple(o for o in scenario.outages if outage_there(o)),
        thefts=tuple(t for t in scenario.thefts if meter_there(t.meter, "theft at")),
        meter_faults=tuple(f for f in scenario.meter_faults if meter_there(f.meter, f"{f.kind} fault of")),
        relays=tuple(r for r in scenario.relays if meter_there(r.meter, f"relay {r.action} of")),
        comms_losses=tuple(c for c in scenario.comms_losses if place_there(c.target, "comms loss of")),
        phase_moves=tuple(m for m in scenario.phase_moves if meter_there(m.meter, "phase move of")),
        monitoring=replace(scenario.monitoring, box_terminals=monitored),
        archive=replace(
            archive,
            phase=labels(archive.phase, "phase"),
            branch=labels(archive.branch, "branch"),
            box=labels(archive.box, "box"),
        ),
        billing=replace(
            billing,
            balances=tuple(b for b in billing.balances if meter_there(b[0], "opening balance of")),
            topups=tuple(t for t in billing.topups if meter_there(t[0], "top-up of")),
            keep_power=tuple(k for k in billing.keep_power if meter_there(k[0], "keep-power order of")),
        ),
    )  # fmt: skip
    return out, left_out


def scenario_path(name: str | Path) -> Path:
    """A shipped scenario by name, or a path to a TOML file."""
    text = str(name)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
    else:
        path = SCENARIO_DIR / f"{text}.toml"
        if not path.is_file():
            raise ConfigError("--scenario", f"no scenario {text!r}; shipped: {', '.join(available())}")
    if not path.is_file():
        raise ConfigError(str(path), "scenario file not found")
    return path


def load_scenario(name: str | Path) -> Scenario:
    """Load and validate a scenario; ConfigError(key path, reason, source=file) on any mistake."""
    path = scenario_path(name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError("", f"not valid TOML: {err}", source=str(path)) from err
    return parse_scenario(data, name=path.stem, source=str(path))


def parse_scenario(data: dict[str, Any], *, name: str, source: str) -> Scenario:
    r = _Reader(source)
    r.keys(data, "", {"scenario", "outage", "theft", "meter_fault", "relay", "comms_loss", "pv_surge",
                      "transformer", "archive", "comms", "monitoring", "grid", "hplc", "terminal", "metering",
                      "billing", "phase_move", "signature"})  # fmt: skip
    head = r.table(data, "scenario")
    r.keys(head, "scenario", {"description", "pv_share"})
    outages = []
    for path, t in r.tables(data, "outage"):
        r.keys(t, path, {"level", "target", "at", "duration", "cause"})
        level = r.choice(t, path, "level", OUTAGE_LEVELS)
        target = r.text(t, path, "target", default="station" if level == "station" else None)
        if level == "phase" and target not in PHASE_TARGETS:
            raise r.fail(f"{path}.target", f"{target!r} is not a phase ({', '.join(PHASE_TARGETS)})")
        cause = "trip"
        if "cause" in t:
            if level != "branch":
                raise r.fail(f"{path}.cause", "only a branch outage has a cause")
            cause = r.choice(t, path, "cause", BRANCH_CAUSES)
        at, duration = r.seconds(t, path, "at"), r.seconds(t, path, "duration", positive=True)
        outages.append(Outage(level, target, at, duration, cause))
    thefts = []
    for path, t in r.tables(data, "theft"):
        r.keys(t, path, {"meter", "bypass", "at", "duration"})
        bypass = r.number(t, path, "bypass", lo=0.0, hi=1.0)
        dur = r.seconds(t, path, "duration", positive=True) if "duration" in t else None
        thefts.append(Theft(r.text(t, path, "meter"), bypass, r.seconds(t, path, "at", default=0.0), dur))
    faults = []
    for path, t in r.tables(data, "meter_fault"):
        r.keys(t, path, {"meter", "kind", "value", "at"})
        kind = r.choice(t, path, "kind", FAULT_KINDS)
        skew = kind == "clock_skew"
        lo, hi = (-1e6, 1e6) if skew else (0.0, 100.0)
        value = 0.0 if kind == "stopped" else r.number(t, path, "value", lo=lo, hi=hi)
        faults.append(
            MeterFault(r.text(t, path, "meter"), kind, value, r.seconds(t, path, "at", default=0.0))
        )
    relays = []
    for path, t in r.tables(data, "relay"):
        r.keys(t, path, {"meter", "action", "at"})
        relays.append(
            RelayAction(
                r.text(t, path, "meter"), r.choice(t, path, "action", RELAY_ACTIONS), r.seconds(t, path, "at")
            )
        )
    comms_losses = []
    for path, t in r.tables(data, "comms_loss"):
        r.keys(t, path, {"target", "at", "duration"})
        duration = r.seconds(t, path, "duration", positive=True)
        comms_losses.append(CommsLoss(r.text(t, path, "target"), r.seconds(t, path, "at"), duration))
    surges = []
    for path, t in r.tables(data, "pv_surge"):
        r.keys(t, path, {"at", "duration", "factor"})
        surges.append(
            PvSurge(r.seconds(t, path, "at"), r.seconds(t, path, "duration", positive=True),
                    r.number(t, path, "factor", lo=0.0, hi=10.0))
        )  # fmt: skip
    tr = r.table(data, "transformer")
    r.keys(tr, "transformer", {"ct_ratio_actual", "ct_ratio_configured"})
    arch = r.table(data, "archive")
    r.keys(arch, "archive", {"foreign", "missing", "phantom", "phase", "branch", "box"})
    moves = []
    for path, t in r.tables(data, "phase_move"):
        r.keys(t, path, {"meter", "at", "phase"})
        phase = r.choice(t, path, "phase", ("A", "B", "C")) if "phase" in t else None
        moves.append(PhaseMove(r.text(t, path, "meter"), r.seconds(t, path, "at"), phase))
    sig = r.table(data, "signature")
    r.keys(sig, "signature", {"miss_rate", "crosstalk_rate"})
    comms = r.table(data, "comms")
    r.keys(comms, "comms", {"loss_pct", "corrupt_pct", "buses"})
    buses = comms.get("buses", [])
    if not isinstance(buses, list) or not all(isinstance(b, str) for b in buses):
        raise ConfigError("comms.buses", "must be a list of bus names", source=source)
    mon = r.table(data, "monitoring")
    r.keys(mon, "monitoring", {"box_terminals"})
    boxes = mon.get("box_terminals", [])
    if boxes != "all" and (not isinstance(boxes, list) or not all(isinstance(b, str) and b for b in boxes)):
        raise ConfigError(
            "monitoring.box_terminals", f'must be "all" or a list of box names, got {boxes!r}', source=source
        )
    hplc = r.table(data, "hplc")
    r.keys(hplc, "hplc", {"lastgasp_loss_pct"})
    term = r.table(data, "terminal")
    r.keys(term, "terminal", {"boot_s"})
    grid = r.table(data, "grid")
    r.keys(grid, "grid", {"load_scale", "line_scale"})
    metering = r.table(data, "metering")
    r.keys(metering, "metering", {"error_scale"})
    billing = _billing(r, r.table(data, "billing"))
    return Scenario(
        name=name,
        source=source,
        billing=billing,
        description=r.text(head, "scenario", "description", default=""),
        pv_share=r.number(head, "scenario", "pv_share", lo=0.0, hi=1.0, default=0.2),
        outages=tuple(outages),
        thefts=tuple(thefts),
        meter_faults=tuple(faults),
        relays=tuple(relays),
        comms_losses=tuple(comms_losses),
        pv_surges=tuple(surges),
        transformer=Transformer(
            ct_ratio_actual=r.number(tr, "transformer", "ct_ratio_actual", lo=1e-3, hi=1e5, default=None),
            ct_ratio_configured=r.number(
                tr, "transformer", "ct_ratio_configured", lo=1e-3, hi=1e5, default=None
            ),
        ),
        archive=ArchiveErrors(
            foreign=int(r.number(arch, "archive", "foreign", lo=0, hi=1000, default=0, integer=True)),
            missing=int(r.number(arch, "archive", "missing", lo=0, hi=1000, default=0, integer=True)),
            phantom=int(r.number(arch, "archive", "phantom", lo=0, hi=1000, default=0, integer=True)),
            phase=r.mislabel(arch, "archive", "phase"),
            branch=r.mislabel(arch, "archive", "branch"),
            box=r.mislabel(arch, "archive", "box"),
        ),
        phase_moves=tuple(moves),
        signature=Signature(
            miss_rate=r.number(sig, "signature", "miss_rate", lo=0.0, hi=1.0, default=MISS_RATE),
            crosstalk_rate=r.number(
                sig, "signature", "crosstalk_rate", lo=0.0, hi=1.0, default=CROSSTALK_RATE
            ),
        ),
        comms=Comms(
            loss_pct=r.number(comms, "comms", "loss_pct", lo=0.0, hi=100.0, default=0.0),
            corrupt_pct=r.number(comms, "comms", "corrupt_pct", lo=0.0, hi=100.0, default=0.0),
            buses=tuple(buses),
        ),
        monitoring=Monitoring(all_boxes=boxes == "all", box_terminals=() if boxes == "all" else tuple(boxes)),
        grid=Grid(
            load_scale=r.number(grid, "grid", "load_scale", lo=0.01, hi=20.0, default=1.0),
            line_scale=r.number(grid, "grid", "line_scale", lo=0.01, hi=100.0, default=1.0),
        ),
        hplc=Hplc(
            lastgasp_loss_pct=r.number(hplc, "hplc", "lastgasp_loss_pct", lo=0.0, hi=100.0, default=0.0)
        ),
        terminal=TerminalKnobs(boot_s=r.number(term, "terminal", "boot_s", lo=0.0, hi=3600.0, default=5.0)),
        metering=Measurement(
            error_scale=r.number(metering, "metering", "error_scale", lo=0.0, hi=10.0, default=1.0)
        ),
    )


def _yuan(r: _Reader, t: dict[str, Any], path: str, key: str, default: Any = None) -> str:
    value = r.text(t, path, key, default=default)
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d{1,2})?", value):
        raise r.fail(f"{path}.{key}", f'expected an amount in yuan such as "50.00", got {value!r}')
    return value


def _billing(r: _Reader, t: dict[str, Any]) -> Billing:
    r.keys(t, "billing", {"contract", "opening_yuan", "button_delay_s", "balance", "topup", "keep_power"})
    delay = r.number(t, "billing", "button_delay_s", lo=-1.0, hi=86400.0, default=60.0)
    balances = []
    for path, b in r.tables(t, "balance"):
        r.keys(b, f"billing.{path}", {"meter", "yuan"})
        balances.append((r.text(b, f"billing.{path}", "meter"), _yuan(r, b, f"billing.{path}", "yuan")))
    topups = []
    for path, b in r.tables(t, "topup"):
        where = f"billing.{path}"
        r.keys(b, where, {"meter", "at", "yuan"})
        topups.append((r.text(b, where, "meter"), r.seconds(b, where, "at"), _yuan(r, b, where, "yuan")))
    orders = []
    for path, b in r.tables(t, "keep_power"):
        where = f"billing.{path}"
        r.keys(b, where, {"meter", "at", "on"})
        on = b.get("on", True)
        if not isinstance(on, bool):
            raise r.fail(f"{where}.on", f"expected true or false, got {on!r}")
        orders.append((r.text(b, where, "meter"), r.seconds(b, where, "at", default=0.0), on))
    contract = r.text(t, "billing", "contract", default="zhejiang-residential")
    if contract.endswith((".toml", ".json")) and not Path(contract).is_absolute():
        contract = str(Path(r.source).parent / contract)  # relative to the scenario file
    return Billing(
        contract=contract,
        opening_yuan=_yuan(r, t, "billing", "opening_yuan", default="200.00"),
        button_delay_s=None if delay < 0 else delay,
        balances=tuple(balances),
        topups=tuple(topups),
        keep_power=tuple(orders),
    )


_MISSING: Any = object()


class _Reader:
    """Typed getters that raise ConfigError with the key path and the file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> ConfigError:
        return ConfigError(path, reason, source=self.source)

    def keys(self, table: dict[str, Any], path: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                raise self.fail(where, f"unknown key; expected one of {', '.join(sorted(allowed))}")

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table [" + key + "]")
        return value

    def tables(self, data: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            raise self.fail(key, f"must be an array of tables [[{key}]]")
        return [(f"{key}[{i}]", t) for i, t in enumerate(value)]

    def _get(self, t: dict[str, Any], path: str, key: str, default: Any) -> Any:
        if key not in t:
            if default is _MISSING:
                raise self.fail(f"{path}.{key}", "required")
            return default
        return t[key]

    def text(self, t: dict[str, Any], path: str, key: str, *, default: Any = _MISSING) -> Any:
        value = self._get(t, path, key, _MISSING if default is None else default)
        if not isinstance(value, str) or (not value and default is _MISSING):
            raise self.fail(f"{path}.{key}", f"must be a non-empty string, got {value!r}")
        return value

    def choice(self, t: dict[str, Any], path: str, key: str, options: tuple[str, ...]) -> str:
        value = self._get(t, path, key, _MISSING)
        if value not in options:
            raise self.fail(f"{path}.{key}", f"{value!r} is not one of {', '.join(options)}")
        return str(value)

    def number(
        self, t: dict[str, Any], path: str, key: str, *, lo: float, hi: float, default: Any = _MISSING,
        integer: bool = False,
    ) -> Any:  # fmt: skip
        value = self._get(t, path, key, default)
        if value is default and default is not _MISSING:
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (integer and not isinstance(value, int))
        ):
            kind = "an integer" if integer else "a number"
            raise self.fail(f"{path}.{key}", f"must be {kind}, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(f"{path}.{key}", f"{value} is outside {lo}..{hi}")
        return float(value)

    def mislabel(self, t: dict[str, Any], path: str, key: str) -> Mislabel:
        """A percentage (0..100) or a list of meter ids/addresses."""
        value = t.get(key, 0)
        if isinstance(value, list):
            if not all(isinstance(m, str) and m for m in value):
                raise self.fail(f"{path}.{key}", f"must be a percentage or a list of meters, got {value!r}")
            return Mislabel(meters=tuple(value))
        return Mislabel(pct=float(self.number(t, path, key, lo=0.0, hi=100.0, default=0.0)))

    def seconds(
        self, t: dict[str, Any], path: str, key: str, *, default: Any = _MISSING, positive: bool = False
    ) -> float:
        value = self._get(t, path, key, default)
        where = f"{path}.{key}"
        if isinstance(value, bool):
            raise self.fail(where, f"must be seconds or a duration like 90s, 15m, 2h, got {value!r}")
        if isinstance(value, int | float):
            out = float(value)
        elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
            out = float(m[1]) * _UNITS[m[2]]
        else:
            raise self.fail(where, f"must be seconds or a duration like 90s, 15m, 2h, got {value!r}")
        if out < 0 or (positive and out == 0):
            raise self.fail(where, f"must be {'positive' if positive else 'non-negative'}, got {value!r}")
        return out


__all__ = [
    "BRANCH_CAUSES",
    "DEFAULT_SCENARIO",
    "FAULT_KINDS",
    "OUTAGE_LEVELS",
    "PHASE_TARGETS",
    "POWER_DOWN_JUDGEMENT_S",
    "ArchiveErrors",
    "Billing",
    "Comms",
    "CommsLoss",
    "Grid",
    "Hplc",
    "Measurement",
    "MeterFault",
    "Mislabel",
    "Monitoring",
    "Outage",
    "PhaseMove",
    "PvSurge",
    "RelayAction",
    "Scenario",
    "Signature",
    "TerminalKnobs",
    "Theft",
    "Transformer",
    "available",
    "load_scenario",
    "parse_scenario",
    "scenario_path",
]
