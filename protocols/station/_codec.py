"""The station model as a document: TOML text and JSON objects <-> ``StationModel``, validated.

Layer: protocols (station). Pure: text and plain objects in, frozen records out, no I/O. The
TOML file and the JSON form share one document shape, so one parser serves the archive file,
``station.replace`` from the cloud and the model's own JSON round trip::

    [station]         id, name, version, updated_at
    [transformer]     id, rating_kva, ct_ratio, pt_ratio, meter
    [[branches]]      id, breaker, monitor, parent
    [[boxes]]         id, branch, terminal
    [[meters]]        id, address, protocol, channel, port, baud, kind, phase, branch, box,
                      customer, tariff, ct_ratio, pt_ratio, flags
    [[devices]]       id, profile, port, unit_id, branch
    [<record>.provenance.<attribute>]   source, by, confidence, at, evidence

Validation collects every problem with its key path (``meters[3].address: not 12 BCD
digits``) and raises one ``StationError``. References must resolve (a meter's branch and box,
a box's branch and terminal, a branch's parent, monitor and breaker, a device's branch); ids
are unique per kind and a meter's (transport, address) is unique. The acquisition app's
older ``archive.toml`` (``port = "hplc"``, no channel) is read as the HPLC channel.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from protocols.errors import ProtocolError

from ._model import (
    CHANNELS,
    METER_KINDS,
    METER_PROTOCOLS,
    PHASES,
    RECORD_TYPES,
    SOURCES,
    STANDARD_BAUDS,
    Branch,
    FieldDevice,
    Meter,
    MeterBox,
    Provenance,
    Record,
    RecordKind,
    StationModel,
    Transformer,
    provenance_map,
)

PROTOCOL = "station"
MAX_EVIDENCE_BYTES = 4096
_ID = re.compile(r"^[^\s/+#\x00-\x1f]{1,64}$")
_ADDRESS = re.compile(r"^[0-9]{12}$")
_TABLES = {
    "transformer": "transformer",
    "branch": "branches",
    "box": "boxes",
    "meter": "meters",
    "device": "devices",
}


class StationError(ProtocolError):
    """A station document (file, command arguments, patch) that is not a valid station model.

    ``problems`` lists every (key path, reason) found."""

    def __init__(self, problems: Sequence[tuple[str, str]], *, source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        text = "; ".join(f"{path}: {reason}" if path else reason for path, reason in self.problems)
        super().__init__(f"{where}{text}", protocol=PROTOCOL)


# -- attribute specs ------------------------------------------------------------------------------

Check = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute of a record: its type, whether it is required, what values it takes."""

    name: str
    kind: str  # "id" | "str" | "float" | "int" | "flags"
    required: bool = False
    choices: tuple[str, ...] | None = None
    check: Check | None = None


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"{value!r} is not positive"


def _address(value: Any) -> str | None:
    return None if _ADDRESS.match(value) else f"{value!r} is not 12 BCD digits"


def _baud(value: Any) -> str | None:
    return None if value in STANDARD_BAUDS else f"{value!r} is not a standard rate {STANDARD_BAUDS}"


def _unit_id(value: Any) -> str | None:
    return None if 1 <= value <= 247 else f"{value!r} is not a Modbus unit id 1..247"


ATTRS: dict[RecordKind, tuple[Attr, ...]] = {
    "transformer": (
        Attr("id", "id", required=True),
        Attr("rating_kva", "float", check=_positive),
        Attr("ct_ratio", "float", check=_positive),
        Attr("pt_ratio", "float", check=_positive),
        Attr("meter", "id"),
    ),
    "branch": (
        Attr("id", "id", required=True),
        Attr("breaker", "id"),
        Attr("monitor", "id"),
        Attr("parent", "id"),
    ),
    "box": (
        Attr("id", "id", required=True),
        Attr("branch", "id"),
        Attr("terminal", "id"),
    ),
    "meter": (
        Attr("id", "id", required=True),
        Attr("address", "str", required=True, check=_address),
        Attr("protocol", "str", choices=METER_PROTOCOLS),
        Attr("channel", "str", choices=CHANNELS),
        Attr("port", "id"),
        Attr("baud", "int", check=_baud),
        Attr("kind", "str", choices=METER_KINDS),
        Attr("phase", "str", choices=PHASES),
        Attr("branch", "id"),
        Attr("box", "id"),
        Attr("customer", "str"),
        Attr("tariff", "str"),
        Attr("ct_ratio", "float", check=_positive),
        Attr("pt_ratio", "float", check=_positive),
        Attr("flags", "flags"),
    ),
    "device": (
        Attr("id", "id", required=True),
        Attr("profile", "id", required=True),
        Attr("port", "id", required=True),
        Attr("unit_id", "int", required=True, check=_unit_id),
        Attr("branch", "id"),
    ),
}
_ATTR = {kind: {a.name: a for a in attrs} for kind, attrs in ATTRS.items()}


