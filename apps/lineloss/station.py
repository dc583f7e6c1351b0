"""The station model (``ctx.station.model``) as line loss needs it: ``Records`` for a ``Layout``.

Layer: apps (lineloss). Pure. Reads only these facts of ``protocols.station.StationModel``:
``transformer.meter / ct_ratio / pt_ratio``, ``branches[].id / monitor / parent``,
``boxes[].id / branch / terminal``, ``meters[].id / kind / branch / box / phase / ct_ratio /
pt_ratio / flags``. Typed structurally, so it needs nothing else of the model. Must not read
files or the bus.

The 总表 is ``transformer.meter``, else the one meter of kind ``assessment``. Its ratio is its own
record's CT x PT, or the transformer's when the meter record keeps the default 1 (archives
often keep the 倍率 on the transformer). Without any 总表 the terminal's own metrology unit
(device ``transformer``) measures the station's supply. Meters flagged ``foreign`` (another
station area's, confirmed) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .causes.archive import Records
from .layout import BoxInfo, BranchInfo, MeterInfo

METROLOGY_DEVICE = "transformer"


class _Transformer(Protocol):
    @property
    def meter(self) -> str | None: ...
    @property
    def ct_ratio(self) -> float: ...
    @property
    def pt_ratio(self) -> float: ...


class _Branch(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def monitor(self) -> str | None: ...
    @property
    def parent(self) -> str | None: ...


class _Box(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def terminal(self) -> str | None: ...


class _Meter(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def box(self) -> str | None: ...
    @property
    def phase(self) -> str | None: ...
    @property
    def ct_ratio(self) -> float: ...
    @property
    def pt_ratio(self) -> float: ...
    @property
    def flags(self) -> tuple[str, ...]: ...


class StationLike(Protocol):
    @property
    def transformer(self) -> _Transformer | None: ...
    @property
    def branches(self) -> Sequence[_Branch]: ...
    @property
    def boxes(self) -> Sequence[_Box]: ...
    @property
    def meters(self) -> Sequence[_Meter]: ...


def records_from_model(model: StationLike, *, metrology: bool = True) -> Records:
    """The records of ``model``; ``metrology``: the terminal has a metrology unit to fall back on."""
    tr = model.transformer
    assessment = tr.meter if tr is not None and tr.meter else None
    if assessment is None:
        assessment = next((m.id for m in model.meters if m.kind == "assessment"), None)
    meters: list[MeterInfo] = []
    for m in model.meters:
        ct, pt = m.ct_ratio, m.pt_ratio
        if m.id == assessment and tr is not None and ct == 1.0 and pt == 1.0:
            ct, pt = tr.ct_ratio, tr.pt_ratio
        kind = "assessment" if m.id == assessment else m.kind
        meters.append(
            MeterInfo(
                m.id,
                kind,
                branch=m.branch,
                box=m.box,
                phase=m.phase,
                ct_ratio=ct,
                pt_ratio=pt,
                excluded="foreign" in m.flags,
            )
        )
    if assessment is None and metrology:
        assessment = METROLOGY_DEVICE
        meters.append(MeterInfo(METROLOGY_DEVICE, "assessment", phase="ABC"))
    branches = [BranchInfo(b.id, b.monitor, b.parent) for b in model.branches]
    boxes = [BoxInfo(x.id, x.branch, x.terminal) for x in model.boxes]
    return Records(meters, branches, boxes, assessment)


__all__ = ["METROLOGY_DEVICE", "StationLike", "records_from_model"]
