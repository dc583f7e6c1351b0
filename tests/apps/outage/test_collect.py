"""Bus messages -> evidence: what each source says and how precisely in time."""

from __future__ import annotations

from apps.outage.collect import Timing, Translator
from apps.outage.evidence import (
    GroupSupply,
    MetersBack,
    MetersDark,
    PowerDownRecord,
    ReadResult,
    RecordsRead,
    RelayState,
)
from apps.outage.members import Group, from_records

MEMBERS = from_records(
    "S1",
    [
        {"id": "m1", "address": "000000000001", "phase": "A", "branch": "F1", "box": "F1-X1", "port": "hplc"},
        {
            "id": "m2",
            "address": "000000000002",
            "phase": "B",
            "branch": "F1",
            "box": "F1-X1",
            "port": "rs485-1",
        },
        {"id": "bu-F1", "kind": "branch_unit", "branch": "F1"},
    ],
    boxes=[{"id": "F1-X1", "branch": "F1", "terminal": "bt-F1-X1"}],
    branches=[{"id": "F1", "breaker": "brk-F1"}],
)


def carrier(kind: str, addresses: list[str], ts: float, **extra: object) -> dict[str, object]:
    return {"kind": kind, "addresses": addresses, "ts": ts, "payload": "", "extra": extra}


def test_hplc_lists_carry_their_aggregation_window() -> None:
    t = Translator(MEMBERS, Timing(judgement_s=3.0, hplc_aggregation_s=60.0, hplc_restore_s=30.0))
    (off,) = t.carrier("power_off", carrier("power_off", ["000000000001", "999999999999"], 1000.0))
    assert isinstance(off, MetersDark) and off.meters == ("m1", "999999999999") and off.received == 1000.0
    assert (off.when.at, off.when.hi) == (937.0, 997.0) and abs(off.when.lo - 936.8) < 1e-9
    (on,) = t.carrier("power_on", carrier("power_on", ["000000000001"], 2000.0))
    assert isinstance(on, MetersBack) and (on.when.lo, on.when.hi) == (1965.0, 1969.0)
    # a collector's list: each node's own state byte decides
    states = {"000000000001": False, "000000000002": True}
    (mixed,) = t.carrier("power_off", carrier("power_off", list(states), 3000.0, powered=states))
    assert isinstance(mixed, MetersDark) and mixed.meters == ("m1",)


def test_acquisition_events_and_readings() -> None:
    t = Translator(MEMBERS, Timing(device_poll_s=60.0))
    (rec,) = t.meter_event(
        "m2", {"kind": "meter.power_down", "source": "m2", "start": 100.0, "end": 160.0}, 500.0
    )
    assert rec == PowerDownRecord("m2", 100.0, 160.0, 500.0)
    (relay,) = t.meter_event("m2", {"kind": "meter.relay_open", "source": "m2", "start": 200.0}, 210.0)
    assert isinstance(relay, RelayState) and relay.open
    trip = {
        "kind": "breaker.trip",
        "source": "brk-F1",
        "start": 300.0,
        "data": {"closed": True, "seen_at": 360.0},
    }
    lost, back = t.meter_event("brk-F1", trip, 360.0)
    assert isinstance(lost, GroupSupply) and lost.group == Group("branch", "F1") and not lost.powered
    assert isinstance(back, GroupSupply) and back.powered and (back.when.lo, back.when.hi) == (300.0, 360.0)
    unit = [{"quantity": f"voltage.{p}", "value": 0.0, "ts": 600.0} for p in "abc"]
    (dark,) = t.readings("bu-F1", unit, 610.0)
    assert isinstance(dark, GroupSupply) and dark.group == Group("branch", "F1") and not dark.powered
    assert (dark.when.lo, dark.when.hi) == (540.0, 600.0)
    (answer,) = t.readings("m2", [{"quantity": "voltage.b", "value": 229.0, "ts": 600.0}], 610.0)
    assert answer == ReadResult("m2", True, 600.0, 610.0)
    assert t.readings("m2", [{"quantity": "energy", "value": 1.0, "ts": 600.0}], 600.0 + 3600) == []  # old
    transformer = [{"quantity": "voltage.a", "value": 10.0, "ts": 700.0},
                   {"quantity": "voltage.b", "value": 230.0, "ts": 700.0},
                   {"quantity": "voltage.c", "value": 231.0, "ts": 700.0}]  # fmt: skip
    by = {
        e.group: e.powered
        for e in t.readings("transformer", transformer, 701.0)
        if isinstance(e, GroupSupply)
    }
    assert by == {Group("phase", "A"): False, Group("phase", "B"): True, Group("phase", "C"): True,
                  Group("station", "S1"): True}  # fmt: skip
    assert t.rejected == 0


def test_a_probe_reply_gives_answers_silences_and_with_records_the_records_read() -> None:
    t = Translator(MEMBERS)
    reply = {"at": 700.0, "answered": ["m1", "nobody"], "silent": ["m2"], "unknown": ["nobody"]}
    assert t.probe_reply(reply, 701.0) == [
        ReadResult("m1", True, 700.0, 701.0),
        ReadResult("m2", False, 700.0, 701.0),
    ]
    with_records = t.probe_reply(reply, 701.0, records=True)
    assert RecordsRead("m1", 700.0, 701.0) in with_records
    assert not any(
        isinstance(e, RecordsRead) and e.meter == "m2" for e in with_records
    )  # silent: nothing read
    assert t.probe_reply(["not", "a", "reply"], 702.0) == [] and t.rejected == 1
