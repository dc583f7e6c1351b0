"""Changing the station model: patch operations, the changes they make, apps' corrections and proposals.

Layer: protocols (station). Pure. ``apply_ops(model, ops, provenance)`` is the only way a
model changes: it validates every operation (attribute types, references of the whole result)
and returns the new model with the list of ``Change`` (before/after, per attribute) -- all or
nothing. What crosses the wire is plain JSON::

    PatchOp      {"op": "set", "kind": "meter", "id": "m-1", "field": "phase", "value": "B"}
                 {"op": "add", "kind": "meter", "record": {...}}
                 {"op": "remove", "kind": "meter", "id": "m-9"}
    Change       {"kind", "id", "field", "before", "after", "provenance"}   (field null: a whole record)
    Correction   an app's proposed PatchOp with its confidence and evidence
    Proposal     {"id", "app", "at", "status", "corrections": [...], "reason"}
    StationChange {"version", "previous", "at", "cause", "by", "changes": [...]}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from ._codec import (
    StationError,
    check_references,
    check_value,
    evidence_problem,
    provenance_from_doc,
    record_from_doc,
    record_to_doc,
)
from ._model import KINDS, Provenance, Record, RecordKind, StationModel, Transformer, provenance_map

Op = Literal["set", "add", "remove"]
OPS: tuple[Op, ...] = ("set", "add", "remove")
ProposalStatus = Literal["applied", "pending", "confirmed", "rejected", "refused"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PatchOp:
    """One operation on the model: set one attribute, add a record, remove a record."""

    op: Op
    kind: RecordKind
    id: str
    field: str | None = None  # set
    value: Any = None  # set: the attribute's value; add: the record's table

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"op": self.op, "kind": self.kind, "id": self.id}
        if self.op == "set":
            doc["field"], doc["value"] = self.field, _plain(self.value)
        elif self.op == "add":
            doc["record"] = _plain(self.value)
        return doc

    @classmethod
    def from_doc(cls, doc: Any, path: str = "op") -> PatchOp:
        if not isinstance(doc, Mapping):
            raise StationError([(path, "must be an object")])
        op, kind = doc.get("op"), doc.get("kind")
        if op not in OPS:
            raise StationError([(f"{path}.op", f"{op!r} is not one of {', '.join(OPS)}")])
        if kind not in KINDS:
            raise StationError([(f"{path}.kind", f"{kind!r} is not one of {', '.join(KINDS)}")])
        if op == "add":
            record = doc.get("record")
            record_id = record.get("id") if isinstance(record, Mapping) else None
            if not isinstance(record_id, str):
                raise StationError([(f"{path}.record.id", "missing")])
            return cls("add", kind, record_id, None, record)
        record_id = doc.get("id")
        if not isinstance(record_id, str) or not record_id:
            raise StationError([(f"{path}.id", "missing")])
        if op == "remove":
            return cls("remove", kind, record_id)
        name = doc.get("field")
        if not isinstance(name, str) or not name:
            raise StationError([(f"{path}.field", "missing")])
        return cls("set", kind, record_id, name, doc.get("value"))


@dataclass(frozen=True, slots=True)
class Change:
    """What one operation changed: an attribute (``field``) or a whole record (``field`` None,
    ``before`` / ``after`` its table or None when added / removed)."""

    kind: RecordKind
    id: str
    field: str | None
    before: Any
    after: Any
    provenance: Provenance | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "field": self.field,
            "before": _plain(self.before),
            "after": _plain(self.after),
            "provenance": None if self.provenance is None else self.provenance.to_doc(),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Change:
        problems: list[tuple[str, str]] = []
        prov = doc.get("provenance")
        provenance = None if prov is None else provenance_from_doc(prov, "provenance", problems)
        kind = doc.get("kind")
        if problems or kind not in KINDS:
            raise StationError(problems or [("kind", f"{kind!r} is not a record kind")])
        return cls(
            kind, str(doc.get("id")), doc.get("field"), doc.get("before"), doc.get("after"), provenance
        )


@dataclass(frozen=True, slots=True)
class StationChange:
    """One new version of the model: why (``cause``: load, file, replace, patch, proposal, confirm),
    who (``by``), and every ``Change``. ``model`` is the model at ``version`` (not serialized)."""

    version: int
    previous: int
    at: float
    cause: str
    by: str
    changes: tuple[Change, ...]
    model: StationModel | None = field(default=None, compare=False, repr=False)

    def to_doc(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": self.previous,
            "at": self.at,
            "cause": self.cause,
            "by": self.by,
            "changes": [c.to_doc() for c in self.changes],
        }

    def to_json(self) -> dict[str, Any]:
        return self.to_doc()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], model: StationModel | None = None) -> StationChange:
        try:
            return cls(
                version=int(doc["version"]),
                previous=int(doc["previous"]),
                at=float(doc["at"]),
                cause=str(doc["cause"]),
                by=str(doc["by"]),
                changes=tuple(Change.from_doc(c) for c in doc["changes"]),
                model=model,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise StationError([("change", f"not a station change: {err}")]) from err


@dataclass(frozen=True, slots=True)
class Correction:
    """An app's proposed change, with how sure it is and why (``evidence``: a small JSON object)."""

    kind: RecordKind
    id: str
    field: str | None = None
    value: Any = None
    confidence: float = 1.0
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _EMPTY)
    op: Op = "set"

    def patch(self) -> PatchOp:
        return PatchOp(self.op, self.kind, self.id, self.field if self.op == "set" else None, self.value)

    def problem(self) -> str | None:
        """Why this correction cannot be proposed at all, or None."""
        if self.kind not in KINDS:
            return f"{self.kind!r} is not a record kind"
        if self.op not in OPS:
            return f"{self.op!r} is not one of {', '.join(OPS)}"
        if self.op == "set" and not self.field:
            return "a set needs a field"
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) or not 0 <= c <= 1:
            return f"confidence {c!r} is not a number from 0 to 1"
        return evidence_problem(self.evidence)

    def to_doc(self) -> dict[str, Any]:
        doc = self.patch().to_doc()
        doc["confidence"] = self.confidence
        if self.evidence:
            doc["evidence"] = dict(self.evidence)
        return doc

    @classmethod
    def from_doc(cls, doc: Any, path: str = "correction") -> Correction:
        op = PatchOp.from_doc(doc, path)
        confidence = doc.get("confidence", 1.0)
        evidence = doc.get("evidence") or {}
        made = cls(op.kind, op.id, op.field, op.value, confidence, MappingProxyType(dict(evidence)), op.op)
        problem = made.problem() if isinstance(evidence, Mapping) else "evidence must be an object"
        if problem is not None:
            raise StationError([(path, problem)])
        return made


