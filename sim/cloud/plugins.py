"""Views apps contribute to the master station: ``ttu cloud <name>`` subcommands and dashboard panels.

Layer: sim (cloud stub). An app (or the runtime, for its ``station`` stream) lists, in its
distribution's entry points,

* group ``ttu.cloud``: ``name = "package.module:register"`` with ``register(subparsers, tools)``,
  ``tools`` being ``StubTools`` here (``protocols.cloud.CloudTools``): the common options, the
  stub's database as a ``ResultReader``, signed commands, JSON output;
* group ``ttu.dashboard``: ``name = "package.module:PANEL"``, a ``protocols.cloud.Panel``.

Nothing here is edited when an app is added. A plugin that cannot be imported is left out with
one line on stderr (the others still work); a panel that is not a ``Panel`` is left out too.
Plugins are imported when ``ttu cloud`` builds its parser or the dashboard starts, so they must
be light at import (heavy imports inside their handlers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from protocols.cloud import Panel, ResultReader

log = logging.getLogger("ttu.sim.cloud")

CLOUD_GROUP = "ttu.cloud"
DASHBOARD_GROUP = "ttu.dashboard"

# what `make sim` uses: its run folder and the embedded broker of the simulated board.toml
DEFAULT_DB = "var/sim/cloud.sqlite"
DEFAULT_BROKER = "mqtt://127.0.0.1:18830"
DEFAULT_KEY_FILE = "sim/credentials.toml"


class CloudCliError(Exception):
    """A user mistake on the ``ttu cloud`` command line (bad key file, bad --args, refused command)."""


class StubTools:
    """``protocols.cloud.CloudTools`` of this stub: what an app's ``ttu cloud`` subcommand may use."""

    def add_query_options(self, parser: argparse.ArgumentParser, *, terminal_required: bool = False) -> None:
        parser.add_argument("--db", default=DEFAULT_DB, help=f"the stub's sqlite file (default {DEFAULT_DB})")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--terminal", required=terminal_required, help="terminal id")

    def add_command_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--terminal", required=True, help="terminal id")
        parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
        parser.add_argument(
            "--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"'
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")

    @contextlib.contextmanager
    def reader(self, args: argparse.Namespace) -> Iterator[ResultReader]:
        from sim.cloud.db import CloudDb

        db = CloudDb(args.db, readonly=True)
        try:
            yield db
        finally:
            db.close()

    def command(self, args: argparse.Namespace, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        from sim.cloud.cli import load_command_key, send_command

        key = load_command_key(args.key_file)
        try:
            reply = asyncio.run(send_command(args, key, name, dict(arguments)))
        except TimeoutError as err:
            raise CloudCliError(str(err)) from err
        if not reply.ok:
            raise CloudCliError(f"{name} refused by {args.terminal}: {reply.code}: {reply.message}")
        return dict(reply.result or {})

    def print_json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str))

    def guard(self, handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            from sim.cloud.db import CloudDbError
            from sim.cloud.stub import CloudStubError

            try:
                return handler(args)
            except (CloudCliError, CloudDbError, CloudStubError) as err:
                print(f"ttu cloud: error: {err}", file=sys.stderr)
                return 2

        return run


def register_plugins(subparsers: Any, tools: StubTools, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Add every ``ttu.cloud`` entry point's subcommand; return the names added."""
    added: list[str] = []
    for ep in sorted(entry_points(group=CLOUD_GROUP), key=lambda e: e.name):
        if ep.name in skip:
            continue
        try:
            register = ep.load()
            register(subparsers, tools)
        except Exception as err:  # one broken plugin must not take `ttu cloud` down
            print(
                f"ttu cloud: subcommand {ep.name!r} is unavailable: {type(err).__name__}: {err}",
                file=sys.stderr,
            )
            continue
        added.append(ep.name)
    return added


def load_panels(extra: Mapping[str, Panel] | None = None) -> dict[str, Panel]:
    """Every ``ttu.dashboard`` entry point's ``Panel`` (plus ``extra``), by name, in display order."""
    panels: dict[str, Panel] = {}
    for ep in sorted(entry_points(group=DASHBOARD_GROUP), key=lambda e: e.name):
        try:
            panel = ep.load()
        except Exception as err:
            log.warning("dashboard panel %r is unavailable: %s: %s", ep.name, type(err).__name__, err)
            continue
        if not isinstance(panel, Panel):
            log.warning(
                "dashboard panel %r is a %s, not a protocols.cloud.Panel", ep.name, type(panel).__name__
            )
            continue
        panels[panel.name] = panel
    panels.update(extra or {})
    return dict(sorted(panels.items(), key=lambda item: (item[1].order, item[0])))


__all__ = [
    "CLOUD_GROUP",
    "DASHBOARD_GROUP",
    "DEFAULT_BROKER",
    "DEFAULT_DB",
    "DEFAULT_KEY_FILE",
    "CloudCliError",
    "StubTools",
    "load_panels",
    "register_plugins",
]
