"""An anomaly: a cause of abnormal loss found on a day, with its evidence and confidence.

Layer: apps (lineloss). Pure data. ``kind`` is one of ``KINDS``; ``target`` names what to send
staff to (a meter id, the 总表, a branch or box scope); ``branch`` where it is (None: the station
as a whole). ``evidence`` is a small JSON object a utility engineer can check by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

THEFT = "theft"
METER_SLOW = "meter_slow"
METER_STOPPED = "meter_stopped"
CT_RATIO = "ct_ratio"
ARCHIVE = "archive"
COMMS = "comms"
KINDS = (THEFT, METER_SLOW, METER_STOPPED, CT_RATIO, ARCHIVE, COMMS)


@dataclass(frozen=True, slots=True)
class Anomaly:
    date: str  # local date, ISO (YYYY-MM-DD)
    kind: str
    target: str
    branch: str | None
    confidence: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"anomaly kind {self.kind!r} is not one of {KINDS}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence {self.confidence} is outside 0..1")

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "kind": self.kind,
            "target": self.target,
            "branch": self.branch,
            "evidence": self.evidence,
            "confidence": round(self.confidence, 3),
        }


def squash(x: float, half: float) -> float:
    """0 at x <= 0, 0.5 at ``half``, towards 1 beyond: a saturating score for evidence strength."""
    return 0.0 if x <= 0 else 1.0 - math.exp(-x * math.log(2.0) / half)


def rounded(x: float, digits: int = 4) -> float:
    return float(round(x, digits))


__all__ = [
    "ARCHIVE",
    "COMMS",
    "CT_RATIO",
    "KINDS",
    "METER_SLOW",
    "METER_STOPPED",
    "THEFT",
    "Anomaly",
    "rounded",
    "squash",
]
