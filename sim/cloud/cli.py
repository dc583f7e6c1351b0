"""``ttu cloud ...``: run the cloud master-station stub, query what it received, send a command.

Layer: sim (cloud stub), plugged into the ``ttu`` dispatcher through the ``ttu.commands`` entry
point ``cloud = sim.cloud.cli``. Queries read the stub's sqlite file read-only (``--db``, default
``var/sim/cloud.sqlite``, where ``make sim`` writes it) and print a table or ``--json``;
``streams`` and ``results`` show any result stream; ``serve`` runs the stub until Ctrl-C;
``command`` sends one signed command and prints the reply; ``catalog`` (``sim.cloud.catalog_cli``)
publishes and lists packages, ``app`` (``sim.cloud.app_cli``) installs and manages apps on a
terminal. Apps (and the runtime, for its ``station`` stream) add subcommands through the
``ttu.cloud`` entry points (``sim.cloud.plugins``). Every user mistake is one line on stderr and
exit status 2. Heavy imports (the MQTT client, the catalog) happen when a handler runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocols.cloud import Reply
from sim.cloud.plugins import (
    DEFAULT_BROKER,
    DEFAULT_DB,
    DEFAULT_KEY_FILE,
    CloudCliError,
    StubTools,
    register_plugins,
)

if TYPE_CHECKING:  # the stub's database (sqlite) loads when a command opens it
    from sim.cloud.db import CloudDb

SUMMARY_PERIOD_S = 60.0


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
    from sim.cloud.db import CloudDb

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


async def send_command(args: argparse.Namespace, key: bytes, name: str, arguments: dict[str, Any]) -> Reply:
    """Sign and send ``name`` to ``args.terminal`` through ``args.broker``; the terminal's reply."""
    from hal.clock import LoopClock
    from sim.cloud.simclock import terminal_time
    from sim.cloud.stub import CloudStub

    async with CloudStub(
        broker_url=args.broker,
        db_path=":memory:",
        clock=LoopClock(),
        default_key=key,
        terminal=args.terminal,
        connect_timeout=args.timeout,
        command_time=await terminal_time(args.broker),
    ) as stub:
        return await stub.send_command(args.terminal, name, arguments, timeout=args.timeout)


async def _send(args: argparse.Namespace, key: bytes, command_args: dict[str, Any]) -> int:
    reply = await send_command(args, key, args.name, command_args)
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
    from hal.clock import LoopClock
    from sim.cloud.catalog import Catalog
    from sim.cloud.stub import CloudStub
    from sim.cloud.transfer import PackageServer

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
    return StubTools().guard(fn)


def _cmd_streams(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        counts = db.result_counts()
    finally:
        db.close()
    rows = [(stream, terminal, n) for stream, per in counts.items() for terminal, n in per.items()]
    _emit(args, counts, lambda: render_table(("stream", "terminal", "messages"), rows))
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    db = _open(args)
    try:
        rows = db.results(args.stream, terminal=args.terminal, limit=args.limit)
    finally:
        db.close()
    _emit(
        args,
        rows,
        lambda: render_table(
            ("terminal", "seq", "time (UTC)", "body"),
            [(r.terminal, r.seq, _time(r.ts), json.dumps(r.body, sort_keys=True)[:100]) for r in rows],
        ),
    )
    return 0


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
    query("streams", "result streams (apps', station) with their messages per terminal", _cmd_streams)
    p = query("results", "messages of one result stream, newest first", _cmd_results)
    p.add_argument("--stream", required=True, help="the stream, e.g. topology")
    p.add_argument("--terminal", help="only this terminal")
    p.add_argument("--limit", type=int, default=20, help="at most N messages (default 20)")

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

    p = sub.add_parser("serve", help="run the cloud stub until Ctrl-C")
    p.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
    p.add_argument("--db", default=DEFAULT_DB, help=f"sqlite file to store into (default {DEFAULT_DB})")
    p.add_argument("--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"')
    p.add_argument("--catalog", type=Path, help="serve app packages of this catalog folder to terminals")
    p.set_defaults(handler=_guarded(_cmd_serve))

    # what apps (and the runtime, for its station stream) contribute: entry points `ttu.cloud`
    register_plugins(sub, StubTools())


__all__ = [
    "DEFAULT_BROKER",
    "DEFAULT_DB",
    "DEFAULT_KEY_FILE",
    "CloudCliError",
    "load_command_key",
    "register",
    "render_table",
    "send_command",
]
