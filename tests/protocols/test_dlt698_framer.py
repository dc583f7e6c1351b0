"""DL/T 698.45 streaming framer and decoder robustness: unit cases and hypothesis properties."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import dlt698
from protocols.errors import EncodeError, ProtocolError
from protocols.inspect import describe

REQ = bytes.fromhex("68 17 00 43 05 09 00 00 00 00 10 00 DA AD 05 01 07 00 10 02 00 00 04 01 16")
RESP = bytes.fromhex(
    "68 35 00 C3 05 09 00 00 00 00 10 10 24 30 85 02 00 01 00 10 02 00 01 01 05 06 00 00 09 AB 06 00 00 02 9E"
    " 06 00 00 03 25 06 00 00 02 48 06 00 00 01 9E 00 00 2E C0 16"
)


def _frames(out: list[dlt698.Frame | ProtocolError]) -> list[dlt698.Frame]:
    return [item for item in out if isinstance(item, dlt698.Frame)]


def test_skips_preamble_and_noise_and_counts_it() -> None:
    framer = dlt698.Framer()
    out = framer.feed(b"\x00\xfe\xfe\x12" + REQ + b"\xfe\xfe\xfe\xfe" + RESP)
    assert out == [dlt698.decode(REQ), dlt698.decode(RESP)]
    assert (framer.frames, framer.errors, framer.skipped, framer.pending) == (2, 0, 8, 0)


def test_waits_on_short_input_and_keeps_the_partial_frame() -> None:
    framer = dlt698.Framer()
    assert framer.feed(RESP[:14]) == []
    assert framer.pending == 14
    assert framer.feed(RESP[14:-1]) == []
    assert framer.feed(RESP[-1:]) == [dlt698.decode(RESP)]
    assert framer.pending == 0


def test_bad_fcs_is_a_typed_error_with_stream_offset_then_resync() -> None:
    bad = bytearray(RESP)
    bad[-3] ^= 0xFF
    framer = dlt698.Framer()
    out = framer.feed(b"\xfe" * 3 + bytes(bad) + REQ)
    errors = [e for e in out if isinstance(e, ProtocolError)]
    assert len(errors) == 1 and errors[0].offset == 3 + len(RESP) - 3 and "FCS" in errors[0].reason
    assert _frames(out) == [dlt698.decode(REQ)]
    assert framer.errors == 1


def test_bad_hcs_is_rejected_before_the_body_arrives() -> None:
    bad = bytearray(RESP)
    bad[12] ^= 0x01
    framer = dlt698.Framer()
    out = framer.feed(bytes(bad[:15]))
    assert (
        len(out) == 1 and isinstance(out[0], ProtocolError) and out[0].offset == 12 and "HCS" in out[0].reason
    )
    assert framer.feed(bytes(bad[15:]) + REQ)[-1] == dlt698.decode(REQ)


def test_stray_start_byte_is_superseded_by_a_following_valid_frame() -> None:
    framer = dlt698.Framer()
    out = framer.feed(b"\x68\xff\x00" + REQ)
    assert isinstance(out[0], ProtocolError)
    assert _frames(out) == [dlt698.decode(REQ)]


def test_over_long_length_is_rejected_so_the_buffer_stays_bounded() -> None:
    framer = dlt698.Framer(max_length=512)
    out = framer.feed(b"\x68\xff\x0f\x43")
    assert len(out) == 1 and isinstance(out[0], ProtocolError) and "outside" in out[0].reason
    assert framer.pending < 4


def test_offsets_count_across_feeds_and_reset() -> None:
    framer = dlt698.Framer()
    framer.feed(b"\x00" * 10)
    framer.feed(REQ[:5])
    framer.reset()
    bad = bytearray(REQ)
    bad[-1] = 0x17
    out = framer.feed(bytes(bad))
    assert isinstance(out[0], ProtocolError) and out[0].offset == 15 + len(REQ) - 1
    assert framer.skipped == 15 + len(REQ) - 1  # the rejected frame's bytes after its 68 are rescanned


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.lists(st.integers(1, 64), max_size=20))
def test_random_bytes_give_only_frames_or_protocol_errors(data: bytes, cuts: list[int]) -> None:
    framer = dlt698.Framer(max_length=256)
    pos = 0
    for n in [*cuts, len(data)]:
        for item in framer.feed(data[pos : pos + n]):
            assert isinstance(item, dlt698.Frame | ProtocolError)
        pos += n
    assert framer.pending <= 256 + 64 + 2


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([REQ, RESP]), st.data())
def test_mutated_frames_never_escape_protocol_error(frame: bytes, data: st.DataObject) -> None:
    raw = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    with contextlib.suppress(ProtocolError):
        dlt698.decode_apdu(dlt698.decode(bytes(raw)).apdu)
    out = describe(bytes(raw))
    assert isinstance(out["ok"], bool)
    framer = dlt698.Framer()
    assert all(isinstance(x, dlt698.Frame | ProtocolError) for x in framer.feed(bytes(raw) + REQ))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_apdus_and_data_raise_only_protocol_error(raw: bytes) -> None:
    for decoder in (dlt698.decode_apdu, dlt698.Data.decode):
        try:
            decoded = decoder(raw)
        except ProtocolError as err:
            assert err.offset is not None and 0 <= err.offset <= len(raw)
        else:
            try:
                again = decoded.encode()
            except EncodeError as err:  # liberal in, strict out: a reserved bit is never re-sent
                assert "reserved" in err.reason
                continue
            bare_error = isinstance(decoded, dlt698.ErrorResponse) and not decoded.trailer
            assert again == raw or isinstance(decoded, dlt698.Data) or bare_error


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([0x05, 0x85, 0x07, 0x87, 0x88, 0x09, 0x89, 0x10, 0x90, 0x02, 0x82]),
    st.binary(max_size=120),
)
def test_tagged_random_apdu_bodies_raise_only_protocol_error(tag: int, body: bytes) -> None:
    raw = bytes([tag]) + body
    try:
        apdu = dlt698.decode_apdu(raw)
    except ProtocolError:
        return
    if not isinstance(apdu, dlt698.ProxyOpaque):
        assert dlt698.decode_apdu(apdu.encode()) == apdu
