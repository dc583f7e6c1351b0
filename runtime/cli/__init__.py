"""The ``ttu`` command line: one dispatcher, command groups contributed as plugins.

Layer: runtime. Each command group is a module listed under the
``ttu.commands`` entry points in pyproject.toml that defines
``register(subparsers)``; only the group a command line names is imported (every group for
``ttu --help`` or an unknown command), and a group module imports its heavy dependencies in its
handlers, so that ``ttu --help`` or ``ttu frame decode`` start at once and ``ttu run`` carries
nothing of the simulator; the parser it adds sets ``handler`` to a function taking
the parsed namespace and returning an exit status. The dispatcher turns every
``TerminalError``/``ProtocolError``/``HalError`` a user can cause into a one-line
message on stderr and exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points

from hal.errors import HalError
from protocols.errors import ProtocolError
from runtime.errors import TerminalError

Handler = Callable[[argparse.Namespace], int]
ENTRY_POINT_GROUP = "ttu.commands"


def _command_of(argv: Sequence[str], known: Iterable[str]) -> str | None:
    """The command group ``argv`` names (its first word that is not an option), if it is one."""
    names = set(known)
    for word in argv:
        if word.startswith("-"):
            continue
        return word if word in names else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``ttu`` parser. With ``argv`` naming a command group, only that group is imported:
    ``ttu run`` never loads the simulator, ``ttu frame`` never loads the runtime."""
    parser = argparse.ArgumentParser(
        prog="ttu",
        description="Station-area fusion terminal (TTU): runtime, tools and simulator.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    wanted = None if argv is None else _command_of(argv, (ep.name for ep in groups))
    for ep in groups:
        if wanted is not None and ep.name != wanted:
            continue
        try:
            module = importlib.import_module(ep.value)
        except ImportError as err:
            print(f"ttu: command group {ep.name!r} is unavailable: {err}", file=sys.stderr)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
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
