"""Q/GDW 1376.2 data units: one frozen dataclass per (AFN, Fn, direction) a terminal uses.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

Every unit has ``encode() -> bytes`` and a ``decode(reader)`` classmethod; ``UNITS`` maps
``(afn, fn, up)`` to its class. An (AFN, Fn) not in the table decodes to ``RawUnit`` (bytes kept,
not an error); a table entry whose unit is empty decodes to ``NoUnit``. Frames carried inside a
unit (``frame`` fields) stay raw bytes so re-encoding is byte-exact; ``carried()`` decodes them.
Layouts: PROTOCOLS.md §3.3-§3.5 (Q/GDW 10376.2-2019 §6.5 tables).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Protocol, Self

from protocols.errors import EncodeError
from protocols.gdw1376_2 import _wire as w
from protocols.gdw1376_2._frame import PROTOCOL
from protocols.gdw1376_2._wire import Reader

# Communication protocol type byte of a slave node / carried frame.
TRANSPARENT, DLT645_1997, DLT645_2007, DLT698 = 0, 1, 2, 3
POWER_EVENT, REFUSED_NODE = 4, 5  # AFN06 F5 only
PROTOCOL_TYPES: dict[int, str] = {
    0: "transparent",
    1: "DL/T645-1997",
    2: "DL/T645-2007",
    3: "DL/T698.45",
    4: "power-off/power-on event",
    5: "node refused (area re-assignment)",
}

DEVICE_TYPES: dict[int, str] = {
    0: "collector",
    1: "meter",
    2: "HPLC communication unit",
    3: "narrowband communication unit",
    4: "micro-power wireless unit",
    5: "micro-power wireless + HPLC",
    6: "micro-power wireless + narrowband",
}

DENY_REASONS: dict[int, str] = {
    0: "communication timeout",
    1: "invalid data unit",
    2: "length error",
    3: "checksum error",
    4: "information class does not exist",
    5: "format error",
    6: "duplicate meter address",
    7: "meter address does not exist",
    8: "meter application layer no answer",
    9: "master node busy",
    10: "master node does not support the command",
    11: "slave node did not answer",
    12: "slave node not in network",
    109: "maximum concurrency exceeded",
    110: "too many meter frames in one frame",
    111: "meter is being read",
}

POWER_OFF, POWER_ON = 1, 2


class Unit(Protocol):
    NAME: ClassVar[str]

    def encode(self) -> bytes: ...


# --- AFN00 confirm / deny ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Confirm:
    """AFN00 F1: D0 command processed, D1..D31 channel 1..31 idle; then wait time in seconds."""

    NAME: ClassVar[str] = "AFN00 F1 confirm"
    status: int = 1
    wait_s: int = 0

    @property
    def command_done(self) -> bool:
        return bool(self.status & 1)

    def channel_idle(self, channel: int) -> bool:
        return bool(self.status >> channel & 1)

    def encode(self) -> bytes:
        if not 0 <= self.status <= 0xFFFFFFFF:
            raise EncodeError(f"status {self.status!r}: not 32 bits", protocol=PROTOCOL)
        return self.status.to_bytes(4, "little") + w.u16(self.wait_s, "wait time")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(int.from_bytes(r.take(4, "status"), "little"), r.u16("wait time"))


@dataclass(frozen=True, slots=True)
class Deny:
    """AFN00 F2: one error-code byte (``DENY_REASONS``)."""

    NAME: ClassVar[str] = "AFN00 F2 deny"
    code: int

    @property
    def reason(self) -> str:
        return DENY_REASONS.get(self.code, f"reserved_{self.code}")

    def encode(self) -> bytes:
        return w.u8(self.code, "error code")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u8("error code"))


# --- carried frames -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Forward:
    """AFN02 F1 (both directions): protocol type, 1-byte length, the frame."""

    NAME: ClassVar[str] = "AFN02 F1 forward frame"
    protocol: int
    frame: bytes

    def encode(self) -> bytes:
        return w.u8(self.protocol, "protocol") + w.sized(self.frame, "frame")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        protocol = r.u8("protocol")
        return cls(protocol, r.take(r.u8("frame length"), "frame"))


# --- AFN03 query answers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VendorVersion:
    """AFN03 F1 up: vendor code (2 ASCII), chip code (2 ASCII), version date, version (2 BCD).

    Codes are kept in wire order ("ZW" for ``5A 57``), as module tools display them.
    """

    NAME: ClassVar[str] = "AFN03 F1 vendor code & version"
    vendor: str
    chip: str
    date: dt.date
    version: str  # 4 BCD digits, most significant first (wire ``10 20`` -> "2010")

    def encode(self) -> bytes:
        for name in ("vendor", "chip"):
            value = getattr(self, name)
            if len(value) != 2 or not value.isascii():
                raise EncodeError(f"{name} {value!r}: expected 2 ASCII characters", protocol=PROTOCOL)
        if len(self.version) != 4 or not self.version.isdigit():
            raise EncodeError(f"version {self.version!r}: expected 4 BCD digits", protocol=PROTOCOL)
        return (
            self.vendor.encode("ascii")
            + self.chip.encode("ascii")
            + w.date(self.date, "version date")
            + bytes.fromhex(self.version)[::-1]
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        vendor = r.take(2, "vendor code").decode("latin-1")
        chip = r.take(2, "chip code").decode("latin-1")
        date = r.date("version date")
        at = r.pos
        version = r.take(2, "version")
        digits = version[::-1].hex().upper()
        if not digits.isdigit():
            raise r.error(f"version {digits}: not BCD", at=at)
        return cls(vendor, chip, date, digits)


@dataclass(frozen=True, slots=True)
class MasterAddress:
    """AFN03 F4 up (query answer) and AFN05 F1 down (set): the master node address."""

    NAME: ClassVar[str] = "master node address"
    address: str

    def encode(self) -> bytes:
        return w.address(self.address, "master address")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.address("master address"))


COMM_TYPES: dict[int, str] = {
    1: "narrowband PLC",
    2: "broadband PLC (HPLC)",
    3: "micro-power wireless",
}


@dataclass(frozen=True, slots=True)
class RunMode:
    """AFN03 F10 up: local communication module running-mode information.

    ``mode_word`` is the 6-byte mode word kept verbatim (its byte 3 D3..D0 is the number of
    rates that follow, rebuilt from ``rates`` on encode); the properties name its fields.
    """

    NAME: ClassVar[str] = "AFN03 F10 module running mode"
    mode_word: bytes
    monitor_timeout_s: int
    broadcast_timeout_s: int
    max_frame_len: int
    max_file_packet_len: int
    upgrade_wait_s: int
    master_address: str
    max_nodes: int
    current_nodes: int
    protocol_date: dt.date
    record_date: dt.date
    vendor: VendorVersion
    rates: tuple[int, ...] = ()  # raw 16-bit rate words: D14..D0 value, D15 unit (1 = kbit/s)

    def __post_init__(self) -> None:
        if len(self.mode_word) != 6:
            raise EncodeError("mode word: expected 6 bytes", protocol=PROTOCOL)
        if len(self.rates) > 15:
            raise EncodeError(f"{len(self.rates)} rates: at most 15", protocol=PROTOCOL)
        mode = bytearray(self.mode_word)
        mode[3] = (mode[3] & 0xF0) | len(self.rates)  # the rate count is implied by ``rates``
        object.__setattr__(self, "mode_word", bytes(mode))

    @property
    def comm_type(self) -> int:
        return self.mode_word[0] & 0x0F

    @property
    def route_management(self) -> int:
        return self.mode_word[0] >> 4 & 1

    @property
    def slave_info_mode(self) -> int:
        return self.mode_word[0] >> 5 & 1

    @property
    def periodic_read_mode(self) -> int:
        """1 terminal-led, 2 route(module)-led, 3 both."""
        return self.mode_word[0] >> 6

    @property
    def channel_count(self) -> int:
        return self.mode_word[2] & 0x1F

    def encode(self) -> bytes:
        return b"".join(
            (
                self.mode_word,
                w.u8(self.monitor_timeout_s, "monitor timeout"),
                w.u16(self.broadcast_timeout_s, "broadcast timeout"),
                w.u16(self.max_frame_len, "max frame length"),
                w.u16(self.max_file_packet_len, "max file packet length"),
                w.u8(self.upgrade_wait_s, "upgrade wait"),
                w.address(self.master_address, "master address"),
                w.u16(self.max_nodes, "max nodes"),
                w.u16(self.current_nodes, "current nodes"),
                w.date(self.protocol_date, "protocol publish date"),
                w.date(self.record_date, "protocol record date"),
                self.vendor.encode(),
                *(w.u16(rate, "rate") for rate in self.rates),
            )
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        mode = r.take(6, "mode word")
        fixed = (
            r.u8("monitor timeout"),
            r.u16("broadcast timeout"),
            r.u16("max frame length"),
            r.u16("max file packet length"),
            r.u8("upgrade wait"),
            r.address("master address"),
            r.u16("max nodes"),
            r.u16("current nodes"),
        )
        dates = (r.date("protocol publish date"), r.date("protocol record date"))
        vendor = VendorVersion.decode(r)
        rates = tuple(r.u16(f"rate {i + 1}") for i in range(mode[3] & 0x0F))
        return cls(mode, *fixed, *dates, vendor, rates)


# --- AFN05 control ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventReport:
    """AFN05 F2 down: allow (1) / forbid (0) slave-node event reports."""

    NAME: ClassVar[str] = "AFN05 F2 allow/forbid slave-node event report"
    enable: int

    def encode(self) -> bytes:
        return w.u8(self.enable, "enable")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u8("enable"))


@dataclass(frozen=True, slots=True)
class StartBroadcast:
    """AFN05 F3 down: control word (protocol type), 1-byte length, the frame to broadcast."""

    NAME: ClassVar[str] = "AFN05 F3 start broadcast"
    protocol: int
    frame: bytes

    def encode(self) -> bytes:
        return w.u8(self.protocol, "control word") + w.sized(self.frame, "frame")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        protocol = r.u8("control word")
        return cls(protocol, r.take(r.u8("frame length"), "frame"))


# --- AFN06 active reports (up) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportedNode:
    address: str
    protocol: int
    index: int


@dataclass(frozen=True, slots=True)
class NodeReport:
    """AFN06 F1 up: n x (address, protocol, 2-byte node index)."""

    NAME: ClassVar[str] = "AFN06 F1 report slave-node info"
    nodes: tuple[ReportedNode, ...]

    def encode(self) -> bytes:
        out = w.u8(len(self.nodes), "node count")
        for node in self.nodes:
            out += w.address(node.address, "node address") + w.u8(node.protocol, "protocol")
            out += w.u16(node.index, "node index")
        return out

    @classmethod
    def decode(cls, r: Reader) -> Self:
        n = r.u8("node count")
        return cls(
            tuple(ReportedNode(r.address("node address"), r.u8("protocol"), r.u16("index")) for _ in range(n))
        )


@dataclass(frozen=True, slots=True)
class ReadData:
    """AFN06 F2 up: node index, protocol, uplink duration (s), 1-byte length, the meter's reply."""

    NAME: ClassVar[str] = "AFN06 F2 report read data"
    index: int
    protocol: int
    duration_s: int
    frame: bytes

    def encode(self) -> bytes:
        return (
            w.u16(self.index, "node index")
            + w.u8(self.protocol, "protocol")
            + w.u16(self.duration_s, "uplink duration")
            + w.sized(self.frame, "frame")
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        index, protocol, duration = r.u16("node index"), r.u8("protocol"), r.u16("uplink duration")
        return cls(index, protocol, duration, r.take(r.u8("frame length"), "frame"))


ROUTE_TASKS = {1: "reading task finished", 2: "meter search finished"}


@dataclass(frozen=True, slots=True)
class RouteChange:
    """AFN06 F3 up: route work-task change (1 reading finished, 2 search finished)."""

    NAME: ClassVar[str] = "AFN06 F3 report route condition change"
    task: int

    def encode(self) -> bytes:
        return w.u8(self.task, "task")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u8("task"))


