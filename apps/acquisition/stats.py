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


#: the kinds of read counted in a meter's array; any other kind goes to its ``other`` dict
KINDS = ("realtime", "curve", "freeze", "event")
_KIND = {k: i for i, k in enumerate(KINDS)}


class MeterStats:
    """One meter's reads: attempts and successes per kind of read, online, last success. The
    counts of ``KINDS`` are one array (two dicts a meter were ~370 bytes; at 2,400 meters 0.9 MB)."""

    __slots__ = ("_counts", "_other", "last_ok", "online")

    def __init__(self) -> None:
        self._counts = array("Q", bytes(16 * len(KINDS)))  # attempts of each kind, then successes
        self._other: dict[str, list[int]] | None = None  # kind -> [attempts, successes]
        self.online: bool | None = None
        self.last_ok: float | None = None

    def count(self, kind: str, ok: bool) -> None:
        """One scheduled read of ``kind``."""
        i = _KIND.get(kind)
        if i is None:
            if self._other is None:
                self._other = {}
            pair = self._other.setdefault(kind, [0, 0])
            pair[0] += 1
            pair[1] += ok
            return
        self._counts[i] += 1
        if ok:
            self._counts[len(KINDS) + i] += 1

    def tried(self, kind: str | None = None) -> int:
        """Attempts of ``kind`` (None: every kind)."""
        return self._sum(kind, 0)

    def succeeded(self, kind: str | None = None) -> int:
        """Successes of ``kind`` (None: every kind)."""
        return self._sum(kind, 1)

    def _sum(self, kind: str | None, which: int) -> int:
        n = len(KINDS)
        other = self._other or {}
        if kind is None:
            return sum(self._counts[which * n : (which + 1) * n]) + sum(p[which] for p in other.values())
        i = _KIND.get(kind)
        if i is None:
            return other[kind][which] if kind in other else 0
        return self._counts[which * n + i]

    @property
    def attempts(self) -> dict[str, int]:
        """Attempts per kind tried at least once."""
        return {k: self.tried(k) for k in self._kinds()}

    @property
    def successes(self) -> dict[str, int]:
        """Successes per kind tried at least once."""
        return {k: self.succeeded(k) for k in self._kinds()}

    def _kinds(self) -> list[str]:
        return [k for i, k in enumerate(KINDS) if self._counts[i]] + list(self._other or {})

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
    """Per-meter and station-area reading success."""

    def __init__(self, meter_ids: list[str], transports: dict[str, str] | None = None) -> None:
        self._meters = {meter_id: MeterStats() for meter_id in meter_ids}
        self._transport = dict(transports or {})
        self._day_ok: set[str] = set()
        self.cycle = CycleTiming()

    def reset_meters(self, meter_ids: list[str], transports: dict[str, str] | None = None) -> None:
        """Follow an archive replacement: keep history of meters that stay."""
        self._meters = {m: self._meters.get(m, MeterStats()) for m in meter_ids}
        self._transport = {m: t for m, t in (transports or {}).items() if m in self._meters}
        self._day_ok &= set(meter_ids)

    def record(self, meter_id: str, kind: str, ok: bool, ts: float) -> tuple[bool, bool]:
        """Count one scheduled read. Returns (went_offline, came_back) edges for logging."""
        stats = self._meters.setdefault(meter_id, MeterStats())
        stats.count(kind, ok)
        was_online = stats.online
        if ok:
            stats.last_ok = ts
            self._day_ok.add(meter_id)
        stats.online = ok
        return (was_online is not False and not ok, was_online is False and ok)

    def new_day(self) -> None:
        self._day_ok.clear()

    def meter(self, meter_id: str) -> MeterStats:
        return self._meters[meter_id]

    @property
    def meters_total(self) -> int:
        return len(self._meters)

    @property
    def meters_online(self) -> int:
        return sum(1 for s in self._meters.values() if s.online)

    def station_rate(self, kind: str | None = None) -> float | None:
        attempts = sum(s.tried(kind) for s in self._meters.values())
        successes = sum(s.succeeded(kind) for s in self._meters.values())
        return None if attempts == 0 else successes / attempts

    def transport_rates(self) -> dict[str, float | None]:
        """Success rate per transport (every kind of read), None where nothing was tried yet."""
        attempts: dict[str, int] = defaultdict(int)
        successes: dict[str, int] = defaultdict(int)
        for meter_id, stats in self._meters.items():
            transport = self._transport.get(meter_id, "?")
            attempts[transport] += stats.tried()
            successes[transport] += stats.succeeded()
        return {t: (successes[t] / n if n else None) for t, n in sorted(attempts.items())}

    def daily_rate(self) -> float | None:
        return None if not self._meters else len(self._day_ok) / len(self._meters)

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
        return {
            meter_id: {
                "online": s.online,
                "success_rate": s.rate(),
                "last_ok": s.last_ok,
                "transport": self._transport.get(meter_id),
            }
            for meter_id, s in self._meters.items()
        }


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
