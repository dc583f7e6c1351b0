"""The shared framing loop: never raises, resynchronizes, stays linear (issue 14, reproductions 3 and 4).

Linearity is asserted by counting work, not by timing: every checksum byte the three protocols
compute goes through a counter, and the input that made the old framers quadratic (a header that
passes its check and claims a long frame, followed by bytes full of 0x68) may cost only a constant
number of checksum bytes per byte fed. The counter gives up at the first byte over the bound, so
the old code fails at once instead of running for half a minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from protocols import dlt645, dlt698
from protocols import gdw1376_2 as q
from protocols.checksums import crc16_x25, sum8
from protocols.errors import ProtocolError
from protocols.framing import MAX_CANDIDATES

READ_698 = dlt698.encode(
    dlt698.Frame(dlt698.CONTROL_CLIENT_REQUEST, "000000000010", 0x10, apdu=bytes.fromhex("0501014000020000")),
    preamble=0,
)
READ_645 = dlt645.encode(dlt645.read_response("000012345678", 0x00010000, [123.45]), preamble=0)
WORK_PER_BYTE = 64  # checksum bytes per byte fed, whatever the input


class _TooMuchWork(BaseException):
    """Raised by the counter past the bound (a BaseException: framers catch Exception)."""


@contextmanager
def counted(
    monkeypatch: pytest.MonkeyPatch, modules: list[str], fn: Callable[[Any], int]
) -> Iterator[list[int]]:
    """Count the bytes ``fn`` (a checksum) sees in ``modules``; total in ``box[0]``, bound in ``box[1]``."""
    box = [0, 0]

    def counting(data: Any) -> int:
        box[0] += len(data)
        if box[1] and box[0] > box[1]:
            raise _TooMuchWork(f"{box[0]} checksum bytes, bound {box[1]}")
        return fn(data)

    for module in modules:
        monkeypatch.setattr(f"{module}.{fn.__name__}", counting)
    yield box


def _header_698(length: int) -> bytes:
    """68 L C AF SA CA HCS with a correct HCS, claiming an L-byte frame."""
    head = bytes([length & 0xFF, length >> 8, 0x43, 0x05, 1, 0, 0, 0, 0, 0x10, 0x10])
    return b"\x68" + head + crc16_x25(head).to_bytes(2, "little")


def test_698_long_claim_then_0x68_flood_costs_constant_work_per_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _header_698(dlt698.MAX_LENGTH) + b"\x68" * 16_000 + READ_698
    with counted(monkeypatch, ["protocols.dlt698._frame"], crc16_x25) as work:
        work[1] = WORK_PER_BYTE * len(data)
        framer = dlt698.Framer()
        out = [item for i in range(0, len(data), 8) for item in framer.feed(data[i : i + 8])]
    assert out[-1] == dlt698.decode(READ_698)  # the frame behind the flood is delivered
    assert all(isinstance(x, ProtocolError) for x in out[:-1])
    assert framer.faults == 0 and framer.pending == 0


def test_1376_2_long_claim_then_0x68_flood_costs_constant_work_per_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = q.encode(q.Frame(0x43, q.DownInfo(seq=1), 0x03, 1))
    data = bytes([0x68, 0x00, 0x10, 0x43]) + b"\x68" * 4096 + good  # claims 4096 bytes
    with counted(monkeypatch, ["protocols.gdw1376_2._frame"], sum8) as work:
        work[1] = WORK_PER_BYTE * len(data)
        framer = q.Framer()
        out = [item for i in range(len(data)) for item in framer.feed(data[i : i + 1])]
    assert out[-1] == q.decode(good)
    assert framer.faults == 0 and framer.pending == 0


def test_645_0x68_flood_costs_constant_work_per_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"\x68" * 8000 + READ_645  # every 0x68 has a second 0x68 at +7 and L = 0x68 <= 200
    with counted(monkeypatch, ["protocols.dlt645._frame"], sum8) as work:
        work[1] = WORK_PER_BYTE * len(data)
        framer = dlt645.Framer()
        out = [item for i in range(len(data)) for item in framer.feed(data[i : i + 1])]
    assert out[-1] == dlt645.decode(READ_645)
    assert framer.faults == 0 and framer.pending == 0


def test_declared_length_over_the_maximum_is_rejected_at_once() -> None:
    framer = dlt698.Framer(max_length=2048)
    out = framer.feed(_header_698(2049)[:3])  # 68 L L: nothing more needed to refuse it
    assert len(out) == 1 and isinstance(out[0], ProtocolError) and "L=2049" in out[0].reason
    assert framer.pending == 0
    q_framer = q.Framer(max_length=512)
    out = q_framer.feed(bytes([0x68, 0x01, 0x02]))
    assert len(out) == 1 and isinstance(out[0], ProtocolError) and "exceeds 512" in out[0].reason


# Issue 14, reproduction 3: one frame wedged a DL/T 698.45 port for good.
WEDGE = bytes.fromhex("68 12 00 43 20 05 10 11 E3 05 01 01 40 00 02 00 00 7D 1B 16")


def test_698_frame_that_raised_in_feed_is_decoded_and_the_port_keeps_working() -> None:
    framer = dlt698.Framer()
    out = framer.feed(WEDGE + READ_698)
    frames = [x for x in out if isinstance(x, dlt698.Frame)]
    assert len(frames) == 2 and frames[1] == dlt698.decode(READ_698)
    assert frames[0].sa == "05" and frames[0].logical == 2  # AF bit 5, one-byte SA: logical address 2
    assert framer.pending == 0 and framer.faults == 0
    assert framer.feed(READ_698) == [dlt698.decode(READ_698)]  # and again: nothing stuck


def test_feed_never_raises_and_counts_a_checker_bug_as_a_fault() -> None:
    class Broken:
        protocol = "broken"

        def header(self, buf: bytearray, start: int) -> int | ProtocolError | None:
            return start + 3 if start + 3 <= len(buf) else None

        def body(self, buf: bytearray, start: int, end: int) -> object:
            raise KeyError("a decoder bug")

    from protocols.framing import StreamFramer

    framer: StreamFramer[object] = StreamFramer(Broken())
    out = framer.feed(b"\x68\x00\x00\x68\x00\x00")
    assert [type(x) for x in out] == [ProtocolError, ProtocolError]
    assert framer.faults == 2 and "decoder fault: KeyError" in str(out[0])


def test_overlapping_candidates_are_bounded() -> None:
    # a valid-looking 645 header every byte: more than MAX_CANDIDATES overlap, the oldest give way
    framer = dlt645.Framer()
    out = framer.feed(b"\x68" * (MAX_CANDIDATES * 4))
    assert framer._open.__len__() <= MAX_CANDIDATES
    assert all(isinstance(x, ProtocolError) for x in out)
    assert framer.feed(READ_645)[-1] == dlt645.decode(READ_645)


@pytest.mark.parametrize("per_feed", [0.5, 1, 7])
def test_a_framer_keeps_nothing_of_the_frames_it_reported(per_feed: float) -> None:
    # a port's framer lives as long as the terminal: every valid frame once stayed in its heap of
    # whole frames (with its decoded result) -- ~1 kB per reply, tens of MB a week at one station
    for framer, wire in ((dlt645.Framer(), READ_645), (dlt698.Framer(), READ_698)):
        stream = wire * 2000
        step = int(len(wire) * per_feed)  # half frames, whole frames (as a link delivers them), several
        got = [x for i in range(0, len(stream), step) for x in framer.feed(stream[i : i + step])]
        assert len(got) == 2000 and framer.frames == 2000
        assert len(framer._valid) + len(framer._items) + len(framer._open) <= 1
        assert framer.pending < len(wire)


def test_a_burst_of_many_whole_frames_in_one_feed_loses_none() -> None:
    # a link that was not read for a while (a loaded loop, a module reporting a backlog) hands
    # over dozens of frames in one read: every one is a 0x68 candidate before any body is
    # checked, and the oldest were once given up as "overlapping candidates: noise"
    for framer, wire in ((dlt645.Framer(), READ_645), (dlt698.Framer(), READ_698)):
        got = framer.feed(wire * (MAX_CANDIDATES * 3))
        assert [x for x in got if isinstance(x, ProtocolError)] == []
        assert len(got) == MAX_CANDIDATES * 3 and framer.errors == 0


def test_stream_order_and_offsets_across_noise_errors_and_frames() -> None:
    bad = bytearray(READ_698)
    bad[-3] ^= 0xFF  # FCS
    stream = b"\xfe\xfe" + bytes(bad) + b"\x00\x68\x00" + READ_698
    framer = dlt698.Framer()
    out = [x for i in range(len(stream)) for x in framer.feed(stream[i : i + 1])]
    assert isinstance(out[0], ProtocolError) and "FCS" in out[0].reason and out[0].offset == 2 + len(bad) - 3
    assert out[-1] == dlt698.decode(READ_698)
    offsets = [x.offset for x in out if isinstance(x, ProtocolError)]
    assert offsets == sorted(offsets)
    assert framer.frames == 1 and framer.errors == len(offsets)


def test_framers_share_no_state_whichever_path_they_took() -> None:
    """A framer fed whole frames keeps the one-step path (nothing of its own for the slow one);
    one fed bytes by halves takes the slow path with its own items: neither sees the other's."""
    halves, whole = dlt645.Framer(), dlt645.Framer()
    assert halves.feed(READ_645[:7]) == []
    assert whole.feed(READ_645) == [dlt645.decode(READ_645)]
    assert whole.feed(READ_645[:7]) == []
    assert halves.feed(READ_645[7:]) == [dlt645.decode(READ_645)]
    assert whole.feed(READ_645[7:]) == [dlt645.decode(READ_645)]
    assert dlt645.Framer().feed(b"\x68" + READ_645[:5]) == []
    fresh = dlt645.Framer()
    assert (fresh.pending, fresh.feed(READ_645)) == (0, [dlt645.decode(READ_645)])
    assert (halves.frames, whole.frames, halves.errors, whole.errors) == (1, 2, 0, 0)
