"""The billing panel of the cloud dashboard: every customer's balance and relay, the ledger's state,
and the daily reconciliation.

Layer: apps (billing), cloud side; the ``ttu.dashboard`` entry point ``PANEL`` (a
``protocols.cloud.Panel``). ``panel_data(reader, query)`` runs on the stub's database thread over
the stored ``billing`` stream (``data(terminal, bodies)``, over ``report``); ``SCRIPT`` defines
``render(element, data)`` in the page:
the ledger line (length, head, verified, signed roots), counters (tripped, alarmed, 保电), a table
of customers (balance, relay, alarm level, 保电, last day's charge; tripped rows marked) and a table
of reconciled days. Plain DOM, no libraries. Must not import the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from protocols.billing import yuan
from protocols.cloud import Panel, ResultReader

from . import report
from .report import stored_bodies

TITLE = "Billing (本地费控)"


def data(terminal: str, bodies: Iterable[Any]) -> dict[str, Any]:
    items = list(bodies)
    records, conflicts, heads = report._records_and_heads(items)
    out = report.summary(terminal, items, detail=True, open_days=False)
    balance: dict[str, int] = {}
    meter: dict[str, str] = {}
    relay: dict[str, str] = {}
    alarm: dict[str, int] = {}
    keep: dict[str, bool] = {}
    for r in records:
        b = r.body
        if r.kind in ("topup", "refund", "correction"):
            balance[b["customer"]] = int(b["balance"])
        elif r.kind == "debit":
            for customer, _, _, after in b["entries"]:
                balance[customer] = int(after)
        elif r.kind == "charge":
            meter[b["customer"]] = b["meter"]
        elif r.kind == "keep_power":
            keep[b["customer"]] = bool(b["on"])
        elif r.kind == "relay" and b.get("result") == "ok":
            meter.setdefault(b["customer"], b.get("meter", ""))
            relay[b["customer"]] = report._relay_after(relay.get(b["customer"], "closed"), b)
            if b["command"] == "alarm":
                alarm[b["customer"]] = int(b.get("level", 1))
            elif b["command"] == "alarm_release":
                alarm[b["customer"]] = 0
    last_charge = {row["customer_id"]: (row["date"], row["charge_yuan"]) for row in out["customers"]}
    customers = [
        {
            "customer_id": c,
            "meter_id": meter.get(c, ""),
            "balance_yuan": yuan(balance[c]),
            "relay": relay.get(c, "closed"),
            "alarm": alarm.get(c, 0),
            "keep_power": keep.get(c, False),
            "last_date": last_charge.get(c, (None, None))[0],
            "last_charge_yuan": last_charge.get(c, (None, None))[1],
        }
        for c in sorted(balance)
    ]
    checked = report._audit(records, heads, None)
    return {
        "terminal": terminal,
        "title": TITLE,
        "ledger": {**out["ledger"], "roots": checked.roots, "conflicts": len(conflicts)},
        "counts": {
            "customers": len(customers),
            "tripped": sum(1 for c in customers if c["relay"] in ("open", "close_allowed")),
            "alarm": sum(1 for c in customers if c["alarm"]),
            "keep_power": sum(1 for c in customers if c["keep_power"]),
        },
        "customers": customers,
        "reconciliation": [
            {
                k: x[k]
                for k in ("date", "ok", "difference_yuan", "charges_yuan", "debits_yuan", "credits_yuan")
            }
            for x in out["reconciliation"]
        ],
    }


SCRIPT = r"""
function render(element, data) {
  element.innerHTML = "";
  if (!data) { element.textContent = "no billing data yet"; return; }
  const add = (parent, tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    parent.appendChild(e);
    return e;
  };
  add(element, "h3", "billing-title", (data.title || "Billing") + ", terminal " + (data.terminal || "?"));
  const led = data.ledger || {};
  const line = add(element, "p", "billing-ledger " + (led.verified ? "verified" : "unverified"),
    "ledger: " + led.length + " records, head " + String(led.head || "").slice(0, 16) + "..., " +
    (led.roots || 0) + " signed roots, " + (led.verified ? "verified" : "NOT verified"));
  line.setAttribute("data-length", String(led.length));
  line.setAttribute("data-verified", String(!!led.verified));
  const counts = data.counts || {};
  const c = add(element, "p", "billing-counts",
    counts.customers + " customers, " + counts.tripped + " tripped, " + counts.alarm + " alarmed, " +
    counts.keep_power + " under 保电");
  for (const k of ["customers", "tripped", "alarm", "keep_power"]) {
    c.setAttribute("data-" + k.replace("_", "-"), String(counts[k]));
  }
  const table = add(element, "table", "billing-customers");
  const head = add(add(table, "thead"), "tr");
  const columns = ["customer", "meter", "balance (元)", "relay", "alarm", "保电", "last day", "charge (元)"];
  for (const h of columns) add(head, "th", null, h);
  const body = add(table, "tbody");
  for (const row of data.customers || []) {
    const tripped = row.relay === "open" || row.relay === "close_allowed";
    const tr = add(body, "tr", "customer" + (tripped ? " tripped" : "") + (row.alarm ? " alarm" : "") +
      (Number(row.balance_yuan) < 0 ? " overdrawn" : ""));
    tr.setAttribute("data-customer", row.customer_id);
    tr.setAttribute("data-relay", row.relay);
    const cells = [row.customer_id, row.meter_id, row.balance_yuan, row.relay,
                   row.alarm ? "level " + row.alarm : "", row.keep_power ? "保电" : "",
                   row.last_date || "", row.last_charge_yuan || ""];
    for (const v of cells) add(tr, "td", null, v);
  }
  const rec = add(element, "table", "billing-reconciliation");
  const rh = add(add(rec, "thead"), "tr");
  for (const h of ["date", "result", "difference (元)", "charges", "debits", "credits"]) {
    add(rh, "th", null, h);
  }
  const rb = add(rec, "tbody");
  for (const day of data.reconciliation || []) {
    const tr = add(rb, "tr", "day " + (day.ok ? "ok" : "difference"));
    tr.setAttribute("data-date", day.date);
    const cells = [day.date, day.ok ? "ok" : "DIFFERENCE", day.difference_yuan, day.charges_yuan,
                   day.debits_yuan, day.credits_yuan];
    for (const v of cells) add(tr, "td", null, v);
  }
}
"""


def panel_data(reader: ResultReader, query: Mapping[str, Sequence[str]]) -> dict[str, Any] | None:
    """The panel's data for the terminal asked for (``?terminal=``; else the first that sent billing)."""
    asked = query.get("terminal")
    terminal = asked[-1] if asked else None
    by_terminal = stored_bodies(reader, terminal)
    if not by_terminal:
        return None if terminal is None else data(terminal, [])
    name = terminal if terminal is not None else min(by_terminal)
    return data(name, by_terminal.get(name, []))


PANEL = Panel("billing", TITLE, data=panel_data, script=SCRIPT, order=40)

__all__ = ["PANEL", "SCRIPT", "TITLE", "data", "panel_data"]
