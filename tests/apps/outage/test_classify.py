"""The outage classifier, one rule at a time, on a small hand-made station area.

    station S1, phases A/B/C
    ├── branch F1 (breaker brk-F1, branch unit bu-F1)
    │   ├── box F1-X1: m1 A (hplc), m2 B (rs485-1), m3 C (rs485-1)
    │   └── box F1-X2: m4 A (rs485-1), m5 B (hplc)
    └── branch F2 (breaker brk-F2)
        ├── box F2-X1: m6 A (rs485-2), m7 B (rs485-2), m10 ABC (rs485-2)
        └── branch F2a (sub-branch)
            └── box F2a-X1 (box terminal bt-F2a-X1): m8 C (rs485-2), m9 A (hplc)

Times are seconds from 0; evidence is fed as the app's collectors would.
"""

from __future__ import annotations

from apps.outage.beliefs import ANSWERS_KEPT, Beliefs
from apps.outage.classify import (
    KEEP_FINISHED,
    MERGED,
    ONGOING,
    RESTORED,
    RETRACTED,
    Classifier,
    Outage,
    Settings,
)
from apps.outage.evidence import (
    GroupSupply,
    MetersBack,
    MetersDark,
    PowerDownRecord,
    ReadResult,
    RecordsRead,
    RelayState,
    Window,
)
from apps.outage.members import Group, Members, from_records

HPLC_WINDOW = 63.0  # judgement 3 s + STA 30 s + CCO 30 s


def station() -> Members:
    def m(mid: str, phase: str, box: str, branch: str, port: str) -> dict[str, str]:
        address = f"0000000000{mid[1:]:>02}"
        return {"id": mid, "address": address, "phase": phase, "box": box, "branch": branch, "port": port}

    meters = [
        m("m1", "A", "F1-X1", "F1", "hplc"),
        m("m2", "B", "F1-X1", "F1", "rs485-1"),
        m("m3", "C", "F1-X1", "F1", "rs485-1"),
        m("m4", "A", "F1-X2", "F1", "rs485-1"),
        m("m5", "B", "F1-X2", "F1", "hplc"),
        m("m6", "A", "F2-X1", "F2", "rs485-2"),
        m("m7", "B", "F2-X1", "F2", "rs485-2"),
        m("m10", "ABC", "F2-X1", "F2", "rs485-2"),
        m("m8", "C", "F2a-X1", "F2a", "rs485-2"),
        m("m9", "A", "F2a-X1", "F2a", "hplc"),
        {"id": "bu-F1", "kind": "branch_unit", "branch": "F1", "port": "rs485-2"},
    ]
    boxes = [
        {"id": "F1-X1", "branch": "F1"},
        {"id": "F1-X2", "branch": "F1"},
        {"id": "F2-X1", "branch": "F2"},
        {"id": "F2a-X1", "branch": "F2a", "terminal": "bt-F2a-X1"},
    ]
    branches = [
        {"id": "F1", "breaker": "brk-F1", "monitor": "bu-F1"},
        {"id": "F2", "breaker": "brk-F2"},
        {"id": "F2a", "parent": "F2"},
    ]
    return from_records("S1", meters, boxes=boxes, branches=branches)


ALL = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10")
RS485 = ("m2", "m3", "m4", "m6", "m7", "m10", "m8")


class Rig:
    """A classifier and a virtual 'now'; ``at(t)`` steps it and keeps every report it publishes.

    Like the app, it hears the metrology unit's phases (``live_phases``) at every step; a test
    that takes a phase away removes it from there and feeds the loss itself."""

    def __init__(self, settings: Settings | None = None, members: Members | None = None) -> None:
        self.c = Classifier(members or station(), settings)
        self.now = 0.0
        self.reports: list[dict[str, object]] = []
        self.probes: set[str] = set()
        self.live_phases = {"A", "B", "C"}

    def at(self, t: float) -> None:
        """Advance to ``t``, stepping at every wakeup on the way (as the app's loop does)."""
        while (w := self.c.next_wakeup()) is not None and w <= t:
            self._step(max(w, self.now))
        self._step(t)

    def _step(self, t: float) -> None:
        self.now = t
        for p in sorted(self.live_phases):
            self.c.observe(GroupSupply(Group("phase", p), True, Window.exact(t), t, "metrology"))
        r = self.c.step(t)
        self.reports += [o.to_json() for o in r.changed]
        self.probes |= r.probes

    def answer(self, t: float, *meters: str) -> None:
        self.at(t)
        for mid in meters:
            self.c.observe(ReadResult(mid, True, t, t))
        self.at(t)

    def fail(self, t: float, *meters: str) -> None:
        self.at(t)
        for mid in meters:
            self.c.observe(ReadResult(mid, False, t, t))
        self.at(t)

    def hplc_off(self, received: float, *meters: str) -> None:
        self.at(received)
        when = Window(received - HPLC_WINDOW, received - HPLC_WINDOW - 0.2, received - 3.0)
        self.c.observe(MetersDark(meters, when, received))
        self.at(received)

    def hplc_on(self, received: float, *meters: str) -> None:
        self.at(received)
        self.c.observe(
            MetersBack(meters, Window(received - 33.0, received - 35.0, received - 30.0), received)
        )
        self.at(received)

    def group(
        self, t: float, level: str, target: str, powered: bool, source: str, *, sampled: bool = True
    ) -> None:
        self.at(t)
        g = Group(level, target)  # type: ignore[arg-type]
        self.c.observe(GroupSupply(g, powered, Window.exact(t), t, source, sampled=sampled))  # type: ignore[arg-type]
        self.at(t)

    def open(self) -> list[Outage]:
        return [o for o in self.c.outages.values() if o.status == ONGOING]

    def all_reported(self) -> list[Outage]:
        return [o for o in self.c.outages.values() if o.status not in (MERGED, RETRACTED)]


