"""The ``ttu`` command line: one dispatcher, command groups contributed as plugins.

Layer: runtime. Each command group is a module listed under the
``ttu.commands`` entry points in pyproject.toml that defines
``register(subparsers)``; the parser it adds sets ``handler`` to a function taking
the parsed namespace and returning an exit status. The dispatcher turns every
``TerminalError``/``ProtocolError``/``HalError`` a user can cause into a one-line
message on stderr and exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from hal.errors import HalError
from protocols.errors import ProtocolError
from runtime.errors import TerminalError

Handler = Callable[[argparse.Namespace], int]
ENTRY_POINT_GROUP = "ttu.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttu",
        description="Station-area fusion terminal (TTU): runtime, tools and simulator.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            module = importlib.import_module(ep.value)
        except ImportError as err:
            print(f"ttu: command group {ep.name!r} is unavailable: {err}", file=sys.stderr)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except (TerminalError, ProtocolError, HalError) as err:
        print(f"ttu: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["ENTRY_POINT_GROUP", "Handler", "build_parser", "main"]
