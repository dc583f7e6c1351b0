"""``ttu cloud outages``: the outages a terminal reported, as the master station stores them.

Layer: apps (outage), the master station's side. Registered through the entry point group
``ttu.cloud`` (``register(sub, tools)``); reads stream ``outage`` through
``protocols.cloud.CloudTools``, never the simulator. The stream carries one message per change
of an outage; the list keeps the newest revision of each (an outage merged into another or
retracted is left out), newest first::

    [{"id", "level", "target", "start", "end", "meters", "sources", "reported_at", "lit"}, ...]

``level`` station | phase | branch | box | meter; ``target`` the station-model id; times ISO
8601 UTC; ``end`` null while the outage goes on; ``lit``: members of the group by the archive
that kept their supply (the archive is likely wrong about them).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from protocols.cloud import CloudTools, StoredResult, joined_rows

STREAM = "outage"
#: a report's lists of meters; a report too big for one upward message is paged over them
REPORT_LISTS = ("meters", "lit", "still_dark")
ALL = 1_000_000_000  # every stored message: the list keeps the newest revision of each outage
HIDDEN = ("merged", "retracted")
FIELDS = ("id", "level", "target", "start", "end", "meters", "sources", "reported_at", "lit")


def iso(t: Any) -> str | None:
    """UTC epoch seconds -> ``2024-06-01T00:15:00Z`` (milliseconds only when there are some)."""
    if isinstance(t, bool) or not isinstance(t, int | float):
        return None
    ms = round(t * 1000)
    text = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


def outage_list(rows: Iterable[StoredResult]) -> list[dict[str, Any]]:
    """The newest revision of each reported outage, merged/retracted ones left out, newest first."""
    newest: dict[tuple[str, str], tuple[int, Mapping[str, Any]]] = {}
    for row in joined_rows(rows, REPORT_LISTS):
        body = row.body
        if not isinstance(body, Mapping) or body.get("type", "outage") != "outage" or "id" not in body:
            continue
        key = (row.terminal, str(body["id"]))
        revision = body.get("revision")
        rev = revision if isinstance(revision, int) and not isinstance(revision, bool) else 0
        if key not in newest or rev >= newest[key][0]:
            newest[key] = (rev, body)
    out = []
    for _, latest in newest.values():
        if latest.get("status") in HIDDEN:
            continue
        out.append(_listed(latest))
    out.sort(key=lambda o: (o["start"] or "", o["reported_at"] or "", o["id"]), reverse=True)
    return out


def _listed(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(body["id"]),
        "level": body.get("level"),
        "target": body.get("target"),
        "start": iso(body.get("start")),
        "end": iso(body.get("end")),
        "meters": list(body.get("meters") or []),
        "sources": list(body.get("sources") or []),
        "reported_at": iso(body.get("reported_at")),
        "lit": list(body.get("lit") or []),
    }


def _duration(o: Mapping[str, Any]) -> str:
    if not o["start"] or not o["end"]:
        return "ongoing"
    seconds = (_epoch(o["end"]) - _epoch(o["start"])) if o["end"] else 0.0
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _table(outages: list[dict[str, Any]]) -> str:
    headers = ("id", "level", "target", "start (UTC)", "end (UTC)", "duration", "meters", "sources")
    rows = [
        (o["id"], o["level"], o["target"], o["start"], o["end"] or "-", _duration(o), len(o["meters"]),
         ",".join(o["sources"]))
        for o in outages
    ]  # fmt: skip
    cells = [list(headers), *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def register(sub: Any, tools: CloudTools) -> None:
    """``ttu cloud outages [--terminal T] [--json] [--limit N]``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "outages", help="outages the terminals reported, newest first"
    )
    tools.add_query_options(p)
    p.add_argument("--limit", type=int, default=None, help="at most N outages")

    def show(args: argparse.Namespace) -> int:
        with tools.reader(args) as reader:
            outages = outage_list(reader.results(STREAM, terminal=args.terminal, limit=ALL))
        if args.limit is not None:
            outages = outages[: max(0, args.limit)]
        if args.json:
            print(json.dumps(outages, indent=2, ensure_ascii=False))
        else:
            print(_table(outages) if outages else "no outages reported")
        return 0

    p.set_defaults(handler=tools.guard(show))


__all__ = ["FIELDS", "STREAM", "iso", "outage_list", "register"]
