"""Paging a result too big for one upward message: bounded by construction, not by luck.

Layer: protocols. Pure: measures JSON the way the terminal's outbox does and cuts a list of items
into pages whose messages each fit ``MAX_MESSAGE_BYTES``. No I/O.

A stream whose result grows with the station area (the station model, a topology result, a line
loss day, a billing batch) sends it as ``parts`` messages numbered ``part`` 0..parts-1 that carry
the same head (what the result is, its version) and a slice of its items; the master station
joins them when all parts are there. ``pages`` refuses (``PageError``) an item that could not fit
a message even alone: the caller's items must be bounded (each record is, e.g. evidence is at most
``protocols.station.MAX_EVIDENCE_BYTES``), so the error is a bug, never a message the uplink
refuses at run time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from protocols.errors import ProtocolError

from ._delivery import MAX_MESSAGE_BYTES
from ._views import StoredResult

T = TypeVar("T")

#: room left in every page for the message's own keys (``part``, ``parts``, the list's name)
PAGE_SLACK_BYTES = 256


class PageError(ProtocolError):
    """An item that cannot fit one message even alone."""

    def __init__(self, text: str) -> None:
        super().__init__(text, protocol="cloud")


def json_size(value: Any) -> int:
    """Bytes of ``value`` as the outbox stores it (compact UTF-8 JSON; the limit's measure)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())


def page_budget(head: Mapping[str, Any], *, limit: int = MAX_MESSAGE_BYTES) -> int:
    """Bytes left for the items of a message whose other keys are ``head``."""
    return limit - json_size(dict(head)) - PAGE_SLACK_BYTES


def pages(
    items: Iterable[T],
    *,
    budget: int,
    size: Callable[[T], int] = json_size,
    what: str = "item",
    max_items: int | None = None,
) -> list[list[T]]:
    """``items`` in order, cut into pages of at most ``budget`` bytes of JSON (with the commas)
    and at most ``max_items`` items.

    Always at least one page (an empty one for no items). ``PageError`` for an item over
    ``budget`` alone."""
    out: list[list[T]] = [[]]
    used = 2  # the list's brackets
    for i, item in enumerate(items):
        n = size(item) + 1
        if n + 2 > budget:
            raise PageError(f"{what} {i} is {n - 1} bytes of JSON, over the {budget} a message can carry")
        if out[-1] and (used + n > budget or (max_items is not None and len(out[-1]) >= max_items)):
            out.append([])
            used = 2
        out[-1].append(item)
        used += n
    return out


def paged(
    head: Mapping[str, Any], key: str, items: Sequence[Any], *, limit: int = MAX_MESSAGE_BYTES
) -> list[dict[str, Any]]:
    """The messages that carry ``items`` under ``key``, each ``{**head, key: [...], "part": i,
    "parts": n}`` and at most ``limit`` bytes."""
    chunks = pages(items, budget=page_budget(head, limit=limit), what=key)
    return [{**head, key: chunk, "part": i, "parts": len(chunks)} for i, chunk in enumerate(chunks)]


def joined(messages: Sequence[Mapping[str, Any]], key: str) -> list[Any] | None:
    """The items of one paged result from its messages (any order, duplicates allowed), or None
    while a part is missing. A message without ``parts`` is a whole result on its own."""
    by_part: dict[int, Sequence[Any]] = {}
    parts = 1
    for m in messages:
        parts = _count(m.get("parts"), 1)
        by_part[_count(m.get("part"), 0)] = m.get(key) or []
    if any(i not in by_part for i in range(parts)):
        return None
    return [item for i in range(parts) for item in by_part[i]]


def paged_lists(
    body: Mapping[str, Any], keys: Sequence[str] | None = None, *, limit: int = MAX_MESSAGE_BYTES
) -> list[dict[str, Any]]:
    """``body`` as it is when it fits one message; else its lists under ``keys`` (None: every list
    it holds) cut over several messages, each ``{**head, k: slice for k in keys, "part": i,
    "parts": n}`` (``joined_rows`` puts them back). A key whose value is not a list stays in the head."""
    if json_size(dict(body)) <= limit:
        return [dict(body)]
    lists = [k for k in (body if keys is None else keys) if isinstance(body.get(k), list)]
    head = {k: v for k, v in body.items() if k not in lists}
    items = [(k, v) for k in lists for v in body[k]]
    budget = page_budget({**head, **{k: [] for k in lists}}, limit=limit)
    chunks = pages(items, budget=budget, size=lambda item: json_size(item[1]), what="list item")
    return [
        {**head, **{k: [v for name, v in chunk if name == k] for k in lists}, "part": i, "parts": len(chunks)}
        for i, chunk in enumerate(chunks)
    ]


def joined_rows(rows: Iterable[StoredResult], keys: Sequence[str] | None = None) -> list[StoredResult]:
    """A stream's stored rows with every paged result (``paged_lists``) joined into one row (the
    newest part's, lists concatenated in part order); a result with a part missing is left out;
    rows without ``parts`` pass as they are. ``keys``: the paged lists (None: every list value).
    Order: as given, a joined result where its first part was."""
    out: list[StoredResult | tuple[str, str]] = []
    groups: dict[tuple[str, str], list[StoredResult]] = {}
    for row in rows:
        if "parts" not in row.body:
            out.append(row)
            continue
        paged = [k for k, v in row.body.items() if isinstance(v, list)] if keys is None else keys
        head = {k: v for k, v in row.body.items() if k not in paged and k not in ("part", "parts")}
        key = (row.terminal, json.dumps(head, sort_keys=True, default=str))
        if key not in groups:
            out.append(key)
        groups.setdefault(key, []).append(row)
    result: list[StoredResult] = []
    for item in out:
        if isinstance(item, StoredResult):
            result.append(item)
            continue
        group = groups[item]
        body = dict(max(group, key=lambda r: r.seq).body)
        complete = True
        for k in [k for k, v in body.items() if isinstance(v, list)] if keys is None else keys:
            if isinstance(body.get(k), list):
                values = joined([r.body for r in group], k)
                complete = complete and values is not None
                body[k] = values
        if complete:
            body.pop("part", None)
            body.pop("parts", None)
            result.append(replace(max(group, key=lambda r: r.seq), body=body))
    return result


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


__all__ = [
    "PAGE_SLACK_BYTES",
    "PageError",
    "joined",
    "joined_rows",
    "json_size",
    "page_budget",
    "paged",
    "paged_lists",
    "pages",
]
