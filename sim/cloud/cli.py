"""``ttu cloud ...``: run the cloud master-station stub, query what it received, send a command.

Layer: sim (cloud stub), plugged into the ``ttu`` dispatcher through the
``ttu.commands`` entry point ``cloud = sim.cloud.cli``. Queries read the stub's sqlite
file read-only (``--db``, default ``var/sim/cloud.sqlite``, where ``make sim`` writes it) and print a table or
``--json``; ``serve`` runs the stub until Ctrl-C; ``command`` sends one signed
command and prints the reply; ``catalog`` (``sim.cloud.catalog_cli``) publishes and lists
packages, ``app`` (``sim.cloud.app_cli``) installs and manages apps on a terminal.
Every user mistake is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from base.clock import LoopClock
from sim.cloud.catalog import Catalog
from sim.cloud.db import CloudDb, CloudDbError
from sim.cloud.simclock import terminal_time
from sim.cloud.stub import CloudStub, CloudStubError
from sim.cloud.transfer import PackageServer

# what `make sim` uses: its run folder and the embedded broker of the simulated board.toml
DEFAULT_DB = "var/sim/cloud.sqlite"
DEFAULT_BROKER = "mqtt://127.0.0.1:18830"
DEFAULT_KEY_FILE = "sim/credentials.toml"
SUMMARY_PERIOD_S = 60.0


class CloudCliError(Exception):
    """A user mistake on the ``ttu cloud`` command line (bad key file, bad --args)."""


def load_command_key(path: str | Path) -> bytes:
    """The ``command_key = "<hex>"`` of a TOML credentials file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CloudCliError(f"{path}: no such key file") from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise CloudCliError(f"{path}: cannot read key file: {err}") from err
    value = data.get("command_key")
    if not isinstance(value, str) or not value:
        raise CloudCliError(f"{path}: command_key: missing or not a hex string")
    try:
        key = bytes.fromhex(value)
    except ValueError as err:
        raise CloudCliError(f"{path}: command_key: not hex ({err})") from err
    if len(key) < 16:
        raise CloudCliError(f"{path}: command_key: {len(key)} bytes is too short (at least 16)")
    return key


# -- output -------------------------------------------------------------------------------------


def _time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: Any, render: Callable[[], str]) -> None:
    if args.json:
        plain = [asdict(d) if is_dataclass(d) and not isinstance(d, type) else d for d in data]
        print(json.dumps(plain if isinstance(data, list) else data, indent=2, sort_keys=True))
    else:
        print(render())


# -- query commands -----------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> CloudDb:
    return CloudDb(args.db, readonly=True)