def baseline(r: Rig, t: float = 0.0) -> None:
    """The terminal's own supply is there and every meter answers once at ``t``."""
    r.group(t, "station", "S1", True, "power_monitor", sampled=False)
    r.answer(t, *ALL)


# ---------------------------------------------------------------------------------------- levels


def test_box_outage_from_hplc_and_silent_neighbours_is_reported_at_box_level() -> None:
    r = Rig()
    baseline(r)
    r.answer(70.0, "m4", "m6", "m7", "m10", "m8")  # the rest of the area answers after the outage began
    r.fail(72.0, "m2", "m3")  # box F1-X1's RS-485 meters fail
    assert not r.reports  # m2/m3 alone are comms: no supply evidence yet
    r.hplc_off(100.0, "m1")  # its HPLC meter's last gasp, judged and aggregated by the CCO
    # m4 answered at 70 s: before or after the outage began (somewhere in 37..97 s)? Ask.
    assert not r.reports and {"m4", "m5"} <= r.probes
    r.answer(101.0, "m4", "m5")  # the probe: the rest of branch F1 answers
    (o,) = r.open()
    assert (o.group.level, o.group.target) == ("box", "F1-X1")
    assert o.meters == ("m1", "m2", "m3")
    assert set(o.sources) == {"hplc", "rs485"}
    assert abs(o.start.at - (100.0 - HPLC_WINDOW)) < 1.0
    assert r.reports[-1]["reported_at"] == 101.0


def test_whole_branch_dark_is_reported_once_at_the_branch_with_every_meter_listed() -> None:
    r = Rig()
    baseline(r)
    r.answer(61.0, "m6", "m7", "m10", "m8")  # F2 fine
    r.fail(62.0, "m2", "m3", "m4")
    r.hplc_off(100.0, "m1", "m5")
    (o,) = r.open()
    assert o.group == Group("branch", "F1")
    assert o.meters == ("m1", "m2", "m3", "m4", "m5")
    assert len(r.reports) == 1  # not a box first and a branch later


def test_sub_branch_outage_is_the_sub_branch_not_its_parent() -> None:
    r = Rig()
    baseline(r)
    r.answer(61.0, "m6", "m7", "m10", "m2", "m3", "m4")
    r.fail(62.0, "m8")
    r.hplc_off(100.0, "m9")
    r.answer(101.0, "m6", "m7", "m10")  # the probe: the rest of F2 answers
    (o,) = r.open()
    assert o.group in (Group("branch", "F2a"), Group("box", "F2a-X1"))  # same members: one box on F2a
    assert o.group == Group("branch", "F2a")  # the highest level whose members are all dark


def test_single_meter_outage_needs_its_own_supply_evidence() -> None:
    r = Rig()
    baseline(r)
    r.hplc_off(100.0, "m5")
    assert not r.reports and "m4" in r.probes  # its box has a meter not heard from since
    r.answer(101.0, *[m for m in ALL if m != "m5"])  # the probe: everybody else answers
    (o,) = r.open()
    assert o.group == Group("meter", "m5") and o.meters == ("m5",)


def test_breaker_open_is_a_branch_outage_after_the_judgement_delay() -> None:
    r = Rig()
    baseline(r)
    r.group(50.0, "branch", "F1", False, "breaker", sampled=False)
    assert not r.reports
    r.at(52.9)
    assert not r.reports
    r.at(53.0)
    (o,) = r.open()
    assert o.group == Group("branch", "F1") and o.meters == ("m1", "m2", "m3", "m4", "m5")
    assert o.start.at == 50.0 and o.sources == ("breaker",)
    assert r.reports[-1]["evidence_received_at"] == 53.0  # the judgement deadline triggered it


def test_members_answering_after_the_supply_came_back_are_not_named_lit() -> None:
    """``lit`` names members that kept their supply through the outage; the breaker is polled, so
    the branch's meters answer again before it is seen closed: they are not 'lit' (rural_1, seed 4:
    4 of 5 members of a tripped branch were listed lit)."""
    r = Rig()
    baseline(r)
    r.group(50.0, "branch", "F1", False, "breaker", sampled=False)
    r.at(53.0)
    (o,) = r.open()
    r.answer(300.0, "m1", "m2", "m3", "m4")  # supply back (m5 not read yet); the breaker is polled later
    r.group(330.0, "branch", "F1", True, "breaker", sampled=False)
    r.at(400.0)
    assert all(not rep["lit"] for rep in r.reports if rep["id"] == o.id)


def test_phase_loss_at_the_transformer_is_a_phase_outage_three_phase_meters_stay() -> None:
    r = Rig()
    baseline(r)
    r.live_phases.discard("A")
    r.group(30.0, "phase", "A", False, "metrology")
    r.group(31.0, "phase", "A", False, "metrology")
    assert not r.reports  # one second: not judged yet
    r.group(33.0, "phase", "A", False, "metrology")
    (o,) = r.open()
    assert o.group == Group("phase", "A")
    assert o.meters == ("m1", "m4", "m6", "m9")  # m10 is three-phase: not dark


