"""``ttu sim``: run a simulated station area with the terminal, the broker and the cloud stub.

Layer: sim (CLI). ``make sim`` runs ``ttu sim --live``: a live summary until Ctrl-C.
Headless: ``ttu sim --speed 60 --duration 2h --report out.json``; exit status 1 (and why, on
stderr and in the report's ``failures``) when the terminal died, an app ended quarantined or no
reading reached the cloud.

Two time models (``--speed``, see ``HELP_EPILOG``): a number N runs the world N times faster
than the wall clock over real ptys (to watch and poke at it); ``max`` runs it on virtual time
(``sim.vloop``) with in-memory lines, as fast as the machine allows and deterministic (days of
data for the apps, benchmarks, tests).

Default: the physics station (IEEE European LV feeder × ``--customers-scale`` 4 = 220 customer
meters plus one branch unit per feeder branch, over the board's RS-485 buses) under the
``default`` scenario, ground truth in ``<workdir>/truth``. A network of one's own (``--network``
a pandapower JSON) runs as drawn (``--customers-scale`` 1 unless given), the default scenario
without what it names and that network lacks. ``--meters-per-bus N`` selects the
old synthetic station (N household meters per bus, no physics, no scenario) for scale runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocols.errors import ConfigError

if TYPE_CHECKING:  # the simulator (pandapower, the runner) loads when `ttu sim` runs, not with the parser
    from runtime.config import Board
    from sim.dashboard import Dashboard
    from sim.runner import SimOptions, SimRun

PROFILE_NAMES = ("analytics", "standard")  # sim.runner.PROFILES

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
EXIT_FAILED = 1  # the run ended, but the terminal died, an app is quarantined or no reading arrived
#: the IEEE European LV feeder has 55 customers; issue 2 wants >= 200 meters over 4 buses. A
#: network of the user's own is their station area as drawn: 1 copy.
DEFAULT_CUSTOMERS_SCALE = 4
MAX_SPEED = "max"

HELP_EPILOG = """\
time models (--speed):
  N    the world runs N times faster than the wall clock, over real pseudo-terminals: the
       terminal opens its ports with pyserial exactly as on a box. Use it to watch the system
       (make sim runs x10 with --live and the dashboard) and to talk to it from outside (ttu cloud).
       Above x60 the kernel and the event loop cannot keep the wire timing and readings degrade.
  max  virtual time: physics, meters, CCO, terminal, broker and cloud stub share one clock that
       jumps to the next event; lines are in memory, the wire is modelled exactly on that clock
       (bytes x 11 bits / baud, response delays, carrier latency). As fast as the machine allows
       (a simulated day in minutes) and deterministic: the same --seed, --network, --scenario,
       --start and --duration give byte-identical cloud readings. Use it for days of data, for
       benchmarks and tests. Give --start for a reproducible run (default: now). The apps run the
       analytics profile here (15-min snapshots and event polls) unless --profile standard.

examples:
  make sim                                       # x10, live summary and dashboard
  ttu sim --speed max --duration 1d --start 2024-06-01T00:00:00+08:00 --report r.json --truth t/
  ttu sim --speed max --duration 2h --network my_feeder.json --scenario my.toml