@dataclass(frozen=True, slots=True)
class AttachedNode:
    address: str
    protocol: int


@dataclass(frozen=True, slots=True)
class DeviceNode:
    address: str
    protocol: int
    index: int
    device_type: int
    attached_total: int
    attached: tuple[AttachedNode, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """AFN06 F4 up: n x (address, protocol, index, device type, M total attached, m, m x (addr, protocol))."""

    NAME: ClassVar[str] = "AFN06 F4 report slave-node info and device type"
    nodes: tuple[DeviceNode, ...]

    def encode(self) -> bytes:
        out = w.u8(len(self.nodes), "node count")
        for node in self.nodes:
            out += w.address(node.address, "node address") + w.u8(node.protocol, "protocol")
            out += w.u16(node.index, "node index") + w.u8(node.device_type, "device type")
            out += w.u8(node.attached_total, "attached total") + w.u8(len(node.attached), "attached count")
            for sub in node.attached:
                out += w.address(sub.address, "attached address") + w.u8(sub.protocol, "attached protocol")
        return out

    @classmethod
    def decode(cls, r: Reader) -> Self:
        nodes = []
        for _ in range(r.u8("node count")):
            head = (r.address("node address"), r.u8("protocol"), r.u16("index"), r.u8("device type"))
            total, count = r.u8("attached total"), r.u8("attached count")
            subs = tuple(
                AttachedNode(r.address("attached address"), r.u8("attached protocol")) for _ in range(count)
            )
            nodes.append(DeviceNode(*head, total, subs))
        return cls(tuple(nodes))


@dataclass(frozen=True, slots=True)
class PowerNode:
    """One address of a power-off/on report; ``powered`` only in a collector's report."""

    address: str
    powered: bool | None = None


@dataclass(frozen=True, slots=True)
class PowerEvent:
    """Content of AFN06 F5 with protocol type 04: event type + the nodes concerned."""

    kind: int  # POWER_OFF (1) or POWER_ON (2)
    nodes: tuple[PowerNode, ...]

    @property
    def kind_name(self) -> str:
        return {POWER_OFF: "power-off", POWER_ON: "power-on"}.get(self.kind, f"reserved_{self.kind}")


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """AFN06 F5 up: device type, protocol type, 1-byte length, content (PROTOCOLS.md §3.5).

    Protocol 01/02/03: content is the meter's status-word frame (``carried()``); protocol 04: a
    ``PowerEvent`` (``power``): event type then 6-byte addresses, each followed by a powered-state
    byte when the device type is 00 (collector); 05: node refused by area re-assignment (raw).
    """

    NAME: ClassVar[str] = "AFN06 F5 report slave-node event"
    device_type: int
    protocol: int
    content: bytes

    @property
    def frame(self) -> bytes:
        return self.content if self.protocol in (DLT645_1997, DLT645_2007, DLT698) else b""

    @property
    def power(self) -> PowerEvent | None:
        if self.protocol != POWER_EVENT:
            return None
        return _parse_power(Reader(self.content, what="AFN06 F5 power event"), self.device_type)

    @classmethod
    def power_report(cls, event: PowerEvent, *, device_type: int = 1) -> NodeEvent:
        """Build a protocol-04 report; device type 0 (collector) carries a state byte per address."""
        out = w.u8(event.kind, "event type")
        for node in event.nodes:
            out += w.address(node.address, "node address")
            if device_type == 0:
                if node.powered is None:
                    raise EncodeError(
                        "collector power report needs a powered state per node", protocol=PROTOCOL
                    )
                out += bytes([1 if node.powered else 0])
        return cls(device_type, POWER_EVENT, out)

    def encode(self) -> bytes:
        return (
            w.u8(self.device_type, "device type")
            + w.u8(self.protocol, "protocol")
            + w.sized(self.content, "content")
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        device_type, protocol = r.u8("device type"), r.u8("protocol")
        at = r.pos + 1
        unit = cls(device_type, protocol, r.take(r.u8("content length"), "content"))
        if protocol == POWER_EVENT:
            _parse_power(Reader(unit.content, base=r.base + at, what="AFN06 F5 power event"), device_type)
        return unit


def _parse_power(r: Reader, device_type: int) -> PowerEvent:
    kind = r.u8("event type")
    step = 7 if device_type == 0 else 6
    if (len(r.data) - 1) % step:
        raise r.error(f"{len(r.data) - 1} address bytes are not a multiple of {step}")
    nodes = []
    while r.pos < len(r.data):
        address = r.address("node address")
        powered = None
        if device_type == 0:
            at = r.pos
            state = r.u8("powered state")
            if state > 1:
                raise r.error(f"powered state {state}: expected 0 or 1", at=at)
            powered = bool(state)
        nodes.append(PowerNode(address, powered))
    return PowerEvent(kind, tuple(nodes))


# --- AFN10 route query -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeCount:
    """AFN10 F1 up: number of slave nodes and the most the route supports."""

    NAME: ClassVar[str] = "AFN10 F1 slave node count"
    count: int
    max_count: int

    def encode(self) -> bytes:
        return w.u16(self.count, "count") + w.u16(self.max_count, "max count")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u16("count"), r.u16("max count"))


@dataclass(frozen=True, slots=True)
class NodeQuery:
    """AFN10 F2/F5/F6/F21/F31 down: start index (2 bytes, from 1) and how many nodes."""

    NAME: ClassVar[str] = "AFN10 node page query"
    start: int
    count: int

    def encode(self) -> bytes:
        return w.u16(self.start, "start index") + w.u8(self.count, "count")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u16("start index"), r.u8("count"))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node of AFN10 F2: address + 2-byte info (relay, quality, phase bits, protocol)."""

    address: str
    info: int = 0

    @classmethod
    def of(
        cls,
        address: str,
        *,
        relay_level: int = 0,
        signal_quality: int = 0,
        phase_bits: int = 0,
        protocol: int = 2,
    ) -> NodeInfo:
        return cls(address, relay_level | signal_quality << 4 | phase_bits << 8 | protocol << 11)

    @property
    def relay_level(self) -> int:
        return self.info & 0x0F

    @property
    def signal_quality(self) -> int:
        return self.info >> 4 & 0x0F

    @property
    def phase_bits(self) -> int:
        """D0 phase A, D1 B, D2 C (0 = unknown)."""
        return self.info >> 8 & 0x07

    @property
    def protocol(self) -> int:
        return self.info >> 11 & 0x07


@dataclass(frozen=True, slots=True)
class NodePage:
    """AFN10 F2 up: total node count, n, n x ``NodeInfo``."""

    NAME: ClassVar[str] = "AFN10 F2 slave node info"
    total: int
    nodes: tuple[NodeInfo, ...]

    def encode(self) -> bytes:
        out = w.u16(self.total, "total") + w.u8(len(self.nodes), "count")
        return out + b"".join(
            w.address(n.address, "node address") + w.u16(n.info, "node info") for n in self.nodes
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        total, n = r.u16("total"), r.u8("count")
        return cls(total, tuple(NodeInfo(r.address("node address"), r.u16("node info")) for _ in range(n)))


WORK_STEPS = {1: "initial", 2: "direct reading", 3: "relay", 4: "monitoring", 5: "broadcast",
              6: "broadcast meter reading", 7: "reading listen info", 8: "idle"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RouteState:
    """AFN10 F4 up: route running state (16 bytes)."""

    NAME: ClassVar[str] = "AFN10 F4 route running state"
    status: int  # D0 route learning done, D1 working, D2 event pending, D7..D4 ECC
    node_total: int
    nodes_read: int
    nodes_relayed: int
    work_switch: int  # D0 1 = learning / 0 = reading, D1 registration allowed
    rate: int
    relay_levels: tuple[int, int, int]
    work_steps: tuple[int, int, int]

    def encode(self) -> bytes:
        if len(self.relay_levels) != 3 or len(self.work_steps) != 3:
            raise EncodeError("relay levels and work steps: 3 values each", protocol=PROTOCOL)
        return b"".join(
            (
                w.u8(self.status, "status"),
                w.u16(self.node_total, "node total"),
                w.u16(self.nodes_read, "nodes read"),
                w.u16(self.nodes_relayed, "nodes relayed"),
                w.u8(self.work_switch, "work switch"),
                w.u16(self.rate, "rate"),
                *(w.u8(v, "relay level") for v in self.relay_levels),
                *(w.u8(v, "work step") for v in self.work_steps),
            )
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        head = (r.u8("status"), r.u16("node total"), r.u16("nodes read"), r.u16("nodes relayed"))
        switch, rate = r.u8("work switch"), r.u16("rate")
        relays = (r.u8("relay level 1"), r.u8("relay level 2"), r.u8("relay level 3"))
        steps = (r.u8("work step 1"), r.u8("work step 2"), r.u8("work step 3"))
        return cls(*head, switch, rate, relays, steps)


@dataclass(frozen=True, slots=True)
class TopologyNode:
    """A node of AFN10 F21: address, TEI, proxy (parent) TEI, node info byte (level/role)."""

    address: str
    tei: int
    proxy_tei: int
    node_info: int

    @property
    def level(self) -> int:
        return self.node_info & 0x0F

    @property
    def role(self) -> int:
        return self.node_info >> 4


@dataclass(frozen=True, slots=True)
class Topology:
    """AFN10 F21 up: total, start index, n, n x (address + 5-byte topology info)."""

    NAME: ClassVar[str] = "AFN10 F21 network topology"
    total: int
    start: int
    nodes: tuple[TopologyNode, ...]

    def encode(self) -> bytes:
        out = w.u16(self.total, "total") + w.u16(self.start, "start") + w.u8(len(self.nodes), "count")
        for n in self.nodes:
            out += (
                w.address(n.address, "node address") + w.u16(n.tei, "TEI") + w.u16(n.proxy_tei, "proxy TEI")
            )
            out += w.u8(n.node_info, "node info")
        return out

    @classmethod
    def decode(cls, r: Reader) -> Self:
        total, start, n = r.u16("total"), r.u16("start"), r.u8("count")
        nodes = tuple(
            TopologyNode(r.address("node address"), r.u16("TEI"), r.u16("proxy TEI"), r.u8("node info"))
            for _ in range(n)
        )
        return cls(total, start, nodes)


#: AFN10 F31 three-phase sequence types (D7..D5 of a three-phase meter's phase info)
PHASE_SEQUENCES = {0: "ABC", 1: "ACB", 2: "BAC", 3: "BCA", 4: "CAB", 5: "CBA", 6: "neutral/line swapped"}


@dataclass(frozen=True, slots=True)
class PhaseNode:
    """A node of AFN10 F31: address + 2-byte phase info, low byte first.

    Low byte (as the HiSilicon-derived CCO firmware ``mrs3762_AFN10_F31`` fills it: offsets
    ``MRS_CCO_10_F31_METER_TYPE_OFFSET`` 3, ``..._PN_RESULT_OFFSET`` 4, ``..._T_PHASE_TYPE_OFFSET`` 5)::

        D0 D1 D2   the phases the node's zero-crossing was found on (A, B, C; all three for the CCO
                   itself; none = not identified yet)
        D3         1 = three-phase meter
        D4         1 = line abnormal: a three-phase meter missing a phase or in reverse sequence,
                   a single-phase meter with line and neutral swapped
        D5..D7     three-phase sequence type (``PHASE_SEQUENCES``)

    High byte reserved (0).
    """

    address: str
    info: int

    @classmethod
    def of(
        cls,
        address: str,
        phases: str = "",
        *,
        three_phase: bool = False,
        abnormal: bool = False,
        sequence: int = 0,
    ) -> PhaseNode:
        """A node on ``phases`` ("A", "BC", "ABC", "" = unknown)."""
        bits = sum(1 << "ABC".index(p) for p in set(phases))
        if not 0 <= sequence <= 7:
            raise EncodeError(f"phase sequence type {sequence}: expected 0..7", protocol=PROTOCOL)
        return cls(address, bits | three_phase << 3 | abnormal << 4 | sequence << 5)

    @property
    def phase_bits(self) -> int:
        return self.info & 0x07

    @property
    def phases(self) -> str:
        """The phases as letters, "" when the module has not identified them."""
        return "".join(p for k, p in enumerate("ABC") if self.info >> k & 1)

    @property
    def three_phase(self) -> bool:
        return bool(self.info & 0x08)

    @property
    def line_abnormal(self) -> bool:
        return bool(self.info & 0x10)

    @property
    def sequence(self) -> int:
        return self.info >> 5 & 0x07


@dataclass(frozen=True, slots=True)
class PhaseInfo:
    """AFN10 F31 up: total, start index, n, n x (address + 2-byte phase info)."""

    NAME: ClassVar[str] = "AFN10 F31 phase info"
    total: int
    start: int
    nodes: tuple[PhaseNode, ...]

    def encode(self) -> bytes:
        out = w.u16(self.total, "total") + w.u16(self.start, "start") + w.u8(len(self.nodes), "count")
        return out + b"".join(
            w.address(n.address, "node address") + w.u16(n.info, "phase info") for n in self.nodes
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        total, start, n = r.u16("total"), r.u16("start"), r.u8("count")
        return cls(
            total, start, tuple(PhaseNode(r.address("node address"), r.u16("phase info")) for _ in range(n))
        )


# --- AFN11 route set ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveNode:
    address: str
    protocol: int = DLT645_2007


@dataclass(frozen=True, slots=True)
class AddNodes:
    """AFN11 F1 down: n x (address, protocol)."""

    NAME: ClassVar[str] = "AFN11 F1 add slave nodes"
    nodes: tuple[ArchiveNode, ...]

    def encode(self) -> bytes:
        return w.u8(len(self.nodes), "count") + b"".join(
            w.address(n.address, "node address") + w.u8(n.protocol, "protocol") for n in self.nodes
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        n = r.u8("count")
        return cls(tuple(ArchiveNode(r.address("node address"), r.u8("protocol")) for _ in range(n)))


@dataclass(frozen=True, slots=True)
class DeleteNodes:
    """AFN11 F2 down: n x address."""

    NAME: ClassVar[str] = "AFN11 F2 delete slave nodes"
    addresses: tuple[str, ...]

    def encode(self) -> bytes:
        return w.u8(len(self.addresses), "count") + b"".join(
            w.address(a, "node address") for a in self.addresses
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        n = r.u8("count")
        return cls(tuple(r.address("node address") for _ in range(n)))


@dataclass(frozen=True, slots=True)
class StartRegistration:
    """AFN11 F5 down: start time (ss mm hh DD MM YY BCD), duration (min), retries, random slices."""

    NAME: ClassVar[str] = "AFN11 F5 activate slave-node self-registration"
    start: dt.datetime
    duration_min: int
    retries: int
    slices: int

    def encode(self) -> bytes:
        return (
            w.datetime(self.start, "start time")
            + w.u16(self.duration_min, "duration")
            + w.u8(self.retries, "retries")
            + w.u8(self.slices, "random wait slices")
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.datetime("start time"), r.u16("duration"), r.u8("retries"), r.u8("random wait slices"))


# --- AFN13 monitor a node ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Monitor:
    """AFN13 F1 down: protocol, delay-related flag, n attached nodes, n x address, length, frame."""

    NAME: ClassVar[str] = "AFN13 F1 monitor slave node (down)"
    protocol: int
    frame: bytes
    delay_related: int = 0
    attached: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return (
            w.u8(self.protocol, "protocol")
            + w.u8(self.delay_related, "delay-related flag")
            + w.u8(len(self.attached), "attached count")
            + b"".join(w.address(a, "attached address") for a in self.attached)
            + w.sized(self.frame, "frame")
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        protocol, delay = r.u8("protocol"), r.u8("delay-related flag")
        attached = tuple(r.address("attached address") for _ in range(r.u8("attached count")))
        return cls(protocol, r.take(r.u8("frame length"), "frame"), delay, attached)


@dataclass(frozen=True, slots=True)
class MonitorReply:
    """AFN13 F1 up: uplink duration (s, 2 bytes), protocol, length, the meter's reply."""

    NAME: ClassVar[str] = "AFN13 F1 monitor slave node (up)"
    duration_s: int
    protocol: int
    frame: bytes

    def encode(self) -> bytes:
        return (
            w.u16(self.duration_s, "uplink duration")
            + w.u8(self.protocol, "protocol")
            + w.sized(self.frame, "frame")
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        duration, protocol = r.u16("uplink duration"), r.u8("protocol")
        return cls(duration, protocol, r.take(r.u8("frame length"), "frame"))


# --- AFN14 module-led reading ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """AFN14 F1 up: the route asks what to read: phase, node address, node index."""

    NAME: ClassVar[str] = "AFN14 F1 route requests read content"
    phase: int
    address: str
    index: int

    def encode(self) -> bytes:
        return (
            w.u8(self.phase, "phase")
            + w.address(self.address, "node address")
            + w.u16(self.index, "node index")
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.u8("phase"), r.address("node address"), r.u16("node index"))


READ_FLAGS = {0: "read failed", 1: "read succeeded", 2: "can read"}


@dataclass(frozen=True, slots=True)
class ReadReply:
    """AFN14 F1 down: read flag (0 failed, 1 succeeded, 2 can read), delay flag, frame, attached nodes."""

    NAME: ClassVar[str] = "AFN14 F1 reply read content"
    flag: int
    frame: bytes = b""
    delay_related: int = 0
    attached: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return (
            w.u8(self.flag, "read flag")
            + w.u8(self.delay_related, "delay-related flag")
            + w.sized(self.frame, "frame")
            + w.u8(len(self.attached), "attached count")
            + b"".join(w.address(a, "attached address") for a in self.attached)
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        flag, delay = r.u8("read flag"), r.u8("delay-related flag")
        frame = r.take(r.u8("frame length"), "frame")
        attached = tuple(r.address("attached address") for _ in range(r.u8("attached count")))
        return cls(flag, frame, delay, attached)


@dataclass(frozen=True, slots=True)
class Clock:
    """AFN14 F2 down: the terminal's clock, ss mm hh DD MM YY BCD."""

    NAME: ClassVar[str] = "AFN14 F2 concentrator clock"
    time: dt.datetime

    def encode(self) -> bytes:
        return w.datetime(self.time, "clock")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.datetime("clock"))


@dataclass(frozen=True, slots=True)
class DelayRequest:
    """AFN14 F3 up: node address, expected delay (s), length, the frame to correct."""

    NAME: ClassVar[str] = "AFN14 F3 request delay-corrected data"
    address: str
    delay_s: int
    frame: bytes

    def encode(self) -> bytes:
        return (
            w.address(self.address, "node address")
            + w.u16(self.delay_s, "delay")
            + w.sized(self.frame, "frame")
        )

    @classmethod
    def decode(cls, r: Reader) -> Self:
        address, delay = r.address("node address"), r.u16("delay")
        return cls(address, delay, r.take(r.u8("frame length"), "frame"))


@dataclass(frozen=True, slots=True)
class DelayCorrected:
    """AFN14 F3 down: length, the corrected frame."""

    NAME: ClassVar[str] = "AFN14 F3 delay-corrected data"
    frame: bytes

    def encode(self) -> bytes:
        return w.sized(self.frame, "frame")

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.take(r.u8("frame length"), "frame"))