@dataclass(frozen=True, slots=True)
class Proposal:
    """Corrections an app proposed together, and what became of them."""

    id: str
    app: str
    at: float
    corrections: tuple[Correction, ...]
    status: ProposalStatus = "pending"
    reason: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "app": self.app,
            "at": self.at,
            "status": self.status,
            "reason": self.reason,
            "corrections": [c.to_doc() for c in self.corrections],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Proposal:
        corrections = tuple(
            Correction.from_doc(c, f"corrections[{i}]") for i, c in enumerate(doc.get("corrections", []))
        )
        return cls(
            id=str(doc["id"]),
            app=str(doc["app"]),
            at=float(doc["at"]),
            corrections=corrections,
            status=doc.get("status", "pending"),
            reason=str(doc.get("reason", "")),
        )


@dataclass(frozen=True, slots=True)
class ProposalResult:
    """The answer to ``station.propose``: the proposal's id and status, the model version after
    it (for ``applied``), and the corrections refused outright (index, reason)."""

    id: str
    status: ProposalStatus
    version: int
    refused: tuple[tuple[int, str], ...] = ()

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "version": self.version,
            "refused": [list(r) for r in self.refused],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ProposalResult:
        return cls(
            id=str(doc["id"]),
            status=doc["status"],
            version=int(doc["version"]),
            refused=tuple((int(i), str(r)) for i, r in doc.get("refused", [])),
        )


# -- applying -------------------------------------------------------------------------------------