def test_a_phase_whose_meters_went_dark_waits_for_the_transformers_next_sample() -> None:
    """Every meter of a phase dark (here: each in its own box outage, one of them only silent)
    while the metrology unit's last sample of that phase, supplied, is a few seconds older than the
    loss: its next sample decides (Kerber Landnetz Freileitung 1, seed 3: a box outage was also
    reported as phase C for a minute, until the next sample vetoed it)."""
    r = Rig()
    baseline(r)
    r.live_phases.discard("C")  # phase C sampled by hand: every 5 s
    for t in range(5, 96, 5):
        r.group(float(t), "phase", "C", True, "metrology")
    r.answer(90.0, *[m for m in ALL if m not in ("m3", "m8")])
    r.hplc_off(101.0, "m3", "m8")  # their window ends at 98, after the last sample (95)
    assert not [o for o in r.c.outages.values() if o.group.level == "phase"]
    r.group(102.0, "phase", "C", True, "metrology")  # supplied after the loss: not the phase
    r.at(400.0)
    assert not [o for o in r.c.outages.values() if o.group.level == "phase"]
    assert {o.group for o in r.all_reported()} == {Group("meter", "m3"), Group("meter", "m8")}


def test_terminal_supply_lost_is_a_station_outage_listing_every_meter() -> None:
    r = Rig()
    baseline(r)
    r.group(10.0, "station", "S1", False, "power_monitor", sampled=False)
    r.at(13.0)
    (o,) = r.open()
    assert o.group == Group("station", "S1") and o.meters == tuple(sorted(ALL))


def test_all_three_phases_lost_is_the_station() -> None:
    r = Rig()
    r.live_phases.clear()
    r.answer(0.0, *ALL)  # and no power monitor on this terminal
    for t in (20.0, 24.0):
        for p in "ABC":
            r.group(t, "phase", p, False, "metrology")
    (o,) = r.open()
    assert o.group == Group("station", "S1") and "m10" in o.meters


# ---------------------------------------------------------------------------------------- filters


def test_dips_shorter_than_the_judgement_delay_never_become_reports() -> None:
    r = Rig()
    baseline(r)
    r.group(10.0, "station", "S1", False, "power_monitor", sampled=False)
    r.group(12.0, "station", "S1", True, "power_monitor", sampled=False)
    r.group(20.0, "branch", "F2", False, "breaker", sampled=False)
    r.group(22.5, "branch", "F2", True, "breaker", sampled=False)
    r.live_phases.discard("B")
    r.group(30.0, "phase", "B", False, "metrology")
    r.group(31.0, "phase", "B", True, "metrology")
    r.at(400.0)
    assert not r.reports
    assert r.c.beliefs.counters.dips == 3
    r.c.observe(PowerDownRecord("m2", 500.0, 501.5, 600.0))  # a meter's own record of a 1.5 s dip
    r.at(2000.0)
    assert not r.reports


def test_relay_open_by_fee_control_is_not_an_outage() -> None:
    r = Rig()
    baseline(r)
    r.at(40.0)
    r.c.observe(RelayState("m5", True, 40.0, 40.0, cause="fee_control"))
    r.hplc_off(100.0, "m5")
    r.answer(101.0, *[m for m in ALL if m != "m5"])
    assert not r.reports
    assert "m5" in r.c.suppressed_relay
    # a relay closed again: a later loss of that meter is an outage
    r.c.observe(RelayState("m5", False, 200.0, 200.0))
    r.hplc_on(230.0, "m5")
    r.hplc_off(400.0, "m5")
    r.answer(401.0, *[m for m in ALL if m != "m5"])
    assert [o.group for o in r.open()] == [Group("meter", "m5")]


def test_a_relay_open_for_long_does_not_hide_a_later_loss_of_the_meters_supply() -> None:
    """The relay cuts the customer's load, not the meter: a power-off report an hour after the trip,
    the relay still open, is the meter's own supply lost (rural_1, seed 2: m-0004 was missed)."""
    r = Rig()
    baseline(r)
    r.c.observe(RelayState("m5", True, 40.0, 40.0, cause="fee_control"))
    r.hplc_off(3700.0, "m5")
    r.answer(3701.0, *[m for m in ALL if m != "m5"])
    assert [o.group for o in r.open()] == [Group("meter", "m5")]
    assert "m5" not in r.c.suppressed_relay


def test_a_power_down_record_long_after_a_relay_trip_is_an_outage() -> None:
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    r.c.observe(RelayState("m2", True, 10.0, 10.0, cause="remote"))
    r.answer(5000.0, *ALL)
    r.c.observe(PowerDownRecord("m2", 4000.0, 4100.0, 5010.0))  # nothing live, its record says it
    r.at(5400.0)
    (o,) = r.all_reported()
    assert o.group == Group("meter", "m2") and (o.start.at, o.end.at if o.end else None) == (4000.0, 4100.0)
    # the same record right after a trip is the trip
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    r.c.observe(RelayState("m2", True, 3990.0, 3990.0, cause="remote"))
    r.answer(5000.0, *ALL)
    r.c.observe(PowerDownRecord("m2", 4000.0, 4100.0, 5010.0))
    r.at(5400.0)
    assert not r.all_reported() and "m2" in r.c.suppressed_relay


