"""Bus messages and hal reads -> typed evidence, with the timing each source allows.

Layer: apps (outage), pure. ``Translator`` knows the message shapes of the terminal's other
parts (carrier events as the runtime publishes them, acquisition's readings, events, read
health and relay state) and how precise each source is in time (``Timing``), and nothing of
the classification. Every message shape it does not understand is counted in ``rejected``
and produces no evidence (a hostile or broken publisher must not crash the app).

Sources and their timing (GRID.md §3, PROTOCOLS.md §3.5):

* HPLC power-off list: each STA judged the loss (``judgement_s``) and sent within 0-200 ms; the
  STA and the CCO aggregated for ``hplc_aggregation_s`` (30 + 30 s) before the module reported
  it, so the loss began about ``judgement_s + hplc_aggregation_s`` before the report reached the
  hal, and at most ``judgement_s`` before.
* HPLC power-on list: the node rebooted (``hplc_boot_s``) and the CCO aggregated power-on
  frames for ``hplc_restore_s``.
* acquisition's readings carry the read cycle's time; a polled device (breaker, branch unit,
  box terminal) changed state somewhere within one ``device_poll_s`` before it was seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hal.interfaces import MetrologySnapshot, SupplyState

from .evidence import (
    Evidence,
    GroupSupply,
    MetersBack,
    MetersDark,
    PowerDownRecord,
    ReadResult,
    RecordsRead,
    RelayState,
    Source,
    Window,
)
from .members import PHASES, Group, Level, Members

TRANSFORMER = "transformer"  # acquisition's device id of the metrology unit's readings


@dataclass(frozen=True, slots=True)
class Timing:
    judgement_s: float = 3.0
    hplc_aggregation_s: float = 60.0
    hplc_sta_delay_s: float = 0.2
    hplc_restore_s: float = 30.0
    hplc_boot_s: tuple[float, float] = (1.0, 5.0)
    device_poll_s: float = 60.0
    voltage_lost_v: float = 66.0  # below 30 % of 220 V a phase counts as lost
    reading_max_age_s: float = 900.0  # older readings (curve catch-up, freezes) say nothing now


@dataclass(slots=True)
class Translator:
    members: Members
    timing: Timing = field(default_factory=Timing)
    rejected: int = 0

    # ---- HPLC (runtime: hplc/event/<kind>)

    def carrier(self, kind: str, payload: Any) -> list[Evidence]:
        if not isinstance(payload, Mapping) or kind not in ("power_off", "power_on"):
            return self._reject()
        received = _num(payload.get("ts"))
        addresses = payload.get("addresses")
        if received is None or not isinstance(addresses, list):
            return self._reject()
        extra = payload.get("extra")
        powered = extra.get("powered") if isinstance(extra, Mapping) else None
        meters: list[str] = []
        for a in addresses:
            if not isinstance(a, str):
                continue
            if isinstance(powered, Mapping) and a in powered and bool(powered[a]) != (kind == "power_on"):
                continue  # a collector's list: this node's own state byte says otherwise
            mid = self.members.meter_by_address(a)
            meters.append(mid if mid is not None else a)
        t = self.timing
        if kind == "power_off":
            lo = received - t.judgement_s - t.hplc_aggregation_s - t.hplc_sta_delay_s
            at = received - t.judgement_s - t.hplc_aggregation_s
            return [MetersDark(tuple(meters), Window(at, lo, received - t.judgement_s), received)]
        lo = received - t.hplc_restore_s - t.hplc_boot_s[1]
        hi = received - t.hplc_restore_s - t.hplc_boot_s[0]
        return [MetersBack(tuple(meters), Window((lo + hi) / 2, lo, hi), received)]

    # ---- acquisition: meter/<id>/event

    def meter_event(self, device: str, payload: Any, received: float) -> list[Evidence]:
        if not isinstance(payload, Mapping):
            return self._reject()
        kind = payload.get("kind")
        start = _num(payload.get("start"))
        if not isinstance(kind, str) or start is None:
            return self._reject()
        data = payload.get("data") if isinstance(payload.get("data"), Mapping) else {}
        assert isinstance(data, Mapping)
        source = str(payload.get("source") or device)
        if kind == "meter.power_down":
            end = _num(payload.get("end"))
            return [PowerDownRecord(source, start, end, received)]
        if kind in ("meter.relay_open", "meter.relay_closed"):
            cause = str(data.get("cause") or "unknown")
            return [RelayState(source, kind == "meter.relay_open", start, received, cause)]
        if kind in ("breaker.trip", "breaker.open", "breaker.closed"):
            branch = data.get("branch") or self.members.breakers.get(source)
            if not isinstance(branch, str) or not branch:
                return []
            g = Group("branch", branch)
            powered = kind == "breaker.closed"
            # a trip carries the breaker's own trip time; a state change was seen by a poll
            when = Window.exact(start) if kind == "breaker.trip" else self._polled(start)
            out: list[Evidence] = [GroupSupply(g, powered, when, received, "breaker", sampled=False)]
            seen = _num(data.get("seen_at"))
            if kind == "breaker.trip" and data.get("closed") is True and seen is not None:
                # closed again by the time it was polled: back somewhere in between (how long it
                # was open the meters' own records will tell; the breaker cannot)
                back = Window.between(start, max(seen, start), at=start)
                out.append(GroupSupply(g, True, back, received, "breaker", sampled=False))
            return out
        return []

    # ---- acquisition: meter/<id>/reading (a list of Reading rows)

    def readings(self, device: str, rows: Any, received: float) -> list[Evidence]:
        if not isinstance(rows, list) or not rows:
            return self._reject()
        ts = max(
            (t for r in rows if isinstance(r, Mapping) and (t := _num(r.get("ts"))) is not None), default=None
        )
        if ts is None:
            return self._reject()
        if received - ts > self.timing.reading_max_age_s:
            return []  # a curve point or a freeze from the meter's memory: old news
        volts = _phase_volts(rows)
        if device == TRANSFORMER:
            return self.phase_volts(volts, ts, received, source="metrology", sampled=True)
        watchers: tuple[tuple[Level, Source, Mapping[str, str]], ...] = (
            ("branch", "branch_unit", self.members.branch_units),
            ("box", "box_terminal", self.members.box_terminals),
        )
        for level, source, watched in watchers:  # a device that watches one group's voltage
            if device in watched and volts:
                g = Group(level, watched[device])
                return [GroupSupply(g, self._any_live(volts), self._polled(ts), received, source)]
        if device in self.members.meters:
            return [ReadResult(device, True, ts, received)]
        return []

    # ---- acquisition: meter/<id>/health and meter/<id>/relay

    def health(self, device: str, payload: Any, received: float) -> list[Evidence]:
        said = _flag(payload, "online", received)
        if said is None:
            return self._reject()
        online, at = said
        if device not in self.members.meters:
            return []
        src: Source = "hplc" if payload.get("port") == "hplc" else "rs485"
        return [ReadResult(device, online, at, received, src)]

    def relay(self, device: str, payload: Any, received: float) -> list[Evidence]:
        said = _flag(payload, "open", received)
        if said is None:
            return self._reject()
        is_open, at = said
        return [RelayState(device, is_open, at, received, str(payload.get("cause") or "unknown"))]

    def probe_reply(self, reply: Any, received: float, *, records: bool = False) -> list[Evidence]:
        """``acquisition/probe`` reply ``{"at", "answered": [...], "silent": [...]}``; with
        ``records`` the meters that answered also had their power-down records read."""
        if not isinstance(reply, Mapping):
            return self._reject()
        at = _num(reply.get("at")) or received
        out: list[Evidence] = []
        for key, ok in (("answered", True), ("silent", False)):
            for mid in reply.get(key) or []:
                if isinstance(mid, str) and mid in self.members.meters:
                    out.append(ReadResult(mid, ok, at, received))
                    if ok and records:
                        out.append(RecordsRead(mid, at, received))
        return out

    # ---- own hal reads

    def metrology(self, snap: MetrologySnapshot, received: float) -> list[Evidence]:
        v = snap.voltage
        volts = {p: x for p, x in zip(PHASES, (v.a, v.b, v.c), strict=True) if x is not None}
        return self.phase_volts(volts, snap.ts, received, source="metrology", sampled=True)

    def phase_volts(
        self, volts: Mapping[str, float], at: float, received: float, *, source: Source, sampled: bool
    ) -> list[Evidence]:
        if not volts:
            return []
        when = Window.exact(at)
        out: list[Evidence] = [
            GroupSupply(Group("phase", p), v >= self.timing.voltage_lost_v, when, received, source, sampled)
            for p, v in sorted(volts.items())
        ]
        if len(volts) == len(PHASES):
            station = self.members.station_group
            out.append(GroupSupply(station, self._any_live(volts), when, received, source, sampled))
        return out

    def supply(self, state: SupplyState, received: float, *, when: Window | None = None) -> Evidence:
        w = when or Window.exact(state.since)
        return GroupSupply(
            self.members.station_group, state.powered, w, received, "power_monitor", sampled=False
        )

    # ---- helpers

    def _polled(self, seen: float) -> Window:
        return Window.between(seen - self.timing.device_poll_s, seen)

    def _any_live(self, volts: Mapping[str, float]) -> bool:
        return any(v >= self.timing.voltage_lost_v for v in volts.values())

    def _reject(self) -> list[Evidence]:
        self.rejected += 1
        return []


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x)


def _flag(payload: Any, name: str, received: float) -> tuple[bool, float] | None:
    """``(payload[name], payload["at"])`` of a message that states one flag at a time (the time
    it was received when it gives none); None when it is not such a message."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get(name), bool):
        return None
    return bool(payload[name]), _num(payload.get("at")) or received


def _phase_volts(rows: Sequence[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows:
        if not isinstance(r, Mapping):
            continue
        q, v = r.get("quantity"), _num(r.get("value"))
        if isinstance(q, str) and q.startswith("voltage.") and v is not None:
            p = q.rsplit(".", 1)[-1].upper()
            if p in PHASES:
                out[p] = v
    return out


__all__ = ["TRANSFORMER", "Timing", "Translator"]
