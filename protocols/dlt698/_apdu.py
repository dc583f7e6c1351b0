"""DL/T 698.45 APDUs: one frozen dataclass per service choice, with encode/decode.

Layer: protocols (pure codec, no I/O). Must not import asyncio, serial, hal or runtime.

Layout (PROTOCOLS.md §2.2, ASN.1 of [S22])::

    tag(1) [choice(1)] PIID | PIID-ACD  fields...  [FollowReport OPTIONAL] [TimeTag OPTIONAL]

* client APDUs (CONNECT/RELEASE/GET/SET/ACTION/REPORT-Response/PROXY requests) end with
  TimeTag OPTIONAL (``00`` = absent, ``01`` + date_time_s + TI);
* server APDUs (their responses, RELEASE-Notification, REPORT-Notification) end with
  FollowReport OPTIONAL then TimeTag OPTIONAL (``00 00``);
* LINK-Request/Response, SECURITY-Request/Response and ERROR-Response carry neither.

``decode_apdu(raw)`` returns the dataclass for any supported tag/choice, or raises a
``ProtocolError`` whose offset points into ``raw`` (plus ``base``). ``apdu.encode()`` is
the inverse, byte-exact. SECURITY ciphertext is kept as opaque bytes; a plaintext
SECURITY payload is itself an APDU (``SecurityRequest.inner()``). PROXY choices 3-6
(set/action lists) are kept opaque (``ProxyOpaque``) with their raw body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar, Union

from protocols.dlt698._axdr import (
    CSD,
    OAD,
    OMD,
    RSD,
    TI,
    TSA,
    ComDcb,
    Data,
    DateTime,
    DateTimeS,
    SidMac,
    read_data,
    read_date_time,
    read_date_time_s,
    read_oad,
    read_omd,
    read_rcsd,
    read_rsd,
    read_sid,
    read_ti,
    read_tsa,
    write_data,
    write_date_time,
    write_date_time_s,
    write_oad,
    write_omd,
    write_rcsd,
    write_rsd,
    write_sid,
    write_ti,
    write_tsa,
)
from protocols.dlt698._wire import PROTOCOL, Reader, put_length, put_octets, put_uint
from protocols.errors import EncodeError, ProtocolError

T = TypeVar("T")


# --- shared parts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeTag:
    send_time: DateTimeS
    delay: TI


@dataclass(frozen=True, slots=True)
class ResultNormal:
    """A-ResultNormal / Get-Result: exactly one of ``data`` and ``dar`` is set."""

    oad: OAD
    data: Data | None = None
    dar: int | None = None


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A-ResultRecord: rows (one Data per RCSD column) or a DAR."""

    oad: OAD
    rcsd: tuple[CSD, ...]
    rows: tuple[tuple[Data, ...], ...] | None = None
    dar: int | None = None


@dataclass(frozen=True, slots=True)
class GetRecord:
    oad: OAD
    rsd: RSD
    rcsd: tuple[CSD, ...]


@dataclass(frozen=True, slots=True)
class FollowReport:
    """choice 1: results are ResultNormal; choice 2: ResultRecord."""

    choice: int
    results: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ConnectMechanism:
    """0 NullSecurity (); 1 PasswordSecurity (password,); 2 SymmetrySecurity / 3 SignatureSecurity
    (ciphertext, signature)."""

    kind: int
    fields: tuple[Any, ...] = ()


def _seq(r: Reader, what: str, item: Callable[[Reader], T], *, min_size: int = 1) -> tuple[T, ...]:
    n = r.count(what, min_size=min_size)
    return tuple(item(r) for _ in range(n))


def _put_seq(out: bytearray, items: object, write: Callable[[bytearray, Any], None], what: str) -> None:
    if not isinstance(items, tuple | list):
        raise EncodeError(f"{what}: {items!r} is not a sequence", protocol=PROTOCOL)
    put_length(out, len(items))
    for item in items:
        write(out, item)


def _choice(r: Reader, what: str, allowed: tuple[int, ...]) -> int:
    at = r.pos
    value = r.u8(f"{what} choice")
    if value not in allowed:
        raise r.error(f"{what} choice {value}: expected one of {allowed}", at=at)
    return value


def _octets(r: Reader, what: str) -> bytes:
    return r.take(r.length(f"{what} length"), what)


def read_result_normal(r: Reader) -> ResultNormal:
    oad = read_oad(r)
    if _choice(r, "Get-Result", (0, 1)) == 0:
        return ResultNormal(oad, dar=r.u8("DAR"))
    return ResultNormal(oad, data=read_data(r))


def write_result_normal(out: bytearray, res: ResultNormal) -> None:
    write_oad(out, res.oad)
    if (res.data is None) == (res.dar is None):
        raise EncodeError("ResultNormal needs exactly one of data and dar", protocol=PROTOCOL)
    if res.dar is not None:
        out.append(0)
        put_uint(out, res.dar, 1, "DAR")
    else:
        out.append(1)
        write_data(out, res.data)


def read_result_record(r: Reader) -> ResultRecord:
    oad = read_oad(r)
    rcsd = read_rcsd(r)
    if _choice(r, "A-ResultRecord", (0, 1)) == 0:
        return ResultRecord(oad, rcsd, dar=r.u8("DAR"))
    columns = len(rcsd)
    n = r.count("record rows", min_size=columns)
    rows = tuple(tuple(read_data(r) for _ in range(columns)) for _ in range(n))
    return ResultRecord(oad, rcsd, rows=rows)


def write_result_record(out: bytearray, res: ResultRecord) -> None:
    write_oad(out, res.oad)
    write_rcsd(out, res.rcsd)
    if (res.rows is None) == (res.dar is None):
        raise EncodeError("ResultRecord needs exactly one of rows and dar", protocol=PROTOCOL)
    if res.dar is not None:
        out.append(0)
        put_uint(out, res.dar, 1, "DAR")
        return
    out.append(1)
    assert res.rows is not None
    put_length(out, len(res.rows))
    for row in res.rows:
        if len(row) != len(res.rcsd):
            raise EncodeError(
                f"record row of {len(row)} values for {len(res.rcsd)} columns", protocol=PROTOCOL
            )
        for data in row:
            write_data(out, data)


