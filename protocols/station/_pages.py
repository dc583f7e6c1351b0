"""The station model's messages to the master station, cut to fit the uplink's message limit.

Layer: protocols. Pure. A model of 2,000 meters is ~900 kB of JSON, over what one upward message
may carry (``protocols.cloud.MAX_MESSAGE_BYTES``), and a replaced archive's change or a topology
proposal grows with the station area the same way. So each goes up as ``parts`` messages numbered
``part`` 0.. that repeat the head (type, version, ...) and carry a slice of the records, changes
or corrections; every record is bounded (its evidence at most ``MAX_EVIDENCE_BYTES`` per attribute),
so every message fits by construction. The master station joins the parts (``join_snapshot``,
``protocols.cloud.joined``) once all are there.

    {"type": "snapshot", "version": 7, "at": 1717171200.0, "part": 0, "parts": 4,
     "model": {"station": {...}, "transformer": {...}, "branches": [...], "meters": [...]}}
    {"type": "change", "version": 8, "previous": 7, ..., "changes": [...], "part": 0, "parts": 1}
    {"type": "proposal", "id": "p-3", ..., "corrections": [...], "part": 0, "parts": 2}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from protocols.cloud import MAX_MESSAGE_BYTES, json_size, page_budget, paged, pages

from ._changes import Proposal, StationChange
from ._codec import model_to_doc
from ._model import StationModel

#: the record tables of a model document, in the order they are paged
TABLES = ("branches", "boxes", "meters", "devices")


def snapshot_messages(
    model: StationModel, head: Mapping[str, Any], *, limit: int = MAX_MESSAGE_BYTES
) -> list[dict[str, Any]]:
    """``model`` as snapshot messages ``{**head, "model": <part of the document>, "part", "parts"}``,
    each at most ``limit`` bytes; part 0 carries the station head and the transformer."""
    doc = model_to_doc(model)
    items = [(table, record) for table in TABLES for record in doc.pop(table, [])]
    budget = page_budget({**head, "model": doc}, limit=limit)
    chunks = pages(items, budget=budget, size=lambda item: json_size(item[1]), what="record")
    out = []
    for i, chunk in enumerate(chunks):
        part: dict[str, Any] = dict(doc) if i == 0 else {}
        for table in TABLES:
            rows = [record for name, record in chunk if name == table]
            if rows:
                part[table] = rows
        out.append({**head, "model": part, "part": i, "parts": len(chunks)})
    return out


def join_snapshot(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The model document from one snapshot's messages (any order, repeats allowed), or None while
    a part is missing. A message without ``parts`` is a whole snapshot (older terminals)."""
    by_part: dict[int, Mapping[str, Any]] = {}
    parts = 1
    for m in messages:
        parts = _count(m.get("parts"), 1)
        model = m.get("model")
        by_part[_count(m.get("part"), 0)] = model if isinstance(model, Mapping) else {}
    if any(i not in by_part for i in range(parts)):
        return None
    doc: dict[str, Any] = {k: v for k, v in by_part[0].items() if k not in TABLES}
    for table in TABLES:
        rows = [row for i in range(parts) for row in _rows(by_part[i].get(table))]
        doc[table] = rows
    return doc


def change_messages(change: StationChange, *, limit: int = MAX_MESSAGE_BYTES) -> list[dict[str, Any]]:
    """A new version's change event as ``change`` messages, its changes paged."""
    doc = change.to_doc()
    changes = doc.pop("changes")
    return paged({"type": "change", **doc}, "changes", changes, limit=limit)


def proposal_messages(proposal: Proposal, *, limit: int = MAX_MESSAGE_BYTES) -> list[dict[str, Any]]:
    """A proposal (and each later decision on it) as ``proposal`` messages, its corrections paged."""
    doc = proposal.to_doc()
    corrections = doc.pop("corrections")
    return paged({"type": "proposal", **doc}, "corrections", corrections, limit=limit)


def _rows(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


__all__ = ["TABLES", "change_messages", "join_snapshot", "proposal_messages", "snapshot_messages"]
