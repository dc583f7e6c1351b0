"""A box whose meters lost supply together is out even when a meter the archive lists in it kept
answering (a meter of the neighbouring area, or one that is really in another box): one box
outage naming that meter, not one meter outage per member. Half a box dark stays meter outages."""

from __future__ import annotations

from apps.outage.classify import MERGED, RETRACTED, Classifier, Outage, Settings
from apps.outage.evidence import GroupSupply, MetersBack, MetersDark, PowerDownRecord, ReadResult, Window
from apps.outage.members import Group, Members, from_records

BOX = ("m1", "m2", "m3", "m4", "m5")  # really in box X1
LISTED_THERE = "m9"  # the archive lists it in X1 too; it is fed elsewhere
OTHER = ("m6", "m7")  # box X2 of the same branch


def members() -> Members:
    def m(mid: str, box: str, port: str) -> dict[str, str]:
        return {"id": mid, "address": f"0000000000{mid[1:]:>02}", "phase": "A", "box": box, "branch": "F1",
                "port": port}  # fmt: skip

    meters = [m(x, "F1-X1", "hplc") for x in BOX] + [m(LISTED_THERE, "F1-X1", "rs485-1")]
    meters += [m(x, "F1-X2", "rs485-1") for x in OTHER]
    boxes = [{"id": "F1-X1", "branch": "F1"}, {"id": "F1-X2", "branch": "F1"}]
    return from_records("S1", meters, boxes=boxes, branches=[{"id": "F1"}])


class Rig:
    def __init__(self) -> None:
        self.c = Classifier(members(), Settings(record_settle_s=300.0))
        self.now = 0.0

    def at(self, t: float) -> None:
        while (w := self.c.next_wakeup()) is not None and w <= t:
            self._step(max(w, self.now))
        self._step(t)

    def _step(self, t: float) -> None:
        self.now = t
        for p in "ABC":
            self.c.observe(GroupSupply(Group("phase", p), True, Window.exact(t), t, "metrology"))
        self.c.step(t)

    def answer(self, t: float, *meters: str) -> None:
        self.at(t)
        for mid in meters:
            self.c.observe(ReadResult(mid, True, t, t))
        self.at(t)

    def reported(self) -> list[Outage]:
        return sorted(
            (o for o in self.c.outages.values() if o.status not in (MERGED, RETRACTED)), key=lambda o: o.group
        )


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
