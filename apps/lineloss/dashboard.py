"""The line-loss panel of the cloud dashboard: daily loss rate per branch with the thresholds, and
the anomaly list.

Layer: apps (lineloss). ``data(results, terminal)`` runs in the cloud stub (over the stored
``lineloss`` stream, through ``report.chart``); ``SCRIPT`` defines ``render(element, data)`` in
the page: an SVG line per scope (station bold, branches, meter boxes with a box terminal thin
and dotted), the high-loss and negative-loss thresholds as dashed lines, the economic band
shaded, and a table of anomalies (date, kind, target, branch, confidence, evidence). Plain DOM,
no libraries. Must not import the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from protocols.cloud import Panel, ResultReader

from .cloud import STREAM, bodies
from .report import chart

TITLE = "Line loss (线损)"


def data(terminal: str, messages: Iterable[Any]) -> dict[str, Any]:
    return chart(terminal, messages)


def panel_data(results: ResultReader, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``/api/panels/lineloss?terminal=T``: the chart of ``T`` (default: the terminal that sent the
    newest line-loss result)."""
    terminal = next(iter(query.get("terminal") or ()), "")
    if not terminal:
        newest = results.latest(STREAM)
        terminal = newest.terminal if newest is not None else ""
    return data(terminal, bodies(results, terminal) if terminal else [])


SCRIPT = r"""
function render(element, data) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 720, H = 300, L = 56, R = 110, T = 16, B = 36;
  element.innerHTML = "";
  const head = document.createElement("h3");
  head.textContent = "Daily loss rate per branch and meter box, terminal " + (data.terminal || "?");
  element.appendChild(head);
  const dates = data.dates || [];
  const th = data.thresholds || {};
  const values = [];
  for (const rows of Object.values(data.series || {})) {
    for (const row of rows) { if (typeof row[1] === "number") values.push(row[1]); }
  }
  for (const k of ["high_min_pct", "negative_max_pct", "economic_min_pct", "economic_max_pct"]) {
    if (typeof th[k] === "number") values.push(th[k]);
  }
  const lo = Math.min(-2, ...values), hi = Math.max(5, ...values);
  const x = (i) => L + (dates.length > 1 ? i * (W - L - R) / (dates.length - 1) : (W - L - R) / 2);
  const y = (v) => T + (hi - v) * (H - T - B) / (hi - lo || 1);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("class", "lineloss-chart");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.appendChild(el);
    return el;
  };
  if (typeof th.economic_min_pct === "number" && typeof th.economic_max_pct === "number") {
    add("rect", {x: L, width: W - L - R, y: y(th.economic_max_pct),
                 height: Math.max(0, y(th.economic_min_pct) - y(th.economic_max_pct)),
                 fill: "#e6f4ea", "class": "band-economic"});
  }
  add("line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#888"});
  add("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#888"});
  for (const [key, colour, label] of [["high_min_pct", "#c5221f", "high"],
                                      ["negative_max_pct", "#1a73e8", "negative"]]) {
    if (typeof th[key] !== "number") continue;
    add("line", {x1: L, x2: W - R, y1: y(th[key]), y2: y(th[key]), stroke: colour,
                 "stroke-dasharray": "6 4", "class": "threshold threshold-" + label});
    add("text", {x: W - R + 4, y: y(th[key]) + 4, "font-size": 11, fill: colour},
        label + " " + th[key] + " %");
  }
  for (let v = Math.ceil(lo); v <= hi; v += Math.max(1, Math.round((hi - lo) / 6))) {
    add("text", {x: L - 6, y: y(v) + 4, "font-size": 10, "text-anchor": "end"}, v + " %");
  }
  const partial = data.partial || {};  // days the terminal first started in: part of the day only
  dates.forEach((d, i) => add("text", {x: x(i), y: H - B + 16, "font-size": 10, "text-anchor": "middle",
                                       class: d in partial ? "date-partial" : "date"},
                              d.slice(5) + (d in partial ? " (partial)" : "")));
  const palette = ["#333", "#e37400", "#188038", "#9334e6", "#d01884", "#12b5cb", "#b06000", "#5f6368"];
  const levels = data.levels || {};
  const width = {station: 3, branch: 1.5, box: 1};
  let n = 0;
  for (const [scope, rows] of Object.entries(data.series || {})) {
    const level = levels[scope] || (scope === "station" ? "station" : "branch");
    const colour = level === "station" ? "#000" : palette[(n++ % (palette.length - 1)) + 1];
    const pts = rows.filter((r) => typeof r[1] === "number").map((r) => [x(dates.indexOf(r[0])), y(r[1])]);
    if (!pts.length) continue;
    const line = {points: pts.map((p) => p.join(",")).join(" "), fill: "none", stroke: colour,
                  "stroke-width": width[level] || 1.5, "class": "series series-" + level,
                  "data-scope": scope, "data-level": level};
    if (level === "box") line["stroke-dasharray"] = "3 3";  // meter boxes: thin, dotted
    add("polyline", line);
    for (const p of pts) add("circle", {cx: p[0], cy: p[1], r: level === "box" ? 2 : 2.5, fill: colour});
    const last = pts[pts.length - 1];
    add("text", {x: last[0] + 4, y: last[1] - 4, "font-size": level === "box" ? 9 : 10, fill: colour}, scope);
  }
  element.appendChild(svg);
  const table = document.createElement("table");
  table.className = "lineloss-anomalies";
  const hrow = table.insertRow();
  for (const h of ["date", "kind", "target", "branch", "confidence", "evidence"]) {
    const th2 = document.createElement("th"); th2.textContent = h; hrow.appendChild(th2);
  }
  for (const a of data.anomalies || []) {
    const row = table.insertRow();
    row.className = "anomaly anomaly-" + a.kind;
    const ev = Object.entries(a.evidence || {}).filter(([, v]) => typeof v !== "object")
      .slice(0, 6).map(([k, v]) => k + "=" + v).join(", ");
    for (const v of [a.date, a.kind, a.target, a.branch || "", (a.confidence ?? "").toString(), ev]) {
      row.insertCell().textContent = v;
    }
  }
  if (!(data.anomalies || []).length) {
    table.insertRow().insertCell().textContent = "no anomalies";
  }
  element.appendChild(table);
}
"""

PANEL = Panel("lineloss", TITLE, panel_data, SCRIPT, order=40)

__all__ = ["PANEL", "SCRIPT", "TITLE", "data", "panel_data"]
