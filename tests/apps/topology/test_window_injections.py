"""The curve window fed from the bus, and the night's signature-current plan."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import numpy as np

from apps.topology.injections import Candidate, Injection, Policy, attribute, plan
from apps.topology.window import STEP_S, Window
from protocols.signature import Detection as Heard

T0 = 1_717_200_000.0  # a 15-min point


def curve_rows(device: str, ts: float, v: float, i: float, kwh: float) -> list[dict[str, object]]:
    return [
        {"device": device, "quantity": "voltage.a", "value": v, "ts": ts},
        {"device": device, "quantity": "current.a", "value": i, "ts": ts},
        {"device": device, "quantity": "energy.active.import.total", "value": kwh, "ts": ts},
        {"device": device, "quantity": "energy.active.export.total", "value": 0.0, "ts": ts},
    ]


def test_window_aligns_points_spreads_gaps_and_survives_a_restart() -> None:
    w = Window(keep_points=20)
    for k in (0, 1, 3):  # point 2 missing
        w.add_curve(curve_rows("m-1", T0 + k * STEP_S, 230 + k, 1.5, 100 + 0.5 * k))
    w.add_curve([{"device": "m-1", "quantity": "voltage.a", "value": 1.0, "ts": T0 + 60}])  # not a point
    w.add_curve([{"device": "m-1", "quantity": "voltage.a"}])  # malformed: counted, ignored
    c = w.curves(["m-1", "m-2"], T0, 4)
    assert c.voltage[:, 0, 0].tolist()[:2] == [230, 231] and np.isnan(c.voltage[2, 0, 0])
    assert np.allclose(c.energy[:, 0], [0.5, 0.5, 0.5])  # the gap's advance spread evenly
    assert np.isnan(c.energy[:, 1]).all()  # a device never heard of
    assert w.ignored == 1 and w.latest() == T0 + 3 * STEP_S
    again = Window.from_json(w.to_json())
    assert np.allclose(
        np.nan_to_num(again.curves(["m-1"], T0, 4).voltage), np.nan_to_num(w.curves(["m-1"], T0, 4).voltage)
    )


def test_transformer_power_is_integrated_per_interval_and_phase() -> None:
    w = Window()
    for k in range(31):  # a snapshot every minute for 30 min, 2 / 4 / 6 kW
        ts = T0 + 60 * k
        w.add_transformer(
            [
                {"quantity": f"power.active.{p}", "value": v, "ts": ts}
                for p, v in zip("abc", (2.0, 4.0, 6.0), strict=True)
            ]
            + [{"quantity": "voltage.a", "value": 231.0, "ts": ts}]
        )
    energy, volts = w.transformer(T0, 3)
    assert np.allclose(energy[0], [0.5, 1.0, 1.5]) and np.allclose(energy[1], [0.5, 1.0, 1.5])
    assert volts[0, 0] == 231.0


def test_the_night_plan_is_gentle() -> None:
    night = datetime(2024, 6, 2)
    policy = Policy(window=(time(1, 0), time(2, 0)), slot_s=60, per_day=50)
    cands = [Candidate(f"m-{k:02d}", f"F{k % 3}", 0.0) for k in range(40)] + [Candidate("m-doubt", "F0", 0.9)]
    cands.append(Candidate("m-recent", "F1", 0.0, last_sent=1000.0))
    out = plan(cands, night=night, now_utc=1000.0 + 3600, policy=policy, utc_offset_s=8 * 3600)
    meters = [i.meter for i in out]
    assert "m-recent" not in meters  # injected an hour ago: not again tonight
    assert meters.count("m-doubt") == 1 and len(out) <= 50
    first = min(out, key=lambda i: i.at)
    assert first.meter == "m-doubt" and first.alone  # the least sure goes first, alone in its slot
    assert all(night.replace(hour=1) <= i.at < night.replace(hour=2) for i in out)
    by_slot: dict[datetime, list[Injection]] = {}
    for i in out:
        by_slot.setdefault(i.at, []).append(i)
    for slot in by_slot.values():
        branches = [i.branch for i in slot]
        assert len(branches) == len(set(branches))  # one at a time per branch
        assert not any(i.alone for i in slot) or len(slot) == 1


def test_detections_go_to_the_injection_of_the_units_branch() -> None:
    t = datetime(2024, 6, 2, 1, 0)
    injs = [
        Injection("m-a", t, "F1", False),
        Injection("m-b", t, "F2", False),
        Injection("m-c", t + timedelta(seconds=60), "F1", True),
    ]
    heard = {
        "bu-F1": [
            Heard(t + timedelta(seconds=10), 1, 0.4, 0.4, 0.0),
            Heard(t + timedelta(seconds=70), 2, 0.4, 0.4, 0.0),
        ],
        "bu-F2": [Heard(t + timedelta(seconds=12), 3, 0.4, 0.4, 0.0)],
        "bu-F3": [
            Heard(t + timedelta(seconds=11), 3, 0.4, 0.4, 0.0)
        ],  # no injection of F3: every one of the slot
    }
    branches = {"bu-F1": "F1", "bu-F2": "F2", "bu-F3": "F3"}
    tied = attribute(injs, heard, branches, slot_s=60, utc_offset_s=8 * 3600, listening=sorted(branches))
    out = {d.source: d for d in tied}
    assert out["m-a"].heard_by == ("bu-F1", "bu-F3")
    assert out["m-b"].heard_by == ("bu-F2", "bu-F3")
    assert out["m-c"].heard_by == ("bu-F1",)
    assert out["m-a"].at == (t - datetime(1970, 1, 1)).total_seconds() - 8 * 3600
