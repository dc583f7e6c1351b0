"""The classifier skips re-judging for a supplied sample while nothing is dark, lost or open.

The metrology unit says "phase A supplied" every few seconds; re-judging the whole station area on
each of those was the outage app's largest cost. The skip must never change a report: the same
seeded stream of evidence (outages of meters, boxes, branches and phases, dips, failing reads,
carrier lists, breakers) is judged twice, once with the skip and once re-judging every sample, and
the reports must be the same, in the same order, at the same times.
"""

from __future__ import annotations

import random

import pytest

from apps.outage.classify import Classifier

from .test_classify import ALL, RS485, Rig, baseline

BRANCH_METERS = {"F1": ("m1", "m2", "m3", "m4", "m5"), "F2": ("m6", "m7", "m10", "m8", "m9")}


def _scenario(r: Rig, seed: int) -> None:
    rnd = random.Random(seed)
    baseline(r)
    t = 10.0
    for _ in range(40):
        t += rnd.choice((5.0, 5.0, 30.0, 120.0, 600.0))
        kind = rnd.choice(("meters", "hplc", "breaker", "phase", "dip", "answer", "quiet"))
        if kind == "meters":
            meters = rnd.sample(RS485, rnd.randint(1, 3))
            r.fail(t, *meters)
            t += rnd.choice((60.0, 400.0))
            r.answer(t, *meters)
        elif kind == "hplc":
            r.hplc_off(t, "m1", "m5")
            t += rnd.choice((100.0, 900.0))
            r.hplc_on(t, "m1", "m5")
        elif kind == "breaker":
            branch = rnd.choice(("F1", "F2"))
            r.group(t, "branch", branch, False, "breaker", sampled=False)
            r.fail(t + 5.0, *[m for m in BRANCH_METERS[branch] if m in RS485])
            t += rnd.choice((200.0, 1200.0))
            r.group(t, "branch", branch, True, "breaker", sampled=False)
            r.answer(t + 5.0, *ALL)
        elif kind == "phase":
            phase = rnd.choice(("A", "B", "C"))
            r.live_phases.discard(phase)
            r.group(t, "phase", phase, False, "metrology")
            t += rnd.choice((4.0, 300.0))
            r.group(t, "phase", phase, False, "metrology")
            r.live_phases.add(phase)
            t += 5.0
            r.group(t, "phase", phase, True, "metrology")
        elif kind == "dip":
            r.group(t, "branch", "F1", False, "branch_unit")
            r.group(t + 1.0, "branch", "F1", True, "branch_unit")
        elif kind == "answer":
            r.answer(t, *rnd.sample(ALL, 4))
        t += 5.0
        for _ in range(rnd.randint(1, 30)):  # quiet stretches: the metrology unit alone
            t += 5.0
            r.at(t)
    r.at(t + 7200.0)


@pytest.mark.parametrize("seed", range(12))
def test_skipping_supplied_samples_never_changes_a_report(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = Rig()
    _scenario(fast, seed)
    steps_fast = fast.c.beliefs.counters.evidence

    with monkeypatch.context() as m:
        m.setattr(Classifier, "_quiet", lambda self, view, now: False)
        slow = Rig()
        _scenario(slow, seed)

    assert fast.reports == slow.reports
    assert fast.reports, "the scenario must produce reports to compare"
    assert fast.c.to_json() == slow.c.to_json()
    assert steps_fast == slow.c.beliefs.counters.evidence  # both saw the same evidence


def _count_judgements(r: Rig) -> list[int]:
    """Wrap the classifier's group selection (the start of every real re-judgement); the list's
    one element counts the calls."""
    calls = [0]
    select = r.c._select

    def counting(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return select(*args, **kwargs)  # type: ignore[arg-type]

    r.c._select = counting  # type: ignore[method-assign,assignment]
    return calls


def test_a_quiet_station_area_is_not_rejudged_on_every_supplied_sample() -> None:
    r = Rig()
    baseline(r)
    r.at(60.0)
    calls = _count_judgements(r)
    for i in range(1, 200):
        r.at(60.0 + 5.0 * i)
    assert calls[0] <= 2  # the wakeups it asked for, not one per sample


def test_a_supplied_sample_still_rejudges_while_a_meter_is_dark() -> None:
    r = Rig()
    baseline(r)
    r.hplc_off(100.0, "m1")
    calls = _count_judgements(r)
    for i in range(1, 21):
        r.at(100.0 + 5.0 * i)
    assert calls[0] >= 20