def read_get_record(r: Reader) -> GetRecord:
    return GetRecord(read_oad(r), read_rsd(r), read_rcsd(r))


def write_get_record(out: bytearray, rec: GetRecord) -> None:
    write_oad(out, rec.oad)
    write_rsd(out, rec.rsd)
    write_rcsd(out, rec.rcsd)


def _read_time_tag(r: Reader) -> TimeTag | None:
    if not r.optional("TimeTag"):
        return None
    return TimeTag(read_date_time_s(r), read_ti(r))


def _write_time_tag(out: bytearray, tag: TimeTag | None) -> None:
    if tag is None:
        out.append(0)
        return
    out.append(1)
    write_date_time_s(out, tag.send_time)
    write_ti(out, tag.delay)


def _read_follow_report(r: Reader) -> FollowReport | None:
    if not r.optional("FollowReport"):
        return None
    choice = _choice(r, "FollowReport", (1, 2))
    reader = read_result_normal if choice == 1 else read_result_record
    return FollowReport(choice, _seq(r, "FollowReport results", reader, min_size=5))


def _write_follow_report(out: bytearray, rep: FollowReport | None) -> None:
    if rep is None:
        out.append(0)
        return
    out += bytes((1, rep.choice))
    _put_seq(
        out, rep.results, write_result_normal if rep.choice == 1 else write_result_record, "FollowReport"
    )


# --- the APDU base ------------------------------------------------------------------------------


class Apdu:
    """Base of every APDU dataclass: ``TAG``, optional ``CHOICE``, ``SERVICE`` name, trailer kind."""

    __slots__ = ()
    TAG: ClassVar[int]
    CHOICE: ClassVar[int | None] = None
    SERVICE: ClassVar[str]
    TRAILER: ClassVar[str] = "client"  # "client" TimeTag, "server" FollowReport + TimeTag, "none"

    @property
    def service(self) -> str:
        return self.SERVICE

    def _write(self, out: bytearray) -> None:
        raise NotImplementedError

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        raise NotImplementedError

    def _head(self, out: bytearray) -> None:
        out.append(self.TAG)
        if self.CHOICE is not None:
            out.append(self.CHOICE)

    def encode(self) -> bytes:
        out = bytearray()
        self._head(out)
        self._write(out)
        if self.TRAILER == "server":
            _write_follow_report(out, getattr(self, "follow_report", None))
        if self.TRAILER != "none":
            _write_time_tag(out, getattr(self, "time_tag", None))
        return bytes(out)

    @classmethod
    def _read(cls, r: Reader) -> Apdu:
        fields = cls._fields(r)
        if cls.TRAILER == "server":
            fields = (*fields, _read_follow_report(r), _read_time_tag(r))
        elif cls.TRAILER == "client":
            fields = (*fields, _read_time_tag(r))
        return cls(*fields)

    @classmethod
    def decode(cls, raw: bytes, *, base: int = 0) -> Apdu:
        apdu = decode_apdu(raw, base=base)
        if not isinstance(apdu, cls):
            raise ProtocolError(f"{apdu.service} is not a {cls.__name__}", offset=base, protocol=PROTOCOL)
        return apdu


def _piid(r: Reader) -> int:
    return r.u8("PIID")  # bit 6 is reserved in a request; accepted as received (be liberal)


PIID_RESERVED = 0x40  # PIID: bit 7 priority, bit 6 reserved, bits 0-5 invoke id (PIID-ACD: bit 6 = ACD)


def _check_piid(piid: int) -> None:
    """A request's PIID must not set the reserved bit 6 (a peer refuses it)."""
    if isinstance(piid, int) and piid & PIID_RESERVED:
        raise EncodeError(f"PIID 0x{piid:02X}: bit 6 is reserved in a request", protocol=PROTOCOL)


# --- link / connect / release -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRequest(Apdu):
    """Sent by the server (meter/terminal): kind 0 login, 1 heartbeat, 2 logout."""

    TAG: ClassVar[int] = 0x01
    SERVICE: ClassVar[str] = "LINK-Request"
    TRAILER: ClassVar[str] = "none"
    piid: int
    kind: int
    heartbeat: int
    time: DateTime

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        put_uint(out, self.kind, 1, "link request type")
        put_uint(out, self.heartbeat, 2, "heartbeat period")
        write_date_time(out, self.time)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), r.u8("link request type"), r.uint(2, "heartbeat period"), read_date_time(r))


@dataclass(frozen=True, slots=True)
class LinkResponse(Apdu):
    """result: bit 7 clock trustworthy, bits 0-2 result (0 ok, 1 address repeated, 2 illegal, 3 capacity)."""

    TAG: ClassVar[int] = 0x81
    SERVICE: ClassVar[str] = "LINK-Response"
    TRAILER: ClassVar[str] = "none"
    piid: int
    result: int
    request_time: DateTime
    receive_time: DateTime
    response_time: DateTime

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        put_uint(out, self.result, 1, "link result")
        for t in (self.request_time, self.receive_time, self.response_time):
            write_date_time(out, t)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), r.u8("link result"), read_date_time(r), read_date_time(r), read_date_time(r))


def _read_negotiation(r: Reader) -> tuple[Any, ...]:
    return (
        r.uint(2, "protocol version"),
        r.take(8, "protocol conformance"),
        r.take(16, "function conformance"),
        r.uint(2, "max send size"),
        r.uint(2, "max receive size"),
        r.u8("receive window"),
        r.uint(2, "max APDU size"),
        r.uint(4, "connect timeout"),
    )