def apply_ops(
    model: StationModel, ops: Sequence[PatchOp], provenance: Provenance
) -> tuple[StationModel, list[Change]]:
    """``model`` with ``ops`` applied in order, every changed attribute carrying ``provenance``
    (an ``archive`` provenance clears the attribute's entry); ``StationError`` when any op is
    invalid or the result's references do not resolve (nothing is applied then). The version is
    left as it was: the owner of the model counts versions."""
    records: dict[RecordKind, list[Record]] = {
        "transformer": [] if model.transformer is None else [model.transformer],
        "branch": list(model.branches),
        "box": list(model.boxes),
        "meter": list(model.meters),
        "device": list(model.devices),
    }
    changes: list[Change] = []
    problems: list[tuple[str, str]] = []
    for i, op in enumerate(ops):
        path = f"ops[{i}]"
        items = records[op.kind]
        at = next((k for k, r in enumerate(items) if r.id == op.id), None)
        if op.op == "set":
            if at is None:
                problems.append((f"{path}.id", f"no {op.kind} {op.id!r}"))
                continue
            change = _set(items, at, op, provenance, path, problems)
            if change is not None:
                changes.append(change)
        elif op.op == "remove":
            if at is None:
                problems.append((f"{path}.id", f"no {op.kind} {op.id!r}"))
                continue
            gone = items.pop(at)
            changes.append(Change(op.kind, op.id, None, record_to_doc(gone), None, provenance))
        else:
            if at is not None or (op.kind == "transformer" and items):
                problems.append((f"{path}.id", f"{op.kind} {op.id!r} already exists"))
                continue
            record = record_from_doc(op.kind, op.value, f"{path}.record", problems)
            if record is None:
                continue
            if provenance.source != "archive":
                names = [n for n in record_to_doc(record) if n not in ("id", "provenance")]
                record = replace(record, provenance=MappingProxyType(dict.fromkeys(names, provenance)))
            items.append(record)
            changes.append(Change(op.kind, op.id, None, None, record_to_doc(record), provenance))
    if problems:
        raise StationError(problems)
    transformer = records["transformer"][0] if records["transformer"] else None
    result = StationModel(
        id=model.id,
        name=model.name,
        version=model.version,
        updated_at=model.updated_at,
        transformer=transformer if isinstance(transformer, Transformer) else None,
        branches=tuple(records["branch"]),  # type: ignore[arg-type]
        boxes=tuple(records["box"]),  # type: ignore[arg-type]
        meters=tuple(records["meter"]),  # type: ignore[arg-type]
        devices=tuple(records["device"]),  # type: ignore[arg-type]
    )
    broken = check_references(result)
    if broken:
        raise StationError(broken)
    return result, changes


def _set(
    items: list[Record],
    at: int,
    op: PatchOp,
    provenance: Provenance,
    path: str,
    problems: list[tuple[str, str]],
) -> Change | None:
    record = items[at]
    name = op.field or ""
    if name == "id":
        problems.append((f"{path}.field", "the id of a record cannot change (remove it and add another)"))
        return None
    value, problem = check_value(op.kind, name, op.value)
    if problem is not None:
        problems.append((f"{path}.value" if "attribute" not in problem else f"{path}.field", problem))
        return None
    before = getattr(record, name)
    prov = dict(record.provenance)
    if provenance.source == "archive":
        prov.pop(name, None)
    else:
        prov[name] = provenance
    if before == value and prov == dict(record.provenance):
        return None  # nothing to change
    updates: dict[str, Any] = {name: value, "provenance": provenance_map(prov)}
    if op.kind == "meter" and name == "channel" and value == "hplc":
        updates["port"] = None  # a meter behind the carrier module has no board port
    items[at] = replace(record, **updates)
    return Change(op.kind, op.id, name, before, value, provenance)


def replay(model: StationModel, changes: Sequence[Change]) -> StationModel:
    """``model`` with ``changes`` (of one ``StationChange``, in order) made again: what the master
    station does with the change events that follow a snapshot. ``StationError`` when a change
    does not fit (a change event was lost: ask for a new snapshot)."""
    for change in changes:
        prov = change.provenance or Provenance()
        if change.field is not None:
            op = PatchOp("set", change.kind, change.id, change.field, change.after)
        elif change.after is None:
            op = PatchOp("remove", change.kind, change.id)
        else:
            op, prov = PatchOp("add", change.kind, change.id, None, change.after), Provenance()
        model, _ = apply_ops(model, [op], prov)
    return model


def diff(before: StationModel, after: StationModel) -> list[Change]:
    """Every difference between two models, as changes (provenance from ``after``'s records)."""
    changes: list[Change] = []
    old = _by_key(before)
    new = _by_key(after)
    for key, record in old.items():
        if key not in new:
            changes.append(Change(key[0], key[1], None, record_to_doc(record), None))
    for key, record in new.items():
        was = old.get(key)
        if was is None:
            changes.append(Change(key[0], key[1], None, None, record_to_doc(record)))
            continue
        a, b = record_to_doc(was), record_to_doc(record)
        for name in sorted((set(a) | set(b)) - {"id", "provenance"}):
            if a.get(name) != b.get(name) or was.source_of(name) != record.source_of(name):
                changes.append(Change(key[0], key[1], name, a.get(name), b.get(name), record.source_of(name)))
    return changes


def _by_key(model: StationModel) -> dict[tuple[RecordKind, str], Record]:
    out: dict[tuple[RecordKind, str], Record] = {}
    if model.transformer is not None:
        out[("transformer", model.transformer.id)] = model.transformer
    for kind, items in (
        ("branch", model.branches),
        ("box", model.boxes),
        ("meter", model.meters),
        ("device", model.devices),
    ):
        for record in items:
            out[(kind, record.id)] = record  # type: ignore[index]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


__all__ = [
    "OPS",
    "Change",
    "Correction",
    "Op",
    "PatchOp",
    "Proposal",
    "ProposalResult",
    "ProposalStatus",
    "StationChange",
    "apply_ops",
    "diff",
    "replay",
]