def attribute(kind: RecordKind, name: str) -> Attr | None:
    return _ATTR[kind].get(name)


def check_value(kind: RecordKind, name: str, value: Any) -> tuple[Any, str | None]:
    """``value`` as attribute ``name`` of a ``kind`` record holds it, or the reason it cannot.

    ``None`` clears an optional attribute (flags: the empty tuple; ratios: 1)."""
    spec = _ATTR[kind].get(name)
    if spec is None:
        return None, f"{kind} has no attribute {name!r}"
    if value is None:
        if spec.required:
            return None, "is required"
        return _cleared(kind, name), None
    if spec.kind in ("id", "str"):
        if not isinstance(value, str) or not value or not value.isprintable():
            return None, "must be a non-empty printable string"
        if spec.kind == "id" and not _ID.match(value):
            return None, f"{value!r} is not an id (1-64 characters, no spaces, '/', '+', '#')"
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None, f"must be a number, not {value!r}"
        value = float(value)
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be an integer, not {value!r}"
    elif spec.kind == "flags":
        if isinstance(value, str) or not isinstance(value, Sequence):
            return None, "must be a list of strings"
        if not all(isinstance(f, str) and _ID.match(f) for f in value):
            return None, f"{list(value)!r}: every flag must be a short word"
        value = tuple(dict.fromkeys(value))
    if spec.choices is not None and value not in spec.choices:
        return None, f"{value!r} is not one of {', '.join(spec.choices)}"
    if spec.check is not None:
        problem = spec.check(value)
        if problem is not None:
            return None, problem
    return value, None


def _cleared(kind: RecordKind, name: str) -> Any:
    if name == "flags":
        return ()
    if name in ("ct_ratio", "pt_ratio"):
        return 1.0
    if kind == "meter" and name in ("protocol", "channel", "kind"):
        return {"protocol": "dlt645", "channel": "rs485", "kind": "customer"}[name]
    return None


# -- provenance -----------------------------------------------------------------------------------


def provenance_from_doc(doc: Any, path: str, problems: list[tuple[str, str]]) -> Provenance | None:
    if not isinstance(doc, Mapping):
        problems.append((path, "must be a table"))
        return None
    unknown = sorted(set(doc) - {"source", "by", "confidence", "at", "evidence"})
    problems.extend((f"{path}.{k}", "unknown key") for k in unknown)
    source = doc.get("source")
    if source not in SOURCES:
        problems.append((f"{path}.source", f"{source!r} is not one of {', '.join(SOURCES)}"))
        return None
    by = doc.get("by", "")
    if not isinstance(by, str) or not by.isprintable() or len(by) > 64:
        problems.append((f"{path}.by", "must be a short printable string"))
        return None
    confidence = doc.get("confidence")
    if confidence is not None and (
        isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1
    ):
        problems.append((f"{path}.confidence", f"{confidence!r} is not a number from 0 to 1"))
        return None
    if source == "identified" and confidence is None:
        problems.append((f"{path}.confidence", "an identified fact needs a confidence"))
        return None
    at = doc.get("at")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at)):
        problems.append((f"{path}.at", f"{at!r} is not an epoch time"))
        return None
    evidence = doc.get("evidence", {})
    problem = evidence_problem(evidence)
    if problem is not None:
        problems.append((f"{path}.evidence", problem))
        return None
    return Provenance(
        source=source,
        by=by,
        confidence=None if confidence is None else float(confidence),
        at=None if at is None else float(at),
        evidence=MappingProxyType(dict(evidence)),
    )