def _write_negotiation(out: bytearray, apdu: Any) -> None:
    put_uint(out, apdu.version, 2, "protocol version")
    for raw, size, what in (
        (apdu.protocol_conformance, 8, "protocol"),
        (apdu.function_conformance, 16, "function"),
    ):
        if not isinstance(raw, bytes) or len(raw) != size:
            raise EncodeError(f"{what} conformance must be {size} bytes", protocol=PROTOCOL)
        out += raw
    put_uint(out, apdu.tx_max, 2, "max send size")
    put_uint(out, apdu.rx_max, 2, "max receive size")
    put_uint(out, apdu.rx_window, 1, "receive window")
    put_uint(out, apdu.apdu_max, 2, "max APDU size")
    put_uint(out, apdu.timeout, 4, "connect timeout")


@dataclass(frozen=True, slots=True)
class ConnectRequest(Apdu):
    TAG: ClassVar[int] = 0x02
    SERVICE: ClassVar[str] = "CONNECT-Request"
    piid: int
    version: int
    protocol_conformance: bytes
    function_conformance: bytes
    tx_max: int
    rx_max: int
    rx_window: int
    apdu_max: int
    timeout: int
    mechanism: ConnectMechanism
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _write_negotiation(out, self)
        m = self.mechanism
        put_uint(out, m.kind, 1, "connect mechanism")
        if m.kind == 1:
            text = m.fields[0]
            put_octets(out, text.encode("ascii") if isinstance(text, str) else text, "password")
        elif m.kind in (2, 3):
            put_octets(out, m.fields[0], "ciphertext")
            put_octets(out, m.fields[1], "signature")
        elif m.kind != 0:
            raise EncodeError(f"connect mechanism {m.kind}: expected 0..3", protocol=PROTOCOL)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        piid = _piid(r)
        nego = _read_negotiation(r)
        kind = _choice(r, "ConnectMechanismInfo", (0, 1, 2, 3))
        fields: tuple[Any, ...] = ()
        if kind == 1:
            fields = (_octets(r, "password").decode("latin-1"),)
        elif kind in (2, 3):
            fields = (_octets(r, "ciphertext"), _octets(r, "signature"))
        return (piid, *nego, ConnectMechanism(kind, fields))


@dataclass(frozen=True, slots=True)
class ConnectResponse(Apdu):
    """``factory``: the 32-byte FactoryVersion (vendor 4, sw version 4, sw date 6, hw version 4,
    hw date 6, extra 8 visible chars); ``security``: (server random, signature) or None."""

    TAG: ClassVar[int] = 0x82
    SERVICE: ClassVar[str] = "CONNECT-Response"
    TRAILER: ClassVar[str] = "server"
    piid: int
    factory: bytes
    version: int
    protocol_conformance: bytes
    function_conformance: bytes
    tx_max: int
    rx_max: int
    rx_window: int
    apdu_max: int
    timeout: int
    result: int
    security: tuple[bytes, bytes] | None = None
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        if len(self.factory) != 32:
            raise EncodeError("FactoryVersion must be 32 bytes", protocol=PROTOCOL)
        out += self.factory
        _write_negotiation(out, self)
        put_uint(out, self.result, 1, "connect result")
        if self.security is None:
            out.append(0)
        else:
            out.append(1)
            put_octets(out, self.security[0], "server random")
            put_octets(out, self.security[1], "server signature")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        piid = _piid(r)
        factory = r.take(32, "FactoryVersion")
        nego = _read_negotiation(r)
        result = r.u8("connect result")
        security = (
            (_octets(r, "server random"), _octets(r, "server signature"))
            if r.optional("SecurityData")
            else None
        )
        return (piid, factory, *nego, result, security)


@dataclass(frozen=True, slots=True)
class ReleaseRequest(Apdu):
    TAG: ClassVar[int] = 0x03
    SERVICE: ClassVar[str] = "RELEASE-Request"
    piid: int
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r),)


@dataclass(frozen=True, slots=True)
class ReleaseResponse(Apdu):
    TAG: ClassVar[int] = 0x83
    SERVICE: ClassVar[str] = "RELEASE-Response"
    TRAILER: ClassVar[str] = "server"
    piid: int
    result: int = 0
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        put_uint(out, self.result, 1, "release result")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), r.u8("release result"))


@dataclass(frozen=True, slots=True)
class ReleaseNotification(Apdu):
    TAG: ClassVar[int] = 0x84
    SERVICE: ClassVar[str] = "RELEASE-Notification"
    TRAILER: ClassVar[str] = "server"
    piid: int
    connect_time: DateTimeS
    server_time: DateTimeS
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        write_date_time_s(out, self.connect_time)
        write_date_time_s(out, self.server_time)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), read_date_time_s(r), read_date_time_s(r))


# --- GET ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetRequestNormal(Apdu):
    TAG: ClassVar[int] = 0x05
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "GET-Request-Normal"
    piid: int
    oad: OAD
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        write_oad(out, self.oad)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), read_oad(r))


@dataclass(frozen=True, slots=True)
class GetRequestNormalList(Apdu):
    TAG: ClassVar[int] = 0x05
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "GET-Request-NormalList"
    piid: int
    oads: tuple[OAD, ...]
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _put_seq(out, self.oads, write_oad, "OADs")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "OADs", read_oad, min_size=4))


@dataclass(frozen=True, slots=True)
class GetRequestRecord(Apdu):
    TAG: ClassVar[int] = 0x05
    CHOICE: ClassVar[int | None] = 3
    SERVICE: ClassVar[str] = "GET-Request-Record"
    piid: int
    record: GetRecord
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        write_get_record(out, self.record)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), read_get_record(r))


@dataclass(frozen=True, slots=True)
class GetRequestRecordList(Apdu):
    TAG: ClassVar[int] = 0x05
    CHOICE: ClassVar[int | None] = 4
    SERVICE: ClassVar[str] = "GET-Request-RecordList"
    piid: int
    records: tuple[GetRecord, ...]
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _put_seq(out, self.records, write_get_record, "GetRecords")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "GetRecords", read_get_record, min_size=6))


