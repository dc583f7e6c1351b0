"""The records of the station model (台区档案) and the provenance of every fact in them.

Layer: protocols (station). Frozen dataclasses only; parsing, rendering and patching are in
the sibling modules. A record's plain attributes hold the values; ``provenance`` holds an
entry only for an attribute whose value did not come from the utility's archive, so
``record.source_of("phase")`` is ``ARCHIVE`` unless an app identified the value or the
cloud confirmed it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Source = Literal["archive", "identified", "confirmed"]
SOURCES: tuple[Source, ...] = ("archive", "identified", "confirmed")

RecordKind = Literal["transformer", "branch", "box", "meter", "device"]
KINDS: tuple[RecordKind, ...] = ("transformer", "branch", "box", "meter", "device")

PHASES = ("A", "B", "C", "ABC")
METER_PROTOCOLS = ("dlt645", "dlt698")
CHANNELS = ("rs485", "hplc")
METER_KINDS = ("customer", "branch_unit", "box_terminal", "assessment")
STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a fact comes from.

    ``archive``: the utility's file (the default, never stored explicitly); ``identified``: an
    app found it (``by`` the app, with a ``confidence`` 0..1 and its ``evidence``);
    ``confirmed``: the master station set or confirmed it (``by`` "cloud" or an operator).
    ``at`` is the UTC epoch it was set.
    """

    source: Source = "archive"
    by: str = ""
    confidence: float | None = None
    at: float | None = None
    evidence: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"source": self.source}
        if self.by:
            doc["by"] = self.by
        if self.confidence is not None:
            doc["confidence"] = self.confidence
        if self.at is not None:
            doc["at"] = self.at
        if self.evidence:
            doc["evidence"] = dict(self.evidence)
        return doc


ARCHIVE = Provenance()


def provenance_map(entries: dict[str, Provenance]) -> Mapping[str, Provenance]:
    """A record's read-only ``provenance`` over ``entries`` (a dict nobody changes afterwards):
    the one shared empty map when there are none -- most records of a model have none (a
    mapping proxy and a dict each were ~0.14 kB a record)."""
    return MappingProxyType(entries) if entries else _EMPTY


class _Facts:
    """What every record offers: the provenance of one of its attributes."""

    __slots__ = ()

    provenance: Mapping[str, Provenance]

    def source_of(self, name: str) -> Provenance:
        """The provenance of attribute ``name`` (``ARCHIVE`` unless set otherwise)."""
        return self.provenance.get(name, ARCHIVE)


@dataclass(frozen=True, slots=True)
class Transformer(_Facts):
    """The distribution transformer of the station area and its assessment meter (总表).

    ``meter``: the device id whose energy is the station's supply (the terminal's metrology
    unit reads as device ``transformer``); ``ct_ratio``/``pt_ratio``: what the archive records
    for the 总表 (a wrong CT ratio there is a line-loss cause)."""

    id: str
    rating_kva: float | None = None
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    meter: str | None = None
    provenance: Mapping[str, Provenance] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Branch(_Facts):
    """A feeder branch (分支): its breaker (field device id), its branch monitoring unit (meter id)
    and, for a sub-branch, its parent branch."""

    id: str
    breaker: str | None = None
    monitor: str | None = None
    parent: str | None = None
    provenance: Mapping[str, Provenance] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class MeterBox(_Facts):
    """A meter box (表箱) on a branch, with its box terminal (表箱终端, a meter id) if it has one."""

    id: str
    branch: str | None = None
    terminal: str | None = None
    provenance: Mapping[str, Provenance] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Meter(_Facts):
    """A meter the terminal reads: customer meters, branch monitoring units, box terminals.

    ``channel`` is how it is reached (``rs485`` on board port ``port``, or ``hplc`` through
    the carrier module); ``phase`` ``A``/``B``/``C`` or ``ABC`` for a three-phase meter."""

    id: str
    address: str
    protocol: str = "dlt645"
    channel: str = "rs485"
    port: str | None = None
    baud: int | None = None
    kind: str = "customer"
    phase: str | None = None
    branch: str | None = None
    box: str | None = None
    customer: str | None = None
    tariff: str | None = None
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    flags: tuple[str, ...] = ()
    provenance: Mapping[str, Provenance] = field(default_factory=lambda: _EMPTY)

    @property
    def three_phase(self) -> bool:
        return self.phase == "ABC"

    @property
    def transport(self) -> str:
        """The transport name: the RS-485 port, or ``hplc``."""
        return "hplc" if self.channel == "hplc" else (self.port or "")


