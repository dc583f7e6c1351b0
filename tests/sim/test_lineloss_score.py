"""The line loss scorer judges findings against the run's truth files."""

from __future__ import annotations

from pathlib import Path

from sim.harness import WorldRun
from sim.lineloss_score import unexplained

FAULTS = """kind,target,start,end,value,detail
theft,m-0020,2024-05-31T16:00:00Z,,0.6,share of the load bypassing the meter
archive_missing,m-0071,2024-05-31T16:00:00Z,,1,meter not in the archive
"""
TOPOLOGY = """meter_id,address,phase,branch,box,channel,archived,area
m-0020,010000000020,A,F2,F2-X01,hplc,1,own
m-0071,020000000040,B,R2-F2,,hplc,0,own
m-0085,020000000050,C,R2-F2,,hplc,1,own
"""


def run_with_truth(tmp_path: Path) -> WorldRun:
    (tmp_path / "faults.csv").write_text(FAULTS, encoding="utf-8")
    (tmp_path / "topology.csv").write_text(TOPOLOGY, encoding="utf-8")
    return WorldRun({}, tmp_path, tmp_path / "cloud.sqlite", tmp_path, 0.0, 0.0)


def test_an_archive_finding_on_the_meter_left_out_of_the_archive_is_true(tmp_path: Path) -> None:
    run = run_with_truth(tmp_path)
    found = [
        {"kind": "archive", "target": "020000000040", "branch": "R2-F2"},  # the carrier-heard address
        {"kind": "archive", "target": "m-0071", "branch": "R2-F2"},
        {"kind": "theft", "target": "F2", "branch": "F2"},  # located to the thief's branch
        {"kind": "archive", "target": "020000000050", "branch": "R2-F2"},  # an archived meter
        {"kind": "theft", "target": "R2-F2", "branch": "R2-F2"},  # no theft there
    ]
    assert unexplained(run, found) == {("archive", "020000000050"), ("theft", "R2-F2")}