"""


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ConfigError("--duration", f"{text!r} is not a duration like 90s, 15m, 2h or 7d")
    return float(match[1]) * _UNITS[match[2]]


def parse_speed(text: str) -> float:
    """``max`` (virtual time: ``math.inf``) or a positive number of simulated seconds per second."""
    if text.strip().lower() == MAX_SPEED:
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        raise ConfigError("--speed", f"{text!r} is neither a number nor {MAX_SPEED!r}") from None
    if not speed > 0 or math.isinf(speed) or math.isnan(speed):
        raise ConfigError("--speed", f"{text} must be a positive number (or {MAX_SPEED!r})")
    return speed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run a simulated station area around the terminal",
        description="Run a simulated station area (台区) around the terminal: physics, virtual meters, "
        "virtual CCO, Modbus devices, the terminal with its apps, an MQTT broker and the cloud stub.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--board", type=Path, default=Path("board.toml"), help="simulated board (default board.toml)"
    )
    parser.add_argument(
        "--speed",
        type=parse_speed,
        default=None,
        help='simulated seconds per wall second, or "max" for virtual time (default: board [sim].speed)',
    )
    parser.add_argument("--duration", type=parse_duration, default=None, help="simulated run time, e.g. 2h")
    parser.add_argument("--report", type=Path, default=None, help="write a JSON run report here at the end")
    parser.add_argument("--broker", default=None, help="external broker URL instead of the embedded one")
    parser.add_argument(
        "--meters-per-bus",
        type=int,
        default=None,
        help="synthetic station: this many household meters on each RS-485 bus (no physics)",
    )
    parser.add_argument(
        "--network",
        default=None,
        help='physics feeder: "ieee-eu-lv" (default) or a pandapower JSON file',
    )
    parser.add_argument(
        "--transformer",
        default=None,
        help="a --network with several distribution transformers (CIGRE LV): the station area of this"
        " one (its name or index in the trafo table; default: the one feeding the most loads)",
    )
    parser.add_argument("--scenario", default=None, help="scenario name in sim/scenarios or a TOML file")
    parser.add_argument(
        "--customers-scale",
        type=int,
        default=None,
        help="replicas of the feeder's customers (default 4 for the 55-customer IEEE feeder: 220 meters;"
        " 1 for a --network of your own)",
    )
    parser.add_argument(
        "--truth", type=Path, default=None, help="ground truth folder (default <workdir>/truth)"
    )
    parser.add_argument(
        "--hplc-meters",
        type=int,
        default=None,
        help="customer meters read over HPLC through the virtual CCO (default: board [sim].hplc_meters)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default=None,
        help="app settings: standard (the board's), analytics (realtime snapshot and event poll every "
        "15 min: days of data for the grid apps). Default: analytics with --speed max, else standard",
    )
    parser.add_argument(
        "--realtime-period",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="realtime snapshot period of the acquisition app, e.g. 60s or 15m (overrides the profile)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (board [sim].seed)")
    parser.add_argument("--start", default=None, help="simulated start time, ISO 8601 (default: now)")
    parser.add_argument("--workdir", type=Path, default=Path("var/sim"), help="run folder, wiped at start")
    parser.add_argument("--live", action="store_true", help="print a live summary")
    parser.add_argument(
        "--dashboard",
        type=int,
        default=8080,
        metavar="PORT",
        help="with --live: serve the web dashboard on 127.0.0.1:PORT (0: a free port; -1: none)",
    )
    parser.set_defaults(handler=_handle)


def _options(args: argparse.Namespace) -> SimOptions:
    from sim.physics import DEFAULT_NETWORK, network_with
    from sim.runner import PROFILES, SimOptions, sim_board
    from sim.scenarios import DEFAULT_SCENARIO, load_scenario
    from sim.speed import check_speed

    board = sim_board(args.board)
    sim = board.sim
    speed = args.speed if args.speed is not None else (sim.speed if sim else 1.0)
    start = None
    if args.start:
        try:
            parsed = datetime.fromisoformat(args.start)
        except ValueError as err:
            raise ConfigError("--start", f"{args.start!r} is not an ISO 8601 time") from err
        start = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    synthetic = args.meters_per_bus is not None and args.network is None
    meters = args.meters_per_bus if args.meters_per_bus is not None else (sim.meters_per_bus if sim else 50)
    if meters < 1:
        raise ConfigError("--meters-per-bus", f"{meters} must be at least 1")
    if args.meters_per_bus is not None and args.network is not None:
        raise ConfigError("--meters-per-bus", "is the synthetic station; it does not combine with --network")
    if args.transformer is not None and args.network in (None, DEFAULT_NETWORK):
        raise ConfigError("--transformer", "picks one of a --network file's transformers")
    own_network = args.network is not None and args.network != DEFAULT_NETWORK
    default_scale = 1 if own_network else DEFAULT_CUSTOMERS_SCALE
    scale = args.customers_scale if args.customers_scale is not None else default_scale
    if scale < 1:
        raise ConfigError("--customers-scale", f"{scale} must be at least 1")
    if synthetic and (args.scenario or args.truth or args.customers_scale):
        raise ConfigError("--scenario", "scenarios, --truth and --customers-scale need the physics station")
    if args.scenario is not None:
        load_scenario(args.scenario)  # validate before anything starts
    if args.hplc_meters is not None and args.hplc_meters < 0:
        raise ConfigError("--hplc-meters", f"{args.hplc_meters} must not be negative")
    profile = args.profile or ("analytics" if math.isinf(speed) else "standard")
    app_config = {name: dict(keys) for name, keys in PROFILES[profile].items()}
    if args.realtime_period is not None:
        if not 10 <= args.realtime_period <= 3600:
            raise ConfigError("--realtime-period", "must be within 10 s .. 1 h")
        app_config.setdefault("acquisition", {})["realtime_interval_s"] = int(args.realtime_period)
    options = SimOptions(
        board=board,
        workdir=args.workdir,
        speed=speed,
        meters_per_bus=meters,
        seed=args.seed if args.seed is not None else (sim.seed if sim else 1),
        start=start,
        duration_s=args.duration,
        broker_url=args.broker,
        network=None if synthetic else network_with(args.network or DEFAULT_NETWORK, args.transformer),
        scenario=None if synthetic else (args.scenario or DEFAULT_SCENARIO),
        customers_scale=scale,
        truth_dir=args.truth,
        hplc_meters=args.hplc_meters,
        app_config=app_config,
        profile=profile,
    )
    if not options.virtual:  # virtual time models the wire exactly, at any pace
        check_speed(options.speed, wire_speed_limit(board, max(options.response_delay_s)))
    return options


def wire_speed_limit(board: Board, response_delay_max_s: float) -> float:
    """``sim.speed.max_speed`` of the board's enabled RS-485 lines (their reply timeouts)."""
    from sim.speed import max_speed

    lines = [(p.timeout_ms / 1000, p.settings) for p in board.rs485 if p.enabled]
    return max_speed(lines, response_delay_max_s=response_delay_max_s)