def evidence_problem(evidence: Any) -> str | None:
    """Why ``evidence`` is not a small JSON object, or None."""
    if not isinstance(evidence, Mapping):
        return "must be a table (a JSON object)"
    try:
        text = json.dumps(dict(evidence), allow_nan=False)
    except (TypeError, ValueError) as err:
        return f"not JSON: {err}"
    if len(text) > MAX_EVIDENCE_BYTES:
        return f"{len(text)} bytes of JSON, the limit is {MAX_EVIDENCE_BYTES}"
    return None


# -- records --------------------------------------------------------------------------------------


def record_from_doc(kind: RecordKind, doc: Any, path: str, problems: list[tuple[str, str]]) -> Record | None:
    """One record of ``kind`` from its table; problems are appended with their key paths."""
    if not isinstance(doc, Mapping):
        problems.append((path, "must be a table"))
        return None
    before = len(problems)
    raw = dict(doc)
    if kind == "meter" and raw.get("port") == "hplc" and "channel" not in raw:
        raw["channel"], raw["port"] = "hplc", None  # the acquisition app's older archive.toml
    values: dict[str, Any] = {}
    for key in sorted(set(raw) - set(_ATTR[kind]) - {"provenance"}):
        problems.append((f"{path}.{key}", "unknown key"))
    for spec in ATTRS[kind]:
        if spec.name not in raw or raw[spec.name] is None:
            if spec.required:
                problems.append((f"{path}.{spec.name}", "missing"))
            continue
        value, problem = check_value(kind, spec.name, raw[spec.name])
        if problem is not None:
            problems.append((f"{path}.{spec.name}", problem))
            continue
        # one object per distinct text: thousands of meters name the same protocol, channel,
        # phase, branch, box and tariff (~0.4 kB a meter of copies in a model of 2,400 meters)
        values[spec.name] = sys.intern(value) if type(value) is str else value
    provenance: dict[str, Provenance] = {}
    prov_doc = raw.get("provenance", {})
    if not isinstance(prov_doc, Mapping):
        problems.append((f"{path}.provenance", "must be a table of attributes"))
    else:
        for name, item in prov_doc.items():
            where = f"{path}.provenance.{name}"
            if name not in _ATTR[kind] or name == "id":
                problems.append((where, "no such attribute"))
                continue
            prov = provenance_from_doc(item, where, problems)
            if prov is not None and prov.source != "archive":
                provenance[name] = prov
    if kind == "meter":
        channel = values.get("channel", "rs485")
        if channel == "rs485" and "port" not in values and f"{path}.port" not in {p for p, _ in problems}:
            problems.append((f"{path}.port", "an RS-485 meter needs its board port"))
        if channel == "hplc":
            values.pop("port", None)
    if len(problems) > before:
        return None
    cls = RECORD_TYPES[kind]
    return cls(**values, provenance=provenance_map(provenance))


_ALWAYS = {"protocol", "channel", "ct_ratio", "pt_ratio"}  # written even at their defaults (readability)


def record_to_doc(record: Record) -> dict[str, Any]:
    """The record's table: attributes that are set (defaults left out), then its provenance."""
    doc: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name == "provenance" or value is None or value == ():
            continue
        if f.default is not MISSING and value == f.default and f.name not in _ALWAYS:
            continue
        if isinstance(record, Meter) and f.name in ("ct_ratio", "pt_ratio") and value == 1.0:
            continue  # a direct-connected meter: the usual case, not worth a line each
        doc[f.name] = list(value) if isinstance(value, tuple) else value
    if record.provenance:
        doc["provenance"] = {name: p.to_doc() for name, p in sorted(record.provenance.items())}
    return doc


# -- the model ------------------------------------------------------------------------------------


