"""``ttu run``: run the terminal described by a board file until Ctrl-C / SIGTERM.

Layer: runtime (CLI). For a simulated board use ``ttu sim``, which starts the
simulated devices behind the ``sim:`` nodes first. Exit status: 0 after Ctrl-C / SIGTERM,
1 when the terminal stopped on its own (the cause is logged and printed), 2 for a bad board.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import ConfigError, TerminalDied

if TYPE_CHECKING:
    from runtime.terminal import Terminal

EXIT_DIED = 1  # the terminal stopped on its own (an essential part failed): restart it


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the terminal of a board file")
    parser.add_argument(
        "--board", type=Path, default=Path("board.toml"), help="board file (default board.toml)"
    )
    parser.add_argument(
        "--apps-dir", type=Path, default=None, help="apps folder (default: board packages.apps_dir)"
    )
    parser.set_defaults(handler=_run)


async def _main(terminal: Terminal) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await terminal.run()


def _run(args: argparse.Namespace) -> int:
    from hal.clock import LoopClock
    from runtime.config import load_board
    from runtime.terminal import Terminal

    board = load_board(args.board, apps_dir=args.apps_dir)
    if board.hal.backend == "sim":
        raise ConfigError(
            "hal.backend",
            "this board is simulated: run it with `ttu sim --board ...`",
            source=str(args.board),
        )
    try:
        terminal = Terminal(board, clock=LoopClock(), apps_dir=args.apps_dir, settle_heap=True)
        asyncio.run(_main(terminal))
    except TerminalDied as err:
        # logged with its traceback where it happened; the service manager restarts us on this
        print(f"ttu run: {err}", file=sys.stderr)
        return EXIT_DIED
    return 0
