"""The station model as line loss reads it, and the scopes/sections of nested branches."""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.lineloss.layout import BoxInfo, BranchInfo, Layout, MeterInfo
from apps.lineloss.station import METROLOGY_DEVICE, records_from_model


@dataclass(frozen=True)
class Tr:
    meter: str | None = None
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0


@dataclass(frozen=True)
class M:
    id: str
    kind: str = "customer"
    branch: str | None = None
    box: str | None = None
    phase: str | None = None
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    transformer: Tr | None = None
    branches: tuple[BranchInfo, ...] = ()
    boxes: tuple[BoxInfo, ...] = ()
    meters: tuple[M, ...] = field(default_factory=tuple)


def test_the_assessment_meter_takes_the_transformers_ratio_when_its_own_is_the_default() -> None:
    model = Model(Tr("zb", ct_ratio=300.0), meters=(M("zb", "customer", phase="ABC"), M("c1")))
    rec = records_from_model(model)
    (zb,) = [m for m in rec.meters if m.id == "zb"]
    assert rec.assessment == "zb" and zb.kind == "assessment" and zb.multiplier == 300.0
    own = Model(Tr("zb", ct_ratio=300.0), meters=(M("zb", ct_ratio=200.0, pt_ratio=1.0), M("c1")))
    assert next(m for m in records_from_model(own).meters if m.id == "zb").multiplier == 200.0


def test_without_a_zongbiao_the_metrology_unit_supplies_the_station() -> None:
    model = Model(None, meters=(M("c1"), M("n9", flags=("foreign",))))
    rec = records_from_model(model)
    assert rec.assessment == METROLOGY_DEVICE
    lay = rec.layout()
    assert [m.id for m in lay.meters] == ["c1", METROLOGY_DEVICE]  # the foreign meter is out
    assert records_from_model(model, metrology=False).assessment is None
    by_kind = records_from_model(Model(None, meters=(M("a", "assessment"), M("c1"))))
    assert by_kind.assessment == "a"


def test_nested_branches_unmonitored_levels_and_box_terminals() -> None:
    meters = [
        MeterInfo("T", "assessment"),
        MeterInfo("bu1", "branch_unit", branch="F1"),
        MeterInfo("bu3", "branch_unit", branch="F3"),
        MeterInfo("bt", "box_terminal", box="X2"),
        MeterInfo("c0", branch="F0"),  # on the board, no branch record
        MeterInfo("c1", branch="F1"),
        MeterInfo("c2", branch="F2"),  # F2 hangs off F1 and has no unit
        MeterInfo("c3", branch="F3"),  # F3 hangs off F2 and has one
        MeterInfo("c4", box="X2"),  # its branch only through the box
    ]
    branches = [BranchInfo("F1", "bu1"), BranchInfo("F2", None, "F1"), BranchInfo("F3", "bu3", "F2")]
    lay = Layout.build(meters, branches=branches, boxes=[BoxInfo("X2", "F2", "bt")], assessment="T")
    scopes = {s.id: lay.ids(s.customers) for s in lay.scopes}
    assert scopes == {
        "station": ["c0", "c1", "c2", "c3", "c4"],
        "F1": ["c1", "c2", "c3", "c4"],
        "F3": ["c3"],
        "X2": ["c4"],
    }
    sections = {s.id: (lay.ids(s.customers), lay.ids(s.feeds)) for s in lay.sections}
    assert sections == {
        "station": (["c0"], ["bu1"]),
        "F1": (["c1", "c2"], ["bu3", "bt"]),  # F2 is measured by nothing of its own
        "F3": (["c3"], []),
        "X2": (["c4"], []),
    }
    assert lay.scope("X2").branch == "F2" and lay.branch_of("c4") is None