@dataclass(frozen=True, slots=True)
class GetRequestNext(Apdu):
    TAG: ClassVar[int] = 0x05
    CHOICE: ClassVar[int | None] = 5
    SERVICE: ClassVar[str] = "GET-Request-Next"
    piid: int
    last_block: int
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        put_uint(out, self.last_block, 2, "block number")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), r.uint(2, "block number"))


@dataclass(frozen=True, slots=True)
class GetRequestMD5(Apdu):
    TAG: ClassVar[int] = 0x05
    CHOICE: ClassVar[int | None] = 6
    SERVICE: ClassVar[str] = "GET-Request-MD5"
    piid: int
    oad: OAD
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        write_oad(out, self.oad)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), read_oad(r))


@dataclass(frozen=True, slots=True)
class GetResponseNormal(Apdu):
    TAG: ClassVar[int] = 0x85
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "GET-Response-Normal"
    TRAILER: ClassVar[str] = "server"
    piid: int
    result: ResultNormal
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        write_result_normal(out, self.result)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), read_result_normal(r))


@dataclass(frozen=True, slots=True)
class GetResponseNormalList(Apdu):
    TAG: ClassVar[int] = 0x85
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "GET-Response-NormalList"
    TRAILER: ClassVar[str] = "server"
    piid: int
    results: tuple[ResultNormal, ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _put_seq(out, self.results, write_result_normal, "results")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "results", read_result_normal, min_size=6))


@dataclass(frozen=True, slots=True)
class GetResponseRecord(Apdu):
    TAG: ClassVar[int] = 0x85
    CHOICE: ClassVar[int | None] = 3
    SERVICE: ClassVar[str] = "GET-Response-Record"
    TRAILER: ClassVar[str] = "server"
    piid: int
    result: ResultRecord
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        write_result_record(out, self.result)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), read_result_record(r))


@dataclass(frozen=True, slots=True)
class GetResponseRecordList(Apdu):
    TAG: ClassVar[int] = 0x85
    CHOICE: ClassVar[int | None] = 4
    SERVICE: ClassVar[str] = "GET-Response-RecordList"
    TRAILER: ClassVar[str] = "server"
    piid: int
    results: tuple[ResultRecord, ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _put_seq(out, self.results, write_result_record, "results")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "results", read_result_record, min_size=7))


@dataclass(frozen=True, slots=True)
class GetResponseNext(Apdu):
    """``choice`` 0: ``payload`` is a DAR int; 1: tuple[ResultNormal]; 2: tuple[ResultRecord]."""

    TAG: ClassVar[int] = 0x85
    CHOICE: ClassVar[int | None] = 5
    SERVICE: ClassVar[str] = "GET-Response-Next"
    TRAILER: ClassVar[str] = "server"
    piid: int
    last: bool
    block: int
    choice: int
    payload: Any
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        out.append(1 if self.last else 0)
        put_uint(out, self.block, 2, "block number")
        put_uint(out, self.choice, 1, "GET-Response-Next choice")
        if self.choice == 0:
            put_uint(out, self.payload, 1, "DAR")
        elif self.choice == 1:
            _put_seq(out, self.payload, write_result_normal, "results")
        elif self.choice == 2:
            _put_seq(out, self.payload, write_result_record, "results")
        else:
            raise EncodeError(f"GET-Response-Next choice {self.choice}: expected 0..2", protocol=PROTOCOL)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        piid, last, block = _piid(r), r.bool("last-block flag"), r.uint(2, "block number")
        choice = _choice(r, "GET-Response-Next", (0, 1, 2))
        payload: Any
        if choice == 0:
            payload = r.u8("DAR")
        elif choice == 1:
            payload = _seq(r, "results", read_result_normal, min_size=6)
        else:
            payload = _seq(r, "results", read_result_record, min_size=7)
        return (piid, last, block, choice, payload)


@dataclass(frozen=True, slots=True)
class GetResponseMD5(Apdu):
    TAG: ClassVar[int] = 0x85
    CHOICE: ClassVar[int | None] = 6
    SERVICE: ClassVar[str] = "GET-Response-MD5"
    TRAILER: ClassVar[str] = "server"
    piid: int
    oad: OAD
    digest: bytes | None = None
    dar: int | None = None
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        write_oad(out, self.oad)
        if self.dar is not None:
            out.append(0)
            put_uint(out, self.dar, 1, "DAR")
        else:
            out.append(1)
            put_octets(out, self.digest, "MD5")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        piid, oad = _piid(r), read_oad(r)
        if _choice(r, "MD5 result", (0, 1)) == 0:
            return (piid, oad, None, r.u8("DAR"))
        return (piid, oad, _octets(r, "MD5"), None)


# --- SET / ACTION -------------------------------------------------------------------------------


def _read_oad_data(r: Reader) -> tuple[OAD, Data]:
    return (read_oad(r), read_data(r))


def _write_oad_data(out: bytearray, item: tuple[OAD, Data]) -> None:
    write_oad(out, item[0])
    write_data(out, item[1])


def _read_oad_dar(r: Reader) -> tuple[OAD, int]:
    return (read_oad(r), r.u8("DAR"))


def _write_oad_dar(out: bytearray, item: tuple[OAD, int]) -> None:
    write_oad(out, item[0])
    put_uint(out, item[1], 1, "DAR")


def _read_omd_data(r: Reader) -> tuple[OMD, Data]:
    return (read_omd(r), read_data(r))


def _write_omd_data(out: bytearray, item: tuple[OMD, Data]) -> None:
    write_omd(out, item[0])
    write_data(out, item[1])


def _read_action_result(r: Reader) -> tuple[OMD, int, Data | None]:
    omd, dar = read_omd(r), r.u8("DAR")
    return (omd, dar, read_data(r) if r.optional("return Data") else None)


