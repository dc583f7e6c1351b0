"""``ttu apps``: list the apps and their states.

Layer: runtime (CLI). Reads the status file a running terminal's supervisor
keeps (``<state-dir>/apps.json``); when no terminal is running it lists the
installed manifests with state "not running". It never starts or imports apps.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError, ConfigErrors, TerminalError

COLUMNS = ("name", "version", "state", "since", "restarts", "last error")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("apps", help="list apps and their states")
    parser.add_argument(
        "--state-dir", default="var/state", help="the terminal's state folder (default var/state)"
    )
    parser.add_argument("--apps-dir", default="apps", help="installed apps (default apps)")
    parser.set_defaults(handler=main)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(state_dir: Path) -> list[dict[str, Any]] | None:
    """The app list of a running terminal, or None if none is running."""
    from runtime.container.supervisor import STATUS_FILE

    path = state_dir / STATUS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise TerminalError(f"{path}: cannot read app status: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("apps"), list):
        raise TerminalError(f"{path}: not an app status file")
    if not doc.get("running") or not _alive(doc.get("pid")):
        return None
    return [a for a in doc["apps"] if isinstance(a, dict)]


def installed(apps_dir: Path) -> list[dict[str, Any]]:
    """One row per ``<apps_dir>/<name>/app.toml``; a broken manifest shows as "invalid"."""
    from runtime.container.manifest import load_manifest

    rows: list[dict[str, Any]] = []
    for path in sorted(apps_dir.glob("*/app.toml")):
        try:
            m = load_manifest(path)
        except (ConfigError, ConfigErrors) as err:
            first = str(err).splitlines()[0] if str(err) else "invalid"
            rows.append({"name": path.parent.name, "version": "?", "state": "invalid", "last_error": first})
            continue
        rows.append({"name": m.name, "version": m.version, "state": "not running"})
    return rows


def _since(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return "-"
    return datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_table(rows: list[dict[str, Any]]) -> str:
    cells = [
        (
            str(r.get("name", "?")),
            str(r.get("version", "?")),
            str(r.get("state", "?")),
            _since(r.get("since")),
            str(r.get("restarts", "-")),
            str(r.get("last_error") or "-"),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(col.ljust(w) for col, w in zip(line, widths, strict=True)).rstrip()
        for line in [COLUMNS, *cells]
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    rows = read_status(Path(args.state_dir))
    if rows is None:
        apps_dir = Path(args.apps_dir)
        if not apps_dir.is_dir():
            raise TerminalError(f"{apps_dir}: apps directory not found")
        rows = installed(apps_dir)
    if not rows:
        print("no apps")
        return 0
    print(format_table(rows))
    return 0


__all__ = ["format_table", "installed", "main", "read_status", "register"]