def _cmd_terminals(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        rows = db.terminals()
    finally:
        db.close()
    headers = (
        "terminal",
        "state",
        "first seen",
        "last seen",
        "msgs",
        "dups",
        "readings",
        "events",
        "rejected",
        "gaps",
        "missing",
        "late",
    )
    _emit(
        args,
        rows,
        lambda: render_table(
            headers,
            [
                (
                    r.id,
                    r.state,
                    _time(r.first_seen),
                    _time(r.last_seen),
                    r.messages,
                    r.duplicates,
                    r.readings,
                    r.events,
                    r.rejected,
                    r.gaps,
                    r.missing,
                    r.out_of_order,
                )
                for r in rows
            ],
        ),
    )
    return 0


def _cmd_readings(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        rows = db.readings(
            terminal=args.terminal, device=args.device, quantity=args.quantity, limit=args.limit
        )
    finally:
        db.close()
    headers = ("terminal", "device", "quantity", "time (UTC)", "value", "unit", "quality", "obis")
    _emit(
        args,
        rows,
        lambda: render_table(
            headers,
            [
                (r.terminal, r.device, r.quantity, _time(r.ts), f"{r.value:g}", r.unit, r.quality, r.obis)
                for r in rows
            ],
        ),
    )
    return 0


def _cmd_events(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        rows = db.events(terminal=args.terminal, kind=args.kind, limit=args.limit)
    finally:
        db.close()
    headers = ("terminal", "kind", "source", "start (UTC)", "end (UTC)", "data")
    _emit(
        args,
        rows,
        lambda: render_table(
            headers,
            [
                (
                    r.terminal,
                    r.kind,
                    r.source,
                    _time(r.start),
                    _time(r.end),
                    json.dumps(r.data, sort_keys=True),
                )
                for r in rows
            ],
        ),
    )
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        counts = db.counts()
        stats = db.statistics()
        streams = db.streams()
        rejected = db.rejected(limit=5)
    finally:
        db.close()
    if args.json:
        print(
            json.dumps(
                {
                    "counts": counts,
                    "terminals": stats,
                    "streams": [asdict(s) for s in streams],
                    "recent_rejected": [asdict(r) for r in rejected],
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    print(render_table(("table", "rows"), sorted(counts.items())))
    print()
    print(
        render_table(
            ("terminal", "stream", "last seq", "msgs", "gaps", "missing", "late"),
            [
                (s.terminal, s.stream, s.last_seq, s.messages, s.gaps, s.missing, s.out_of_order)
                for s in streams
            ],
        )
    )
    if rejected:
        print()
        print(
            render_table(
                ("received (UTC)", "topic", "error"),
                [(_time(r.received), r.topic, r.error) for r in rejected],
            )
        )
    return 0


# -- network commands ---------------------------------------------------------------------------


def _parse_args_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise CloudCliError(f"--args: not JSON ({err})") from err
    if not isinstance(value, dict):
        raise CloudCliError("--args: must be a JSON object")
    return value


async def _send(args: argparse.Namespace, key: bytes, command_args: dict[str, Any]) -> int:
    async with CloudStub(
        broker_url=args.broker,
        db_path=":memory:",
        clock=LoopClock(),
        default_key=key,
        terminal=args.terminal,
        connect_timeout=args.timeout,
        command_time=await terminal_time(args.broker),
    ) as stub:
        reply = await stub.send_command(args.terminal, args.name, command_args, timeout=args.timeout)
    print(json.dumps(reply.to_json(), indent=2, sort_keys=True))
    return 0 if reply.ok else 1


def _cmd_command(args: argparse.Namespace) -> int:
    command_args = _parse_args_json(args.args)
    key = load_command_key(args.key_file)
    try:
        return asyncio.run(_send(args, key, command_args))
    except TimeoutError as err:
        print(f"ttu cloud: error: {err}", file=sys.stderr)
        return 2


async def _serve(args: argparse.Namespace, key: bytes) -> None:
    clock = LoopClock()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with CloudStub(
            broker_url=args.broker, db_path=args.db, clock=clock, default_key=key, connect_timeout=None
        ) as stub:
            if args.catalog is not None:
                PackageServer(stub, catalog=Catalog(args.catalog))
                print(f"cloud stub: serving app packages from the catalog {args.catalog}", flush=True)
            print(f"cloud stub: serving {args.broker} into {args.db} (Ctrl-C stops)", flush=True)
            while not stop.is_set():
                try:
                    async with clock.timeout(SUMMARY_PERIOD_S):
                        await stop.wait()
                except TimeoutError:
                    counts = await stub.counts()
                    link = "connected" if stub.connections > stub.disconnects else "reconnecting"
                    print(
                        f"cloud stub: {link}; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                        flush=True,
                    )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _cmd_serve(args: argparse.Namespace) -> int:
    key = load_command_key(args.key_file)
    asyncio.run(_serve(args, key))
    return 0


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (CloudCliError, CloudDbError, CloudStubError) as err:
            print(f"ttu cloud: error: {err}", file=sys.stderr)
            return 2

    return run


# -- apps' subcommands (entry point group ``ttu.cloud``) ---------------------------------------


class StubTools:
    """``protocols.cloud.CloudTools`` over the stub's database and command channel."""

    def add_query_options(self, parser: argparse.ArgumentParser, *, terminal_required: bool = False) -> None:
        parser.add_argument("--db", default=DEFAULT_DB, help=f"the stub's sqlite file (default {DEFAULT_DB})")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--terminal", required=terminal_required, help="only this terminal")

    def add_command_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--terminal", required=True, help="terminal id")
        parser.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
        parser.add_argument(
            "--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"'
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")

    def reader(self, args: argparse.Namespace) -> contextlib.AbstractContextManager[CloudDb]:
        return contextlib.closing(_open(args))

    def command(self, args: argparse.Namespace, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        key = load_command_key(args.key_file)

        async def send() -> dict[str, Any]:
            when = await terminal_time(args.broker)
            async with CloudStub(
                broker_url=args.broker, db_path=":memory:", clock=LoopClock(), default_key=key,
                terminal=args.terminal, connect_timeout=args.timeout, command_time=when,
            ) as stub:  # fmt: skip
                reply = await stub.send_command(args.terminal, name, dict(arguments), timeout=args.timeout)
            if not reply.ok:
                raise CloudCliError(f"{name}: refused: {reply.code}: {reply.message}")
            return dict(reply.result or {})

        return asyncio.run(send())

    def print_json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))

    def guard(self, handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        return _guarded(handler)


def _app_commands(sub: Any) -> None:
    """Each installed app's ``ttu cloud <name>`` (a broken one is reported, the others still work)."""
    tools = StubTools()
    for ep in sorted(entry_points(group="ttu.cloud"), key=lambda e: e.name):
        try:
            ep.load()(sub, tools)
        except Exception as err:  # a broken plug-in must not take `ttu cloud` down
            print(f"ttu cloud: {ep.name}: cannot load {ep.value}: {err}", file=sys.stderr)


# -- registration -------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``ttu cloud`` and its subcommands to the dispatcher's subparsers."""
    parser = subparsers.add_parser("cloud", help="cloud master-station stub: serve, query, send commands")
    parser.set_defaults(handler=lambda _args: (parser.print_help(), 2)[1])
    sub = parser.add_subparsers(dest="cloud_command", metavar="SUBCOMMAND")

    def query(name: str, help_text: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        p.add_argument("--db", default=DEFAULT_DB, help=f"the stub's sqlite file (default {DEFAULT_DB})")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(handler=_guarded(fn))
        return p

    query("terminals", "terminals seen, their state and counters", _cmd_terminals)
    p = query("readings", "readings received, newest first", _cmd_readings)
    p.add_argument("--terminal", help="only this terminal")
    p.add_argument("--device", help="only this device")
    p.add_argument("--quantity", help="only this quantity (e.g. voltage.a)")
    p.add_argument("--limit", type=int, default=100, help="at most N rows (default 100)")
    p = query("events", "events received, newest first", _cmd_events)
    p.add_argument("--terminal", help="only this terminal")
    p.add_argument("--kind", help="only this event kind (e.g. meter.power_down)")
    p.add_argument("--limit", type=int, default=100, help="at most N rows (default 100)")
    query("stats", "row counts, per-stream sequence gaps, recent rejected payloads", _cmd_stats)

    p = sub.add_parser("command", help="send one signed command to a terminal and print its reply")
    p.add_argument("--terminal", required=True, help="terminal id")
    p.add_argument("--name", required=True, help="command name (e.g. archive.replace)")
    p.add_argument("--args", default="{}", help="command arguments as a JSON object")
    p.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
    p.add_argument("--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"')
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply (default 30)")
    p.set_defaults(handler=_guarded(_cmd_command))

    # imported here: both modules use this one's key loading and tables
    from sim.cloud.app_cli import register_app
    from sim.cloud.catalog_cli import register_catalog
    from sim.cloud.trace_cli import register_trace

    register_catalog(sub)
    register_app(sub)
    register_trace(sub, guard=_guarded)
    _app_commands(sub)

    p = sub.add_parser("serve", help="run the cloud stub until Ctrl-C")
    p.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
    p.add_argument("--db", default=DEFAULT_DB, help=f"sqlite file to store into (default {DEFAULT_DB})")
    p.add_argument("--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"')
    p.add_argument("--catalog", type=Path, help="serve app packages of this catalog folder to terminals")
    p.set_defaults(handler=_guarded(_cmd_serve))


__all__ = ["CloudCliError", "load_command_key", "register", "render_table"]
