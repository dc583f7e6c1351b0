"""DeviceHealthBook: the edge-triggered device health shared by the RS-485 port and the carrier transport."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hal.health import DeviceHealthBook


class _Clock:
    """Wall and monotonic time set by the test."""

    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds

    def timeout(self, seconds: float) -> asyncio.Timeout:
        return asyncio.timeout(seconds)


def _book(clock: _Clock) -> DeviceHealthBook:
    return DeviceHealthBook(
        clock=clock, name="bus1", fail_threshold=3, log=logging.getLogger("tests.health"), noun="meter"
    )


def test_unavailable_on_the_threshold_and_back_on_success_each_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tests.health")
    clock = _Clock()
    book = _book(clock)
    for n in range(5):
        clock.t += 1
        book.failure("m1", "timeouts")
        assert book.available("m1") is (n < 2)
    h = book.snapshot("m1")
    assert (h.consecutive_failures, h.timeouts, h.last_failure, h.last_ok) == (5, 5, clock.t, None)
    clock.t += 1
    book.success("m1")
    book.success("m1")
    h = book.snapshot("m1")
    assert (h.available, h.consecutive_failures, h.ok, h.last_ok) == (True, 0, 2, clock.t)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert all("bus1" in m and "meter m1" in m for _, m in lines)


def test_counted_problems_do_not_make_a_device_unavailable() -> None:
    book = _book(_Clock())
    for _ in range(5):
        book.count("m2", "errors")
        book.count("m2", "bad_frames")
    h = book.snapshot("m2")
    assert (h.available, h.consecutive_failures, h.errors, h.bad_frames) == (True, 0, 5, 5)


def test_snapshot_of_an_unknown_device_is_clean_and_not_tracked() -> None:
    book = _book(_Clock())
    assert book.snapshot("nobody").available and book.available("nobody")
    book.track("m3")
    assert [h.device for h in book.snapshots()] == ["m3"]


def test_a_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="fail_threshold"):
        DeviceHealthBook(clock=_Clock(), name="x", fail_threshold=0, log=logging.getLogger("x"))
