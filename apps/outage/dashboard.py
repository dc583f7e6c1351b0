"""The outage panel of the cloud dashboard: a timeline of outages per level, and the list.

Layer: apps (outage), the master station's side. ``PANEL`` is registered through the entry
point group ``ttu.dashboard``; ``timeline(reader, query)`` runs on the stub's database thread
over the stored ``outage`` stream (newest revision per outage, merged/retracted left out);
``SCRIPT`` defines ``render(element, data)`` in the page: one SVG lane per level (station,
phase, branch, box, meter), a bar per outage from its start to its end (still open: to now,
drawn as ongoing), and a table of the newest outages. Plain DOM, no libraries. Must not import
the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from protocols.cloud import Panel, ResultReader, StoredResult, joined_rows

from .cloud import ALL, HIDDEN, REPORT_LISTS, STREAM

LEVELS = ("station", "phase", "branch", "box", "meter")
SHOWN = 200


def outages(rows: Iterable[StoredResult]) -> tuple[list[dict[str, Any]], float | None]:
    """The newest revision of each outage (times as epoch seconds), newest first; and the time of
    the newest message (the timeline's "now")."""
    newest: dict[tuple[str, str], tuple[int, Mapping[str, Any]]] = {}
    now: float | None = None
    for row in joined_rows(rows, REPORT_LISTS):
        now = row.received if now is None else max(now, row.received)
        body = row.body
        if not isinstance(body, Mapping) or body.get("type", "outage") != "outage" or "id" not in body:
            continue
        rev = body.get("revision")
        rev = rev if isinstance(rev, int) and not isinstance(rev, bool) else 0
        key = (row.terminal, str(body["id"]))
        if key not in newest or rev >= newest[key][0]:
            newest[key] = (rev, body)
    out = []
    for (terminal, oid), (_, b) in newest.items():
        start = b.get("start")
        if b.get("status") in HIDDEN or not isinstance(start, int | float):
            continue
        end = b.get("end")
        out.append(
            {
                "terminal": terminal,
                "id": oid,
                "level": b.get("level") if b.get("level") in LEVELS else "meter",
                "target": str(b.get("target")),
                "start": float(start),
                "end": float(end) if isinstance(end, int | float) else None,
                "meters": len(b.get("meters") or []),
                "sources": [str(s) for s in b.get("sources") or []],
                "still_dark": len(b.get("still_dark") or []),
                # archive members that kept their supply (not in that group: an archive error)
                "kept_supply": [str(m) for m in b.get("lit") or []],
                "reported_at": b.get("reported_at"),
            }
        )
    out.sort(key=lambda o: (o["start"], o["id"]), reverse=True)
    return out[:SHOWN], now


def timeline(reader: ResultReader, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    given = query.get("terminal")
    terminal = given[-1] if given else None
    found, now = outages(reader.results(STREAM, terminal=terminal, limit=ALL))
    return {"levels": list(LEVELS), "now": now, "outages": found}


SCRIPT = r"""
function render(element, data) {
  const NS = "http://www.w3.org/2000/svg";
  const levels = data.levels || ["station", "phase", "branch", "box", "meter"];
  const list = data.outages || [];
  const W = 760, L = 70, R = 12, T = 8, LANE = 26, B = 24, H = T + LANE * levels.length + B;
  element.innerHTML = "";
  const fmt = (t) => t == null ? "ongoing" : new Date(t * 1000).toISOString().replace(".000", "");
  const span = (o) => {
    if (o.end == null) return "ongoing";
    const s = o.end - o.start;
    return s >= 60 ? (s / 60).toFixed(1) + " min" : Math.round(s) + " s";
  };
  if (!list.length) {
    const p = document.createElement("p");
    p.className = "outage-none";
    p.textContent = "no outages reported";
    element.appendChild(p);
    return;
  }
  const now = data.now || Math.max(...list.map((o) => o.end || o.start));
  const t0 = Math.min(...list.map((o) => o.start)), t1 = Math.max(now, ...list.map((o) => o.end || o.start));
  const x = (t) => L + (t1 > t0 ? (t - t0) * (W - L - R) / (t1 - t0) : 0);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("class", "outage-timeline");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  levels.forEach((lv, i) => {
    const y = T + i * LANE;
    add("rect", {x: L, y: y, width: W - L - R, height: LANE - 4, fill: i % 2 ? "#fafafa" : "#f2f2f2",
                 "class": "outage-lane", "data-level": lv});
    add("text", {x: 4, y: y + LANE / 2 + 2, "font-size": 12, "class": "outage-lane-label"}, lv);
  });
  for (const o of list) {
    const i = Math.max(0, levels.indexOf(o.level));
    const x0 = x(o.start), x1 = Math.max(x0 + 2, x(o.end == null ? now : o.end));
    const bar = add("rect", {x: x0, y: T + i * LANE + 3, width: x1 - x0, height: LANE - 10,
      fill: o.end == null ? "#d93025" : "#f29900",
      "class": "outage-bar level-" + o.level + (o.end == null ? " ongoing" : ""),
      "data-id": o.id, "data-level": o.level, "data-target": o.target});
    const tip = document.createElementNS(NS, "title");
    tip.textContent = o.level + " " + o.target + ": " + fmt(o.start) + " - " + fmt(o.end) +
      " (" + o.meters + " meters; " + o.sources.join(", ") + ")";
    bar.appendChild(tip);
  }
  add("text", {x: L, y: H - 6, "font-size": 11, "class": "outage-axis"}, fmt(t0));
  add("text", {x: W - R, y: H - 6, "font-size": 11, "text-anchor": "end", "class": "outage-axis"}, fmt(t1));
  element.appendChild(svg);
  const table = document.createElement("table");
  table.className = "outage-list";
  const head = ["id", "level", "target", "start (UTC)", "end (UTC)", "duration", "meters", "still dark",
                "kept supply (archive?)", "sources"];
  const tr = document.createElement("tr");
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); }
  table.appendChild(tr);
  for (const o of list.slice(0, 30)) {
    const row = document.createElement("tr");
    row.className = "outage-row level-" + o.level + (o.end == null ? " ongoing" : "");
    for (const c of [o.id, o.level, o.target, fmt(o.start), fmt(o.end), span(o), o.meters, o.still_dark,
                     o.kept_supply.join(", "), o.sources.join(", ")]) {
      const td = document.createElement("td"); td.textContent = String(c); row.appendChild(td);
    }
    table.appendChild(row);
  }
  element.appendChild(table);
}
"""

PANEL = Panel(name="outage", title="Outages (停电)", data=timeline, script=SCRIPT, order=20)

__all__ = ["LEVELS", "PANEL", "SCRIPT", "outages", "timeline"]
