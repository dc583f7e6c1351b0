"""What an identification result proposes to the station model (provenance ``identified``).

Layer: apps (topology), pure. Turns a ``TopologyResult`` into ``protocols.station.Correction``s:
a corrected phase / branch / box of a listed meter (``set``, with its confidence and evidence),
the flag ``foreign`` on a meter fed by another transformer, and an ``add`` for a carrier node the
archive lacks. Must not send them (the service calls ``ctx.station.propose``) and must not
propose the same thing twice (``Ledger`` remembers what went out).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocols.station import MAX_EVIDENCE_BYTES, Correction, StationModel

from .result import DIMENSIONS, MeterResult, TopologyResult

FOREIGN_FLAG = "foreign"


def _small(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence as the station model takes it (a JSON object under its size limit)."""
    out = dict(evidence)
    while out and len(json.dumps(out, default=str)) > MAX_EVIDENCE_BYTES // 2:
        out.popitem()
    return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def corrections(result: TopologyResult, model: StationModel) -> list[Correction]:
    """``set`` corrections for every corrected dimension and every foreign meter."""
    out: list[Correction] = []
    for m in result.meters:
        meter = model.meter(m.meter_id)
        if meter is None:
            continue
        if m.status == "foreign":
            if FOREIGN_FLAG not in meter.flags:
                out.append(
                    Correction(
                        "meter", m.meter_id, "flags", (*meter.flags, FOREIGN_FLAG),
                        confidence=m.confidence, evidence=_small(m.evidence),
                    )
                )  # fmt: skip
            continue
        out += list(_dimensions(m))
    return out


def _dimensions(m: MeterResult) -> Iterable[Correction]:
    for name in DIMENSIONS:
        dim = m.dimension(name)
        if dim.outcome == "corrected" and dim.value is not None:
            yield Correction(
                "meter", m.meter_id, name, dim.value, confidence=dim.confidence, evidence=_small(dim.evidence)
            )


def additions(result: TopologyResult, model: StationModel) -> list[Correction]:
    """An ``add`` for every carrier node the archive lacks (a meter on our network, unlisted),
    placed where the identification found it."""
    out = []
    branches = {b.id for b in model.branches}
    boxes = {x.id for x in model.boxes}
    for miss in result.missing:
        if miss.address is None or model.meter_by_address(miss.address) is not None:
            continue
        meter_id = f"m-{miss.address}"
        record: dict[str, Any] = {"id": meter_id, "address": miss.address, "channel": "hplc"}
        if miss.phase in ("A", "B", "C", "ABC"):
            record["phase"] = miss.phase
        if miss.branch in branches:
            record["branch"] = miss.branch
        if miss.box in boxes:
            record["box"] = miss.box
        out.append(
            Correction(
                "meter",
                meter_id,
                op="add",
                value=record,
                confidence=float(miss.evidence.get("confidence", 0.9) or 0.9),
                evidence=_small(miss.evidence),
            )
        )
    return out


@dataclass
class Ledger:
    """What was proposed already (a key per record, field and value), kept in the app's store."""

    sent: set[str] = field(default_factory=set)

    @staticmethod
    def key(c: Correction) -> str:
        return f"{c.op}|{c.kind}|{c.id}|{c.field}|{c.value!r}"

    def fresh(self, proposed: Iterable[Correction]) -> list[Correction]:
        return [c for c in proposed if self.key(c) not in self.sent]

    def remember(self, proposed: Iterable[Correction]) -> None:
        self.sent |= {self.key(c) for c in proposed}

    def to_json(self) -> list[str]:
        return sorted(self.sent)

    @classmethod
    def from_json(cls, value: Any) -> Ledger:
        return cls({str(v) for v in value} if isinstance(value, list) else set())


__all__ = ["FOREIGN_FLAG", "Ledger", "additions", "corrections"]
