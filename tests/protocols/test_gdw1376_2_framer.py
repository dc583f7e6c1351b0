"""Streaming 1376.2 framer and decoder robustness: unit cases and hypothesis properties."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import dlt645
from protocols import gdw1376_2 as q
from protocols.errors import ProtocolError
from protocols.inspect import describe

QUERY = q.encode(q.make_frame(0x10, 1, seq=5))
METER = dlt645.encode(dlt645.read_request("000012345678", 0x00010000), preamble=4)
MONITOR = q.encode(
    q.make_frame(0x13, 1, q.Monitor(q.DLT645_2007, METER), src="111111111111", dst="000012345678", seq=6)
)
CONFIRM = q.encode(q.make_frame(0x00, 1, q.Confirm(1, 0), up=True, seq=6))


def _frames(out: list[q.Frame | ProtocolError]) -> list[q.Frame]:
    return [item for item in out if isinstance(item, q.Frame)]


def test_skips_noise_and_counts_it() -> None:
    framer = q.Framer()
    out = framer.feed(b"\x00\xfe\x12" + QUERY + b"\xaa\xbb" + MONITOR + CONFIRM)
    assert out == [q.decode(QUERY), q.decode(MONITOR), q.decode(CONFIRM)]
    assert (framer.frames, framer.errors, framer.skipped, framer.pending) == (3, 0, 5, 0)


def test_waits_on_short_input_and_keeps_the_partial_frame() -> None:
    framer = q.Framer()
    assert framer.feed(MONITOR[:2]) == []
    assert framer.feed(MONITOR[2:20]) == []
    assert framer.pending == 20
    assert framer.feed(MONITOR[20:]) == [q.decode(MONITOR)]
    assert framer.pending == 0


def test_bad_checksum_is_a_typed_error_with_stream_offset_then_resync() -> None:
    bad = bytearray(MONITOR)
    bad[-2] ^= 0xFF
    framer = q.Framer()
    out = framer.feed(b"\x00" * 3 + bytes(bad) + QUERY)
    errors = [item for item in out if isinstance(item, ProtocolError)]
    # One error for the bad frame; the carried 645 frame's own 0x68s inside it are not re-reported.
    assert len(errors) == 1
    assert errors[0].offset == 3 + len(bad) - 2 and "checksum" in errors[0].reason
    assert _frames(out) == [q.decode(QUERY)]
    assert framer.errors == 1


def test_absurd_length_does_not_hold_back_the_next_frame() -> None:
    framer = q.Framer()
    out = framer.feed(b"\x68\xff\x0f" + QUERY)  # L = 4095: a stray 0x68 in line noise
    assert _frames(out) == [q.decode(QUERY)]
    assert isinstance(out[0], ProtocolError) and out[0].offset == 0
    framer2 = q.Framer(max_length=2048)
    out2 = framer2.feed(b"\x68\xff\x0f" + QUERY)
    assert isinstance(out2[0], ProtocolError) and "exceeds 2048" in out2[0].reason
    assert _frames(out2) == [q.decode(QUERY)]


def test_short_length_and_bad_end_are_rejected() -> None:
    framer = q.Framer()
    bad_end = QUERY[:-1] + b"\x00"
    out = framer.feed(b"\x68\x05\x00" + bad_end + QUERY)
    errors = [e for e in out if isinstance(e, ProtocolError)]
    assert [e.offset for e in errors] == [1, 3 + len(QUERY) - 1]
    assert _frames(out) == [q.decode(QUERY)]


def test_reset_forgets_a_partial_frame() -> None:
    framer = q.Framer()
    framer.feed(QUERY[:7])
    framer.reset()
    assert framer.pending == 0 and framer.skipped == 7
    assert framer.feed(QUERY) == [q.decode(QUERY)]


def test_decode_rejects_truncated_and_trailing_bytes() -> None:
    for raw, offset in ((QUERY[:-1], len(QUERY) - 1), (QUERY + b"\x00", len(QUERY)), (b"", 0), (b"\x16", 0)):
        try:
            q.decode(raw)
        except ProtocolError as err:
            assert err.offset == offset and err.protocol == "gdw1376.2"
        else:
            raise AssertionError(f"{raw.hex()} accepted")


def test_auto_detection_keeps_645_frames_on_the_645_codec() -> None:
    assert describe(METER)["protocol"] == "dlt645"
    assert describe(QUERY)["protocol"] == "gdw1376.2"
    assert describe(METER, protocol="gdw1376.2")["ok"] is False


# --- hypothesis ---------------------------------------------------------------------------------

SAMPLES = [QUERY, MONITOR, CONFIRM]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_only_yield_frames_or_protocol_errors(data: bytes) -> None:
    framer = q.Framer()
    for item in framer.feed(data) + framer.feed(data[::-1]):
        assert isinstance(item, q.Frame | ProtocolError)
        if isinstance(item, q.Frame):
            _parses(item)
    try:
        frame = q.decode(data)
    except ProtocolError:
        pass
    else:
        _parses(frame)
    described = describe(data)
    assert isinstance(described["ok"], bool)


def _parses(frame: q.Frame) -> bool:
    try:
        q.parse_unit(frame)
    except ProtocolError:
        return False
    return True


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "fixcs"]))
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            raw.insert(at, draw(st.integers(0, 255)))
        elif kind == "delete":
            del raw[at]
        elif len(raw) >= 5:
            raw[-2] = sum(raw[3:-2]) & 0xFF  # keep CS valid so the deeper layers get exercised
    return bytes(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(), st.integers(1, 17))
def test_mutated_frames_only_yield_frames_or_protocol_errors(data: bytes, chunk: int) -> None:
    framer = q.Framer()
    out: list[q.Frame | ProtocolError] = []
    for i in range(0, len(data), chunk):
        out += framer.feed(data[i : i + chunk])
    for item in out:
        assert isinstance(item, q.Frame | ProtocolError)
        if isinstance(item, ProtocolError):
            assert item.offset is not None and 0 <= item.offset <= len(data)
        else:
            _parses(item)
            out_desc = describe(q.encode(item))
            assert out_desc["protocol"] == "gdw1376.2"
    assert framer.pending <= len(data)
    described = describe(data)
    if described["ok"] and described["protocol"] == "gdw1376.2":
        assert described["roundtrip"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=6), st.binary(max_size=8), st.integers(1, 23))
def test_frames_survive_any_chunking_and_interleaved_noise(
    frames: list[bytes], noise: bytes, chunk: int
) -> None:
    noise = noise.replace(b"\x68", b"\x00")
    stream = b"".join(noise + f for f in frames)
    framer = q.Framer()
    out: list[q.Frame | ProtocolError] = []
    for i in range(0, len(stream), chunk):
        out += framer.feed(stream[i : i + chunk])
    assert out == [q.decode(f) for f in frames]
    assert framer.skipped == len(noise) * len(frames)
