"""The uplink's delivery state (pure): priorities, windows, acks, gaps, nacks, timeouts."""

from __future__ import annotations

import pytest

from protocols.cloud import NACK_STORE_FAILED, NACK_TOO_LARGE, Ack, Nack, StreamPriority
from runtime.uplink import Delivery


def delivery(**kwargs: object) -> Delivery:
    d = Delivery(max_messages=10, window=2, ack_timeout_s=30.0, **kwargs)  # type: ignore[arg-type]
    d.declare("readings", StreamPriority.BULK)
    d.declare("outage", StreamPriority.URGENT)
    return d


def send_all(d: Delivery, now: float = 0.0) -> list[tuple[str, int, int]]:
    """Take every batch the windows allow; (stream, first, last) in the order they go out."""
    out = []
    while (nxt := d.next_batch(now)) is not None:
        state = d.stream(nxt.stream)
        last = min(state.last, nxt.after + nxt.max_messages)
        d.sent(nxt.stream, nxt.after + 1, last, now)
        out.append((nxt.stream, nxt.after + 1, last))
    return out


def test_urgent_overtakes_a_bulk_backlog() -> None:
    d = delivery()
    d.restore("readings", acked=0, last=3600)  # an hour of readings waiting
    d.appended("outage", 1)
    assert send_all(d)[0] == ("outage", 1, 1)
    d.appended("outage", 2)  # another report while the readings' window is full
    assert send_all(d) == [("outage", 2, 2)]


def test_window_bounds_what_is_in_flight_and_acks_open_it() -> None:
    d = delivery()
    d.restore("readings", acked=0, last=100)
    assert send_all(d) == [("readings", 1, 10), ("readings", 11, 20)]
    moved = d.on_ack(Ack({"readings": 10}, {"readings": 20}), now=1.0)
    assert moved == {"readings": 10} and d.backlog() == {"readings": 90}
    assert send_all(d) == [("readings", 21, 30)]


def test_a_gap_the_cloud_cannot_fill_by_waiting_is_sent_again() -> None:
    d = delivery()
    d.restore("readings", acked=0, last=30)
    send_all(d)  # 1-10, 11-20 in flight
    d.on_ack(Ack({"readings": 10}, {"readings": 10}), now=1.0)
    send_all(d)  # 21-30
    # 11-20 was lost: the cloud has 21-30 but its contiguous mark stays at 10
    d.on_ack(Ack({"readings": 10}, {"readings": 30}), now=2.0)  # which batch: unknown, wait
    assert d.stream("readings").sent == 30
    d.on_ack(Ack({"readings": 10}, {"readings": 30}, batch=("readings", 21, 30)), now=2.0)
    assert d.stream("readings").sent == 10  # 21-30 went after 11-20: 11-20 is lost
    assert send_all(d)[0] == ("readings", 11, 20)
    assert d.resends == 1


def test_too_large_nack_halves_the_batches_of_that_range() -> None:
    d = delivery()
    d.restore("readings", acked=0, last=10)
    assert send_all(d) == [("readings", 1, 10)]
    d.on_ack(Ack({}, {}, (Nack("readings", 1, 10, NACK_TOO_LARGE, "over the limit"),)), now=1.0)
    assert send_all(d) == [("readings", 1, 5), ("readings", 6, 10)]
    d.on_ack(Ack({}, {}, (Nack("readings", 1, 5, NACK_TOO_LARGE, "still over"),)), now=2.0)
    d.stream("readings").inflight.clear()
    assert send_all(d)[:2] == [("readings", 1, 2), ("readings", 3, 4)]


def test_a_single_message_the_cloud_refuses_blocks_its_stream_and_is_retried() -> None:
    d = delivery()
    d.restore("readings", acked=0, last=1)
    send_all(d)
    d.on_ack(Ack({}, {}, (Nack("readings", 1, 1, NACK_TOO_LARGE, "cloud limit lower than ours"),)), now=5.0)
    assert "seq 1" in d.blocked()["readings"]
    assert send_all(d, now=10.0) == []  # not before the retry time
    assert send_all(d, now=35.0) == [("readings", 1, 1)]
    d.on_ack(Ack({"readings": 1}, {"readings": 1}), now=36.0)
    assert d.blocked() == {} and d.backlog() == {}


def test_other_nacks_retry_after_the_ack_timeout() -> None:
    d = delivery()
    d.restore("events", acked=4, last=6)
    assert send_all(d) == [("events", 5, 6)]
    d.on_ack(Ack({}, {}, (Nack("events", 5, 6, NACK_STORE_FAILED, "disk"),)), now=1.0)
    assert send_all(d, now=2.0) == [] and d.next_deadline() == pytest.approx(31.0)
    assert send_all(d, now=31.0) == [("events", 5, 6)]


def test_no_ack_within_the_timeout_sends_again_and_reconnect_resends_everything() -> None:
    d = delivery()
    d.restore("readings", acked=0, last=15)
    send_all(d, now=0.0)
    assert d.expire(now=29.0) == []
    assert d.next_deadline() == pytest.approx(30.0)
    assert d.expire(now=30.0) == ["readings"]
    assert send_all(d, now=30.0)[0] == ("readings", 1, 10)
    d.on_ack(Ack({"readings": 10}, {"readings": 10}), now=31.0)
    d.reconnected()
    assert send_all(d, now=32.0) == [("readings", 11, 15)]


def test_an_ack_beyond_what_we_have_or_for_an_unknown_stream_changes_nothing_wrong() -> None:
    d = delivery()
    d.restore("readings", acked=0, last=5)
    send_all(d)
    assert d.on_ack(Ack({"readings": 99, "other": 3}, {}), now=1.0) == {"readings": 5}
    assert d.stream("readings").acked == 5 and "other" not in d.streams


def test_streams_of_equal_priority_take_turns() -> None:
    d = delivery()
    d.restore("events", acked=0, last=100)
    d.restore("status", acked=0, last=100)
    order = [b[0] for b in send_all(d)]
    assert order == ["events", "status", "events", "status"]
