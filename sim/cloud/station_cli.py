"""``ttu cloud station``: the station model (台区档案) of a terminal as the master station holds it.

Layer: sim (cloud stub), contributed through the ``ttu.cloud`` entry point ``station`` (and the
dashboard panel ``station``) like any app's view. The terminal sends its model on stream
``station`` (``runtime.station``): a snapshot, then every change with before/after and
provenance, and every proposal, each paged (``part``/``parts``) to fit the uplink's message
limit. ``view`` joins the parts and rebuilds the current model from the newest complete snapshot
and the changes after it (``protocols.station.replay``); a change that does not fit (one was
lost) is reported as ``stale``.

    ttu cloud station --terminal T [--json]              the model, its version, pending proposals
    ttu cloud station --terminal T --history [--json]     the change events, newest first
    ttu cloud station patch --terminal T --set m-1.phase=B [--set ...]   (signed station.patch)
    ttu cloud station confirm|reject --terminal T PROPOSAL [--reason ...]

Must not import terminal internals; the format is ``protocols.station``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from protocols.cloud import Panel, ResultReader, StoredResult

if TYPE_CHECKING:  # the station codec loads when a model is shown, not to build `ttu cloud`
    from protocols.station import StationModel

STREAM = "station"
SCAN = 10_000  # station messages looked at (newest first) to find the snapshot and what followed


def view(results: Sequence[StoredResult]) -> dict[str, Any]:
    """The model as the master station has it, from one terminal's ``station`` messages (any order).

    Messages come paged (``part``/``parts``, ``protocols.station.snapshot_messages``): the base is
    the newest snapshot whose parts are all here; a change or proposal counts once all its parts
    are."""
    from protocols.cloud import joined
    from protocols.station import (
        Change,
        StationError,
        StationModel,
        join_snapshot,
        model_from_doc,
        model_to_doc,
        replay,
    )

    ordered = sorted(results, key=lambda r: r.seq)
    out: dict[str, Any] = {"version": None, "model": None, "stale": False, "proposals": []}
    proposals: dict[str, dict[str, Any]] = {}
    for group in _groups(ordered, "proposal", ("id", "status")):
        corrections = joined(group, "corrections")
        if isinstance(group[0].get("id"), str) and corrections is not None:
            head = {k: v for k, v in group[0].items() if k not in ("part", "parts")}
            proposals[group[0]["id"]] = {**head, "corrections": corrections}
    out["proposals"] = [p for p in proposals.values() if p.get("status") == "pending"]
    base: dict[str, Any] | None = None
    version = 0
    for group in reversed(_groups(ordered, "snapshot", ("version", "at"))):
        base = join_snapshot(group)
        if base is not None:
            version = _int(group[0].get("version"), 0)
            break
    if base is None:
        return out
    try:
        model = model_from_doc(base, source="snapshot")
    except StationError as err:
        return {**out, "stale": True, "error": f"snapshot not usable: {err}"}
    for group in _groups(ordered, "change", ("version", "at")):
        body = group[0]
        if _int(body.get("version"), 0) <= version:
            continue
        changes = joined(group, "changes")
        if _int(body.get("previous"), -1) != version or changes is None:
            out["stale"] = True  # a change event (or a part of one) is missing: the model is as of `version`
            break
        try:
            model = replay(model, [Change.from_doc(c) for c in changes])
        except (StationError, TypeError, ValueError, AttributeError) as err:
            out["stale"], out["error"] = True, f"change v{body.get('version')} does not fit: {err}"
            break
        version = _int(body.get("version"), version)
    out["version"] = version
    out["model"] = model_to_doc(StationModel(**{**_fields(model), "version": version}))
    return out


def _groups(ordered: Sequence[StoredResult], kind: str, keys: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    """The messages of ``kind`` grouped by the head ``keys`` they share (the parts of one result),
    groups in the order of their newest message."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    last: dict[tuple[str, ...], int] = {}
    for r in ordered:
        if r.body.get("type") != kind:
            continue
        key = tuple(json.dumps(r.body.get(k), sort_keys=True) for k in keys)
        groups.setdefault(key, []).append(r.body)
        last[key] = r.seq
    return [groups[k] for k in sorted(groups, key=last.__getitem__)]


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _fields(model: StationModel) -> dict[str, Any]:
    return {
        "id": model.id,
        "name": model.name,
        "updated_at": model.updated_at,
        "transformer": model.transformer,
        "branches": model.branches,
        "boxes": model.boxes,
        "meters": model.meters,
        "devices": model.devices,
    }


def station_of(reader: ResultReader, terminal: str) -> dict[str, Any]:
    return {"terminal": terminal, **view(reader.results(STREAM, terminal=terminal, limit=SCAN))}


def history(reader: ResultReader, terminal: str, limit: int) -> list[dict[str, Any]]:
    from protocols.cloud import joined

    rows = sorted(reader.results(STREAM, terminal=terminal, limit=SCAN), key=lambda r: r.seq)
    changes = []
    for group in reversed(_groups(rows, "change", ("version", "at"))):
        head = {k: v for k, v in group[0].items() if k not in ("part", "parts", "changes")}
        parts = joined(group, "changes")
        changes.append({**head, "changes": parts} if parts is not None else {**head, "incomplete": True})
    return changes[:limit]


