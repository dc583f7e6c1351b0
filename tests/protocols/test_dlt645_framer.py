"""Streaming framer and decoder robustness: unit cases and hypothesis properties."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import dlt645
from protocols.errors import ProtocolError
from protocols.inspect import describe

READ = dlt645.encode(dlt645.read_response("000012345678", 0x00010000, [123.45]), preamble=0)
VOLT = dlt645.encode(dlt645.read_response("000012345678", 0x0201FF00, [230.1, 229.9, None]), preamble=2)


def _frames(out: list[dlt645.Frame | ProtocolError]) -> list[dlt645.Frame]:
    return [item for item in out if isinstance(item, dlt645.Frame)]


def test_skips_preamble_and_noise_and_counts_it() -> None:
    framer = dlt645.Framer()
    out = framer.feed(b"\x00\xfe\xfe\x12" + READ + b"\xfe\xfe" + VOLT)
    assert out == [dlt645.decode(READ), dlt645.decode(VOLT)]
    assert (framer.frames, framer.errors, framer.skipped, framer.pending) == (2, 0, 8, 0)


def test_waits_on_short_input_and_keeps_the_partial_frame() -> None:
    framer = dlt645.Framer()
    assert framer.feed(READ[:9]) == []
    assert framer.pending == 9
    assert framer.feed(READ[9:-1]) == []
    assert framer.feed(READ[-1:]) == [dlt645.decode(READ)]
    assert framer.pending == 0


def test_bad_checksum_is_a_typed_error_with_stream_offset_then_resync() -> None:
    bad = bytearray(READ)
    bad[-2] ^= 0xFF
    framer = dlt645.Framer()
    out = framer.feed(b"\xfe" * 3 + bytes(bad) + READ)
    assert isinstance(out[0], ProtocolError)
    assert out[0].offset == 3 + len(READ) - 2 and "checksum" in out[0].reason
    assert _frames(out) == [dlt645.decode(READ)]
    assert framer.errors == 1


def test_bad_second_start_bad_end_and_long_length() -> None:
    no_second = bytearray(READ)
    no_second[7] = 0x00
    bad_end = bytearray(READ)
    bad_end[-1] = 0x17
    long_l = bytes([0x68, 1, 2, 3, 4, 5, 6, 0x68, 0x91, 201])
    for raw, word, offset in (
        (no_second, "second 0x68", 7),
        (bad_end, "end 0x16", len(READ) - 1),
        (long_l, "L=201", 9),
    ):
        out = dlt645.Framer().feed(bytes(raw) + READ)
        errors = [e for e in out if isinstance(e, ProtocolError)]
        assert word in errors[0].reason and errors[0].offset == offset
        assert _frames(out) == [dlt645.decode(READ)]


def test_offsets_count_across_feeds() -> None:
    framer = dlt645.Framer()
    framer.feed(b"\x00" * 10)
    bad = bytearray(READ)
    bad[-2] ^= 1
    out = framer.feed(bytes(bad))
    assert isinstance(out[0], ProtocolError) and out[0].offset == 10 + len(READ) - 2


def test_stray_start_byte_does_not_hold_back_a_following_frame() -> None:
    # 68 followed by bytes that look like a header with a long L, then a real frame
    noise = bytes([0x68, 1, 2, 3, 4, 5, 6, 0x68, 0x11, 150])
    out = dlt645.Framer().feed(noise + READ)
    assert _frames(out) == [dlt645.decode(READ)]
    assert isinstance(out[0], ProtocolError) and out[0].offset == 0


def test_decode_rejects_truncated_trailing_and_empty() -> None:
    for raw, offset in (
        (READ[:-3], len(READ) - 3),
        (READ + b"\x00", len(READ)),
        (b"\xfe\xfe", 2),
        (b"\x12" + READ, 0),
    ):
        try:
            dlt645.decode(raw)
        except ProtocolError as err:
            assert err.offset == offset
        else:
            raise AssertionError(f"accepted {raw.hex()}")


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_random_bytes_give_only_frames_or_protocol_errors(data: bytes, chunk: int) -> None:
    framer = dlt645.Framer()
    for i in range(0, len(data), chunk):
        for item in framer.feed(data[i : i + chunk]):
            assert isinstance(item, dlt645.Frame | ProtocolError)
            if isinstance(item, ProtocolError):
                assert item.offset is not None and 0 <= item.offset < len(data)
    assert framer.pending <= len(data)


@FAST
@given(st.binary(max_size=300))
def test_decode_and_describe_raise_nothing_but_protocol_error(data: bytes) -> None:
    try:
        frame = dlt645.decode(data)
    except ProtocolError as err:
        assert err.offset is not None
    else:
        assert dlt645.encode(frame, preamble=dlt645.count_preamble(data)) == data
    desc = describe(data)
    assert isinstance(desc["ok"], bool)
    assert desc["ok"] or "error" in desc


VALID = [READ, VOLT, dlt645.encode(dlt645.relay_control_request("111111111111", 0x1A, "2030-01-01 00:00:00"))]


@FAST
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255)),
        max_size=4,
    ),
)
def test_mutated_frames_are_rejected_or_roundtrip(frame: bytes, mutations: list[tuple[int, int]]) -> None:
    raw = bytearray(frame)
    for index, value in mutations:
        raw[index % len(raw)] = value
    try:
        decoded = dlt645.decode(bytes(raw))
    except ProtocolError:
        pass
    else:
        assert dlt645.encode(decoded, preamble=dlt645.count_preamble(bytes(raw))) == bytes(raw)
    desc = describe(bytes(raw))
    assert isinstance(desc["ok"], bool)
    for item in dlt645.Framer().feed(bytes(raw)):
        assert isinstance(item, dlt645.Frame | ProtocolError)


@FAST
@given(st.binary(max_size=300), st.sampled_from(VALID), st.integers(min_value=1, max_value=40))
def test_valid_frame_after_garbage_is_never_lost(garbage: bytes, frame: bytes, chunk: int) -> None:
    stream = garbage + frame
    framer = dlt645.Framer()
    out: list[dlt645.Frame | ProtocolError] = []
    for i in range(0, len(stream), chunk):
        out += framer.feed(stream[i : i + chunk])
    assert dlt645.decode(frame) in _frames(out)


@FAST
@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=6), st.integers(min_value=1, max_value=50))
def test_chunking_does_not_change_the_result(frames: list[bytes], chunk: int) -> None:
    stream = b"".join(frames)
    framer = dlt645.Framer()
    out: list[dlt645.Frame | ProtocolError] = []
    for i in range(0, len(stream), chunk):
        out += framer.feed(stream[i : i + chunk])
    assert out == [dlt645.decode(f) for f in frames]
    assert framer.errors == 0 and framer.pending == 0