def _write_action_result(out: bytearray, item: tuple[OMD, int, Data | None]) -> None:
    write_omd(out, item[0])
    put_uint(out, item[1], 1, "DAR")
    if item[2] is None:
        out.append(0)
    else:
        out.append(1)
        write_data(out, item[2])


@dataclass(frozen=True, slots=True)
class SetRequestNormal(Apdu):
    TAG: ClassVar[int] = 0x06
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "SET-Request-Normal"
    piid: int
    oad: OAD
    data: Data
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _write_oad_data(out, (self.oad, self.data))

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), *_read_oad_data(r))


@dataclass(frozen=True, slots=True)
class SetRequestNormalList(Apdu):
    TAG: ClassVar[int] = 0x06
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "SET-Request-NormalList"
    piid: int
    items: tuple[tuple[OAD, Data], ...]
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _put_seq(out, self.items, _write_oad_data, "items")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "items", _read_oad_data, min_size=5))


@dataclass(frozen=True, slots=True)
class SetResponseNormal(Apdu):
    TAG: ClassVar[int] = 0x86
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "SET-Response-Normal"
    TRAILER: ClassVar[str] = "server"
    piid: int
    oad: OAD
    dar: int
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _write_oad_dar(out, (self.oad, self.dar))

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), *_read_oad_dar(r))


@dataclass(frozen=True, slots=True)
class SetResponseNormalList(Apdu):
    TAG: ClassVar[int] = 0x86
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "SET-Response-NormalList"
    TRAILER: ClassVar[str] = "server"
    piid: int
    results: tuple[tuple[OAD, int], ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _put_seq(out, self.results, _write_oad_dar, "results")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "results", _read_oad_dar, min_size=5))


@dataclass(frozen=True, slots=True)
class ActionRequestNormal(Apdu):
    TAG: ClassVar[int] = 0x07
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "ACTION-Request-Normal"
    piid: int
    omd: OMD
    data: Data
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _write_omd_data(out, (self.omd, self.data))

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), *_read_omd_data(r))


@dataclass(frozen=True, slots=True)
class ActionRequestNormalList(Apdu):
    TAG: ClassVar[int] = 0x07
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "ACTION-Request-NormalList"
    piid: int
    items: tuple[tuple[OMD, Data], ...]
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _put_seq(out, self.items, _write_omd_data, "items")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "items", _read_omd_data, min_size=5))


@dataclass(frozen=True, slots=True)
class ActionResponseNormal(Apdu):
    TAG: ClassVar[int] = 0x87
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "ACTION-Response-Normal"
    TRAILER: ClassVar[str] = "server"
    piid: int
    omd: OMD
    dar: int
    data: Data | None = None
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _write_action_result(out, (self.omd, self.dar, self.data))

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), *_read_action_result(r))


@dataclass(frozen=True, slots=True)
class ActionResponseNormalList(Apdu):
    TAG: ClassVar[int] = 0x87
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "ACTION-Response-NormalList"
    TRAILER: ClassVar[str] = "server"
    piid: int
    results: tuple[tuple[OMD, int, Data | None], ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _put_seq(out, self.results, _write_action_result, "results")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "results", _read_action_result, min_size=6))


# --- REPORT -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportNotificationList(Apdu):
    TAG: ClassVar[int] = 0x88
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "REPORT-Notification-List"
    TRAILER: ClassVar[str] = "server"
    piid: int
    results: tuple[ResultNormal, ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _put_seq(out, self.results, write_result_normal, "results")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "results", read_result_normal, min_size=6))

    def response(self) -> ReportResponseList:
        """The REPORT-Response the client must answer with (same PIID, the reported OADs)."""
        return ReportResponseList(self.piid & 0xBF, tuple(res.oad for res in self.results))


@dataclass(frozen=True, slots=True)
class ReportNotificationRecordList(Apdu):
    TAG: ClassVar[int] = 0x88
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "REPORT-Notification-RecordList"
    TRAILER: ClassVar[str] = "server"
    piid: int
    results: tuple[ResultRecord, ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _put_seq(out, self.results, write_result_record, "results")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "results", read_result_record, min_size=7))

    def response(self) -> ReportResponseRecordList:
        return ReportResponseRecordList(self.piid & 0xBF, tuple(res.oad for res in self.results))


@dataclass(frozen=True, slots=True)
class ReportResponseList(Apdu):
    TAG: ClassVar[int] = 0x08
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "REPORT-Response-List"
    piid: int
    oads: tuple[OAD, ...]
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _put_seq(out, self.oads, write_oad, "OADs")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "OADs", read_oad, min_size=4))


@dataclass(frozen=True, slots=True)
class ReportResponseRecordList(Apdu):
    TAG: ClassVar[int] = 0x08
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "REPORT-Response-RecordList"
    piid: int
    oads: tuple[OAD, ...]
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        _put_seq(out, self.oads, write_oad, "OADs")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "OADs", read_oad, min_size=4))


# --- PROXY --------------------------------------------------------------------------------------


def _read_proxy_get(r: Reader) -> tuple[TSA, int, tuple[OAD, ...]]:
    return (read_tsa(r), r.uint(2, "proxy timeout"), _seq(r, "OADs", read_oad, min_size=4))


def _write_proxy_get(out: bytearray, item: tuple[TSA, int, tuple[OAD, ...]]) -> None:
    write_tsa(out, item[0])
    put_uint(out, item[1], 2, "proxy timeout")
    _put_seq(out, item[2], write_oad, "OADs")


def _read_proxy_result(r: Reader) -> tuple[TSA, tuple[ResultNormal, ...]]:
    return (read_tsa(r), _seq(r, "results", read_result_normal, min_size=6))


def _write_proxy_result(out: bytearray, item: tuple[TSA, tuple[ResultNormal, ...]]) -> None:
    write_tsa(out, item[0])
    _put_seq(out, item[1], write_result_normal, "results")


