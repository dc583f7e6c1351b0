"""App subcommands of ``ttu cloud``: the ``ttu.cloud`` entry points and the tools they are given.

Layer: sim (cloud stub). An app contributes ``ttu cloud <name>`` with an entry point in group
``ttu.cloud`` naming ``register(sub, tools)``; the app works only through ``Tools`` -- the stub's
stored results read-only (``--db``), its command log (what the master station sent and the
replies), and signed commands through a broker (``--broker``, ``--key-file``) -- so it never
imports the simulator. A plugin that fails to load is reported on stderr and left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from base.clock import LoopClock
from sim.cloud.db import CloudDb
from sim.cloud.simclock import terminal_time
from sim.cloud.stub import CloudStub

GROUP = "ttu.cloud"
DEFAULT_DB = "var/sim/cloud.sqlite"
DEFAULT_BROKER = "mqtt://127.0.0.1:18830"
DEFAULT_KEY_FILE = "sim/credentials.toml"


@dataclass(frozen=True, slots=True)
class StoredResult:
    terminal: str
    stream: str
    seq: int
    body: Any


class Reader:
    """The stub's database, read-only."""

    def __init__(self, path: str) -> None:
        self._path = path

    def _db(self) -> CloudDb:
        return CloudDb(self._path, readonly=True)

    def results(self, stream: str, *, terminal: str | None = None) -> list[StoredResult]:
        db = self._db()
        try:
            return [
                StoredResult(t, stream, seq, body)
                for t, seq, body in db.stream_bodies(stream, terminal=terminal)
            ]
        finally:
            db.close()

    def command_log(self, *, name: str | None = None, terminal: str | None = None) -> list[dict[str, Any]]:
        db = self._db()
        try:
            return db.command_log(name=name, terminal=terminal)
        finally:
            db.close()


class Tools:
    def add_query_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--db", default=DEFAULT_DB, help=f"the stub's sqlite file (default {DEFAULT_DB})")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--terminal", help="only this terminal")

    def results(self, args: argparse.Namespace) -> Reader:
        return Reader(args.db)

    def add_command_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--terminal", required=True, help="terminal id")
        parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
        parser.add_argument(
            "--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"'
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")

    def command(
        self, args: argparse.Namespace, terminal: str, name: str, cmd_args: dict[str, Any]
    ) -> dict[str, Any]:
        from sim.cloud.cli import load_command_key

        key = load_command_key(args.key_file)

        async def send() -> dict[str, Any]:
            async with CloudStub(
                broker_url=args.broker,
                db_path=":memory:",
                clock=LoopClock(),
                default_key=key,
                terminal=terminal,
                connect_timeout=args.timeout,
                command_time=await terminal_time(args.broker),
            ) as stub:
                reply = await stub.send_command(terminal, name, cmd_args, timeout=args.timeout)
            return reply.to_json()

        return asyncio.run(send())

    def print_json(self, obj: Any) -> None:
        print(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False))


def register_plugins(sub: Any, guard: Any) -> None:
    """Load every ``ttu.cloud`` entry point and let it add its subcommand."""
    tools = Tools()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            register = ep.load()
        except Exception as err:  # a broken plugin must not take the whole CLI down
            print(f"ttu cloud: plugin {ep.name!r} is unavailable: {err}", file=sys.stderr)
            continue
        register(sub, tools)
        parser = sub.choices.get(ep.name)  # the plugin's handlers, wrapped in the CLI's guard
        if parser is not None:
            _guard_all(parser, guard)


def _guard_all(parser: argparse.ArgumentParser, guard: Any) -> None:
    handler = parser.get_default("handler")
    if handler is not None:
        parser.set_defaults(handler=guard(handler))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _guard_all(child, guard)


__all__ = ["GROUP", "Reader", "StoredResult", "Tools", "register_plugins"]
