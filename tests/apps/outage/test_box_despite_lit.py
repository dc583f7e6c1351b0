"""A box whose meters lost supply together is out even when a meter the archive lists in it kept
answering (a meter of the neighbouring area, or one that is really in another box): one box
outage naming that meter, not one meter outage per member. Half a box dark stays meter outages."""

from __future__ import annotations

from apps.outage.classify import Outage, Settings
from apps.outage.evidence import GroupSupply, MetersBack, MetersDark, PowerDownRecord, Window
from apps.outage.members import Group, Members, from_records
from tests.apps.outage.test_classify import Rig as ClassifierRig

BOX = ("m1", "m2", "m3", "m4", "m5")  # really in box X1
LISTED_THERE = "m9"  # the archive lists it in X1 too; it is fed elsewhere
OTHER = ("m6", "m7")  # box X2 of the same branch


def members(phases: str = "ABCAB") -> Members:
    def m(mid: str, phase: str, box: str, port: str) -> dict[str, str]:
        return {"id": mid, "address": f"0000000000{mid[1:]:>02}", "phase": phase, "box": box, "branch": "F1",
                "port": port}  # fmt: skip

    meters = [m(x, p, "F1-X1", "hplc") for x, p in zip(BOX, phases, strict=True)]
    meters += [m(LISTED_THERE, "A", "F1-X1", "rs485-1")]
    meters += [m(x, "C", "F1-X2", "rs485-1") for x in OTHER]
    boxes = [{"id": "F1-X1", "branch": "F1"}, {"id": "F1-X2", "branch": "F1"}]
    return from_records("S1", meters, boxes=boxes, branches=[{"id": "F1", "breaker": "brk-F1"}])


class Rig(ClassifierRig):
    """The classifier rig of ``test_classify`` on this module's station area."""

    def __init__(self, phases: str = "ABCAB") -> None:
        super().__init__(Settings(record_settle_s=300.0), members(phases))

    def reported(self) -> list[Outage]:
        return sorted(self.all_reported(), key=lambda o: o.group)


def started(r: Rig) -> None:
    r.c.observe(
        GroupSupply(Group("station", "S1"), True, Window.exact(0.0), 0.0, "power_monitor", sampled=False)
    )
    r.answer(0.0, *BOX, LISTED_THERE, *OTHER)


def test_records_of_a_box_but_one_listed_meter_that_kept_answering_are_the_box() -> None:
    r = Rig()
    started(r)
    r.answer(100.0, LISTED_THERE, *OTHER)  # during the outage: the listed meter answers
    for k, mid in enumerate(BOX):
        r.c.observe(PowerDownRecord(mid, 70.0 + k % 2, 130.0, 400.0))
    r.at(800.0)
    (o,) = r.reported()
    assert o.group == Group("box", "F1-X1")
    assert o.meters == BOX and o.lit == (LISTED_THERE,)
    assert o.to_json()["lit"] == [LISTED_THERE]


def test_carrier_power_off_of_a_box_but_one_listed_meter_that_answers_is_the_box() -> None:
    r = Rig()
    started(r)
    r.at(100.0)
    r.c.observe(MetersDark(BOX, Window(37.0, 36.8, 97.0), 100.0))  # the CCO's aggregated list
    r.answer(101.0, LISTED_THERE, *OTHER)
    r.at(300.0)
    (o,) = r.reported()
    assert o.group == Group("box", "F1-X1") and o.meters == BOX and o.lit == (LISTED_THERE,)


def test_half_a_box_dark_is_meter_outages_not_the_box() -> None:
    r = Rig()
    started(r)
    r.answer(100.0, LISTED_THERE, "m4", "m5", *OTHER)
    for mid in ("m1", "m2", "m3"):  # 3 of 6 lost supply together; 3 kept it: not the box
        r.c.observe(PowerDownRecord(mid, 70.0, 130.0, 400.0))
    r.at(800.0)
    assert [o.group for o in r.reported()] == [Group("meter", m) for m in ("m1", "m2", "m3")]


def test_meters_of_a_box_that_lost_supply_at_different_times_are_not_the_box() -> None:
    r = Rig()
    started(r)
    r.answer(100.0, LISTED_THERE, *OTHER)
    for k, mid in enumerate(BOX):  # five separate outages, minutes apart: not one box outage
        r.c.observe(PowerDownRecord(mid, 70.0 + 120.0 * k, 100.0 + 120.0 * k, 800.0))
    r.at(1500.0)
    assert all(o.group.level == "meter" for o in r.reported()) and len(r.reported()) == len(BOX)


def test_a_carrier_meter_reported_live_then_the_boxs_records_are_one_box_outage_naming_the_lit() -> None:
    r = Rig()
    started(r)
    r.at(100.0)
    r.c.observe(MetersDark(("m1",), Window(37.0, 36.8, 97.0), 100.0))  # only m1 seen live
    r.answer(101.0, LISTED_THERE, *OTHER)
    r.at(200.0)
    assert [o.group for o in r.reported()] == [Group("meter", "m1")]
    r.c.observe(MetersBack(("m1",), Window(130.0, 128.0, 133.0), 200.0))
    for mid in BOX[1:]:  # the others' records, read later
        r.c.observe(PowerDownRecord(mid, 37.0, 130.0, 400.0))
    r.at(1200.0)
    (o,) = r.reported()
    assert o.group == Group("box", "F1-X1") and o.meters == BOX and o.lit == (LISTED_THERE,)


def test_one_phase_of_a_box_dark_is_not_the_box() -> None:
    # four of the box's meters on phase B lose supply together (a box fuse, or phase B at the
    # transformer), the A-phase one and the listed one answer: a box outage takes every phase
    r = Rig(phases="BBBBA")
    started(r)
    r.answer(100.0, "m5", LISTED_THERE, *OTHER)
    for mid in ("m1", "m2", "m3", "m4"):
        r.c.observe(PowerDownRecord(mid, 70.0, 130.0, 400.0))
    r.at(800.0)
    assert all(o.group.level != "box" for o in r.reported())


def test_inside_a_branch_outage_a_stale_answer_makes_no_box_outage_of_its_own() -> None:
    # the branch's breaker opened and closed again; the carrier's power-off list of one of its
    # boxes arrives after that, and a listed meter's answer came in meanwhile: still the branch's
    # outage, not a box outage of its own next to it
    r = Rig()
    started(r)
    r.c.observe(GroupSupply(Group("branch", "F1"), False, Window.exact(50.0), 50.0, "breaker", sampled=False))
    r.at(60.0)
    r.c.observe(GroupSupply(Group("branch", "F1"), True, Window.exact(80.0), 80.0, "breaker", sampled=False))
    r.answer(100.0, LISTED_THERE)
    r.at(110.0)
    r.c.observe(MetersDark(BOX, Window(50.5, 50.0, 51.0), 110.0))
    r.at(600.0)
    assert [o.group for o in r.reported()] == [Group("branch", "F1")]