def model_from_doc(doc: Any, *, source: str = "") -> StationModel:
    """Validate a station document (parsed TOML or JSON) into a ``StationModel``."""
    problems: list[tuple[str, str]] = []
    if not isinstance(doc, Mapping):
        raise StationError([("", "a station document must be a table (a JSON object)")], source=source)
    known = {"station", "meters", "transformer", "branches", "boxes", "devices"}
    problems.extend((k, "unknown key") for k in sorted(set(doc) - known))
    head = doc.get("station", {})
    station_id, name, version, updated = "", "", 0, None
    if not isinstance(head, Mapping):
        problems.append(("station", "must be a table"))
    else:
        extra = sorted(set(head) - {"id", "name", "version", "updated_at"})
        problems.extend((f"station.{k}", "unknown key") for k in extra)
        station_id, name = head.get("id", ""), head.get("name", "")
        version, updated = head.get("version", 0), head.get("updated_at")
        for key, value in (("id", station_id), ("name", name)):
            if not isinstance(value, str) or not value.isprintable():
                problems.append((f"station.{key}", "must be a printable string"))
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            problems.append(("station.version", f"{version!r} is not a whole number >= 0"))
        if updated is not None and (isinstance(updated, bool) or not isinstance(updated, int | float)):
            problems.append(("station.updated_at", f"{updated!r} is not an epoch time"))
    transformer: Transformer | None = None
    if doc.get("transformer") is not None:
        found = record_from_doc("transformer", doc["transformer"], "transformer", problems)
        transformer = found if isinstance(found, Transformer) else None
    lists: dict[str, list[Record]] = {}
    for kind in ("branch", "box", "meter", "device"):
        table = _TABLES[kind]
        items = doc.get(table, [])
        lists[kind] = []
        if isinstance(items, str) or not isinstance(items, Sequence):
            problems.append((table, "must be an array of tables"))
            continue
        for i, item in enumerate(items):
            record = record_from_doc(kind, item, f"{table}[{i}]", problems)
            if record is not None:
                lists[kind].append(record)
    if problems:
        raise StationError(problems, source=source)
    model = StationModel(
        id=str(station_id),
        name=str(name),
        version=int(version),
        updated_at=None if updated is None else float(updated),
        transformer=transformer,
        branches=tuple(r for r in lists["branch"] if isinstance(r, Branch)),
        boxes=tuple(r for r in lists["box"] if isinstance(r, MeterBox)),
        meters=tuple(r for r in lists["meter"] if isinstance(r, Meter)),
        devices=tuple(r for r in lists["device"] if isinstance(r, FieldDevice)),
    )
    problems = check_references(model)
    if problems:
        raise StationError(problems, source=source)
    return model


def check_references(model: StationModel) -> list[tuple[str, str]]:
    """Duplicate ids and references that do not resolve, with their key paths."""
    problems: list[tuple[str, str]] = []
    branches = {b.id for b in model.branches}
    boxes = {b.id for b in model.boxes}
    meters = {m.id for m in model.meters}
    devices = {d.id for d in model.devices}

    def unique(table: str, ids: Sequence[str]) -> None:
        first: dict[str, int] = {}
        for i, record_id in enumerate(ids):
            if record_id in first:
                problems.append(
                    (f"{table}[{i}].id", f"{record_id!r} already used by {table}[{first[record_id]}]")
                )
            first.setdefault(record_id, i)

    def ref(path: str, value: str | None, known: set[str], what: str) -> None:
        if value is not None and value not in known:
            problems.append((path, f"no {what} {value!r} in the station model"))

    unique("branches", [b.id for b in model.branches])
    unique("boxes", [b.id for b in model.boxes])
    unique("meters", [m.id for m in model.meters])
    unique("devices", [d.id for d in model.devices])
    for i, b in enumerate(model.branches):
        ref(f"branches[{i}].parent", b.parent, branches, "branch")
        ref(f"branches[{i}].monitor", b.monitor, meters, "meter")
        ref(f"branches[{i}].breaker", b.breaker, devices, "device")
    parents = {b.id: b.parent for b in model.branches}
    for i, b in enumerate(model.branches):
        seen, at = {b.id}, b.parent
        while at is not None and at in parents:
            if at in seen:
                problems.append((f"branches[{i}].parent", f"branch {b.id!r} is its own ancestor"))
                break
            seen.add(at)
            at = parents[at]
    for i, x in enumerate(model.boxes):
        ref(f"boxes[{i}].branch", x.branch, branches, "branch")
        ref(f"boxes[{i}].terminal", x.terminal, meters, "meter")
    where: dict[tuple[str, str], int] = {}
    for i, m in enumerate(model.meters):
        ref(f"meters[{i}].branch", m.branch, branches, "branch")
        ref(f"meters[{i}].box", m.box, boxes, "box")
        key = (m.transport, m.address)
        if key in where:
            problems.append(
                (f"meters[{i}].address", f"{m.address} already on {m.transport} as meters[{where[key]}]")
            )
        where.setdefault(key, i)
    units: dict[tuple[str, int], int] = {}
    for i, d in enumerate(model.devices):
        ref(f"devices[{i}].branch", d.branch, branches, "branch")
        if (d.port, d.unit_id) in units:
            problems.append((f"devices[{i}].unit_id", f"unit {d.unit_id} already used on {d.port}"))
        units.setdefault((d.port, d.unit_id), i)
    return problems


