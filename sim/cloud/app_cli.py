"""``ttu cloud app install|upgrade|rollback|start|stop|uninstall|list``: remote app lifecycle.

Layer: sim (cloud stub CLI). Hooked into ``ttu cloud`` by ``register_app(sub)``. Each
command runs a short-lived ``CloudStub`` on the broker: it sends the signed ``app.*``
command, serves the package chunks the terminal asks for (from ``--package`` or, with
``--name/--version``, from the catalog), and shows the terminal's job reports as a
progress bar. Exit status: 0 when the job is done, 1 when the terminal refused it or it
failed (the reason is printed), 2 for a user mistake or a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from protocols.cloud import DEFAULT_CHUNK_SIZE, Reply
from sim.cloud.catalog_cli import DEFAULT_CATALOG
from sim.cloud.cli import DEFAULT_BROKER, CloudCliError, load_command_key, render_table

if TYPE_CHECKING:  # the MQTT stub, the transfer and the catalog load when a handler runs
    from hal.clock import LoopClock
    from sim.cloud.catalog import Catalog
    from sim.cloud.stub import CloudStub
    from sim.cloud.transfer import JobProgress

DEFAULT_KEY_FILE = "sim/credentials.toml"
BAR = 30


class AppCliError(Exception):
    """A user mistake on the ``ttu cloud app`` command line."""


class ProgressBar:
    """One line per job state; the download percent redrawn in place on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._last: tuple[str, int] | None = None

    def __call__(self, progress: JobProgress) -> None:
        now = (progress.state, progress.percent)
        if now == self._last:
            return
        same_state = self._last is not None and self._last[0] == progress.state
        self._last = now
        filled = BAR * progress.percent // 100
        line = f"[{'#' * filled}{'-' * (BAR - filled)}] {progress.percent:3d}% {progress.state}"
        if progress.message and progress.state in ("done", "failed", "queued"):
            line += f": {progress.message}"
        if self._tty:
            self._out.write(("\r" if same_state else "\n") + line)
            if progress.state in ("done", "failed"):
                self._out.write("\n")
        else:
            self._out.write(line + "\n")
        self._out.flush()


async def _stub(args: argparse.Namespace, key: bytes, clock: LoopClock) -> CloudStub:
    from sim.cloud.simclock import terminal_time
    from sim.cloud.stub import CloudStub

    return CloudStub(
        broker_url=args.broker,
        db_path=":memory:",
        clock=clock,
        default_key=key,
        terminal=args.terminal,
        connect_timeout=min(args.timeout, 30.0),
        command_time=await terminal_time(args.broker),
    )


def _print_reply(reply: Reply) -> int:
    if reply.ok:
        print(json.dumps(reply.result, indent=2, sort_keys=True))
        return 0
    print(f"ttu cloud app: refused: {reply.code}: {reply.message}", file=sys.stderr)
    return 1


def _package_job(args: argparse.Namespace) -> tuple[bytes, str, str, bool, Catalog | None]:
    """(package bytes, name, version, from catalog?, catalog) for install/upgrade."""
    from protocols.packages import PackageError
    from sim.cloud.catalog import Catalog, CatalogError, inspect_file

    if args.package is not None:
        if args.name is not None or args.version is not None:
            raise AppCliError("give either --package or --name/--version, not both")
        try:
            pkg = inspect_file(args.package)
        except PackageError as err:
            raise AppCliError(f"{args.package}: {err}") from err
        return args.package.read_bytes(), pkg.name, pkg.version, False, None
    if args.name is None or args.version is None:
        raise AppCliError("give --package FILE, or --name and --version of a catalog entry")
    catalog = Catalog(args.catalog)
    try:
        entry = catalog.find(args.name, args.version)
        data = catalog.package_path(entry).read_bytes()
    except (CatalogError, OSError) as err:
        raise AppCliError(f"catalog {args.catalog}: {err}") from err
    return data, entry.name, entry.version, True, catalog


async def _job(
    args: argparse.Namespace,
    key: bytes,
    command: str,
    command_args: dict[str, Any],
    serve: Callable[..., None],
) -> int:
    from hal.clock import LoopClock
    from sim.cloud.transfer import JobWatcher

    job = command_args["job"]
    clock = LoopClock()
    async with await _stub(args, key, clock) as stub:
        serve(stub)
        watcher = JobWatcher(stub, on_change=ProgressBar(sys.stderr))
        progress = watcher.watch(job)
        reply = await stub.send_command(args.terminal, command, command_args, timeout=min(args.timeout, 60.0))
        if not reply.ok:
            return _print_reply(reply)
        print(f"job {job} accepted by {args.terminal}: {reply.result}", file=sys.stderr)
        try:
            async with clock.timeout(args.timeout):
                await progress.done.wait()
        except TimeoutError:
            print(
                f"ttu cloud app: job {job} still {progress.state} after {args.timeout:g} s "
                f"(re-run with --job {job} to resume)",
                file=sys.stderr,
            )
            return 2
    if progress.state == "done":
        print(f"done: {progress.message or job}")
        return 0
    print(f"ttu cloud app: job {job} failed: {progress.code}: {progress.message}", file=sys.stderr)
    return 1