def test_a_member_silent_since_before_the_outage_is_asked_not_counted_dark() -> None:
    """A member whose reads failed long before the others lost supply (and was not read since)
    says nothing about this outage: it is probed, and answering it keeps the box from being
    reported (suburb_1, seed 3: an RS-485 meter silent since an earlier outage of its box made a
    phase outage report that box too)."""
    r = Rig()
    baseline(r)
    r.fail(66.0, "m3")
    r.fail(130.0, "m3")
    r.answer(1990.0, *[m for m in ALL if m != "m3"])
    r.hplc_off(2060.0, "m1", "m2")
    assert "m3" in r.probes
    assert not [o for o in r.c.outages.values() if o.group == Group("box", "F1-X1")]
    r.answer(2062.0, "m3")
    r.at(2400.0)
    assert Group("box", "F1-X1") not in {o.group for o in r.all_reported()}
    assert {Group("meter", "m1"), Group("meter", "m2")} <= {o.group for o in r.all_reported()}


def test_two_boxes_of_a_branch_dark_minutes_apart_are_two_box_outages_once_records_tell() -> None:
    """Live, the branch is all dark from the second box's loss on and is reported; the meters'
    power-down records show the boxes began two minutes apart: the branch report becomes the
    second box's (the first box is reported already). Scenario F5-X01 at 17:00, F5-X02 at 17:02
    on the default feeder gave 'branch F5' and 'box F5-X02'."""
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    others = [m for m in ALL if m not in ("m1", "m2", "m3", "m4", "m5")]
    r.fail(45.0, "m2", "m3")
    r.hplc_off(100.0, "m1")
    r.answer(101.0, "m4", "m5", *others)
    r.fail(170.0, "m4")
    r.hplc_off(220.0, "m5")
    r.answer(221.0, *others)
    r.fail(230.0, "m2", "m3", "m4")
    assert Group("branch", "F1") in {o.group for o in r.open()}  # live: the whole branch is dark
    r.hplc_on(430.0, "m1")
    r.answer(431.0, "m2", "m3", *others)
    r.hplc_on(550.0, "m5")
    r.answer(551.0, "m4", *others)
    for mid, start, end in (("m1", 40.0, 400.0), ("m2", 40.0, 400.0), ("m3", 40.0, 400.0),
                            ("m4", 160.0, 520.0), ("m5", 160.0, 520.0)):  # fmt: skip
        r.c.observe(PowerDownRecord(mid, start, end, 600.0))
        r.c.observe(RecordsRead(mid, 600.0, 600.0))
    r.at(1500.0)
    reported = {(o.group, o.start.at, o.meters) for o in r.all_reported()}
    assert reported == {
        (Group("box", "F1-X1"), 40.0, ("m1", "m2", "m3")),
        (Group("box", "F1-X2"), 160.0, ("m4", "m5")),
    }


def test_a_branch_outage_keeps_its_level_when_one_boxs_records_hold_an_earlier_outage_too() -> None:
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    others = [m for m in ALL if m not in ("m1", "m2", "m3", "m4", "m5")]
    r.c.observe(PowerDownRecord("m1", 10.0, 30.0, 35.0))  # box F1-X1's own outage, long before
    r.c.observe(PowerDownRecord("m2", 10.0, 30.0, 35.0))
    r.c.observe(PowerDownRecord("m3", 10.0, 30.0, 35.0))
    r.answer(400.0, *ALL)
    r.hplc_off(1100.0, "m1", "m5")
    r.fail(1101.0, "m2", "m3", "m4")
    r.answer(1102.0, *others)
    r.hplc_on(1500.0, "m1", "m5")
    r.answer(1501.0, *ALL)
    for mid in ("m1", "m2", "m3", "m4", "m5"):
        r.c.observe(PowerDownRecord(mid, 1040.0, 1440.0, 1600.0))
    r.at(2500.0)
    assert Group("branch", "F1") in {o.group for o in r.all_reported()}


def test_pure_comms_loss_is_comms_not_outage() -> None:
    r = Rig()
    baseline(r)
    r.answer(60.0, "m6", "m7", "m10")
    r.fail(61.0, "m2")  # one meter stops answering
    r.fail(121.0, "m2")
    r.fail(181.0, "m2")
    r.at(400.0)
    assert not r.reports
    assert "m2" in r.c.comms


def test_a_quiet_bus_is_comms_even_when_a_whole_box_is_silent() -> None:
    r = Rig()
    baseline(r)
    r.answer(30.0, "m2", "m3", "m4")  # rs485-2 answers last at 0: then the whole bus goes quiet
    for t in (60.0, 120.0, 180.0):
        r.fail(t, "m6", "m7", "m10", "m8")
    r.at(400.0)
    assert not r.reports


def test_a_box_going_silent_together_while_its_bus_answers_is_a_box_outage() -> None:
    r = Rig()
    baseline(r)
    r.fail(60.0, "m6", "m7", "m10")
    r.answer(61.0, "m8", "m2", "m3", "m4")
    assert not r.reports  # one failed read each: could be a burst of noise
    r.fail(120.0, "m6", "m7", "m10")
    r.answer(121.0, "m8")
    (o,) = r.open()
    assert o.group == Group("box", "F2-X1") and o.sources == ("rs485",)
    assert o.start.lo >= 0.0 and o.start.hi <= 60.0


