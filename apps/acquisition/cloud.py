"""``ttu cloud acquisition stats``: a terminal's reading statistics, asked part by part and joined.

Layer: apps (acquisition), cloud side; registered through the ``ttu.cloud`` entry point as
``register(subparsers, tools)`` (``tools``: ``protocols.cloud.CloudTools``). Sends the signed
command ``acquisition.stats`` for part 0, then for every further part the first reply names
(a 2,000-meter station area does not fit one reply), and joins the per-meter rows:

    {"station": {...success rates...}, "counters": {...}, "route": {...} | null,
     "meters": {"<meter id>": {"online", "success_rate", "last_ok", "transport"}}}

    ttu cloud acquisition stats --terminal T [--json] [--broker URL] [--key-file F]

Without ``--json``: the station's figures, the module-led reading's (with its pauses for the
terminal's own point reads) and the meters offline.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any

from protocols.cloud import CloudTools

COMMAND = "acquisition.stats"
MAX_PARTS = 256  # a reply naming more parts than this is not believed
OFFLINE_SHOWN = 20

Ask = Callable[[Mapping[str, Any]], dict[str, Any]]


class StatsError(ValueError):
    """A reply that does not hold what ``acquisition.stats`` answers."""


def fetch(ask: Ask) -> dict[str, Any]:
    """Every part of the stats, joined: ``ask(arguments)`` sends the command and returns its result."""
    first = ask({})
    parts = first.get("parts", 1)
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= MAX_PARTS:
        raise StatsError(f"{COMMAND}: the reply names {parts!r} parts")
    meters = _meters(first, 0)
    for part in range(1, parts):
        meters.update(_meters(ask({"part": part}), part))
    body = {k: v for k, v in first.items() if k not in ("part", "parts", "meters")}
    body["meters"] = meters
    return body


def _meters(result: Mapping[str, Any], part: int) -> dict[str, Any]:
    rows = result.get("meters")
    if not isinstance(rows, dict):
        raise StatsError(f"{COMMAND}: part {part} holds no meter rows")
    return dict(rows)


def table(terminal: str, body: Mapping[str, Any]) -> str:
    station = body.get("station") or {}
    meters: Mapping[str, Any] = body.get("meters") or {}
    offline = sorted(m for m, row in meters.items() if isinstance(row, dict) and row.get("online") is False)
    rate = {k: _pct(station.get(k)) for k in ("success_rate", "success_rate_realtime",
                                               "success_rate_curve", "daily_success_rate")}  # fmt: skip
    lines = [
        f"terminal {terminal}: {station.get('meters_total')} meters, {station.get('meters_online')} online",
        f"success rate {rate['success_rate']} (realtime {rate['success_rate_realtime']}, "
        f"curve {rate['success_rate_curve']}), today {rate['daily_success_rate']}",
    ]
    for transport, rate in sorted((station.get("success_rate_by_transport") or {}).items()):
        lines.append(f"  {transport:<12} {_pct(rate)}")
    route = body.get("route")
    if isinstance(route, dict):
        lines.append(
            f"module-led reading: {route.get('rounds_started')} rounds started, "
            f"{route.get('rounds_finished')} finished, {route.get('jobs_ok')} meter visits ok, "
            f"{route.get('jobs_failed')} failed"
        )
    counters = body.get("counters") or {}
    lines.append(f"reads ok {counters.get('reads_ok')}, failed {counters.get('reads_failed')}")
    if offline:
        shown = ", ".join(offline[:OFFLINE_SHOWN])
        more = f" and {len(offline) - OFFLINE_SHOWN} more" if len(offline) > OFFLINE_SHOWN else ""
        lines.append(f"offline ({len(offline)}): {shown}{more}")
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{100.0 * value:.1f} %"


def register(subparsers: Any, tools: CloudTools) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "acquisition", help="a terminal's reading statistics (command acquisition.stats, every part joined)"
    )
    commands = parser.add_subparsers(dest="acquisition_command", metavar="SUBCOMMAND")
    stats = commands.add_parser("stats", help="success rates, counters, module-led reading, per-meter rows")
    tools.add_command_options(stats)
    stats.add_argument("--json", action="store_true", help="print the joined stats as JSON")

    def show(args: argparse.Namespace) -> int:
        try:
            body = fetch(lambda arguments: tools.command(args, COMMAND, arguments))
        except StatsError as err:
            print(f"ttu cloud: error: {err}", file=sys.stderr)
            return 2
        if args.json:
            tools.print_json(body)
        else:
            print(table(args.terminal, body))
        return 0

    stats.set_defaults(handler=tools.guard(show))

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=usage)


__all__ = ["COMMAND", "StatsError", "fetch", "register", "table"]