@dataclass(frozen=True, slots=True)
class ProxyGetRequestList(Apdu):
    """``targets``: (TSA, per-meter timeout s, OADs) per meter."""

    TAG: ClassVar[int] = 0x09
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "PROXY-Request-GetList"
    piid: int
    timeout: int
    targets: tuple[tuple[TSA, int, tuple[OAD, ...]], ...]
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        put_uint(out, self.timeout, 2, "proxy timeout")
        _put_seq(out, self.targets, _write_proxy_get, "proxy targets")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), r.uint(2, "proxy timeout"), _seq(r, "proxy targets", _read_proxy_get, min_size=5))


@dataclass(frozen=True, slots=True)
class ProxyGetRequestRecord(Apdu):
    TAG: ClassVar[int] = 0x09
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "PROXY-Request-GetRecord"
    piid: int
    timeout: int
    tsa: TSA
    record: GetRecord
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        put_uint(out, self.timeout, 2, "proxy timeout")
        write_tsa(out, self.tsa)
        write_get_record(out, self.record)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), r.uint(2, "proxy timeout"), read_tsa(r), read_get_record(r))


@dataclass(frozen=True, slots=True)
class ProxyTransCommandRequest(Apdu):
    """Transparent forwarding: port OAD, serial settings, frame and byte timeouts, raw command."""

    TAG: ClassVar[int] = 0x09
    CHOICE: ClassVar[int | None] = 7
    SERVICE: ClassVar[str] = "PROXY-Request-TransCommand"
    piid: int
    port: OAD
    comdcb: ComDcb
    frame_timeout: int
    byte_timeout: int
    command: bytes
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID")
        _check_piid(self.piid)
        write_oad(out, self.port)
        c = self.comdcb
        for field in (c.baud, c.parity, c.data_bits, c.stop_bits, c.flow):
            put_uint(out, field, 1, "COMDCB field")
        put_uint(out, self.frame_timeout, 2, "frame timeout")
        put_uint(out, self.byte_timeout, 2, "byte timeout")
        put_octets(out, self.command, "command")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        piid, port = _piid(r), read_oad(r)
        b = r.take(5, "COMDCB")
        return (
            piid,
            port,
            ComDcb(b[0], b[1], b[2], b[3], b[4]),
            r.uint(2, "frame timeout"),
            r.uint(2, "byte timeout"),
            _octets(r, "command"),
        )


@dataclass(frozen=True, slots=True)
class ProxyGetResponseList(Apdu):
    TAG: ClassVar[int] = 0x89
    CHOICE: ClassVar[int | None] = 1
    SERVICE: ClassVar[str] = "PROXY-Response-GetList"
    TRAILER: ClassVar[str] = "server"
    piid: int
    targets: tuple[tuple[TSA, tuple[ResultNormal, ...]], ...]
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        _put_seq(out, self.targets, _write_proxy_result, "proxy targets")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), _seq(r, "proxy targets", _read_proxy_result, min_size=3))


@dataclass(frozen=True, slots=True)
class ProxyGetResponseRecord(Apdu):
    TAG: ClassVar[int] = 0x89
    CHOICE: ClassVar[int | None] = 2
    SERVICE: ClassVar[str] = "PROXY-Response-GetRecord"
    TRAILER: ClassVar[str] = "server"
    piid: int
    tsa: TSA
    result: ResultRecord
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        write_tsa(out, self.tsa)
        write_result_record(out, self.result)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        return (_piid(r), read_tsa(r), read_result_record(r))


@dataclass(frozen=True, slots=True)
class ProxyTransCommandResponse(Apdu):
    TAG: ClassVar[int] = 0x89
    CHOICE: ClassVar[int | None] = 7
    SERVICE: ClassVar[str] = "PROXY-Response-TransCommand"
    TRAILER: ClassVar[str] = "server"
    piid: int
    port: OAD
    reply: bytes | None = None
    dar: int | None = None
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD")
        write_oad(out, self.port)
        if self.dar is not None:
            out.append(0)
            put_uint(out, self.dar, 1, "DAR")
        else:
            out.append(1)
            put_octets(out, self.reply, "reply")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        piid, port = _piid(r), read_oad(r)
        if _choice(r, "TransCommand result", (0, 1)) == 0:
            return (piid, port, None, r.u8("DAR"))
        return (piid, port, _octets(r, "reply"), None)


@dataclass(frozen=True, slots=True)
class ProxyOpaque(Apdu):
    """A PROXY choice this codec does not parse (set/action lists): ``body`` is everything after the
    choice byte, kept verbatim (including the trailer)."""

    TAG: ClassVar[int] = 0x09
    SERVICE: ClassVar[str] = "PROXY"
    TRAILER: ClassVar[str] = "none"
    tag: int
    choice: int
    body: bytes

    @property
    def service(self) -> str:
        side = "Response" if self.tag == 0x89 else "Request"
        return f"PROXY-{side}-{self.choice}"

    def _head(self, out: bytearray) -> None:
        out += bytes((self.tag, self.choice))

    def _write(self, out: bytearray) -> None:
        out += self.body