def box_silent_then_back(r: Rig) -> Outage:
    """Box F2-X1 (all RS-485) silent while its bus answers, then answering again at 600."""
    baseline(r)
    for t in (60.0, 120.0):
        r.fail(t, "m6", "m7", "m10")
        r.answer(t + 1.0, "m8")
    (o,) = r.open()
    r.answer(600.0, "m6", "m7", "m10")
    assert o.status == RESTORED
    return o


def test_silence_alone_is_withdrawn_when_the_records_show_no_power_down() -> None:
    r = Rig(Settings(records_grace_s=15.0))
    o = box_silent_then_back(r)
    for mid in ("m6", "m7", "m10"):  # their records read at the restore: nothing new
        r.c.observe(RecordsRead(mid, 601.0, 601.0))
    r.at(610.0)
    assert o.status == RESTORED  # records may still be on their way
    r.at(620.0)
    assert o.status == RETRACTED and r.reports[-1]["status"] == "retracted"
    assert r.c.comms_retracted == 1
    assert not r.all_reported()


def test_silence_confirmed_by_the_records_stays_an_outage() -> None:
    r = Rig(Settings(records_grace_s=15.0))
    o = box_silent_then_back(r)
    for mid in ("m6", "m7", "m10"):
        r.c.observe(PowerDownRecord(mid, 30.0, 598.0, 601.5))
        r.c.observe(RecordsRead(mid, 601.0, 601.0))
    r.at(700.0)
    assert o.status == RESTORED and "meter_record" in o.sources
    assert o.start.at == 30.0 and o.end is not None and o.end.at == 598.0


def test_silence_is_not_withdrawn_before_most_records_are_read() -> None:
    r = Rig(Settings(records_grace_s=15.0))
    o = box_silent_then_back(r)
    r.c.observe(RecordsRead("m6", 601.0, 601.0))  # one of three
    r.at(900.0)
    assert o.status == RESTORED


# ---------------------------------------------------------------------------------------- waiting


def test_a_group_with_members_not_heard_from_waits_and_asks_for_them() -> None:
    r = Rig()
    baseline(r)
    r.answer(5.0, "m6", "m7", "m10", "m8")  # F2 answered before the outage only
    r.hplc_off(100.0, "m9")  # F2a-X1 is m8 (rs485) + m9: m8 not heard from since
    assert not r.reports
    assert "m8" in r.probes
    r.fail(101.0, "m8")  # the probe: m8 does not answer either
    r.answer(102.0, "m6", "m7", "m10")
    (o,) = r.open()
    assert o.group == Group("branch", "F2a") and o.meters == ("m8", "m9")


def test_a_pending_group_is_decided_after_settle_with_unknown_members_counted_supplied() -> None:
    r = Rig(Settings(settle_s=30.0))
    baseline(r)
    r.hplc_off(100.0, "m1")  # F1-X1: m2, m3 not heard from since; nothing else either
    assert not r.reports
    r.at(129.0)
    assert not r.reports
    r.at(130.0)
    (o,) = r.open()
    assert o.group == Group("meter", "m1")


# ---------------------------------------------------------------------------------------- restores


def test_restore_gives_the_end_and_later_the_meters_still_dark() -> None:
    r = Rig(Settings(settle_s=60.0))
    baseline(r)
    r.answer(61.0, "m6", "m7", "m10", "m8")
    r.fail(62.0, "m2", "m3", "m4")
    r.hplc_off(100.0, "m1", "m5")
    (o,) = r.open()
    r.answer(300.0, "m2", "m3")  # the branch is back, except m4 (its own fuse, say)
    r.fail(301.0, "m4")
    assert o.status == RESTORED and o.end is not None
    assert o.end.lo >= 62.0 and o.end.hi <= 300.0
    r.hplc_on(330.0, "m1", "m5")
    r.at(365.0)
    assert o.still_dark == ("m4",)
    assert r.reports[-1]["still_dark"] == ["m4"]


def test_breaker_closing_restores_the_branch() -> None:
    r = Rig()
    baseline(r)
    r.group(50.0, "branch", "F1", False, "breaker", sampled=False)
    r.at(60.0)
    r.group(500.0, "branch", "F1", True, "breaker", sampled=False)
    (o,) = r.all_reported()
    assert o.status == RESTORED and o.end is not None and o.end.at == 500.0
    assert o.end.at - o.start.at == 450.0


def test_repeated_switching_inside_the_merge_window_is_one_outage() -> None:
    r = Rig(Settings(merge_s=300.0))
    baseline(r)
    for t0 in (50.0, 200.0, 350.0):
        r.group(t0, "branch", "F2", False, "breaker", sampled=False)
        r.at(t0 + 10.0)
        r.group(t0 + 60.0, "branch", "F2", True, "breaker", sampled=False)
    (o,) = r.all_reported()
    assert o.flaps == 2 and o.status == RESTORED and o.start.at == 50.0 and o.end is not None
    assert o.end.at == 410.0
    r.group(1000.0, "branch", "F2", False, "breaker", sampled=False)  # much later: a new outage
    r.at(1010.0)
    assert len(r.all_reported()) == 2