def model_to_doc(model: StationModel) -> dict[str, Any]:
    """The model's document (JSON-able; ``loads_json``/``model_from_doc`` read it back)."""
    head: dict[str, Any] = {"id": model.id, "name": model.name, "version": model.version}
    if model.updated_at is not None:
        head["updated_at"] = model.updated_at
    doc: dict[str, Any] = {"station": head}
    if model.transformer is not None:
        doc["transformer"] = record_to_doc(model.transformer)
    doc["branches"] = [record_to_doc(r) for r in model.branches]
    doc["boxes"] = [record_to_doc(r) for r in model.boxes]
    doc["meters"] = [record_to_doc(r) for r in model.meters]
    doc["devices"] = [record_to_doc(r) for r in model.devices]
    return doc


def with_version(model: StationModel, version: int, updated_at: float | None) -> StationModel:
    return replace(model, version=version, updated_at=updated_at)


# -- TOML -----------------------------------------------------------------------------------------


def loads(text: str, *, source: str = "") -> StationModel:
    """A station model from TOML text (the archive file)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StationError([("", f"not valid TOML: {err}")], source=source) from err
    except RecursionError as err:  # tomllib recurses per nesting level: a hostile file must not crash us
        raise StationError([("", "not valid TOML: nested too deeply")], source=source) from err
    return model_from_doc(doc, source=source)


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise StationError([("", f"{value!r} cannot be written to TOML")])
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + (f" {items} " if items else "") + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    raise StationError([("", f"{type(value).__name__} {value!r} cannot be written to TOML")])


def _table(lines: list[str], header: str, doc: Mapping[str, Any], prefix: str) -> None:
    lines.append(header)
    for key, value in doc.items():
        if key != "provenance":
            lines.append(f"{_key(key)} = {_value(value)}")
    for name, prov in doc.get("provenance", {}).items():
        lines.append(f"[{prefix}.provenance.{_key(name)}]")
        for key, value in prov.items():
            lines.append(f"{_key(key)} = {_value(value)}")
    lines.append("")


def dumps(model: StationModel) -> str:
    """The model as TOML text (``loads(dumps(m)) == m``)."""
    doc = model_to_doc(model)
    lines: list[str] = []
    lines.append("[station]")
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in doc["station"].items())
    lines.append("")
    if "transformer" in doc:
        _table(lines, "[transformer]", doc["transformer"], "transformer")
    for table in ("branches", "boxes", "meters", "devices"):
        for item in doc[table]:
            _table(lines, f"[[{table}]]", item, table)
    return "\n".join(lines)


__all__ = [
    "ATTRS",
    "MAX_EVIDENCE_BYTES",
    "Attr",
    "StationError",
    "attribute",
    "check_references",
    "check_value",
    "dumps",
    "evidence_problem",
    "loads",
    "model_from_doc",
    "model_to_doc",
    "provenance_from_doc",
    "record_from_doc",
    "record_to_doc",
    "with_version",
]
