"""``ttu cloud catalog publish|list|verify``: the app catalog from the command line.

Layer: sim (cloud stub CLI). Hooked into ``ttu cloud`` by ``register_catalog(sub)``
from ``sim.cloud.cli.register``. ``--catalog DIR`` (default ``var/catalog``). A refused
publish or a bad folder is one line on stderr and exit 2; a failed ``verify`` names the
first bad entry and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the catalog (and the package format's cryptography) loads when a command runs
    from sim.cloud.catalog import CatalogEntry

DEFAULT_CATALOG = "var/catalog"


async def _clock_now() -> float:
    from hal.clock import LoopClock

    return LoopClock().now()


def _now() -> float:
    """The publish time, from the one clock (a short-lived loop: this CLI is synchronous)."""
    return asyncio.run(_clock_now())


def _cmd_publish(args: argparse.Namespace) -> int:
    from sim.cloud.catalog import Catalog

    catalog = Catalog(args.catalog)
    ts = args.ts if args.ts is not None else _now()
    for pkg in args.packages:
        entry = catalog.publish(pkg, ts=ts)
        print(f"{entry.seq}  {entry.name} {entry.version}  sha256 {entry.sha256}  key {entry.key_id}")
    return 0


def _row(e: CatalogEntry) -> tuple[str, ...]:
    when = datetime.fromtimestamp(e.ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (str(e.seq), e.name, e.version, str(e.size), e.key_id, when, e.sha256[:16])


def _cmd_list(args: argparse.Namespace) -> int:
    from sim.cloud.catalog import Catalog

    entries = [e for e in Catalog(args.catalog).entries() if args.name is None or e.name == args.name]
    if args.json:
        print(json.dumps([asdict(e) for e in entries], indent=2, sort_keys=True))
        return 0
    headers = ("seq", "name", "version", "size", "key id", "published (UTC)", "sha256")
    cells = [headers, *(_row(e) for e in entries)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from sim.cloud.catalog import Catalog, CatalogCorrupt

    catalog = Catalog(args.catalog)
    try:
        count = catalog.verify()
    except CatalogCorrupt as err:
        print(f"catalog {catalog.root}: FAILED at {err}", file=sys.stderr)
        return 1
    print(f"catalog {catalog.root}: ok, {count} entries, chain and package hashes verified")
    return 0


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from sim.cloud.catalog import CatalogError

        try:
            result: int = fn(args)
        except CatalogError as err:
            print(f"ttu: error: {err}", file=sys.stderr)
            return 2
        return result

    return run


def register_catalog(subparsers: Any) -> None:
    """Add ``catalog`` to the sub-commands of ``ttu cloud``."""
    parser = subparsers.add_parser("catalog", help="app catalog: publish packages, list, verify the log")
    sub = parser.add_subparsers(dest="catalog_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--catalog",
        type=Path,
        default=Path(DEFAULT_CATALOG),
        help=f"catalog folder (default {DEFAULT_CATALOG})",
    )

    p = sub.add_parser("publish", parents=[common], help="check and publish .ttuapp packages")
    p.add_argument("packages", nargs="+", type=Path, help="package files")
    p.add_argument("--ts", type=float, help="publish time, UTC epoch (default: now)")
    p.set_defaults(handler=_guarded(_cmd_publish))

    p = sub.add_parser("list", parents=[common], help="list published packages")
    p.add_argument("--name", help="only this app")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guarded(_cmd_list))

    p = sub.add_parser("verify", parents=[common], help="recompute the hash chain and every package hash")
    p.set_defaults(handler=_guarded(_cmd_verify))


__all__ = ["DEFAULT_CATALOG", "register_catalog"]
