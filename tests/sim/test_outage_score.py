"""Scoring outage reports against events.csv: right level and target, missed, false, duplicates."""

from __future__ import annotations

from sim.outage_score import Groups, score

GROUPS = Groups(
    {
        ("station", "S"): frozenset({"m1", "m2", "m3", "m4"}),
        ("branch", "F1"): frozenset({"m1", "m2"}),
        ("branch", "F2"): frozenset({"m3", "m4"}),
        ("box", "F1-X1"): frozenset({"m1", "m2"}),
        ("meter", "m1"): frozenset({"m1"}),
        ("meter", "m3"): frozenset({"m3"}),
        ("meter", "m4"): frozenset({"m4"}),
    }
)


def event(scope: str, target: str, start: str, end: str, meters: str) -> dict[str, str]:
    return {"kind": "outage", "scope": scope, "target": target, "start": start, "end": end, "meters": meters}


def report(level: str, target: str, start: str, end: str | None) -> dict[str, object]:
    return {"level": level, "target": target, "start": start, "end": end, "meters": []}


TRUTH = [
    event("branch", "F2", "2024-06-01T01:00:00Z", "2024-06-01T01:10:00Z", "m3;m4"),
    event("branch", "F1", "2024-06-01T02:00:00Z", "2024-06-01T02:10:00Z", "m1;m2"),
    {
        "kind": "dip",
        "scope": "meter",
        "target": "m1",
        "start": "2024-06-01T03:00:00Z",
        "end": "",
        "meters": "m1",
    },
]


def test_one_report_per_outage_at_its_level_is_right_and_restored() -> None:
    reports = [
        report("branch", "F2", "2024-06-01T01:00:30Z", "2024-06-01T01:10:20Z"),
        report("box", "F1-X1", "2024-06-01T02:00:00Z", "2024-06-01T02:10:00Z"),  # same meters as F1
    ]
    s = score(TRUTH, reports, GROUPS)
    assert (s.outages, s.right, s.restored, s.false_reports, s.duplicates) == (2, 2, 2, 0, 0)
    assert s.start_errors == [30.0, 0.0] and s.end_ok == 2


def test_fragments_are_duplicates_wrong_levels_are_missed_and_reports_on_nothing_are_false() -> None:
    reports = [
        report("branch", "F2", "2024-06-01T01:00:00Z", "2024-06-01T01:10:00Z"),
        report("meter", "m3", "2024-06-01T01:00:00Z", "2024-06-01T01:10:00Z"),  # a fragment of F2
        report("meter", "m1", "2024-06-01T02:00:00Z", None),  # F1 reported at the wrong level
        report("meter", "m1", "2024-06-01T03:00:00Z", "2024-06-01T03:00:05Z"),  # on the dip: nothing true
    ]
    s = score(TRUTH, reports, GROUPS)
    assert (s.right, s.false_reports, s.duplicates) == (1, 1, 1)
    assert s.confusion == {"branch": {"branch": 1, "meter": 1}}
    assert s.extra == ["meter m3 at 1717203600"] and s.false == ["meter m1 at 1717210800"]
    assert s.missed == ["branch F1 at 1717207200: reported as meter"]
