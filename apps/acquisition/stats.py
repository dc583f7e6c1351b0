"""Reading success rate (采集成功率) per meter and per station area.

Layer: apps (acquisition). Pure bookkeeping: counts attempts and successes per task
kind and meter, and the last cycle's timing. No I/O.

Definitions (as utility reports use them):
* a meter's success rate for a task kind = successful reads / scheduled reads;
* the station's daily success rate = meters with a successful daily freeze (or, before
  the first freeze, a successful realtime read) today / meters in the archive;
* a meter is online when its last read attempt succeeded;
* a transport's success rate (RS-485 port name, or "hplc") = the same ratio over its meters.

``stats_parts`` cuts the ``acquisition.stats`` command's reply into parts that each fit one
upward message (a station area of 2,000 meters has ~300 kB of per-meter rows).
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from protocols.cloud import MAX_MESSAGE_BYTES, json_size, page_budget, pages

#: a command reply wraps its result in its own envelope (id, ok): room left for it
REPLY_LIMIT = MAX_MESSAGE_BYTES - (4 << 10)
#: meters per part of the ``acquisition.stats`` reply: cut by count (so the parts asked one after
#: the other cover each meter once while the figures change), by size only when rows are huge
METERS_PER_PART = 500


#: the kinds of read counted in the tracker's columns; any other kind goes to a meter's ``other`` dict
KINDS = ("realtime", "curve", "freeze", "event")
_KIND = {k: i for i, k in enumerate(KINDS)}
_ROW = 2 * len(KINDS)  # a meter's counts: attempts of each kind, then successes
_ONLINE = (None, False, True)  # a meter's ``online`` byte indexes this
_NO_COUNTS = array("Q", bytes(8 * _ROW))


class MeterStats:
    """One meter's reads, as the tracker holds them now (a view: attempts and successes per kind
    of read, online, last success). Made on demand, not kept: the tracker holds every meter's
    figures in shared columns (an object, an array and a float a meter were ~300 bytes; at
    2,400 meters 0.7 MB)."""

    __slots__ = ("_id", "_row", "_tracker")

    def __init__(self, tracker: SuccessTracker, meter_id: str) -> None:
        self._tracker = tracker
        self._id = meter_id
        self._row = tracker._rows[meter_id]

    @property
    def online(self) -> bool | None:
        return _ONLINE[self._tracker._online[self._row]]

    @property
    def last_ok(self) -> float | None:
        ts = self._tracker._last_ok[self._row]
        return None if math.isnan(ts) else ts

    def tried(self, kind: str | None = None) -> int:
        """Attempts of ``kind`` (None: every kind)."""
        return self._tracker._sum(self._id, self._row, kind, 0)

    def succeeded(self, kind: str | None = None) -> int:
        """Successes of ``kind`` (None: every kind)."""
        return self._tracker._sum(self._id, self._row, kind, 1)

    @property
    def attempts(self) -> dict[str, int]:
        """Attempts per kind tried at least once."""
        return {k: self.tried(k) for k in self._kinds()}

    @property
    def successes(self) -> dict[str, int]:
        """Successes per kind tried at least once."""
        return {k: self.succeeded(k) for k in self._kinds()}

    def _kinds(self) -> list[str]:
        counts = self._tracker._counts
        base = self._row * _ROW
        return [k for i, k in enumerate(KINDS) if counts[base + i]] + list(
            self._tracker._other.get(self._id, {})
        )

    def rate(self, kind: str | None = None) -> float | None:
        attempts = self.tried(kind)
        return None if attempts == 0 else self.succeeded(kind) / attempts


@dataclass(slots=True)
class CycleTiming:
    """The last realtime cycle: measured seconds vs the wire-time lower bound."""

    started: float = 0.0
    seconds: float = 0.0
    wire_bound_seconds: float = 0.0
    reads: int = 0


class SuccessTracker:
    """Per-meter and station-area reading success.

    Held by columns, a row per meter (``_rows``, in archive order): the counts of ``KINDS``
    (``_ROW`` a meter, one array), online (a byte: 0 unknown, 1 no, 2 yes), the last success
    (a double, NaN for none), answered today (a byte) and the transport (a byte indexing
    ``_transports``, 0 for none). Kinds outside ``KINDS`` are rare: a dict of the meters that
    have them."""

    def __init__(self, meter_ids: list[str], transports: dict[str, str] | None = None) -> None:
        self._rows: dict[str, int] = {}
        self._counts = array("Q")
        self._online = bytearray()
        self._last_ok = array("d")
        self._day_ok = bytearray()
        self._transport_of = bytearray()
        self._transports: list[str] = []  # transport names; a row's byte is its index + 1
        self._other: dict[str, dict[str, list[int]]] = {}  # meter -> kind -> [attempts, successes]
        self.cycle = CycleTiming()
        self.reset_meters(meter_ids, transports)

    def _add_row(self, meter_id: str) -> int:
        row = self._rows[meter_id] = len(self._rows)
        self._counts.extend(_NO_COUNTS)
        self._online.append(0)
        self._last_ok.append(math.nan)
        self._day_ok.append(0)
        self._transport_of.append(0)
        return row

    def reset_meters(self, meter_ids: list[str], transports: dict[str, str] | None = None) -> None:
        """Follow an archive replacement: keep history of meters that stay."""
        old_rows, counts, online, last_ok, day_ok = (
            self._rows, self._counts, self._online, self._last_ok, self._day_ok
        )  # fmt: skip
        self._rows, self._counts, self._online, self._last_ok, self._day_ok = (
            {}, array("Q"), bytearray(), array("d"), bytearray()
        )  # fmt: skip
        self._transport_of = bytearray()
        for meter_id in meter_ids:
            if meter_id in self._rows:
                continue
            row = self._add_row(meter_id)
            old = old_rows.get(meter_id)
            if old is not None:
                self._counts[row * _ROW : (row + 1) * _ROW] = counts[old * _ROW : (old + 1) * _ROW]
                self._online[row] = online[old]
                self._last_ok[row] = last_ok[old]
                self._day_ok[row] = day_ok[old]
        self._other = {m: kinds for m, kinds in self._other.items() if m in self._rows}
        self._transports = []
        index: dict[str, int] = {}
        for meter_id, transport in (transports or {}).items():
            at = self._rows.get(meter_id)
            if at is None:
                continue
            if transport not in index:
                if len(index) == 255:
                    raise ValueError("more than 255 transports")
                index[transport] = len(index) + 1
                self._transports.append(transport)
            self._transport_of[at] = index[transport]

    def record(self, meter_id: str, kind: str, ok: bool, ts: float) -> tuple[bool, bool]:
        """Count one scheduled read. Returns (went_offline, came_back) edges for logging."""
        row = self._rows.get(meter_id)
        if row is None:
            row = self._add_row(meter_id)
        i = _KIND.get(kind)
        if i is None:
            pair = self._other.setdefault(meter_id, {}).setdefault(kind, [0, 0])
            pair[0] += 1
            pair[1] += ok
        else:
            self._counts[row * _ROW + i] += 1
            if ok:
                self._counts[row * _ROW + len(KINDS) + i] += 1
        was_online = _ONLINE[self._online[row]]
        if ok:
            self._last_ok[row] = ts
            self._day_ok[row] = 1
        self._online[row] = 2 if ok else 1
        return (was_online is not False and not ok, was_online is False and ok)

    def _sum(self, meter_id: str, row: int, kind: str | None, which: int) -> int:
        """Attempts (``which`` 0) or successes (1) of one meter's ``kind`` (None: every kind)."""
        n = len(KINDS)
        base = row * _ROW + which * n
        other = self._other.get(meter_id)
        if kind is None:
            return sum(self._counts[base : base + n]) + sum(p[which] for p in (other or {}).values())
        i = _KIND.get(kind)
        if i is None:
            return other[kind][which] if other is not None and kind in other else 0
        return self._counts[base + i]

    def _station_sum(self, kind: str | None, which: int) -> int:
        n = len(KINDS)
        if kind is None:
            columns = sum(sum(self._counts[which * n + i :: _ROW]) for i in range(n))
            return columns + sum(p[which] for kinds in self._other.values() for p in kinds.values())
        i = _KIND.get(kind)
        if i is None:
            return sum(kinds[kind][which] for kinds in self._other.values() if kind in kinds)
        return sum(self._counts[which * n + i :: _ROW])

    def new_day(self) -> None:
        self._day_ok = bytearray(len(self._rows))

    def meter(self, meter_id: str) -> MeterStats:
        return MeterStats(self, meter_id)

    @property
    def meters_total(self) -> int:
        return len(self._rows)

    @property
    def meters_online(self) -> int:
        return self._online.count(2)

    def station_rate(self, kind: str | None = None) -> float | None:
        attempts = self._station_sum(kind, 0)
        successes = self._station_sum(kind, 1)
        return None if attempts == 0 else successes / attempts

    def _transport(self, row: int) -> str | None:
        index = self._transport_of[row]
        return self._transports[index - 1] if index else None

    def transport_rates(self) -> dict[str, float | None]:
        """Success rate per transport (every kind of read), None where nothing was tried yet."""
        attempts: dict[str, int] = defaultdict(int)
        successes: dict[str, int] = defaultdict(int)
        for meter_id, row in self._rows.items():
            transport = self._transport(row) or "?"
            attempts[transport] += self._sum(meter_id, row, None, 0)
            successes[transport] += self._sum(meter_id, row, None, 1)
        return {t: (successes[t] / n if n else None) for t, n in sorted(attempts.items())}

    def daily_rate(self) -> float | None:
        return None if not self._rows else self._day_ok.count(1) / len(self._rows)

    def summary(self) -> dict[str, Any]:
        return {
            "meters_total": self.meters_total,
            "meters_online": self.meters_online,
            "success_rate": self.station_rate(),
            "success_rate_realtime": self.station_rate("realtime"),
            "success_rate_curve": self.station_rate("curve"),
            "success_rate_by_transport": self.transport_rates(),
            "daily_success_rate": self.daily_rate(),
            "cycle_seconds": self.cycle.seconds,
            "wire_bound_seconds": self.cycle.wire_bound_seconds,
            "cycle_reads": self.cycle.reads,
        }

    def per_meter(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for meter_id, row in self._rows.items():
            attempts = self._sum(meter_id, row, None, 0)
            last_ok = self._last_ok[row]
            rows[meter_id] = {
                "online": _ONLINE[self._online[row]],
                "success_rate": None if attempts == 0 else self._sum(meter_id, row, None, 1) / attempts,
                "last_ok": None if math.isnan(last_ok) else last_ok,
                "transport": self._transport(row),
            }
        return rows


def stats_parts(
    head: dict[str, Any], meters: dict[str, dict[str, Any]], *, limit: int = REPLY_LIMIT
) -> list[dict[str, Any]]:
    """The ``acquisition.stats`` reply as ``parts`` results: each ``{**head, "meters": {...a slice
    of the per-meter rows...}, "part": i, "parts": n}`` of at most ``limit`` bytes of JSON. The
    head (station summary, counters, route) is bounded; the rows are cut by ``METERS_PER_PART``
    and by size. ``head`` must not hold ``meters``, ``part`` or ``parts``."""
    budget = page_budget({**head, "meters": {}}, limit=limit)
    chunks = pages(
        meters.items(),
        budget=budget,
        size=lambda row: json_size(row[0]) + 1 + json_size(row[1]),  # "id":{...}
        what="meter row",
        max_items=METERS_PER_PART,
    )
    return [
        {**head, "meters": dict(chunk), "part": i, "parts": len(chunks)} for i, chunk in enumerate(chunks)
    ]