def parse_sets(items: Sequence[str]) -> list[dict[str, Any]]:
    """``--set [kind:]id.field=value`` -> patch ops (kind defaults to meter; ``value`` may be JSON)."""
    from protocols.station import KINDS

    ops: list[dict[str, Any]] = []
    for item in items:
        target, sep, raw = item.partition("=")
        record, dot, name = target.rpartition(".")
        kind, _, record_id = record.partition(":") if ":" in record else ("meter", "", record)
        if not sep or not dot or not record_id or kind not in KINDS:
            raise ValueError(f"--set {item!r}: expected [kind:]id.field=value (kinds: {', '.join(KINDS)})")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        ops.append({"op": "set", "kind": kind, "id": record_id, "field": name, "value": value})
    return ops


def _table(station: Mapping[str, Any]) -> str:
    model = station.get("model")
    if model is None:
        return f"terminal {station['terminal']}: no station model received yet"
    lines = [
        f"terminal {station['terminal']}: station model v{station['version']}"
        + (" (stale: a change is missing)" if station.get("stale") else ""),
    ]
    for m in model.get("meters", []):
        prov = m.get("provenance", {})
        marks = ", ".join(f"{k} {p['source']}" for k, p in sorted(prov.items()))
        place = "/".join(str(m.get(k) or "-") for k in ("phase", "branch", "box"))
        lines.append(f"  {m['id']:<12} {m['address']}  {m.get('channel', 'rs485'):<6} {place:<22} {marks}")
    for p in station.get("proposals", []):
        lines.append(
            f"  pending proposal {p['id']} by {p.get('app')}: {len(p.get('corrections', []))} corrections"
        )
    return "\n".join(lines)


def register(subparsers: Any, tools: Any) -> None:
    """The ``ttu.cloud`` entry point: ``ttu cloud station``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "station", help="a terminal's station model (台区档案) as received; patch, confirm, reject"
    )
    tools.add_query_options(parser, terminal_required=False)
    parser.add_argument("--history", action="store_true", help="the change events instead, newest first")
    parser.add_argument("--limit", type=int, default=50, help="at most N change events (default 50)")

    def show(args: argparse.Namespace) -> int:
        if not args.terminal:
            parser.error("--terminal is required")
        with tools.reader(args) as reader:
            if args.history:
                tools.print_json(history(reader, args.terminal, args.limit))
                return 0
            station = station_of(reader, args.terminal)
        if args.json:
            tools.print_json(station)
        else:
            print(_table(station))
        return 0 if station.get("model") is not None else 1

    parser.set_defaults(handler=tools.guard(show))
    sub = parser.add_subparsers(dest="station_command", metavar="ACTION")

    patch = sub.add_parser("patch", help="set attributes (signed station.patch; provenance confirmed)")
    tools.add_command_options(patch)
    patch.add_argument("--set", dest="sets", action="append", required=True, metavar="[KIND:]ID.FIELD=VALUE")
    patch.add_argument("--by", default="cloud", help="who confirms (recorded in the provenance)")

    def do_patch(args: argparse.Namespace) -> int:
        try:
            ops = parse_sets(args.sets)
        except ValueError as err:
            patch.error(str(err))
        tools.print_json(tools.command(args, "station.patch", {"ops": ops, "by": args.by}))
        return 0

    patch.set_defaults(handler=tools.guard(do_patch))
    for action in ("confirm", "reject"):
        p = sub.add_parser(action, help=f"{action} a pending proposal (signed station.{action})")
        tools.add_command_options(p)
        p.add_argument("proposal", help="the proposal id, e.g. p-17")
        p.add_argument("--by", default="cloud")
        if action == "reject":
            p.add_argument("--reason", default="")

        def decide(args: argparse.Namespace, action: str = action) -> int:
            body = {"proposal": args.proposal, "by": args.by}
            if action == "reject":
                body["reason"] = args.reason
            tools.print_json(tools.command(args, f"station.{action}", body))
            return 0

        p.set_defaults(handler=tools.guard(decide))


def _panel_data(reader: ResultReader, query: Mapping[str, Sequence[str]]) -> Any:
    terminal = (query.get("terminal") or [""])[-1]
    station = station_of(reader, terminal)
    model = station.get("model") or {}
    meters = model.get("meters", [])
    corrected = [m["id"] for m in meters if m.get("provenance")]
    return {
        "terminal": terminal,
        "version": station.get("version"),
        "stale": station.get("stale"),
        "meters": len(meters),
        "branches": len(model.get("branches", [])),
        "boxes": len(model.get("boxes", [])),
        "not_archive": corrected,
        "pending": [
            {"id": p["id"], "app": p.get("app"), "n": len(p.get("corrections", []))}
            for p in station.get("proposals", [])
        ],
    }


PANEL = Panel(
    name="station",
    title="Station model (台区档案)",
    order=10,
    data=_panel_data,
    script=r"""
function render(element, data) {
  element.innerHTML = "";
  const p = document.createElement("p");
  if (data.version === null || data.version === undefined) {
    p.textContent = "no station model received yet";
    element.appendChild(p);
    return;
  }
  p.textContent = "v" + data.version + (data.stale ? " (stale)" : "") + ": " + data.meters + " meters, " +
    data.branches + " branches, " + data.boxes + " boxes; " + data.not_archive.length +
    " meters with identified or confirmed facts";
  p.className = "station-summary";
  element.appendChild(p);
  for (const pr of data.pending) {
    const li = document.createElement("div");
    li.className = "pending";
    li.textContent = "pending proposal " + pr.id + " by " + pr.app + ": " + pr.n + " corrections";
    element.appendChild(li);
  }
}
""",
)

__all__ = ["PANEL", "history", "parse_sets", "register", "station_of", "view"]