def _fmt_rate(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f} %"


def _devices_line(devices: dict[str, Any] | None) -> str:
    """Field devices as the simulator sees the terminal use them (``FieldDevices.status``)."""
    if not devices:
        return "  field devices   none"
    opened = devices.get("breakers_open") or []
    return (
        f"  field devices   {devices['devices_online']}/{devices['devices']} Modbus online, "
        f"{devices['modbus_requests']} requests ({devices['modbus_exceptions']} exceptions); "
        f"breakers open: {', '.join(opened) if opened else 'none'}; "
        f"metrology {'online' if devices['metrology_online'] else 'offline'}, "
        f"{devices['metrology_readings']} readings"
    )


def _hplc_line(hplc: dict[str, Any] | None) -> str:
    """The carrier network as the virtual CCO sees it (``SimRun._hplc``)."""
    if not hplc:
        return "  hplc            none"
    line = (
        f"  hplc            {hplc['nodes_powered']}/{hplc['nodes']} nodes powered "
        f"({hplc['archived_nodes']} in the module's archive), {hplc['reads_per_s']:.2f} reads/s "
        f"({hplc['reads_lost']} lost); outage reports received: "
        f"{hplc['power_off_reports']} power-off, {hplc['power_on_reports']} power-on"
    )
    if hplc.get("route_rounds"):
        line += (
            f"\n  module-led      {hplc['route_rounds']} rounds ({hplc['route_rounds_finished']} finished), "
            f"{hplc['route_reads']} carried reads; pauses for the terminal's own reads: "
            f"{hplc['route_pauses']}"
        )
    return line


