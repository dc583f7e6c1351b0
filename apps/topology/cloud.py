"""``ttu cloud topology``: the newest topology result as the master station stored it, and the
``topology.run`` command.

Layer: apps (topology), cloud side; registered through the ``ttu.cloud`` entry point as
``register(subparsers, tools)`` (``tools``: ``protocols.cloud.CloudTools``). Reads stream
``topology`` through the ``ResultReader`` the stub lends (never ``sim``); ``newest`` skips the
stream's phase-move messages (``{"type": "change"}``) and ``summary`` cuts a stored result to
the issue's object:

    {"terminal", "computed_at", "days",
     "meters": [{"meter_id", "address", "phase", "branch", "box", "confidence", "status"}],
     "missing": [{"address", "evidence"}]}

    ttu cloud topology --terminal T [--json] [--detail] [--db var/sim/cloud.sqlite]
    ttu cloud topology run --terminal T [--window-h 24] [--broker URL] [--key-file F]

``--detail`` prints the stored result whole (archive values, per-dimension outcome and evidence,
the summary). Without ``--json`` a table of what needs a person: corrected, foreign, unresolved
meters and missing ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from protocols.cloud import CloudTools, ResultReader, StoredResult, joined_rows

from .result import PAGED

STREAM = "topology"
COMMAND = "topology.run"
METER_KEYS = ("meter_id", "address", "phase", "branch", "box", "confidence", "status")
#: the stream also carries phase-move messages between results
SCAN = 1000


def is_result(body: Mapping[str, Any]) -> bool:
    return body.get("type", "result") == "result" and isinstance(body.get("meters"), list)


def results_of(rows: list[StoredResult]) -> list[StoredResult]:
    """The complete results among a stream's stored rows, paged ones joined (a result with a part
    not yet received is left out)."""
    return [r for r in joined_rows(rows, PAGED) if is_result(r.body)]


def newest(results: ResultReader, terminal: str) -> dict[str, Any] | None:
    """The newest complete result the master station holds for ``terminal`` (None: none yet)."""
    latest = results.latest(STREAM, terminal=terminal)
    if latest is not None and is_result(latest.body) and "parts" not in latest.body:
        return latest.body
    found = results_of(results.results(STREAM, terminal=terminal, limit=SCAN))
    return max(found, key=lambda r: (r.ts, r.seq)).body if found else None


def summary(terminal: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The issue's object from a stored result (empty lists before the first result)."""
    if body is None:
        return {"terminal": terminal, "computed_at": None, "days": None, "meters": [], "missing": []}
    return {
        "terminal": str(body.get("terminal", terminal)),
        "computed_at": body.get("computed_at"),
        "days": body.get("days"),
        "meters": [{k: m.get(k) for k in METER_KEYS} for m in body.get("meters", []) if isinstance(m, dict)],
        "missing": [
            {"address": m.get("address"), "evidence": m.get("evidence", {})}
            for m in body.get("missing", [])
            if isinstance(m, dict)
        ],
    }


def _iso(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(out: Mapping[str, Any]) -> str:
    meters = out["meters"]
    counts: dict[str, int] = {}
    for m in meters:
        counts[str(m["status"])] = counts.get(str(m["status"]), 0) + 1
    lines = [
        f"terminal {out['terminal']}: result of {_iso(out['computed_at'])} over {out['days'] or 0:.2f} days, "
        f"{len(meters)} meters (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "), "
        f"{len(out['missing'])} missing"
    ]
    todo = [m for m in meters if m["status"] != "confirmed"]
    if todo:
        lines.append(f"{'meter':12s} {'address':12s} {'status':10s} phase branch   box        confidence")
        for m in todo:
            lines.append(
                f"{m['meter_id']:12s} {m['address']:12s} {m['status']:10s} {m['phase'] or '-':5s} "
                f"{m['branch'] or '-':8s} {m['box'] or '-':10s} {m['confidence']}"
            )
    for miss in out["missing"]:
        ev = miss["evidence"]
        where = ev.get("unit") or ev.get("carrier") or ""
        lines.append(f"missing {miss['address'] or '(unexplained energy)'}: {where}")
    return "\n".join(lines)


def register(subparsers: Any, tools: CloudTools) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "topology", help="newest topology identification: phase, branch, box, foreign and missing meters"
    )
    tools.add_query_options(parser)
    parser.add_argument("--detail", action="store_true", help="the stored result whole (with --json)")

    def show(args: argparse.Namespace) -> int:
        if not args.terminal:
            parser.error("--terminal is required")
        with tools.reader(args) as results:
            body = newest(results, args.terminal)
        if args.json:
            tools.print_json(body if args.detail and body is not None else summary(args.terminal, body))
        elif body is None:
            print(f"terminal {args.terminal}: no topology result yet")
        else:
            print(table(summary(args.terminal, body)))
        return 0

    parser.set_defaults(handler=tools.guard(show))
    commands = parser.add_subparsers(dest="topology_command")
    run = commands.add_parser("run", help="identify now (cloud command topology.run); prints the reply")
    tools.add_command_options(run)
    run.add_argument("--window-h", type=float, default=None, help="hours of curve to use (2..168)")

    def send(args: argparse.Namespace) -> int:
        arguments = {} if args.window_h is None else {"window_h": args.window_h}
        tools.print_json(tools.command(args, COMMAND, arguments))
        return 0

    run.set_defaults(handler=tools.guard(send))


__all__ = [
    "COMMAND",
    "METER_KEYS",
    "PAGED",
    "STREAM",
    "is_result",
    "newest",
    "register",
    "results_of",
    "summary",
    "table",
]
