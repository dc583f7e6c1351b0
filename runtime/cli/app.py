"""``ttu app pack|verify|installed``: build a signed ``.ttuapp``; check one; list installed apps.

Layer: runtime (CLI). Thin wrapper over ``runtime.packages``: ``pack`` signs with a
private key file; ``verify`` checks against ``--key`` public keys or the trusted keys
(and hal capabilities) of a ``--board`` file. A refused package prints its code and
reason on one line and exits 2 (via the dispatcher). Installing is remote
(``ttu cloud app install``); ``installed`` reads the package manager's version pointers
and journal under a board's state folder, without a running terminal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import TerminalError

if TYPE_CHECKING:  # packages, keys and the board load when a handler runs, not with the parser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("app", help="app packages: pack and verify .ttuapp files")
    sub = parser.add_subparsers(dest="app_command", metavar="COMMAND", required=True)

    p = sub.add_parser("pack", help="pack and sign an app folder into <name>-<version>.ttuapp")
    p.add_argument("app_dir", type=Path, help="the app folder, e.g. apps/acquisition")
    p.add_argument("--key", type=Path, required=True, help="private key file (ttu keys new)")
    p.add_argument("--out", type=Path, help="output file (default ./<name>-<version>.ttuapp)")
    p.add_argument(
        "--wheel", type=Path, action="append", default=[], help="a pure-Python wheel to include (repeatable)"
    )
    p.set_defaults(handler=_cmd_pack)

    p = sub.add_parser("verify", help="verify a package: signature, hashes, archive safety, manifest")
    p.add_argument("package", type=Path, help="the .ttuapp file")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument(
        "--key", action="append", help="trusted public key: base64 text or a .pub/.pem file (repeatable)"
    )
    keys.add_argument("--board", type=Path, help="use this board.toml's trusted keys and hal capabilities")
    p.add_argument(
        "--capabilities",
        help="comma-separated hal capabilities the target has (default: the board's, or all: "
        "hplc,metrology,power,rs485,slots,watchdog)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_cmd_verify)

    p = sub.add_parser(
        "installed", help="apps installed on a board's terminal (version, previous, wanted state)"
    )
    p.add_argument("--board", type=Path, default=Path("board.toml"), help="board file (default board.toml)")
    p.add_argument("--state-dir", type=Path, help="state folder (default: next to the board's store)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_installed)


def _cmd_pack(args: argparse.Namespace) -> int:
    from runtime.packages import default_name, load_private_key, pack

    key = load_private_key(args.key)
    out: Path = args.out if args.out is not None else Path(default_name(args.app_dir))
    path = pack(args.app_dir, private_key=key, out=out, wheels=args.wheel)
    print(path)
    return 0


def _cmd_installed(args: argparse.Namespace) -> int:
    from runtime.config import load_board
    from runtime.packages.journal import JournalError, Layout

    board = load_board(args.board)
    state = args.state_dir if args.state_dir is not None else board.store.path.parent / "state"
    layout = Layout(state)
    rows: list[dict[str, object]] = []
    for name in layout.installed():
        try:
            pointer = layout.pointer(name)
        except JournalError as err:
            raise TerminalError(str(err)) from err
        if pointer is not None:
            rows.append({"name": name, **pointer.to_json()})
    try:
        txn = layout.journal()
    except JournalError as err:
        raise TerminalError(str(err)) from err
    pending = (
        None if txn is None else {"op": txn.op, "name": txn.name, "to": txn.to_version, "step": txn.step}
    )
    if args.json:
        print(json.dumps({"apps": rows, "pending": pending}, indent=2, sort_keys=True))
        return 0
    if not rows:
        print(f"no installed apps under {state}")
    for row in rows:
        wanted = "running" if row["running"] else "stopped"
        print(f"{row['name']}  {row['version']}  (previous {row['previous'] or '-'}, wanted {wanted})")
    if pending is not None:
        print(f"interrupted: {pending['op']} {pending['name']} {pending['to']} at step {pending['step']}")
        print("  (the terminal undoes it at its next start)")
    return 0


def _capabilities(text: str) -> frozenset[str]:
    from runtime.container.manifest import HAL_CAPABILITIES

    caps = frozenset(c.strip() for c in text.split(",") if c.strip())
    unknown = caps - HAL_CAPABILITIES
    if unknown:
        raise TerminalError(
            f"--capabilities: unknown {', '.join(sorted(unknown))} "
            f"(expected: {', '.join(sorted(HAL_CAPABILITIES))})"
        )
    return caps


def _cmd_verify(args: argparse.Namespace) -> int:
    from runtime.config import load_board
    from runtime.container.manifest import HAL_CAPABILITIES
    from runtime.packages import board_capabilities, load_public_key, verify

    trusted: list[Ed25519PublicKey | bytes]
    if args.board is not None:
        board = load_board(args.board)
        trusted = [k.raw for k in board.packages.trusted_keys]
        caps = board_capabilities(board)
    else:
        trusted = [load_public_key(k) for k in args.key]
        caps = HAL_CAPABILITIES
    if args.capabilities is not None:
        caps = _capabilities(args.capabilities)
    pkg = verify(args.package, trusted_keys=trusted, capabilities=caps)
    if args.json:
        doc = {
            "name": pkg.name,
            "version": pkg.version,
            "sha256": pkg.sha256,
            "size": pkg.size,
            "key_id": pkg.key_id,
            "api": pkg.manifest.api,
            "hal": sorted(pkg.manifest.hal),
            "files": dict(pkg.files),
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(f"ok: {pkg.name} {pkg.version} signed by {pkg.key_id}")
        print(f"sha256 {pkg.sha256}  {pkg.size} bytes, {len(pkg.files)} files")
    return 0


__all__ = ["register"]
