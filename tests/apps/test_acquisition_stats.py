"""The success tracker's columns: what a meter's reads add up to, across an archive replacement."""

from __future__ import annotations

from apps.acquisition.stats import SuccessTracker


def test_a_meter_counts_its_reads_by_kind_and_keeps_them_when_the_archive_changes() -> None:
    tracker = SuccessTracker(["a", "b"])
    tracker.reset_meters(["a", "b"], {"a": "rs485-1", "b": "hplc"})
    assert tracker.record("a", "realtime", True, 10.0) == (False, False)
    assert tracker.record("a", "curve", False, 11.0) == (True, False)
    assert tracker.record("a", "clock", True, 12.0) == (False, True)  # a kind outside the columns
    tracker.record("b", "freeze", False, 13.0)
    a = tracker.meter("a")
    assert (a.online, a.last_ok, a.tried(), a.succeeded()) == (True, 12.0, 3, 2)
    assert a.attempts == {"realtime": 1, "curve": 1, "clock": 1}
    assert a.successes == {"realtime": 1, "curve": 0, "clock": 1}
    assert (a.rate("curve"), a.rate("event"), tracker.meter("b").last_ok) == (0.0, None, None)
    assert tracker.station_rate() == 2 / 4 and tracker.station_rate("clock") == 1.0
    assert tracker.transport_rates() == {"hplc": 0.0, "rs485-1": 2 / 3}
    assert (tracker.meters_online, tracker.daily_rate()) == (1, 0.5)

    tracker.reset_meters(["c", "a"], {"a": "rs485-2", "c": "rs485-2"})  # b leaves, c comes, a stays
    assert tracker.per_meter() == {
        "c": {"online": None, "success_rate": None, "last_ok": None, "transport": "rs485-2"},
        "a": {"online": True, "success_rate": 2 / 3, "last_ok": 12.0, "transport": "rs485-2"},
    }
    assert (tracker.meters_total, tracker.daily_rate(), tracker.station_rate("freeze")) == (2, 0.5, None)
    tracker.record("x", "event", True, 14.0)  # a meter outside the archive is counted too
    assert tracker.per_meter()["x"]["transport"] is None and tracker.transport_rates()["?"] == 1.0
    tracker.new_day()
    assert tracker.daily_rate() == 0.0
