"""Signature current (特征电流) for topology identification: what a device injects and what the
units upstream of it report hearing -- the neutral data both meter protocols carry.

Layer: protocols (pure data). Must not import asyncio, serial, hal or runtime.

Source: the public topology firmware of a State Grid smart meter (烟台东方威思顿, Wasion group,
``topoApi.h`` / ``topoApp.c``, 2024; found in a code-search index, repository not resolved):

* a device injects a modulated current: a 16-bit signature code (fixed ``E9 AA`` in that
  firmware), bit width 600 ms, high pulse 400 ms, low pulse 800 ms, modulation frequency
  833 Hz (set in 0.01 Hz), i.e. a 9.6 s frame; the firmware lets a device send at most once
  every 3 minutes and sends at a scheduled time;
* a unit upstream (box terminal, branch unit, any three-phase meter) looks for the code on each
  phase's current at the 783 Hz and 883 Hz side bands; a detection is kept when both exceed
  0.15 A, and up to 4 detections make one "signature identification result" event
  (sub-status 77 of the meter's status, 698 event 4E07), cleared 15 minutes after the first;
* each detection records: the time, the phase it was heard on (0 unknown, 1..3 = A..C), the two
  side-band strengths S1 and S2 and the background noise (A), the code and 12 bytes of
  extended information (the detector's own, not the sender's).

The code does not say who sent it: the terminal knows from *when* -- it orders one injection
at a time per branch and attributes detections by time (``attribute``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_CODE = bytes.fromhex("E9AA")
BIT_MS = 600
HIGH_MS = 400
LOW_MS = 800
FREQUENCY_HZ = 833.0
EXT_INFO_BYTES = 12
MAX_DETECTIONS = 4  # per result event
FRAME_S = len(DEFAULT_CODE) * 8 * BIT_MS / 1000.0  # 9.6 s on the wire
MIN_INTERVAL_S = 180.0  # a device sends at most this often
RESULT_TIMEOUT_S = 900.0  # a result event closes this long after its first detection
MIN_STRENGTH_A = 0.15


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """How a device modulates its signature current (698 OI 4E08 attribute 4)."""

    bit_ms: int = BIT_MS
    high_ms: int = HIGH_MS
    low_ms: int = LOW_MS
    code: bytes = DEFAULT_CODE
    frequency_hz: float = FREQUENCY_HZ
    ext: bytes = b""


@dataclass(frozen=True, slots=True)
class Detection:
    """One signature heard by a unit: ``at`` by the unit's own clock (naive local time)."""

    at: datetime
    phase: int  # 0 unknown, 1..3 = A..C
    s1_a: float
    s2_a: float
    noise_a: float
    code: bytes = DEFAULT_CODE
    ext: bytes = b""

    @property
    def phase_name(self) -> str | None:
        return "ABC"[self.phase - 1] if 1 <= self.phase <= 3 else None


def attribute(
    detections: Sequence[Detection], sent_at: datetime, *, window: timedelta = timedelta(seconds=60)
) -> list[Detection]:
    """The detections that belong to an injection sent at ``sent_at``: heard from the start of
    its frame to ``window`` after it (clocks of terminal and unit may differ by seconds)."""
    lo = sent_at - timedelta(seconds=5)
    hi = sent_at + timedelta(seconds=FRAME_S) + window
    return [d for d in detections if lo <= d.at <= hi]


__all__ = [
    "BIT_MS",
    "DEFAULT_CODE",
    "EXT_INFO_BYTES",
    "FRAME_S",
    "FREQUENCY_HZ",
    "HIGH_MS",
    "LOW_MS",
    "MAX_DETECTIONS",
    "MIN_INTERVAL_S",
    "MIN_STRENGTH_A",
    "RESULT_TIMEOUT_S",
    "Detection",
    "SignalInfo",
    "attribute",
]