def render_summary(summary: dict[str, Any], run: SimRun) -> str:
    acq = summary["acquisition"]
    sim_time = datetime.fromtimestamp(summary["sim_time"], run.terminal.info().tz)
    cycle = acq.get("cycle_seconds") or 0.0
    bound = acq.get("wire_bound_seconds") or 0.0
    ratio = f"{cycle / bound:.2f}x" if bound else "-"
    events = summary["recent_events"]
    mode = "virtual time (--speed max)" if summary["mode"] == "virtual" else f"x{summary['speed']:g}"
    lines = [
        f"ttu sim — terminal {run.options.board.terminal.id} — {sim_time:%Y-%m-%d %H:%M:%S %Z} "
        f"({mode}, {summary['elapsed_s'] / 60:.1f} simulated min, "
        f"achieved x{summary['achieved_speed']:.1f} of the wall clock)",
        f"  meters online   {acq.get('meters_online', '-')}/{summary['meters']}   "
        f"success {_fmt_rate(acq.get('success_rate'))}   "
        f"today {_fmt_rate(acq.get('daily_success_rate'))}",
        f"  last cycle      {cycle:.1f} s vs wire bound {bound:.1f} s ({ratio}), "
        f"{acq.get('cycle_reads', 0)} reads",
        f"  readings        {acq.get('readings', 0)} sent, "
        f"{summary['cloud'].get('readings', 0)} at the cloud stub; "
        f"uplink backlog {summary['uplink_backlog']}",
        f"  events          {summary['cloud'].get('events', 0)} at the cloud"
        + (f"; last: {events[0].get('kind')} {events[0].get('source')}" if events else ""),
        "  apps            " + ", ".join(f"{a['name']}={a['state']}" for a in summary["apps"]),
        *(
            [f"  TERMINAL DIED   {summary['terminal_died']} (the simulator stops; see the log)"]
            if summary.get("terminal_died")
            else []
        ),
        _devices_line(summary.get("devices")),
        _hplc_line(summary.get("hplc")),
        f"  broker {run.broker_url}   cloud db {run.options.workdir / 'cloud.sqlite'}   "
        f"query: ttu cloud readings --db {run.options.workdir / 'cloud.sqlite'}",
    ]
    if summary.get("truth_dir"):
        lines.append(f"  ground truth    {summary['truth_dir']} (written at the end of the run)")
    return "\n".join(lines)


async def _open_dashboard(run: SimRun, port: int) -> Dashboard:
    from sim.dashboard import Dashboard

    try:
        return await Dashboard(run.summary, run.cloud, port=port).__aenter__()
    except OSError as err:
        print(f"dashboard: port {port} is not available ({err.strerror}); using a free port", file=sys.stderr)
        return await Dashboard(run.summary, run.cloud, port=0).__aenter__()


async def _live(options: SimOptions, *, dashboard_port: int | None) -> dict[str, Any]:
    last = 0.0
    dashboard: Dashboard | None = None

    async def tick(run: SimRun) -> None:
        nonlocal last, dashboard
        if dashboard is None and dashboard_port is not None:
            dashboard = await _open_dashboard(run, dashboard_port)
        now = time.monotonic()  # the display refreshes on the wall clock, the sim on its own
        if now - last < 2.0 and run.terminal_failure is None:
            return
        last = now
        text = render_summary(await run.summary(), run)
        if dashboard is not None:
            text += f"\n  dashboard       {dashboard.url}"
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[2J\x1b[H")
        print(text, flush=True)

    from sim.runner import run_for

    try:
        return await run_for(options, on_tick=tick)
    finally:
        if dashboard is not None:
            await dashboard.__aexit__(None, None, None)


async def _main(
    options: SimOptions, *, live: bool, dashboard_port: int | None = None
) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    from sim.runner import run_for

    with contextlib.suppress(asyncio.CancelledError):
        if live:
            return await _live(options, dashboard_port=dashboard_port)
        return await run_for(options)
    return None


def _handle(args: argparse.Namespace) -> int:
    options = _options(args)
    if options.duration_s is None and not args.live:
        raise ConfigError("--duration", "give a duration for a headless run, or --live to watch until Ctrl-C")
    dashboard_port = None if args.dashboard < 0 else args.dashboard
    if dashboard_port is not None and dashboard_port > 65535:
        raise ConfigError("--dashboard", f"{dashboard_port} is not a TCP port (0-65535, or -1 for none)")
    from sim.vloop import run_virtual

    main = lambda: _main(options, live=args.live, dashboard_port=dashboard_port)  # noqa: E731
    report = run_virtual(main) if options.virtual else asyncio.run(main())
    if report is None:
        print("stopped", file=sys.stderr)
        return 130
    text = json.dumps(report, indent=2, sort_keys=True, default=str)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n", encoding="utf-8")
        print(f"report written to {args.report}")
    else:
        print(text)
    for failure in report["failures"]:
        print(f"ttu sim: FAILED: {failure}", file=sys.stderr)
    return EXIT_FAILED if report["failures"] else 0
