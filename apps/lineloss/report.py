"""What the master station makes of the ``lineloss`` stream: the newest revision of every day.

Layer: apps (lineloss). Pure: takes the stream's message bodies in arrival order and returns the
one JSON object ``ttu cloud lineloss --json`` prints (issue 10):

    {"terminal", "days": [{"date", "scope", "supply_kwh", "sales_kwh", "loss_kwh", "loss_rate",
      "class", "coverage", ..., "partial"?}], "anomalies": [{"date", "kind", "target", "branch", "evidence",
      "confidence"}]}

and the series the dashboard draws. A later revision of a day replaces the earlier one whole
(late data reclassifies it); bodies that are not day messages, or malformed, are skipped.
Must not import the simulator or the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DAY_FIELDS = ("date", "scope", "supply_kwh", "sales_kwh", "loss_kwh", "loss_rate", "class", "coverage")
EXTRA_FIELDS = ("level", "branch", "pv_kwh", "economic", "reason", "customers", "read", "unread")


def newest_days(bodies: Iterable[Any]) -> dict[str, Mapping[str, Any]]:
    """Date -> the day message with the highest revision."""
    out: dict[str, Mapping[str, Any]] = {}
    for body in bodies:
        if not isinstance(body, Mapping) or body.get("type") != "day":
            continue
        date, revision = body.get("date"), body.get("revision")
        if not isinstance(date, str) or not isinstance(revision, int):
            continue
        known = out.get(date)
        if known is None or int(known["revision"]) <= revision:
            out[date] = body
    return out


def early_findings(bodies: Iterable[Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Date -> the anomalies the terminal's early looks sent, in order."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for body in bodies:
        if isinstance(body, Mapping) and body.get("type") == "anomaly" and isinstance(body.get("date"), str):
            out.setdefault(str(body["date"]), []).append(body)
    return out


def summary(terminal: str, bodies: Iterable[Any]) -> dict[str, Any]:
    """The ``ttu cloud lineloss --json`` object: days oldest first, station first within a day;
    a date's anomalies are its newest day message's, then the early ones it does not repeat."""
    bodies = list(bodies)
    days: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    early = early_findings(bodies)
    newest = newest_days(bodies)
    for date in sorted(set(newest) | set(early)):
        message = newest.get(date, {})
        rows = [r for r in message.get("days") or () if isinstance(r, Mapping)]
        rows.sort(key=lambda r: (r.get("level") != "station", str(r.get("scope"))))
        for r in rows:
            day = {k: r.get(k) for k in DAY_FIELDS}
            day["date"] = date
            day.update({k: r[k] for k in EXTRA_FIELDS if k in r})
            if message.get("partial"):  # the terminal first started during the day: the span counted
                day["partial"] = message["partial"]
            days.append(day)
        listed = [a for a in message.get("anomalies") or () if isinstance(a, Mapping)]
        seen = {(a.get("kind"), a.get("target")) for a in listed}
        listed += [a for a in early.get(date, ()) if (a.get("kind"), a.get("target")) not in seen]
        for a in listed:
            anomalies.append(
                {
                    "date": date,
                    "kind": a.get("kind"),
                    "target": a.get("target"),
                    "branch": a.get("branch"),
                    "evidence": a.get("evidence") or {},
                    "confidence": a.get("confidence"),
                }
            )
    return {"terminal": terminal, "days": days, "anomalies": anomalies}


def chart(terminal: str, bodies: Iterable[Any]) -> dict[str, Any]:
    """What the dashboard panel draws: the daily loss rate per scope (the station, every branch and
    every meter box with a box terminal) by date, each scope's level, the thresholds the terminal
    classified with, and the newest anomalies."""
    bodies = list(bodies)
    newest = newest_days(bodies)
    series: dict[str, list[list[Any]]] = {}
    levels: dict[str, str] = {}
    thresholds: Mapping[str, Any] = {}
    for date, message in sorted(newest.items()):
        thresholds = message.get("thresholds") or thresholds
        for r in message.get("days") or ():
            if isinstance(r, Mapping) and r.get("level") in ("station", "branch", "box"):
                scope = str(r.get("scope"))
                levels[scope] = str(r.get("level"))
                series.setdefault(scope, []).append([date, r.get("loss_rate"), r.get("class")])
    report = summary(terminal, bodies)
    return {
        "terminal": terminal,
        "dates": sorted(newest),
        # a partial day (the terminal first started during it): date -> {"from", "intervals"}
        "partial": {d: m["partial"] for d, m in sorted(newest.items()) if m.get("partial")},
        "series": series,
        "levels": levels,
        "thresholds": dict(thresholds),
        "anomalies": report["anomalies"][-50:][::-1],
    }


__all__ = ["DAY_FIELDS", "chart", "newest_days", "summary"]
