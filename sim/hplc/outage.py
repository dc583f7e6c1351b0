"""The outage (last-gasp, 停电上报) timing model of an HPLC network, as seen from the CCO.

Layer: sim. Pure arithmetic on times given by the caller (no clock, no I/O). GRID.md §3:

* a node losing power judges the outage for ``judgement_s`` (3 s), then its STA sends its first
  last-gasp frame after a random 0-200 ms delay (super-capacitor powered);
* neighbours merge what they hear for ``sta_aggregation_s`` (30 s) and the CCO collects for
  ``cco_aggregation_s`` (30 s) more: one window opens at the first STA frame and closes
  ``sta_aggregation_s + cco_aggregation_s`` later; every node whose frame arrived by then is in
  that window's report (AFN06 F5 power-off list); later ones open the next window;
* an outage shorter than the judgement (+ the STA delay) sends nothing (a dip);
* on restore, the node boots and rejoins (``restore_delay_s``), sends its power-on frame, and
  the CCO aggregates power-on frames for ``restore_aggregation_s`` before reporting;
* the CCO reports only the difference against what it already reported (a node reported off
  and not yet back is not reported off again);
* a share ``loss`` of last-gasp frames never reaches the CCO (a neighbour's super-capacitor ran
  out, noise): that node is in no power-off report, and so in no power-on report either.

``OutageModel.due(now)`` returns the reports whose window has closed; ``next_time()`` says when
to ask again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

POWER_OFF, POWER_ON = "power_off", "power_on"


@dataclass(frozen=True, slots=True)
class LastGaspTiming:
    judgement_s: float = 3.0
    sta_delay_s: tuple[float, float] = (0.0, 0.2)
    sta_aggregation_s: float = 30.0
    cco_aggregation_s: float = 30.0
    restore_delay_s: tuple[float, float] = (1.0, 5.0)
    restore_aggregation_s: float = 30.0

    @property
    def off_window_s(self) -> float:
        return self.sta_aggregation_s + self.cco_aggregation_s

    def __post_init__(self) -> None:
        for name in ("judgement_s", "sta_aggregation_s", "cco_aggregation_s", "restore_aggregation_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"last-gasp timing {name} must be >= 0")
        for name in ("sta_delay_s", "restore_delay_s"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"last-gasp timing {name}: need 0 <= low <= high, got {(lo, hi)}")


@dataclass(frozen=True, slots=True)
class OutageReport:
    """One aggregated report: ``first_frame`` = the window's first STA frame, ``at`` = report time."""

    kind: str  # POWER_OFF | POWER_ON
    addresses: tuple[str, ...]
    first_frame: float
    at: float
    sta_frames: tuple[float, ...] = ()  # per address, when its STA frame reached the CCO


@dataclass(slots=True)
class _Window:
    kind: str
    opened: float
    closes: float
    frames: dict[str, float] = field(default_factory=dict)


class OutageModel:
    """Which nodes are down, which STA frames are in flight, and which windows are open."""

    def __init__(self, *, timing: LastGaspTiming | None = None, seed: int = 0, loss: float = 0.0) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"last-gasp loss must be within 0..1, not {loss}")
        self.timing = timing or LastGaspTiming()
        self.loss = loss
        self.lost: list[tuple[str, float]] = []  # (address, outage time) of frames lost
        self._rng = np.random.default_rng([seed, 0x1A57])
        self._loss_rng = np.random.default_rng([seed, 0x1055])
        self._frames: dict[str, tuple[str, float]] = {}  # address -> (kind, when its STA frame arrives)
        self._windows: dict[str, _Window] = {}
        self._reported_off: set[str] = set()
        self._down: set[str] = set()
        self.dips = 0

    @property
    def down(self) -> frozenset[str]:
        return frozenset(self._down)

    def power_off(self, addresses: tuple[str, ...] | list[str], t: float) -> None:
        tm = self.timing
        self._advance(t)
        for a in addresses:
            if a in self._down:
                continue  # a repeated power-off of a node already off is dropped
            self._down.add(a)
            pending = self._frames.get(a)
            if pending is not None and pending[0] == POWER_ON:
                del self._frames[a]  # went down again before its power-on frame got out
                if a in self._reported_off:
                    continue  # the terminal still believes it is off: nothing new to report
            sent = t + tm.judgement_s + float(self._rng.uniform(*tm.sta_delay_s))
            if self.loss and self._loss_rng.random() < self.loss:
                self.lost.append((a, t))  # the node is down, but nobody hears its last gasp
                continue
            self._frames[a] = (POWER_OFF, sent)

    def power_on(self, addresses: tuple[str, ...] | list[str], t: float) -> None:
        tm = self.timing
        self._advance(t)
        for a in addresses:
            if a not in self._down:
                continue
            self._down.discard(a)
            pending = self._frames.get(a)
            if pending is not None and pending[0] == POWER_OFF and pending[1] > t:
                del self._frames[a]  # back before the STA judged an outage: a dip, nothing sent
                self.dips += 1
                continue
            if a not in self._reported_off and not self._in_window(a, POWER_OFF) and pending is None:
                continue
            self._frames[a] = (POWER_ON, t + float(self._rng.uniform(*tm.restore_delay_s)))

    def _in_window(self, address: str, kind: str) -> bool:
        w = self._windows.get(kind)
        return w is not None and address in w.frames

    def _advance(self, now: float) -> None:
        """Move STA frames that have arrived by ``now`` into (possibly new) windows."""
        tm = self.timing
        for a, (kind, t) in sorted(self._frames.items(), key=lambda kv: kv[1][1]):
            if t > now:
                continue
            w = self._windows.get(kind)
            if w is not None and t > w.closes:
                continue  # belongs to the next window, opened once this one is reported
            if w is None:
                span = tm.off_window_s if kind == POWER_OFF else tm.restore_aggregation_s
                w = self._windows[kind] = _Window(kind, t, t + span)
            w.frames[a] = t
            del self._frames[a]

    def next_time(self) -> float | None:
        """The next time something changes (a frame arrives or a window closes), if any."""
        times = [t for _, t in self._frames.values()] + [w.closes for w in self._windows.values()]
        return min(times) if times else None

    def due(self, now: float) -> list[OutageReport]:
        """Reports whose window closed by ``now``, oldest first."""
        out: list[OutageReport] = []
        while True:
            self._advance(now)
            off, on = self._windows.get(POWER_OFF), self._windows.get(POWER_ON)
            if off is not None and on is not None and off.frames.keys() & on.frames.keys():
                # A power-on must not overtake the power-off report it answers.
                on.closes = max(on.closes, off.closes)
            closed = [w for w in self._windows.values() if w.closes <= now]
            if not closed:
                return out
            w = min(closed, key=lambda x: (x.closes, x.kind != POWER_OFF))
            del self._windows[w.kind]
            if w.kind == POWER_OFF:
                news = [a for a in w.frames if a not in self._reported_off]
                self._reported_off.update(news)
            else:
                news = [a for a in w.frames if a in self._reported_off]
                self._reported_off.difference_update(news)
            if news:
                out.append(
                    OutageReport(w.kind, tuple(news), w.opened, w.closes, tuple(w.frames[a] for a in news))
                )
            if math.isinf(w.closes):
                return out


__all__ = ["POWER_OFF", "POWER_ON", "LastGaspTiming", "OutageModel", "OutageReport"]
