"""The topology panel of the cloud dashboard: the station as a tree -- transformer, phase, branch,
meter box, meter -- as the newest identification found it, corrections highlighted.

Layer: apps (topology), cloud side; the ``ttu.dashboard`` entry point ``PANEL`` (a
``protocols.cloud.Panel``). ``panel_data(reader, query)`` runs on the stub's database thread over
the stored ``topology`` stream (``tree(body)`` is pure); ``SCRIPT`` defines
``render(element, data)``: nested ``<details>`` per phase, branch and box, a row per meter
(class ``corrected`` with the archive's value beside each corrected dimension, ``unresolved``
greyed), then the foreign meters (fed by another transformer) and the missing ones (on our
network, not in the archive). Plain DOM, no libraries. Must not import the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from protocols.cloud import Panel, ResultReader

from .cloud import SCAN, STREAM, newest, results_of

TITLE = "Topology (拓扑: phase, branch, box, 户变)"
PHASE_ORDER = ("A", "B", "C", "ABC")
NONE = "?"


def _meter_row(m: Mapping[str, Any]) -> dict[str, Any]:
    dims = m.get("dimensions") or {}
    corrected = {
        d: dims[d].get("archive")
        for d in ("phase", "branch", "box")
        if isinstance(dims.get(d), dict) and dims[d].get("outcome") == "corrected"
    }
    return {
        "meter_id": m.get("meter_id"),
        "address": m.get("address"),
        "status": m.get("status"),
        "confidence": m.get("confidence"),
        "corrected": corrected,  # dimension -> what the archive said
    }


def tree(body: Mapping[str, Any]) -> dict[str, Any]:
    """Phases -> branches -> boxes -> meters of one stored result (foreign meters apart)."""
    phases: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    foreign = []
    counts: dict[str, int] = {}
    for m in body.get("meters", []):
        if not isinstance(m, dict):
            continue
        status = str(m.get("status"))
        counts[status] = counts.get(status, 0) + 1
        if status == "foreign":
            foreign.append(
                {**_meter_row(m), "tests": sorted((m.get("evidence") or {}).get("foreign_tests", {}))}
            )
            continue
        branches = phases.setdefault(str(m.get("phase") or NONE), {})
        boxes = branches.setdefault(str(m.get("branch") or NONE), {})
        boxes.setdefault(str(m.get("box") or NONE), []).append(_meter_row(m))

    def order(p: str) -> tuple[int, str]:
        return (PHASE_ORDER.index(p) if p in PHASE_ORDER else len(PHASE_ORDER), p)

    return {
        "terminal": body.get("terminal"),
        "computed_at": body.get("computed_at"),
        "days": body.get("days"),
        "counts": counts,
        "phases": [
            {
                "phase": p,
                "branches": [
                    {
                        "branch": b,
                        "boxes": [
                            {"box": x, "meters": sorted(ms, key=lambda r: str(r["meter_id"]))}
                            for x, ms in sorted(boxes.items())
                        ],
                    }
                    for b, boxes in sorted(branches.items())
                ],
            }
            for p, branches in sorted(phases.items(), key=lambda kv: order(kv[0]))
        ],
        "foreign": foreign,
        "missing": [m for m in body.get("missing", []) if isinstance(m, dict)],
    }


def panel_data(reader: ResultReader, query: Mapping[str, Sequence[str]]) -> dict[str, Any] | None:
    """The tree of the terminal asked for (``?terminal=``), else of the newest result of any."""
    asked = query.get("terminal")
    if asked:
        body = newest(reader, asked[-1])
    else:
        found = results_of(reader.results(STREAM, limit=SCAN))
        body = max(found, key=lambda r: (r.ts, r.seq)).body if found else None
    return None if body is None else tree(body)


SCRIPT = r"""
function render(element, data) {
  element.innerHTML = "";
  if (!data) { element.textContent = "no topology result yet"; return; }
  const add = (parent, tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    parent.appendChild(e);
    return e;
  };
  const when = data.computed_at ? new Date(data.computed_at * 1000).toISOString().slice(0, 16) + "Z" : "?";
  const counts = data.counts || {};
  const head = add(element, "p", "topology-summary",
    "terminal " + data.terminal + ", " + when + ", " + Number(data.days || 0).toFixed(1) + " days: " +
    ["confirmed", "corrected", "foreign", "unresolved"].map(k => (counts[k] || 0) + " " + k).join(", ") +
    ", " + (data.missing || []).length + " missing");
  for (const k of ["confirmed", "corrected", "foreign", "unresolved"]) {
    head.setAttribute("data-" + k, String(counts[k] || 0));
  }
  const root = add(element, "details", "topology-tree");
  root.open = true;
  add(root, "summary", "node transformer", "transformer");
  for (const ph of data.phases || []) {
    const pe = add(root, "details", "node phase");
    pe.setAttribute("data-phase", ph.phase);
    pe.open = true;
    const n = ph.branches.reduce((s, b) => s + b.boxes.reduce((t, x) => t + x.meters.length, 0), 0);
    add(pe, "summary", null, "phase " + ph.phase + " (" + n + " meters)");
    for (const br of ph.branches) {
      const be = add(pe, "details", "node branch");
      be.setAttribute("data-branch", br.branch);
      add(be, "summary", null, "branch " + br.branch);
      for (const bx of br.boxes) {
        const xe = add(be, "details", "node box");
        xe.setAttribute("data-box", bx.box);
        add(xe, "summary", null, "box " + bx.box + " (" + bx.meters.length + ")");
        const ul = add(xe, "ul", "meters");
        for (const m of bx.meters) {
          const fixed = Object.keys(m.corrected || {});
          const li = add(ul, "li", "meter " + m.status + (fixed.length ? " corrected" : ""),
            m.meter_id + " " + m.address + " " + m.status + " (" + Number(m.confidence).toFixed(3) + ")" +
            (fixed.length ? ": " + fixed.map(d => d + " was " + (m.corrected[d] || "none")).join(", ") : ""));
          li.setAttribute("data-meter", m.meter_id);
          if (fixed.length) {  // a correction: highlighted, and its box, branch and phase opened
            li.style.background = "#ffe9a8";
            for (const e of [pe, be, xe]) e.open = true;
          }
          if (m.status === "unresolved") li.style.color = "#888";
        }
      }
    }
  }
  if ((data.foreign || []).length) {
    add(element, "h4", null, "foreign (fed by another transformer, 户变关系错误)");
    const ul = add(element, "ul", "foreign");
    for (const m of data.foreign) {
      const tests = (m.tests || []).join(", ");
      const li = add(ul, "li", "meter foreign", m.meter_id + " " + m.address + ": " + tests);
      li.setAttribute("data-meter", m.meter_id);
      li.style.background = "#ffc9c9";
    }
  }
  if ((data.missing || []).length) {
    add(element, "h4", null, "missing (on our network, not in the archive)");
    const ul = add(element, "ul", "missing");
    for (const m of data.missing) {
      const where = [m.phase, m.branch, m.box].filter(x => x).join(" / ");
      const unit = m.evidence && m.evidence.unit ? " (unit " + m.evidence.unit + ")" : "";
      const what = (m.address || "unexplained energy") + (where ? " at " + where : "");
      const li = add(ul, "li", "missing", what + unit);
      li.setAttribute("data-address", m.address || "");
    }
  }
}
"""

PANEL = Panel("topology", TITLE, data=panel_data, script=SCRIPT, order=30)

__all__ = ["PANEL", "SCRIPT", "TITLE", "panel_data", "tree"]