def test_a_box_reported_first_becomes_the_branch_when_the_rest_turns_out_dark() -> None:
    r = Rig()
    baseline(r)
    r.fail(66.0, "m2", "m3")
    r.hplc_off(100.0, "m1")
    r.answer(101.0, "m6", "m7", "m10", "m8", "m5")  # m5 answers: F1 is not all dark
    r.fail(101.0, "m4")
    (o,) = r.open()
    assert o.group == Group("box", "F1-X1")
    r.c.observe(
        GroupSupply(Group("branch", "F1"), False, Window.between(66.0, 67.0), 110.0, "breaker", sampled=False)
    )
    r.at(113.0)
    (branch,) = r.open()
    assert branch.id == o.id and branch.group == Group("branch", "F1")  # one outage, re-levelled
    # the breaker says the whole branch since 67 s; m5 answering at 101 s is a wrong archive entry
    assert branch.meters == ("m1", "m2", "m3", "m4") and branch.lit == ("m5",) and branch.start.at == 67.0
    assert [x["level"] for x in r.reports if x["id"] == o.id] == ["box", "branch"]


# ---------------------------------------------------------------------------------------- records


def test_power_down_records_report_an_outage_nobody_saw_live() -> None:
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    # m2 (rs485) had its own 40 s outage between two polls; nothing live, its record says it all
    r.answer(120.0, *ALL)
    r.at(130.0)
    r.c.observe(PowerDownRecord("m2", 70.0, 110.0, 130.0))
    r.at(200.0)
    assert not r.reports
    r.at(430.0)
    (o,) = r.all_reported()
    assert o.group == Group("meter", "m2") and o.status == RESTORED
    assert (o.start.at, o.end.at if o.end else None) == (70.0, 110.0)
    assert o.sources == ("meter_record",)


def test_records_of_a_whole_box_are_one_box_outage() -> None:
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    for mid, s, e in (("m6", 70.0, 110.0), ("m7", 70.0, 111.0), ("m10", 71.0, 110.0)):
        r.c.observe(PowerDownRecord(mid, s, e, 130.0))
    r.at(500.0)
    (o,) = r.all_reported()
    assert o.group == Group("box", "F2-X1") and o.start.at == 70.0 and o.end is not None and o.end.at == 110.0


def test_records_refine_a_live_outage_start_and_end() -> None:
    r = Rig()
    baseline(r)
    r.answer(61.0, "m6", "m7", "m10", "m8")
    r.fail(62.0, "m2", "m3", "m4")
    r.hplc_off(100.0, "m1", "m5")
    (o,) = r.open()
    assert o.start.resolution > 5.0
    r.answer(300.0, "m2", "m3", "m4")
    for mid in ("m2", "m3", "m4"):
        r.c.observe(PowerDownRecord(mid, 36.0, 290.0, 310.0))
    r.at(310.0)
    assert o.start.at == 36.0 and o.end is not None and o.end.at == 290.0
    assert "meter_record" in o.sources


# ---------------------------------------------------------------------------------------- state


def test_state_survives_a_restart_and_the_outage_ends_after_it() -> None:
    r = Rig()
    baseline(r)
    r.group(10.0, "station", "S1", False, "power_monitor", sampled=False)
    r.at(13.0)
    (o,) = r.open()
    saved = r.c.to_json()
    r2 = Rig()
    r2.c.load_json(saved)
    r2.at(900.0)
    assert [x.id for x in r2.open()] == [o.id]
    r2.group(900.0, "station", "S1", True, "power_monitor", sampled=False)
    (back,) = r2.all_reported()
    assert back.id == o.id and back.status == RESTORED and back.end is not None and back.end.at == 900.0


def test_a_power_on_list_right_after_its_power_off_is_a_short_outage_not_ignored() -> None:
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    r.hplc_off(100.0, "m5")  # a 10 s outage: the CCO sends the power-on right after the power-off
    r.hplc_on(100.5, "m5")
    assert r.c.beliefs.meters["m5"].dark is None  # its window overlaps the power-off's: still later
    r.c.observe(PowerDownRecord("m5", 40.0, 50.0, 130.0))  # the meter's own record, read at once
    r.answer(131.0, *[m for m in ALL if m != "m5"])
    r.at(500.0)
    (o,) = r.all_reported()
    assert o.group == Group("box", "F1-X2") or o.group == Group("meter", "m5")
    assert (o.start.at, o.end.at if o.end else None) == (40.0, 50.0)


def test_a_breaker_trip_closed_again_by_its_poll_leaves_the_length_to_the_meters() -> None:
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    r.c.observe(PowerDownRecord("m6", 50.0, 98.0, 120.0))  # read before the breaker was polled
    r.at(130.0)
    breaker = GroupSupply(Group("branch", "F2"), False, Window.exact(50.0), 140.0, "breaker", sampled=False)
    back = GroupSupply(Group("branch", "F2"), True, Window.between(50.0, 140.0, at=50.0), 140.0, "breaker",
                       sampled=False)  # fmt: skip
    r.c.observe_all([breaker, back])  # a trip closed again before the poll: how long, only the meters say
    r.at(600.0)
    (o,) = r.all_reported()
    assert o.group == Group("meter", "m6") or o.group.level == "box"
    assert (o.start.at, o.end.at if o.end else None) == (50.0, 98.0) and "meter_record" in o.sources


def test_records_waiting_for_company_join_an_outage_reported_meanwhile() -> None:
    r = Rig(Settings(record_settle_s=300.0))
    baseline(r)
    r.c.observe(PowerDownRecord("m6", 50.0, 98.0, 120.0))  # read before the breaker was polled
    r.at(130.0)
    r.c.observe(
        GroupSupply(Group("branch", "F2"), False, Window.exact(50.0), 140.0, "breaker", sampled=False)
    )
    r.at(150.0)
    (o,) = r.open()
    assert o.group == Group("branch", "F2") and "meter_record" not in o.sources
    r.at(500.0)
    assert [x.id for x in r.all_reported()] == [o.id] and "meter_record" in o.sources