# --- SECURITY / ERROR ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecurityRequest(Apdu):
    """``ciphered`` False: ``payload`` is a plaintext client APDU; True: opaque ciphertext.
    ``verify_kind`` 0 SID_MAC (``verify`` SidMac), 1 RN (bytes), 2 RN_MAC ((rn, mac)), 3 SID (SID)."""

    TAG: ClassVar[int] = 0x10
    SERVICE: ClassVar[str] = "SECURITY-Request"
    TRAILER: ClassVar[str] = "none"
    ciphered: bool
    payload: bytes
    verify_kind: int
    verify: Any

    def inner(self, *, base: int = 0) -> Apdu:
        """The wrapped APDU (plaintext only); ``base`` is the payload's offset for errors."""
        if self.ciphered:
            raise ProtocolError(
                "ciphertext SECURITY payload cannot be decoded", offset=base, protocol=PROTOCOL
            )
        return decode_apdu(self.payload, base=base)

    def _write(self, out: bytearray) -> None:
        out.append(1 if self.ciphered else 0)
        put_octets(out, self.payload, "security payload")
        put_uint(out, self.verify_kind, 1, "verification choice")
        v = self.verify
        if self.verify_kind == 0:
            if not isinstance(v, SidMac):
                raise EncodeError("SID_MAC verification needs a SidMac", protocol=PROTOCOL)
            write_sid(out, v.sid)
            put_octets(out, v.mac, "MAC")
        elif self.verify_kind == 1:
            put_octets(out, v, "RN")
        elif self.verify_kind == 2:
            put_octets(out, v[0], "RN")
            put_octets(out, v[1], "MAC")
        elif self.verify_kind == 3:
            write_sid(out, v)
        else:
            raise EncodeError(f"verification choice {self.verify_kind}: expected 0..3", protocol=PROTOCOL)

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        ciphered = _choice(r, "SECURITY-Request data", (0, 1)) == 1
        payload = _octets(r, "security payload")
        kind = _choice(r, "verification", (0, 1, 2, 3))
        verify: Any
        if kind == 0:
            verify = SidMac(read_sid(r), _octets(r, "MAC"))
        elif kind == 1:
            verify = _octets(r, "RN")
        elif kind == 2:
            verify = (_octets(r, "RN"), _octets(r, "MAC"))
        else:
            verify = read_sid(r)
        return (ciphered, payload, kind, verify)


@dataclass(frozen=True, slots=True)
class SecurityResponse(Apdu):
    """``kind`` 0 plaintext / 1 ciphertext (``payload``), 2 DAR (``dar``); ``mac`` optional."""

    TAG: ClassVar[int] = 0x90
    SERVICE: ClassVar[str] = "SECURITY-Response"
    TRAILER: ClassVar[str] = "none"
    kind: int
    payload: bytes | None = None
    dar: int | None = None
    mac: bytes | None = None

    def inner(self, *, base: int = 0) -> Apdu:
        if self.kind != 0 or self.payload is None:
            raise ProtocolError(
                "only a plaintext SECURITY payload can be decoded", offset=base, protocol=PROTOCOL
            )
        return decode_apdu(self.payload, base=base)

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.kind, 1, "SECURITY-Response data choice")
        if self.kind in (0, 1):
            put_octets(out, self.payload, "security payload")
        elif self.kind == 2:
            put_uint(out, self.dar, 1, "DAR")
        else:
            raise EncodeError(f"SECURITY-Response choice {self.kind}: expected 0..2", protocol=PROTOCOL)
        if self.mac is None:
            out.append(0)
        else:
            out += b"\x01\x00"
            put_octets(out, self.mac, "MAC")

    @classmethod
    def _fields(cls, r: Reader) -> tuple[Any, ...]:
        kind = _choice(r, "SECURITY-Response data", (0, 1, 2))
        payload, dar = (None, r.u8("DAR")) if kind == 2 else (_octets(r, "security payload"), None)
        mac = None
        if r.optional("verification"):
            _choice(r, "verification", (0,))
            mac = _octets(r, "MAC")
        return (kind, payload, dar, mac)


@dataclass(frozen=True, slots=True)
class ErrorResponse(Apdu):
    """ERROR-Response: tag EE from the server, 6E from the client; error 1 undecodable APDU,
    2 service not supported, 255 other.

    It is a choice of Server-APDU / Client-APDU like any other service, so it carries their
    trailer: FollowReport OPTIONAL + TimeTag OPTIONAL from the server, TimeTag OPTIONAL from the
    client -- always encoded (a peer refuses it truncated). Devices that send it bare are
    still understood (``trailer=False`` records that; it is re-encoded with the trailer).
    """

    TAG: ClassVar[int] = 0xEE
    SERVICE: ClassVar[str] = "ERROR-Response"
    TRAILER: ClassVar[str] = "none"  # by direction: see encode() and read()
    piid: int
    error: int
    from_server: bool = True
    follow_report: FollowReport | None = None
    time_tag: TimeTag | None = None
    trailer: bool = dc_field(default=True, compare=False)

    def _head(self, out: bytearray) -> None:
        out.append(0xEE if self.from_server else 0x6E)

    def _write(self, out: bytearray) -> None:
        put_uint(out, self.piid, 1, "PIID-ACD" if self.from_server else "PIID")
        if not self.from_server:
            _check_piid(self.piid)
        put_uint(out, self.error, 1, "error type")

    def encode(self) -> bytes:
        if self.follow_report is not None and not self.from_server:
            raise EncodeError("a client's ERROR-Response carries no FollowReport", protocol=PROTOCOL)
        out = bytearray()
        self._head(out)
        self._write(out)
        if self.from_server:
            _write_follow_report(out, self.follow_report)
        _write_time_tag(out, self.time_tag)
        return bytes(out)

    @classmethod
    def read(cls, r: Reader, *, from_server: bool) -> ErrorResponse:
        piid, error = _piid(r), r.u8("error type")
        if not r.left:
            return cls(piid, error, from_server, trailer=False)
        follow = _read_follow_report(r) if from_server else None
        return cls(piid, error, from_server, follow, _read_time_tag(r))


# --- dispatch -----------------------------------------------------------------------------------

Service = Union[  # noqa: UP007
    LinkRequest,
    LinkResponse,
    ConnectRequest,
    ConnectResponse,
    ReleaseRequest,
    ReleaseResponse,
    ReleaseNotification,
    GetRequestNormal,
    GetRequestNormalList,
    GetRequestRecord,
    GetRequestRecordList,
    GetRequestNext,
    GetRequestMD5,
    GetResponseNormal,
    GetResponseNormalList,
    GetResponseRecord,
    GetResponseRecordList,
    GetResponseNext,
    GetResponseMD5,
    SetRequestNormal,
    SetRequestNormalList,
    SetResponseNormal,
    SetResponseNormalList,
    ActionRequestNormal,
    ActionRequestNormalList,
    ActionResponseNormal,
    ActionResponseNormalList,
    ReportNotificationList,
    ReportNotificationRecordList,
    ReportResponseList,
    ReportResponseRecordList,
    ProxyGetRequestList,
    ProxyGetRequestRecord,
    ProxyTransCommandRequest,
    ProxyGetResponseList,
    ProxyGetResponseRecord,
    ProxyTransCommandResponse,
    ProxyOpaque,
    SecurityRequest,
    SecurityResponse,
    ErrorResponse,
]