# --- AFN F1 concurrent reading -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Concurrent:
    """AFN F1 F1 (both directions): protocol, 2-byte length, frame (length 0 up = read failed)."""

    NAME: ClassVar[str] = "AFNF1 F1 concurrent meter read"
    protocol: int
    frame: bytes

    def encode(self) -> bytes:
        return w.u8(self.protocol, "protocol") + w.sized(self.frame, "frame", width=2)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        protocol = r.u8("protocol")
        return cls(protocol, r.take(r.u16("frame length"), "frame"))


# --- generic -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoUnit:
    """A known (AFN, Fn, direction) whose data unit is empty (queries, commands)."""

    NAME: ClassVar[str] = "query/command without data unit"

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls()


@dataclass(frozen=True, slots=True)
class RawUnit:
    """An (AFN, Fn, direction) this codec does not model: the bytes, untouched."""

    NAME: ClassVar[str] = "unmodelled data unit"
    data: bytes = b""

    def encode(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def decode(cls, r: Reader) -> Self:
        return cls(r.rest())


DOWN, UP = False, True
_BOTH = (DOWN, UP)


def _table() -> dict[tuple[int, int, bool], type[Unit]]:
    t: dict[tuple[int, int, bool], type[Unit]] = {}
    for up in _BOTH:
        t[0x00, 1, up] = Confirm
        t[0x00, 2, up] = Deny
        t[0x02, 1, up] = Forward
        t[0xF1, 1, up] = Concurrent
    for fn in (1, 2, 3):
        t[0x01, fn, DOWN] = NoUnit
        t[0x12, fn, DOWN] = NoUnit
    for fn in (1, 4, 10):
        t[0x03, fn, DOWN] = NoUnit
    t[0x03, 1, UP] = VendorVersion
    t[0x03, 4, UP] = MasterAddress
    t[0x03, 10, UP] = RunMode
    t[0x05, 1, DOWN] = MasterAddress
    t[0x05, 2, DOWN] = EventReport
    t[0x05, 3, DOWN] = StartBroadcast
    t[0x06, 1, UP] = NodeReport
    t[0x06, 2, UP] = ReadData
    t[0x06, 3, UP] = RouteChange
    t[0x06, 4, UP] = DeviceReport
    t[0x06, 5, UP] = NodeEvent
    t[0x10, 1, DOWN] = NoUnit
    t[0x10, 4, DOWN] = NoUnit
    for fn in (2, 21, 31):
        t[0x10, fn, DOWN] = NodeQuery
    t[0x10, 1, UP] = NodeCount
    t[0x10, 2, UP] = NodePage
    t[0x10, 4, UP] = RouteState
    t[0x10, 21, UP] = Topology
    t[0x10, 31, UP] = PhaseInfo
    t[0x11, 1, DOWN] = AddNodes
    t[0x11, 2, DOWN] = DeleteNodes
    t[0x11, 5, DOWN] = StartRegistration
    t[0x11, 6, DOWN] = NoUnit
    t[0x13, 1, DOWN] = Monitor
    t[0x13, 1, UP] = MonitorReply
    t[0x14, 1, UP] = ReadRequest
    t[0x14, 1, DOWN] = ReadReply
    t[0x14, 2, UP] = NoUnit
    t[0x14, 2, DOWN] = Clock
    t[0x14, 3, UP] = DelayRequest
    t[0x14, 3, DOWN] = DelayCorrected
    return t


UNITS = MappingProxyType(_table())


def decode_unit(afn: int, fn: int, up: bool, data: bytes, *, base: int = 0) -> Unit:
    """The dataclass of a data unit; ``base`` is its offset in the frame for error offsets."""
    cls = UNITS.get((afn, fn, up), RawUnit)
    r = Reader(data, base=base, what=f"AFN{afn:02X} F{fn} {'up' if up else 'down'}")
    unit = cls.decode(r)  # type: ignore[attr-defined]
    r.end()
    result: Unit = unit
    return result


def unit_key(unit: Unit, *, up: bool) -> list[tuple[int, int]]:
    """Every (AFN, Fn) under which ``unit``'s class is registered for that direction."""
    return [(afn, fn) for (afn, fn, u), cls in UNITS.items() if u == up and cls is type(unit)]


__all__ = [
    "COMM_TYPES",
    "DENY_REASONS",
    "DEVICE_TYPES",
    "DLT645_1997",
    "DLT645_2007",
    "DLT698",
    "PHASE_SEQUENCES",
    "POWER_EVENT",
    "POWER_OFF",
    "POWER_ON",
    "PROTOCOL_TYPES",
    "READ_FLAGS",
    "REFUSED_NODE",
    "ROUTE_TASKS",
    "TRANSPARENT",
    "UNITS",
    "WORK_STEPS",
    "AddNodes",
    "ArchiveNode",
    "AttachedNode",
    "Clock",
    "Concurrent",
    "Confirm",
    "DelayCorrected",
    "DelayRequest",
    "DeleteNodes",
    "Deny",
    "DeviceNode",
    "DeviceReport",
    "EventReport",
    "Forward",
    "MasterAddress",
    "Monitor",
    "MonitorReply",
    "NoUnit",
    "NodeCount",
    "NodeEvent",
    "NodeInfo",
    "NodePage",
    "NodeQuery",
    "NodeReport",
    "PhaseInfo",
    "PhaseNode",
    "PowerEvent",
    "PowerNode",
    "RawUnit",
    "ReadData",
    "ReadReply",
    "ReadRequest",
    "ReportedNode",
    "RouteChange",
    "RouteState",
    "RunMode",
    "StartBroadcast",
    "StartRegistration",
    "Topology",
    "TopologyNode",
    "Unit",
    "VendorVersion",
    "decode_unit",
    "unit_key",
]