def test_outages_inside_a_higher_outage_that_began_with_it_become_one_report() -> None:
    """A sub-branch and a box reported on their own (the branch still waited for members), the
    branch later: one report, the branch, listing every meter; a box outage of another time stays."""
    c = Classifier(station())
    w = Window(100.0, 90.0, 100.0)

    def add(
        oid: str, level: str, target: str, meters: tuple[str, ...], start: Window, sources: tuple[str, ...]
    ) -> Outage:
        o = Outage(oid, Group(level, target), start, meters, sources, reported_at=start.hi + 60.0)  # type: ignore[arg-type]
        c.outages[oid] = o
        return o

    sub = add("a", "branch", "F2a", ("m8", "m9"), w, ("hplc",))
    box = add("b", "box", "F2-X1", ("m6", "m7"), Window(101.0, 95.0, 101.0), ("rs485",))
    earlier = add("c", "meter", "m10", ("m10",), Window(10.0, 5.0, 12.0), ("hplc",))
    branch = add("d", "branch", "F2", ("m6", "m7"), Window(100.0, 100.0, 100.0), ("breaker",))
    changed = c.step(1000.0).changed
    assert (sub.status, sub.merged_into, box.status, box.merged_into) == (MERGED, "d", MERGED, "d")
    assert earlier.status == ONGOING  # began long before: its own outage
    assert branch.meters == ("m6", "m7", "m8", "m9") and branch.sources == ("breaker", "hplc", "rs485")
    assert {o.id for o in changed} == {"a", "b", "d"}


def test_restored_outages_that_began_together_and_cover_a_branch_were_the_branch() -> None:
    """F2a's box and F2-X1's meters reported apart (short outage, members not heard from in time),
    all back: together they are every meter of F2, at one time: one branch F2 outage."""
    c = Classifier(station())
    w, back = Window(100.0, 99.0, 100.0), Window(140.0, 139.0, 141.0)

    def add(oid: str, level: str, target: str, meters: tuple[str, ...], start: Window = w) -> Outage:
        o = Outage(oid, Group(level, target), start, meters, ("hplc",), reported_at=200.0 + len(c.outages))  # type: ignore[arg-type]
        o.status, o.end, o.trigger = RESTORED, back, 900.0  # last changed at 900
        c.outages[oid] = o
        return o

    first = add("a", "box", "F2a-X1", ("m8", "m9"))
    add("b", "meter", "m6", ("m6",))
    add("c", "meter", "m7", ("m7",))
    later = add("d", "meter", "m10", ("m10",), Window(500.0, 499.0, 500.0))  # another time
    c.step(1000.0)
    assert first.group == Group("box", "F2a-X1") and later.status == RESTORED  # F2 not all dark together
    c.outages["d"].start = w  # (as its meter's record would say)
    c.observe(RecordsRead("m10", 1001.0, 1001.0))
    c.step(1001.0)
    assert first.group == Group("branch", "F2") and first.status == RESTORED
    assert first.meters == ("m10", "m6", "m7", "m8", "m9") and first.end == back
    assert [o.merged_into for o in c.outages.values() if o.status == MERGED] == ["a", "a", "a"]


def test_finished_outages_beyond_the_keep_are_forgotten_the_open_ones_never() -> None:
    c = Classifier(station())
    for n in range(2 * KEEP_FINISHED + 1):
        o = Outage(
            f"o{n}", Group("meter", "m1"), Window.exact(float(n)), ("m1",), ("hplc",), reported_at=float(n)
        )
        o.status, o.end = RESTORED, Window.exact(n + 0.5)
        c.outages[o.id] = o
    c.outages["open"] = Outage("open", Group("meter", "m2"), Window.exact(0.0), ("m2",), ("hplc",), 0.0)
    c.step(10_000.0)
    assert len(c.outages) == KEEP_FINISHED + 1 and "open" in c.outages
    assert min(int(k[1:]) for k in c.outages if k != "open") == KEEP_FINISHED + 1  # the newest kept


def test_a_group_dark_again_right_after_its_parent_came_back_is_not_swallowed_by_it() -> None:
    """The branch is back; a box in it is dark a moment later (its start window overlaps the
    branch's): a new outage of its own, reported once, not merged into the restored branch."""
    c = Classifier(station())
    branch = Outage(
        "b", Group("branch", "F2"), Window(100.0, 40.0, 100.0), ("m6", "m7", "m10"), ("hplc",), 100.0
    )
    branch.status, branch.end, branch.trigger = RESTORED, Window(130.0, 125.0, 130.0), 130.0
    box = Outage(
        "x", Group("box", "F2-X1"), Window(140.0, 80.0, 140.0), ("m6", "m7", "m10"), ("hplc",), 200.0
    )
    box.trigger = 200.0
    c.outages.update({"b": branch, "x": box})
    c.step(200.0)
    assert box.status == ONGOING and box.merged_into is None and branch.status == RESTORED