def _cmd_install(args: argparse.Namespace, *, upgrade: bool) -> int:
    from sim.cloud.transfer import PackageServer, install_args, new_job_id

    data, name, version, from_catalog, catalog = _package_job(args)
    key = load_command_key(args.key_file)
    job = args.job or new_job_id()
    command_args = install_args(
        job,
        package=data,
        name=name,
        version=version,
        chunk_size=args.chunk_size,
        start_delay_s=args.start_delay,
        catalog=from_catalog,
    )

    def serve(stub: CloudStub) -> None:
        server = PackageServer(stub, catalog=catalog, window=args.window)
        if not from_catalog:
            server.offer(args.terminal, job, data)

    print(
        f"{'upgrading' if upgrade else 'installing'} {name} {version} ({len(data)} bytes) on {args.terminal}"
    )
    return asyncio.run(_job(args, key, "app.upgrade" if upgrade else "app.install", command_args, serve))


def _cmd_rollback(args: argparse.Namespace) -> int:
    from sim.cloud.transfer import new_job_id

    key = load_command_key(args.key_file)
    command_args = {"job": args.job or new_job_id(), "name": args.name}
    return asyncio.run(_job(args, key, "app.rollback", command_args, lambda stub: None))


async def _simple(args: argparse.Namespace, key: bytes, command: str, command_args: dict[str, Any]) -> Reply:
    from hal.clock import LoopClock

    async with await _stub(args, key, LoopClock()) as stub:
        return await stub.send_command(args.terminal, command, command_args, timeout=args.timeout)


def _cmd_simple(args: argparse.Namespace, command: str) -> int:
    key = load_command_key(args.key_file)
    return _print_reply(asyncio.run(_simple(args, key, command, {"name": args.name})))


def _cmd_list(args: argparse.Namespace) -> int:
    key = load_command_key(args.key_file)
    reply = asyncio.run(_simple(args, key, "app.list", {}))
    if not reply.ok or args.json:
        return _print_reply(reply)
    result = reply.result or {}
    rows = [
        (
            a.get("name"),
            a.get("version"),
            a.get("state"),
            a.get("previous"),
            "yes" if a.get("running") else "no",
        )
        for a in result.get("apps", [])
    ]
    print(render_table(("app", "version", "state", "previous", "wanted running"), rows))
    for job in result.get("jobs", []):
        fields = (job.get(k, "") for k in ("op", "name", "state", "percent"))
        print(f"job {job.get('job')}: " + " ".join(str(f) for f in fields))
    return 0


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from sim.cloud.stub import CloudStubError

        try:
            return fn(args)
        except (AppCliError, CloudCliError, CloudStubError, TimeoutError) as err:
            print(f"ttu cloud app: error: {err}", file=sys.stderr)
            return 2

    return run


def register_app(subparsers: Any) -> None:
    """Add ``app`` to the sub-commands of ``ttu cloud``."""
    parser = subparsers.add_parser(
        "app", help="install, upgrade, roll back, start, stop, list apps on a terminal"
    )
    sub = parser.add_subparsers(dest="app_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--terminal", required=True, help="terminal id")
    common.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
    common.add_argument("--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"')
    common.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the job (default 300)"
    )
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument("--name", required=True, help="app name")

    for op in ("install", "upgrade"):
        p = sub.add_parser(op, parents=[common], help=f"{op} an app from a package file or the catalog")
        p.add_argument("--package", type=Path, help="a signed .ttuapp file")
        p.add_argument("--name", help="app name in the catalog (with --version)")
        p.add_argument("--version", help="app version in the catalog")
        p.add_argument("--catalog", type=Path, default=Path(DEFAULT_CATALOG), help="catalog folder")
        p.add_argument("--job", help="job id (re-use one to resume an interrupted transfer)")
        p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="bytes per chunk")
        p.add_argument("--start-delay", type=float, default=0.0, help="seconds to wait before installing")
        p.add_argument("--window", type=int, default=4, help="chunks in flight (default 4)")
        p.set_defaults(handler=_guarded(functools.partial(_cmd_install, upgrade=op == "upgrade")))

    p = sub.add_parser("rollback", parents=[common, named], help="go back to the kept previous version")
    p.add_argument("--job", help="job id")
    p.set_defaults(handler=_guarded(_cmd_rollback))
    for op in ("start", "stop", "uninstall"):
        p = sub.add_parser(op, parents=[common, named], help=f"{op} an installed app")
        p.set_defaults(handler=_guarded(functools.partial(_cmd_simple, command=f"app.{op}")))
    p = sub.add_parser("list", parents=[common], help="installed apps: version, state, previous version")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.set_defaults(handler=_guarded(_cmd_list))


__all__ = ["ProgressBar", "register_app"]
