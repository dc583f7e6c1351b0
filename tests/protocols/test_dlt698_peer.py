"""DL/T 698.45 frames from an independent peer implementation (issue 14, reproduction 5).

Each defect found against the peer is pinned by its frame: ERROR-Response's trailer, ``split``
of an APDU that fits in one piece, AF bit 5 (the logical address), and the reserved bits we
accept but never encode.

AF bit 5 -- the reading chosen: DL/T 698.45-2017 (bit 4 logical address 0/1, bit 5 "an extended
logical address byte is the first SA byte", 2..255), as public fusion-terminal and meter firmware
implement it. The peer reads bits 4-5 as one 2-bit logical address (the older Q/GDW 698 form).
Frames that are impossible under 2017 (AF bit 5 with a one-byte SA) are read the peer's way, so a
device sending them is understood; everything is encoded the 2017 way.
"""

from __future__ import annotations

import pytest

from protocols import dlt698
from protocols.checksums import crc16_x25
from protocols.errors import EncodeError, ProtocolError

ERROR_WITH_TRAILER = bytes.fromhex("681400C305090000000010103F87EE010200002D6F16")
ERROR_BARE = bytes.fromhex("681200C305090000000010104872EE010207EC16")  # what we used to send
LONE_END = bytes.fromhex("681900E3050900000000101068C7004085010140000200005A3516")
PEER_LOGICAL_2 = bytes.fromhex("681700432509000000001010AB0B05010140000200007D1B16")
ONE_BYTE_SA_BIT5 = bytes.fromhex("68120043200510 11E3 05010140000200007D1B16".replace(" ", ""))


def _frame_bytes(control: int, af: int, sa_wire: bytes, ca: int, apdu: bytes) -> bytes:
    """A link frame with correct HCS/FCS, whatever its fields (to build what encode refuses)."""
    length = 2 + 1 + 1 + len(sa_wire) + 1 + 2 + len(apdu) + 2
    head = length.to_bytes(2, "little") + bytes([control, af]) + sa_wire + bytes([ca])
    body = head + crc16_x25(head).to_bytes(2, "little") + apdu
    return b"\x68" + body + crc16_x25(body).to_bytes(2, "little") + b"\x16"


def test_error_response_carries_the_server_apdu_trailer() -> None:
    frame = dlt698.decode(ERROR_WITH_TRAILER)
    apdu = dlt698.decode_apdu(frame.apdu)  # was "2 trailing bytes after ERROR-Response"
    assert apdu == dlt698.ErrorResponse(1, 2)
    ours = dlt698.Frame(dlt698.CONTROL_SERVER_RESPONSE, frame.sa, frame.ca, apdu=apdu.encode())
    assert dlt698.encode(ours, preamble=0) == ERROR_WITH_TRAILER  # was ERROR_BARE, truncated to the peer


def test_a_bare_error_response_is_still_understood_and_answered_with_the_trailer() -> None:
    apdu = dlt698.decode_apdu(dlt698.decode(ERROR_BARE).apdu)
    assert isinstance(apdu, dlt698.ErrorResponse) and (apdu.piid, apdu.error) == (1, 2)
    assert not apdu.trailer
    assert apdu.encode() == bytes.fromhex("EE01020000")


def test_client_error_response_has_the_client_trailer() -> None:
    apdu = dlt698.ErrorResponse(3, 255, from_server=False)
    assert apdu.encode() == bytes.fromhex("6E03FF00")
    assert dlt698.decode_apdu(apdu.encode()) == apdu


def test_split_of_an_apdu_that_fits_sends_it_unfragmented() -> None:
    lone = dlt698.decode(LONE_END)
    assert lone.fragment is not None and lone.fragment.kind is dlt698.FragmentType.END
    with pytest.raises(ProtocolError, match="without a start"):
        dlt698.Reassembler().add(lone)  # what a receiver must do with a lone END fragment
    whole = dlt698.Frame(lone.control & ~0x20, lone.sa, lone.ca, apdu=lone.apdu)
    assert dlt698.split(whole, 64) == [whole]
    pieces = dlt698.split(whole, 3)
    assert [p.fragment.kind for p in pieces if p.fragment] == [
        dlt698.FragmentType.START,
        dlt698.FragmentType.MIDDLE,
        dlt698.FragmentType.END,
    ]
    reassembler = dlt698.Reassembler()
    assert [reassembler.add(p) for p in pieces][-1] == lone.apdu


def test_af_bit5_is_the_extended_logical_address_of_dlt698_2017() -> None:
    frame = dlt698.decode(PEER_LOGICAL_2)
    # 2017: the first SA byte (09) is the extended logical address; the peer reads logical 2
    assert (frame.ext_logical, frame.logical, frame.sa) == (9, 9, "1000000000")
    assert dlt698.encode(frame, preamble=0) == PEER_LOGICAL_2


def test_af_bit5_with_a_one_byte_address_is_the_older_two_bit_logical_address() -> None:
    frame = dlt698.decode(ONE_BYTE_SA_BIT5)  # raised EncodeError and wedged the framer
    assert (frame.sa, frame.logical) == ("05", 2)
    again = dlt698.decode(dlt698.encode(frame, preamble=0))  # written the 2017 way: AF 21, SA 02 05
    assert (again.sa, again.logical, again.af) == ("05", 2, 0x21)


def test_reserved_piid_bit_is_accepted_but_never_encoded() -> None:
    request = dlt698.GetRequestNormal(0x41, dlt698.OAD(0x4000, 2, 0))
    with pytest.raises(EncodeError, match="bit 6 is reserved"):
        request.encode()
    raw = bytes.fromhex("0501414000020000")
    assert dlt698.decode_apdu(raw) == request  # a peer's PIID 0x41 is understood
    # in a response bit 6 is ACD (the server asks for access): allowed both ways
    ack = dlt698.ErrorResponse(0x41, 1)
    assert dlt698.decode_apdu(ack.encode()) == ack


def test_broadcast_of_six_aa_bytes_is_accepted_but_never_encoded() -> None:
    raw = _frame_bytes(0x43, 0xC5, b"\xaa" * 6, 0x10, bytes.fromhex("0501014000020000"))
    frame = dlt698.decode(raw)
    assert frame.sa_type is dlt698.AddressType.BROADCAST and frame.sa == "AAAAAAAAAAAA"
    with pytest.raises(EncodeError, match="single byte AA"):
        dlt698.encode(frame)
    one = dlt698.Frame(0x43, "AA", 0x10, apdu=frame.apdu, sa_type=dlt698.AddressType.BROADCAST)
    assert dlt698.decode(dlt698.encode(one)) == one


def test_extended_logical_address_below_two_is_never_encoded() -> None:
    with pytest.raises(EncodeError, match=r"2\.\.255"):
        dlt698.encode(dlt698.Frame(0x43, "000000000001", ext_logical=1))
