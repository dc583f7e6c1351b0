"""The points line loss keeps: each meter's curve points and daily freezes, per local day.

Layer: apps (lineloss). Pure (no bus, no store): the service feeds it the rows acquisition
publishes (``Reading.to_json`` dicts) and asks for a day's ``DayReadings`` in a layout's order.
Days are local (the station's time zone): point k of day D is at local midnight + k x 15 min,
k = 0..96, so the point at midnight ends one day and starts the next. A daily freeze at a
midnight likewise ends one day and starts the next.

Which rows count:

* curve (``meter/<id>/curve``): energy registers, phase voltages, currents, active power and
  power factor at 15-min points (also caught-up ones, 补抄);
* freeze (``meter/<id>/freeze``): ``daily.energy.active.import.total`` / ``...export.total``;
* the metrology unit (device ``transformer``, realtime rows): its energy registers at 15-min
  points, the 总表's independent reference.

Rows off the 15-min grid, of unknown quantities or malformed are skipped and counted. Must not
compute anything but the V x I x PF of a point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .energy import INTERVAL_S, INTERVALS_PER_DAY, DayReadings, FArray

POINTS = INTERVALS_PER_DAY + 1
CURVE_QUANTITIES = {
    "energy.active.import.total": "forward",
    "energy.active.export.total": "reverse",
    "voltage.a": "va",
    "voltage.b": "vb",
    "voltage.c": "vc",
    "current.a": "ia",
    "current.b": "ib",
    "current.c": "ic",
    "power.active.total": "p",
    "power_factor.total": "pf",
}
FREEZE_QUANTITIES = {
    "daily.energy.active.import.total": "forward",
    "daily.energy.active.export.total": "reverse",
}
METROLOGY = "transformer"


@dataclass
class MeterDay:
    """One meter's points of one local day (NaN where not read)."""

    values: dict[str, FArray] = field(default_factory=dict)  # curve item -> (97,)
    freeze: dict[str, FArray] = field(default_factory=dict)  # forward / reverse -> (2,)

    def curve(self, item: str) -> FArray:
        a = self.values.get(item)
        if a is None:
            a = self.values[item] = np.full(POINTS, np.nan)
        return a

    def frozen(self, item: str) -> FArray:
        a = self.freeze.get(item)
        if a is None:
            a = self.freeze[item] = np.full(2, np.nan)
        return a

    def power(self) -> FArray:
        """V x I x |PF| summed over the phases, signed like the active power, kW; the active
        power itself where voltage or current is missing."""
        v = self.values
        total = np.zeros(POINTS)
        seen = np.zeros(POINTS, dtype=bool)
        pf = np.abs(v["pf"]) if "pf" in v else None
        for ph in "abc":
            volts, amps = v.get("v" + ph), v.get("i" + ph)
            if volts is None or amps is None or pf is None:
                continue
            part = volts * np.abs(amps) * pf / 1000.0
            ok = np.isfinite(part)
            total[ok] += part[ok]
            seen |= ok
        p = v.get("p")
        out = np.where(seen, total, np.nan)
        if p is not None:
            out = np.where(seen, np.copysign(out, np.where(np.isfinite(p), p, 1.0)), p)
        return out


@dataclass
class Book:
    """Points per local date and meter; ``version`` of a date grows with every change to it."""

    tz: ZoneInfo
    keep_days: int = 8
    days: dict[date, dict[str, MeterDay]] = field(default_factory=dict)
    version: dict[date, int] = field(default_factory=dict)
    skipped: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {"curve": 0, "freeze": 0, "metrology": 0})

    def midnight(self, d: date) -> float:
        return datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()

    def locate(self, ts: float) -> tuple[date, int] | None:
        """(local date, point index) of a 15-min point, None off the grid."""
        local = datetime.fromtimestamp(ts, self.tz)
        d = local.date()
        k = (ts - self.midnight(d)) / INTERVAL_S
        if abs(k - round(k)) > 1e-6 or not 0 <= round(k) < INTERVALS_PER_DAY:
            return None
        return d, round(k)

    def _slot(self, d: date, meter: str) -> MeterDay:
        return self.days.setdefault(d, {}).setdefault(meter, MeterDay())

    def _touch(self, d: date) -> None:
        self.version[d] = self.version.get(d, 0) + 1

    def add(self, kind: str, device: str, rows: Iterable[Any]) -> set[date]:
        """Take a batch of reading rows of ``kind`` (curve | freeze | realtime); the dates changed."""
        changed: set[date] = set()
        for row in rows:
            parsed = _parse(row)
            if parsed is None:
                self.skipped += 1
                continue
            quantity, value, ts = parsed
            if kind == "freeze":
                item = FREEZE_QUANTITIES.get(quantity)
            elif kind == "curve" or (kind == "realtime" and device == METROLOGY):
                item = CURVE_QUANTITIES.get(quantity)
            else:
                item = None
            place = self.locate(ts) if item is not None else None
            if item is None or place is None or (kind == "freeze" and place[1] != 0):
                self.skipped += 1
                continue
            d, k = place
            if kind == "freeze":
                self._slot(d, device).frozen(item)[0] = value
                self._slot(d - timedelta(days=1), device).frozen(item)[1] = value
                changed |= {d, d - timedelta(days=1)}
            else:
                self._slot(d, device).curve(item)[k] = value
                changed.add(d)
                if k == 0:  # midnight: also the last point of the day before
                    self._slot(d - timedelta(days=1), device).curve(item)[INTERVALS_PER_DAY] = value
                    changed.add(d - timedelta(days=1))
            self.counters["metrology" if device == METROLOGY and kind != "freeze" else kind] += 1
        for d in changed:
            self._touch(d)
        self._prune()
        return changed

    def _prune(self) -> None:
        if len(self.days) <= self.keep_days:
            return
        for d in sorted(self.days)[: len(self.days) - self.keep_days]:
            del self.days[d]
            self.version.pop(d, None)

    def readings(self, d: date, meters: Sequence[str]) -> DayReadings:
        """Day ``d`` for ``meters`` in that order (the metrology unit's rows from ``transformer``)."""
        out = DayReadings.empty(self.midnight(d), len(meters))
        points: Mapping[str, MeterDay] = self.days.get(d, {})
        for i, meter in enumerate(meters):
            md = points.get(meter)
            if md is None:
                continue
            for item, target in (("forward", out.curve_forward), ("reverse", out.curve_reverse)):
                if item in md.values:
                    target[i] = md.values[item]
                if item in md.freeze:
                    (out.freeze_forward if item == "forward" else out.freeze_reverse)[i] = md.freeze[item]
            out.curve_power[i] = md.power()
            for p, ph in enumerate("abc"):
                if "v" + ph in md.values:
                    out.curve_voltage[i, :, p] = md.values["v" + ph]
        metrology = points.get(METROLOGY)
        if metrology is not None:
            out.metrology_forward[:] = metrology.values.get("forward", out.metrology_forward)
            out.metrology_reverse[:] = metrology.values.get("reverse", out.metrology_reverse)
        return out


def _parse(row: Any) -> tuple[str, float, float] | None:
    if not isinstance(row, Mapping):
        return None
    quantity, value, ts = row.get("quantity"), row.get("value"), row.get("ts")
    if not isinstance(quantity, str) or row.get("quality") == "invalid":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return None
    return quantity, float(value), float(ts)


__all__ = ["CURVE_QUANTITIES", "FREEZE_QUANTITIES", "METROLOGY", "Book", "MeterDay"]
