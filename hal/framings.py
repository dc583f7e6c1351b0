"""Which meter protocols a proxied RS-485 transaction may speak, and how its reply is recognised.

Layer: hal. Used by both ends of the app bridge (``runtime.container.isolation.hal_proxy`` in
the app host, ``runtime.container.isolation.hal_ops`` in the runtime), which must not know
protocols themselves. A transaction on ``hal.rs485.Rs485Port`` takes a
decoder and a match predicate; neither can cross a process boundary. So the host names
the protocol of the decoder it was given (``protocol_of``), and the runtime side builds
that protocol's framer and a reply predicate *from the request bytes themselves*
(``reply_matcher``): the reply must come from the address the request went to and answer
the same service (DL/T 645 function code, DL/T 698.45 PIID, Modbus unit + function).
Deriving it from the request means a host cannot make the runtime wait for anything but
a reply to what it actually sent. The host then re-applies its own, exact predicate to the
reply bytes.

This is the one place where the bridge's traffic meets protocols, and only their framing: it
must not interpret payloads, and it imports codecs from ``protocols/`` (and the Modbus RTU
decoder from ``hal.modbus``), never re-implements them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hal.interfaces import StreamDecoder
from hal.modbus import RtuDecoder, RtuFrame
from protocols import dlt645, dlt698
from protocols.errors import ProtocolError

Matcher = Callable[[Any], bool]


def _dlt645_matcher(request: bytes) -> Matcher:
    req = dlt645.decode(request)
    if req.is_response:
        raise ProtocolError("request is a response frame", protocol=dlt645.PROTOCOL)
    code = req.control & 0x1F
    wildcard = "A" in req.address.upper()

    def match(frame: Any) -> bool:
        return (
            isinstance(frame, dlt645.Frame)
            and frame.is_response
            and frame.control & 0x1F == code
            and (wildcard or frame.address == req.address)
        )

    return match


def _dlt698_matcher(request: bytes) -> Matcher:
    req = dlt698.decode(request)
    if req.from_server:
        raise ProtocolError("request is a server frame", protocol=dlt698.PROTOCOL)
    piid: int | None = None
    try:
        piid = getattr(dlt698.decode_apdu(req.apdu), "piid", None)
    except ProtocolError:
        piid = None  # an APDU we cannot decode: match on the address alone

    def match(frame: Any) -> bool:
        if not isinstance(frame, dlt698.Frame) or not frame.from_server or frame.sa != req.sa:
            return False
        if piid is None or frame.fragment is not None:
            return True
        try:
            apdu = dlt698.decode_apdu(frame.apdu)
        except ProtocolError:
            return False
        if isinstance(apdu, dlt698.SecurityResponse):
            return True  # the inner PIID is the host's to check
        theirs = getattr(apdu, "piid", None)
        return theirs is None or theirs & 0x3F == piid & 0x3F

    return match


def _modbus_matcher(request: bytes) -> Matcher:
    if len(request) < 4:
        raise ProtocolError(f"{len(request)} bytes are no Modbus RTU request", protocol="modbus")
    unit, function = request[0], request[1] & 0x7F

    def match(frame: Any) -> bool:
        return isinstance(frame, RtuFrame) and frame.unit == unit and frame.function == function

    return match


@dataclass(frozen=True, slots=True)
class Framing:
    """One protocol: a fresh stream decoder per transaction, and the reply predicate of a request."""

    name: str
    decoder_type: type[Any]
    decoder: Callable[[], StreamDecoder[Any]]
    reply_matcher: Callable[[bytes], Matcher]


FRAMINGS: dict[str, Framing] = {
    f.name: f
    for f in (
        Framing("dlt645", dlt645.Framer, dlt645.Framer, _dlt645_matcher),
        Framing("dlt698", dlt698.Framer, dlt698.Framer, _dlt698_matcher),
        Framing("modbus", RtuDecoder, RtuDecoder, _modbus_matcher),
    )
}


def protocol_of(decoder: object) -> str | None:
    """The framing name of a decoder object, or None if it cannot be proxied."""
    for framing in FRAMINGS.values():
        if type(decoder) is framing.decoder_type:
            return framing.name
    return None


__all__ = ["FRAMINGS", "Framing", "Matcher", "protocol_of"]
