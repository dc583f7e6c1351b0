"""``ttu cloud lineloss``: the line-loss results as the master station stored them.

Layer: apps (lineloss), run by the cloud stub's CLI through the ``ttu.cloud`` entry point. Reads
stream ``lineloss`` through the ``ResultReader`` the stub lends (never ``sim``) and prints the
object ``report.summary`` builds, with ``--json`` exactly the issue's shape; without it a table.

    ttu cloud lineloss --terminal T [--json] [--since 2024-06-01] [--db var/sim/cloud.sqlite]
"""

from __future__ import annotations

import argparse
from typing import Any

from protocols.cloud import CloudTools, ResultReader, joined_rows

from .report import summary

STREAM = "lineloss"
MAX_MESSAGES = 100_000


def bodies(results: ResultReader, terminal: str) -> list[dict[str, Any]]:
    """Every stored message of the stream for ``terminal``, oldest first; a day or intervals message
    the terminal sent in parts (over the uplink's limit: box scopes of a ~2,000-meter area) is joined
    whole, and left out until every part has arrived."""
    stored = joined_rows(results.results(STREAM, terminal=terminal, limit=MAX_MESSAGES))
    return [r.body for r in sorted(stored, key=lambda r: (r.ts, r.seq))]


def register(subparsers: Any, tools: CloudTools) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lineloss", help="line loss per day and scope, with the anomalies found (stream lineloss)"
    )
    tools.add_query_options(parser, terminal_required=True)
    parser.add_argument("--since", help="only days from this local date on (YYYY-MM-DD)")

    def handler(args: argparse.Namespace) -> int:
        with tools.reader(args) as results:
            out = summary(args.terminal, bodies(results, args.terminal))
        if args.since:
            out["days"] = [d for d in out["days"] if str(d["date"]) >= args.since]
            out["anomalies"] = [a for a in out["anomalies"] if str(a["date"]) >= args.since]
        if args.json:
            tools.print_json(out)
            return 0
        head = ("date", "scope", "supply kWh", "sales kWh", "loss %", "class", "cov")
        print("{:10s} {:10s} {:>11s} {:>10s} {:>7s} {:12s} {}".format(*head))
        for d in out["days"]:
            rate = "-" if d["loss_rate"] is None else f"{d['loss_rate']:.2f}"
            supply = "-" if d["supply_kwh"] is None else f"{d['supply_kwh']:.1f}"
            print(f"{d['date']:10s} {d['scope']:10s} {supply:>11s} {d['sales_kwh']:>10.1f} {rate:>7s} "
                  f"{d['class']:12s} {d['coverage']:.3f}")  # fmt: skip
        for a in out["anomalies"]:
            where = f"(branch {a['branch']})" if a["branch"] else "(station)"
            print(f"{a['date']} {a['kind']:13s} {a['target']} {where} confidence {a['confidence']}")
        return 0

    parser.set_defaults(handler=tools.guard(handler))


__all__ = ["bodies", "register"]