def test_a_part_found_late_by_its_records_still_joins_the_parts_reported_long_before() -> None:
    c = Classifier(station())
    w, back = Window(100.0, 99.0, 100.0), Window(140.0, 139.0, 141.0)
    for oid, target, trigger in (("a", "m6", 200.0), ("b", "m7", 200.0), ("c", "m10", 5000.0)):
        o = Outage(oid, Group("meter", target), w, (target,), ("meter_record",), reported_at=trigger)
        o.status, o.end, o.trigger = RESTORED, back, trigger  # m10's records were read only at 5000
        c.outages[oid] = o
    c.observe(RecordsRead("m10", 5000.0, 5000.0))
    c.step(5000.0)
    assert c.outages["a"].group == Group("box", "F2-X1") and c.outages["a"].meters == ("m10", "m6", "m7")
    assert c.outages["b"].status == c.outages["c"].status == MERGED


def test_members_keeps_no_set_a_meter_and_lists_groups_without_meters() -> None:
    """A meter's own group is answered without a stored set (2,400 one-member sets were ~0.7 MB of
    the terminal); ``groups`` lists the groups above meters, as it says."""
    mem = station()
    assert mem.members(Group("meter", "m7")) == frozenset({"m7"})
    assert mem.members(Group("meter", "nope")) == frozenset()
    assert mem.members(Group("box", "F2-X1")) == frozenset({"m6", "m7", "m10"})
    assert mem.members(Group("branch", "F2")) == frozenset({"m6", "m7", "m10", "m8", "m9"})
    assert mem.members(mem.station_group) == frozenset(ALL)
    groups = mem.groups()
    assert groups and all(g.level != "meter" for g in groups)
    assert not [g for g in mem._members if g.level == "meter"]


def test_members_stored_as_numbers_answer_what_the_chains_say() -> None:
    """Every group's members (kept as meter numbers, made a set when asked) are the meters whose
    feeding chain names it; the meters of one box share one tuple of feeders."""
    mem = station()
    expected: dict[Group, set[str]] = {}
    for mid in mem.meters:
        groups = mem.groups_of(mid)
        assert groups[0] == Group("meter", mid) and groups[1:] == mem.feeders_of(mid)
        assert groups[-1] == mem.station_group
        for g in groups[1:]:
            expected.setdefault(g, set()).add(mid)
    for g, meters in expected.items():
        assert mem.members(g) == frozenset(meters) and mem.size(g) == len(meters)
        assert mem.members(g) is mem.members(g)  # kept once made
        assert all(mem.feeds(g, m) == (m in meters) for m in (*ALL, "nope"))
    assert mem.feeds(Group("meter", "m7"), "m7") and not mem.feeds(Group("meter", "m7"), "m6")
    assert mem.size(Group("meter", "m7")) == 1 and mem.size(Group("meter", "nope")) == 0
    assert mem.groups_of("nope") == () and mem.feeders_of("nope") == ()
    assert mem.feeders_of("m6")[0] is mem.feeders_of("m7")[0]  # one Group object per group
    two = from_records("S", [{"id": m, "phase": "A", "box": "X1", "branch": "F1"} for m in ("a", "b")])
    assert two.feeders_of("a") is two.feeders_of("b")  # the same box, branch and phase: one tuple
    assert mem.members(Group("box", "nope")) == frozenset()
    assert two.meters["a"] is two.meters["b"]  # one MeterInfo a place (its id is its key)
    dup = from_records(
        "S", [{"id": "a", "address": "01"}, {"id": "b", "address": "02"}, {"id": "a", "address": "03"}]
    )
    assert dup.by_address == {"03": "a", "02": "b"} and dup.meter_by_address("01") is None


def test_a_meter_never_failing_holds_no_array_of_failures() -> None:
    b = Beliefs(station())
    assert b.meter("m1").fails == () and b.meter("m1").answers == ()
    b.observe(ReadResult("m1", True, 10.0, 10.0))
    b.observe(ReadResult("m1", True, 5.0, 11.0))  # reported late: kept in order
    assert list(b.meters["m1"].answers) == [5.0, 10.0] and b.meters["m1"].fails == ()
    for k in range(ANSWERS_KEPT + 3):
        b.observe(ReadResult("m1", False, 100.0 + k, 100.0 + k))
    assert list(b.meters["m1"].fails) == [100.0 + k for k in range(3, ANSWERS_KEPT + 3)]


def test_answers_are_whole_seconds_until_one_is_not_and_read_back_as_the_same_floats() -> None:
    import random

    rnd = random.Random(7)
    b = Beliefs(station())
    reference: list[float] = []  # the latest ANSWERS_KEPT, sorted: what a list of floats would keep
    for k in range(3 * ANSWERS_KEPT):
        t = float(1_717_200_000 + 60 * k - rnd.randrange(4) * 900)  # some reported late
        if k == 2 * ANSWERS_KEPT:
            t += 0.25  # a probe's time: not whole
        if k == 2 * ANSWERS_KEPT - 1:
            assert b.meters["m1"].answers.typecode == "i"  # type: ignore[union-attr]
        b.observe(ReadResult("m1", True, t, t))
        reference = sorted([*reference, t])[-ANSWERS_KEPT:]
        got = b.meters["m1"]
        assert got.answer_times() == reference
        assert got.last_answer == reference[-1] and isinstance(got.last_answer, float)
        after = reference[len(reference) // 2]
        assert got.first_answer_after(after) == next((a for a in reference if a > after), None)
    assert b.meters["m1"].answers.typecode == "d"  # type: ignore[union-attr]
    b.observe(ReadResult("m1", True, 1.0, 1.0))  # older than every kept answer: not kept
    assert b.meters["m1"].answer_times() == reference
