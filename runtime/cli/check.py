"""``ttu check``: validate board.toml (and the app manifests, when that checker exists) without running.

Layer: runtime (CLI). Prints one summary line when everything is valid, or one
line per error (``file: key.path: reason``) and exits 1. Opens no device and
starts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from runtime.config import Board

MANIFEST_CHECKER = "runtime.container.manifest"

ManifestCheck = Callable[[Path], list[ConfigError]]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate board.toml and the app manifests without running",
        description="Validate board.toml (both passes) and, when available, every app manifest.",
    )
    parser.add_argument("--board", default="board.toml", help="board file (default: ./board.toml)")
    parser.add_argument(
        "--apps-dir",
        default=None,
        help="folder of apps (default: [packages] apps_dir of the board, else apps/ next to it)",
    )
    parser.set_defaults(handler=run)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(board: Board) -> str:
    """``terminal TTU-SIM-0001, backend sim, 4 RS-485 ports, HPLC, metrology, 2 slots, 1 app enabled``."""
    parts = [f"terminal {board.terminal.id}", f"backend {board.hal.backend}"]
    parts.append(_plural(len(board.enabled_rs485), "RS-485 port"))
    if board.hplc is not None and board.hplc.enabled:
        parts.append("HPLC")
    if board.metrology is not None and board.metrology.enabled:
        parts.append("metrology")
    parts.append(_plural(sum(1 for s in board.slots if s.enabled), "slot"))
    parts.append(f"{_plural(len(board.enabled_apps), 'app')} enabled")
    return ", ".join(parts)


def _manifest_checker() -> tuple[ManifestCheck | None, str]:
    """``check_manifests`` of the app container, or None and why it is unavailable."""
    try:
        module = importlib.import_module(MANIFEST_CHECKER)
    except ImportError as err:
        return None, f"{MANIFEST_CHECKER} cannot be imported: {err}"
    check: ManifestCheck | None = getattr(module, "check_manifests", None)
    if check is None:
        return None, f"{MANIFEST_CHECKER} has no check_manifests()"
    return check, ""


def _check_manifests(check: ManifestCheck, apps_dir: Path) -> list[ConfigError]:
    try:
        return list(check(apps_dir))
    except ConfigErrors as err:
        return list(err.errors)
    except ConfigError as err:
        return [err]


def run(args: argparse.Namespace) -> int:
    from runtime.config import load_board

    board_file: str = args.board
    failed = False
    board: Board | None = None
    try:
        board = load_board(board_file, apps_dir=args.apps_dir)
    except ConfigErrors as err:
        failed = True
        for error in err.errors:
            print(error)
    else:
        print(f"{board_file}: OK — {summary(board)}")

    if args.apps_dir is not None:
        apps_dir = Path(args.apps_dir)
    elif board is not None:
        apps_dir = board.packages.apps_dir
    else:
        apps_dir = Path(board_file).parent / "apps"

    check, why = _manifest_checker()
    if check is None:
        print(f"note: app manifests not checked ({why})", file=sys.stderr)
    else:
        errors = _check_manifests(check, apps_dir)
        for error in errors:
            print(error)
        failed = failed or bool(errors)
        if not errors:
            print(f"{apps_dir}: app manifests OK")
    return 1 if failed else 0


__all__ = ["register", "run", "summary"]