_CHOICE_TAGS = frozenset({0x05, 0x85, 0x06, 0x86, 0x07, 0x87, 0x08, 0x88, 0x09, 0x89})
_CLASSES: tuple[type[Apdu], ...] = (
    LinkRequest,
    LinkResponse,
    ConnectRequest,
    ConnectResponse,
    ReleaseRequest,
    ReleaseResponse,
    ReleaseNotification,
    GetRequestNormal,
    GetRequestNormalList,
    GetRequestRecord,
    GetRequestRecordList,
    GetRequestNext,
    GetRequestMD5,
    GetResponseNormal,
    GetResponseNormalList,
    GetResponseRecord,
    GetResponseRecordList,
    GetResponseNext,
    GetResponseMD5,
    SetRequestNormal,
    SetRequestNormalList,
    SetResponseNormal,
    SetResponseNormalList,
    ActionRequestNormal,
    ActionRequestNormalList,
    ActionResponseNormal,
    ActionResponseNormalList,
    ReportNotificationList,
    ReportNotificationRecordList,
    ReportResponseList,
    ReportResponseRecordList,
    ProxyGetRequestList,
    ProxyGetRequestRecord,
    ProxyTransCommandRequest,
    ProxyGetResponseList,
    ProxyGetResponseRecord,
    ProxyTransCommandResponse,
    SecurityRequest,
    SecurityResponse,
    ErrorResponse,
)
APDU_CLASSES: MappingProxyType[tuple[int, int | None], type[Apdu]] = MappingProxyType(
    {(cls.TAG, cls.CHOICE): cls for cls in _CLASSES} | {(0x6E, None): ErrorResponse}
)
SERVICE_NAMES: MappingProxyType[int, str] = MappingProxyType(
    {
        0x01: "LINK-Request",
        0x81: "LINK-Response",
        0x02: "CONNECT-Request",
        0x82: "CONNECT-Response",
        0x03: "RELEASE-Request",
        0x83: "RELEASE-Response",
        0x84: "RELEASE-Notification",
        0x05: "GET-Request",
        0x85: "GET-Response",
        0x06: "SET-Request",
        0x86: "SET-Response",
        0x07: "ACTION-Request",
        0x87: "ACTION-Response",
        0x08: "REPORT-Response",
        0x88: "REPORT-Notification",
        0x09: "PROXY-Request",
        0x89: "PROXY-Response",
        0x10: "SECURITY-Request",
        0x90: "SECURITY-Response",
        0x6E: "ERROR-Response",
        0xEE: "ERROR-Response",
    }
)


def decode_apdu(raw: bytes, *, base: int = 0) -> Apdu:
    """The APDU in ``raw`` (exactly one, no trailing bytes); ``base`` offsets every error position."""
    r = Reader(bytes(raw), base=base)
    tag = r.u8("APDU tag")
    if tag not in SERVICE_NAMES:
        raise r.error(f"unknown APDU tag 0x{tag:02X}", at=0)
    choice: int | None = None
    if tag in _CHOICE_TAGS:
        choice = r.u8(f"{SERVICE_NAMES[tag]} choice")
    cls = APDU_CLASSES.get((tag, choice))
    if cls is None:
        if tag in (0x09, 0x89) and choice is not None:
            return ProxyOpaque(tag, choice, r.take(r.left))
        raise r.error(f"{SERVICE_NAMES[tag]} choice {choice} not supported", at=1)
    apdu = ErrorResponse.read(r, from_server=tag == 0xEE) if cls is ErrorResponse else cls._read(r)
    if r.left:
        raise r.error(f"{r.left} trailing bytes after {apdu.service}")
    return apdu


__all__ = [
    "APDU_CLASSES",
    "SERVICE_NAMES",
    "ActionRequestNormal",
    "ActionRequestNormalList",
    "ActionResponseNormal",
    "ActionResponseNormalList",
    "Apdu",
    "ConnectMechanism",
    "ConnectRequest",
    "ConnectResponse",
    "ErrorResponse",
    "FollowReport",
    "GetRecord",
    "GetRequestMD5",
    "GetRequestNext",
    "GetRequestNormal",
    "GetRequestNormalList",
    "GetRequestRecord",
    "GetRequestRecordList",
    "GetResponseMD5",
    "GetResponseNext",
    "GetResponseNormal",
    "GetResponseNormalList",
    "GetResponseRecord",
    "GetResponseRecordList",
    "LinkRequest",
    "LinkResponse",
    "ProxyGetRequestList",
    "ProxyGetRequestRecord",
    "ProxyGetResponseList",
    "ProxyGetResponseRecord",
    "ProxyOpaque",
    "ProxyTransCommandRequest",
    "ProxyTransCommandResponse",
    "ReleaseNotification",
    "ReleaseRequest",
    "ReleaseResponse",
    "ReportNotificationList",
    "ReportNotificationRecordList",
    "ReportResponseList",
    "ReportResponseRecordList",
    "ResultNormal",
    "ResultRecord",
    "SecurityRequest",
    "SecurityResponse",
    "Service",
    "SetRequestNormal",
    "SetRequestNormalList",
    "SetResponseNormal",
    "SetResponseNormalList",
    "TimeTag",
    "decode_apdu",
    "read_result_normal",
    "read_result_record",
    "write_result_normal",
    "write_result_record",
]