@dataclass(frozen=True, slots=True)
class FieldDevice(_Facts):
    """A Modbus RTU field device (breaker, RCD, capacitor bank, sensor) on an RS-485 port."""

    id: str
    profile: str
    port: str
    unit_id: int
    branch: str | None = None
    provenance: Mapping[str, Provenance] = field(default_factory=lambda: _EMPTY)


Record = Transformer | Branch | MeterBox | Meter | FieldDevice
RECORD_TYPES: dict[RecordKind, type[Record]] = {
    "transformer": Transformer,
    "branch": Branch,
    "box": MeterBox,
    "meter": Meter,
    "device": FieldDevice,
}


def _upper(address: str) -> str:
    """``address`` in capitals: the same string when it is already (no copy per meter)."""
    upper = address.upper()
    return address if upper == address else upper


@dataclass(frozen=True, slots=True)
class StationModel:
    """The whole station area at one ``version`` (the terminal counts versions; 0 = unversioned)."""

    id: str = ""
    name: str = ""
    version: int = 0
    updated_at: float | None = None
    transformer: Transformer | None = None
    branches: tuple[Branch, ...] = ()
    boxes: tuple[MeterBox, ...] = ()
    meters: tuple[Meter, ...] = ()
    devices: tuple[FieldDevice, ...] = ()
    #: kind -> id -> record (not a (kind, id) tuple per record: ~0.3 MB at 2,400 meters)
    _index: dict[str, dict[str, Record]] = field(default_factory=dict, init=False, repr=False, compare=False)
    #: address -> meter, made at the first ``meter_by_address`` (an archive under the model, or a
    #: model replaced before anyone asked, never makes it: ~74 kB at 2,400 meters)
    _addresses: dict[str, Meter] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, dict[str, Record]] = {kind: {} for kind in KINDS}
        if self.transformer is not None:
            index["transformer"][self.transformer.id] = self.transformer
        for kind, records in self._lists():
            of_kind = index[kind]
            for record in records:
                of_kind.setdefault(record.id, record)
        object.__setattr__(self, "_index", index)

    def _lists(self) -> Iterator[tuple[RecordKind, tuple[Record, ...]]]:
        yield "branch", self.branches
        yield "box", self.boxes
        yield "meter", self.meters
        yield "device", self.devices

    # -- lookups ----------------------------------------------------------------------------

    def record(self, kind: RecordKind, record_id: str) -> Record | None:
        return self._index.get(kind, {}).get(record_id)

    def meter(self, meter_id: str) -> Meter | None:
        found = self._index["meter"].get(meter_id)
        return found if isinstance(found, Meter) else None

    def meter_by_address(self, address: str) -> Meter | None:
        addresses = self._addresses
        if addresses is None:
            addresses = {_upper(m.address): m for m in reversed(self.meters)}
            object.__setattr__(self, "_addresses", addresses)
        return addresses.get(address.upper())

    def branch(self, branch_id: str) -> Branch | None:
        found = self._index["branch"].get(branch_id)
        return found if isinstance(found, Branch) else None

    def box(self, box_id: str) -> MeterBox | None:
        found = self._index["box"].get(box_id)
        return found if isinstance(found, MeterBox) else None

    def device(self, device_id: str) -> FieldDevice | None:
        found = self._index["device"].get(device_id)
        return found if isinstance(found, FieldDevice) else None

    def meters_of(
        self,
        *,
        branch: str | None = None,
        box: str | None = None,
        phase: str | None = None,
        kind: str | None = None,
    ) -> list[Meter]:
        """The meters matching every given attribute (as the model records them)."""
        return [
            m
            for m in self.meters
            if (branch is None or m.branch == branch)
            and (box is None or m.box == box)
            and (phase is None or m.phase == phase)
            and (kind is None or m.kind == kind)
        ]

    def customers(self) -> list[Meter]:
        return [m for m in self.meters if m.kind == "customer"]


__all__ = [
    "ARCHIVE",
    "CHANNELS",
    "KINDS",
    "METER_KINDS",
    "METER_PROTOCOLS",
    "PHASES",
    "RECORD_TYPES",
    "SOURCES",
    "STANDARD_BAUDS",
    "Branch",
    "FieldDevice",
    "Meter",
    "MeterBox",
    "Provenance",
    "Record",
    "RecordKind",
    "Source",
    "StationModel",
    "Transformer",
    "provenance_map",
]
