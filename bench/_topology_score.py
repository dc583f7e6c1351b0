"""Score a topology result as the master station stored it against a simulated run's ground truth.

Bench and test helper (not the app, not the simulator). ``result`` is the object
``ttu cloud topology --terminal T --json`` prints (``apps.topology.cloud.summary``); the truth is
the run's ``topology.csv`` and ``faults.csv`` rows (``sim.truth``). Scored:

* phase / branch / box of every meter of ours the archive lists (the truth's value at the end of
  the run: a meter moved mid-run counts where it went); a value of None (unresolved) is not
  correct, and is counted apart;
* foreign: every meter of the neighbouring station area (truth ``area`` = ``neighbour``) must
  have status ``foreign``; any other meter with it is a false positive;
* missing: every meter of ours the archive lacks (``archived`` = 0) must be in ``missing`` by
  address; an address there that is not one of them is a false positive (entries without an
  address, unexplained energy at a unit, are counted apart);
* archive errors (``faults.csv`` ``archive_phase`` / ``archive_branch`` / ``archive_box``):
  how many the result corrected (status ``corrected`` with the true value); a wrong phase label
  that a phase move later made right does not count.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DIMENSIONS = ("phase", "branch", "box")


@dataclass
class WorldScore:
    meters: int = 0
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIMENSIONS, 0))
    unresolved: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIMENSIONS, 0))
    wrong: dict[str, list[str]] = field(default_factory=lambda: {d: [] for d in DIMENSIONS})
    foreign: tuple[int, int, int] = (0, 0, 0)  # found, present, false positives
    missing: tuple[int, int, int] = (0, 0, 0)
    unexplained: int = 0  # missing entries without an address
    errors_fixed: tuple[int, int] = (0, 0)  # archive errors corrected, present
    absent: list[str] = field(default_factory=list)  # listed meters of ours the result lacks

    def rate(self, dim: str) -> float:
        return self.correct[dim] / max(self.meters, 1)

    def line(self) -> str:
        f, m, e = self.foreign, self.missing, self.errors_fixed
        return (
            f"{self.meters:4d} meters  "
            + " ".join(f"{d} {100 * self.rate(d):6.2f}" for d in DIMENSIONS)
            + f"  unres {sum(self.unresolved.values())}  foreign {f[0]}/{f[1]} fp {f[2]}"
            f"  missing {m[0]}/{m[1]} fp {m[2]}  archive errors fixed {e[0]}/{e[1]}"
        )


def score(
    result: Mapping[str, Any],
    topology: Sequence[Mapping[str, str]],
    faults: Sequence[Mapping[str, str]],
    *,
    units: Collection[str] = (),
) -> WorldScore:
    """``units``: the ids of the station's field devices (branch units, box terminals), not scored."""
    truth = {r["meter_id"]: r for r in topology if r["meter_id"] not in units}
    customers = {k: r for k, r in truth.items() if r.get("area") == "own" and r.get("box")}
    listed = {k for k, r in customers.items() if r.get("archived") == "1"}
    neighbours = {k for k, r in truth.items() if r.get("area") == "neighbour"}
    unlisted = {customers[k]["address"] for k in customers if k not in listed}
    got = {m["meter_id"]: m for m in result.get("meters", [])}
    s = WorldScore()
    for k in sorted(listed):
        m = got.get(k)
        if m is None:
            s.absent.append(k)
            continue
        s.meters += 1
        for d in DIMENSIONS:
            if m.get(d) == customers[k][d]:
                s.correct[d] += 1
            elif m.get(d) is None:
                s.unresolved[d] += 1
            else:
                s.wrong[d].append(k)
    flagged = {k for k, m in got.items() if m.get("status") == "foreign"}
    s.foreign = (len(flagged & neighbours), len(neighbours), len(flagged - neighbours))
    heard = {m["address"] for m in result.get("missing", []) if m.get("address")}
    s.missing = (len(heard & unlisted), len(unlisted), len(heard - unlisted))
    s.unexplained = sum(1 for m in result.get("missing", []) if not m.get("address"))
    errors = [f for f in faults if f["kind"] in ("archive_phase", "archive_branch", "archive_box")]
    # a wrong phase label a later phase move made right (the customer was reconnected to the
    # phase the archive had) is no error any more
    errors = [f for f in errors if not (f["kind"] == "archive_phase" and _true(customers, f) == f["value"])]
    fixed = 0
    for f in errors:
        m, true = got.get(f["target"]), customers.get(f["target"])
        dims = ("branch", "box") if f["kind"] == "archive_branch" else (f["kind"].removeprefix("archive_"),)
        if m and true and m.get("status") == "corrected" and all(m.get(d) == true[d] for d in dims):
            fixed += 1
    s.errors_fixed = (fixed, len(errors))
    return s


def _true(customers: Mapping[str, Mapping[str, str]], fault: Mapping[str, str]) -> str | None:
    row = customers.get(fault["target"])
    return None if row is None else row["phase"]


__all__ = ["DIMENSIONS", "WorldScore", "score"]
