"""The identification result: per meter phase / branch / box with confidence, the archive's
value, a status and the evidence; plus the meters our network has but the archive lacks.

Layer: apps (topology), pure data with its JSON form (the body of stream ``topology``, what
``ttu cloud topology --json`` prints; the retained ``topology/result`` on the bus is that body
with only the meters not confirmed, without their ``dimensions`` and ``evidence``:
``service.retained_body``); ``Labels``, what an incremental identification starts from. Must
not compute anything.

Status of a meter:

* ``foreign``: fed by another transformer (户变关系错误), by at least two independent lines of
  evidence (its energy is not in our balances, its voltage follows none of our phases, our
  carrier module does not hear it);
* ``corrected``: some dimension differs from the archive and the evidence is sure enough;
* ``unresolved``: some dimension could not be settled (too little data or evidence);
* ``confirmed``: every dimension agrees with the archive, surely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES = ("confirmed", "corrected", "foreign", "unresolved")
DIMENSIONS = ("phase", "branch", "box")


#: a result too big for one upward message goes up as parts cut over these lists
#: (``protocols.cloud.paged_lists``; ~0.5-1 kB a meter, so from a few hundred meters on)
PAGED = ("meters", "missing")


@dataclass(frozen=True, slots=True)
class Dimension:
    """One dimension of one meter: identified value, confidence, archive value, outcome."""

    value: str | None
    confidence: float
    archive: str | None
    outcome: str  # confirmed | corrected | unresolved
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "confidence": round(self.confidence, 4),
            "archive": self.archive,
            "outcome": self.outcome,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class MeterResult:
    meter_id: str
    address: str
    status: str
    phase: Dimension
    branch: Dimension
    box: Dimension
    evidence: dict[str, Any] = field(default_factory=dict)  # meter-level (foreign test, data)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}")

    @property
    def confidence(self) -> float:
        return min(self.phase.confidence, self.branch.confidence, self.box.confidence)

    def dimension(self, name: str) -> Dimension:
        if name not in DIMENSIONS:
            raise KeyError(name)
        value: Dimension = getattr(self, name)
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "meter_id": self.meter_id,
            "address": self.address,
            "phase": self.phase.value,
            "branch": self.branch.value,
            "box": self.box.value,
            "confidence": round(self.confidence, 4),
            "status": self.status,
            "archive": {d: self.dimension(d).archive for d in DIMENSIONS},
            "dimensions": {d: self.dimension(d).to_json() for d in DIMENSIONS},
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class MissingMeter:
    """A meter on our network that the archive lacks. ``address`` is None for energy that no
    listed meter explains (an unlisted meter or unmetered load behind a unit)."""

    address: str | None
    evidence: dict[str, Any]
    phase: str | None = None
    branch: str | None = None
    box: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "evidence": self.evidence}
        for key in ("phase", "branch", "box"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True, slots=True)
class TopologyResult:
    terminal: str
    computed_at: float
    days: float
    window: tuple[float, float]
    meters: tuple[MeterResult, ...]
    missing: tuple[MissingMeter, ...]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "computed_at": self.computed_at,
            "days": round(self.days, 3),
            "window": list(self.window),
            "meters": [m.to_json() for m in self.meters],
            "missing": [m.to_json() for m in self.missing],
            "summary": self.summary,
        }

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for m in self.meters:
            out[m.status] += 1
        return out


@dataclass(frozen=True, slots=True)
class Labels:
    """The labels of a result, what an incremental identification starts from
    (``identify.warm_labels``): per listed meter its phase, branch and box (None for a meter
    found foreign: not ours), per unlisted carrier node (a ``missing`` entry with an address)
    the same. Columns of shared strings -- the whole result held for this was ~0.35 kB a meter.
    A later entry for the same meter id or node address counts, as in the result's lists."""

    meter_ids: tuple[str, ...]
    #: dimension -> one value a meter, in ``meter_ids``' order
    meter_values: dict[str, tuple[str | None, ...]]
    node_addresses: tuple[str, ...]
    #: dimension -> one value a node, in ``node_addresses``' order
    node_values: dict[str, tuple[str | None, ...]]

    @classmethod
    def of(cls, result: TopologyResult) -> Labels:
        meters = result.meters
        nodes = [x for x in result.missing if x.address]
        return cls(
            tuple(m.meter_id for m in meters),
            {d: tuple(_label(m, d) for m in meters) for d in DIMENSIONS},
            tuple(x.address for x in nodes if x.address),
            {d: tuple(getattr(x, d) for x in nodes) for d in DIMENSIONS},
        )

    def meters(self, dimension: str) -> dict[str, str | None]:
        """Meter id -> its value in ``dimension`` (None: not ours)."""
        return dict(zip(self.meter_ids, self.meter_values[dimension], strict=True))

    def nodes(self, dimension: str) -> dict[str, str | None]:
        """Node address -> its value in ``dimension``."""
        return dict(zip(self.node_addresses, self.node_values[dimension], strict=True))


def _label(meter: MeterResult, dimension: str) -> str | None:
    return None if meter.status == "foreign" else meter.dimension(dimension).value


def outcomes(result: TopologyResult) -> dict[str, tuple[object, ...]]:
    """Per meter: status, each dimension's value and outcome, and the move it reports -- what two
    identifications must agree on to be the same decision (tests and bench/topology_check.py)."""
    out: dict[str, tuple[object, ...]] = {}
    for m in result.meters:
        moved = m.phase.evidence.get("moved")
        dims = tuple((getattr(m, d).value, getattr(m, d).outcome) for d in DIMENSIONS)
        out[m.meter_id] = (m.status, dims, None if moved is None else (moved["from"], moved["to"]))
    return out


__all__ = [
    "DIMENSIONS",
    "PAGED",
    "STATUSES",
    "Dimension",
    "Labels",
    "MeterResult",
    "MissingMeter",
    "TopologyResult",
    "outcomes",
]
