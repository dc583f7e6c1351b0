"""Paging a result over several upward messages: every message fits, the join gives the result back."""

from __future__ import annotations

import pytest

from protocols.cloud import PageError, StoredResult, joined, joined_rows, json_size, paged, paged_lists, pages


def test_pages_keep_order_and_stay_within_the_budget_and_count() -> None:
    items = [{"id": f"m-{i}", "v": "é" * (i % 50)} for i in range(1_000)]
    cut = pages(items, budget=2_000, max_items=30)
    assert [x for page in cut for x in page] == items
    assert all(json_size(page) <= 2_000 and len(page) <= 30 for page in cut)
    assert pages([], budget=100) == [[]]


def test_an_item_that_cannot_fit_alone_is_an_error_not_a_message_refused_later() -> None:
    with pytest.raises(PageError, match="item 1 is"):
        pages(["a", "b" * 200], budget=100)


def test_paged_messages_fit_the_limit_and_join_in_any_order_with_repeats() -> None:
    messages = paged({"type": "result", "at": 1.0}, "rows", list(range(5_000)), limit=4_000)
    assert len(messages) > 3 and all(json_size(m) <= 4_000 for m in messages)
    assert joined(list(reversed(messages)) + messages[:1], "rows") == list(range(5_000))
    assert joined(messages[1:], "rows") is None


def test_paged_lists_leave_a_small_body_alone_and_join_a_big_one_per_revision() -> None:
    small = {"id": "o-1", "revision": 1, "meters": ["a"], "lit": [], "still_dark": None}
    assert paged_lists(small, ("meters", "lit", "still_dark")) == [small]
    big = {**small, "revision": 2, "meters": [f"m-{i:04d}" for i in range(900)], "lit": ["x"] * 300}
    parts = paged_lists(big, ("meters", "lit", "still_dark"), limit=3_000)
    assert len(parts) > 2 and all(json_size(p) <= 3_000 for p in parts)
    rows = [StoredResult("T", "s", f"k{i}", i, 0.0, 0.0, b) for i, b in enumerate([small, *parts], 1)]
    got = [r.body for r in joined_rows(rows, ("meters", "lit", "still_dark"))]
    assert got == [small, big]
    assert [r.body for r in joined_rows(rows[:-1], ("meters", "lit", "still_dark"))] == [small]


def test_paged_lists_without_keys_page_every_list_and_join_back() -> None:
    body = {"type": "intervals", "date": "2024-06-01", "scopes": [f"X{i:03d}" for i in range(300)],
            "loss_kwh": [[0.125] * 96 for _ in range(300)], "step_s": 900}  # fmt: skip
    parts = paged_lists(body, limit=20_000)
    assert len(parts) > 3 and all(json_size(p) <= 20_000 for p in parts)
    rows = [StoredResult("T", "s", f"k{i}", i, 0.0, 0.0, b) for i, b in enumerate(reversed(parts), 1)]
    (got,) = joined_rows(rows)
    assert got.body == body
