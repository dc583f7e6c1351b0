"""DL/T 698.45 link-layer fragmentation: split an APDU into fragment frames and join them back.

Layer: protocols (pure, no I/O). Must not import asyncio, serial, hal or runtime.

A fragmented frame has C.D5 = 1 and a 2-byte fragment word before its APDU piece
(see ``_frame``): sequence number 0..4095 (wrapping) and type start / middle / end /
ack. The receiver acknowledges each piece with an ack frame carrying the same sequence
number and no APDU. ``Reassembler`` joins pieces of one transfer in order and rejects
gaps, duplicates, pieces without a start and pieces from another address with a
``ProtocolError``; the transfer in progress is then abandoned (and counted).
"""

from __future__ import annotations

from dataclasses import replace

from protocols.dlt698._frame import FRAGMENTED, FragmentHeader, FragmentType, Frame
from protocols.dlt698._wire import PROTOCOL
from protocols.errors import EncodeError, ProtocolError

MAX_APDU = 65536


def split(frame: Frame, size: int, *, first_seq: int = 0) -> list[Frame]:
    """``frame`` (unfragmented) as fragment frames carrying at most ``size`` APDU bytes each.

    An APDU that fits in one piece is not fragmented at all: ``[frame]`` (a lone END fragment,
    which it used to be, is a transfer without a start that a receiver must refuse).
    """
    if frame.fragment is not None:
        raise EncodeError("frame is already a fragment", protocol=PROTOCOL)
    if size < 1:
        raise EncodeError(f"fragment size {size}: expected >= 1", protocol=PROTOCOL)
    if len(frame.apdu) <= size:
        return [frame]
    pieces = [frame.apdu[i : i + size] for i in range(0, len(frame.apdu), size)]
    out: list[Frame] = []
    for i, piece in enumerate(pieces):
        if i == 0:
            kind = FragmentType.START
        elif i == len(pieces) - 1:
            kind = FragmentType.END
        else:
            kind = FragmentType.MIDDLE
        header = FragmentHeader((first_seq + i) & 0xFFF, kind)
        out.append(replace(frame, control=frame.control | FRAGMENTED, apdu=piece, fragment=header))
    return out


def ack_for(frame: Frame) -> Frame:
    """The acknowledgement of fragment ``frame``: opposite direction, same sequence, no APDU."""
    if frame.fragment is None:
        raise EncodeError("only a fragment frame is acknowledged", protocol=PROTOCOL)
    control = (frame.control ^ 0xC0) | FRAGMENTED  # both DIR and PRM flip (vector 698-005)
    return replace(
        frame, control=control, apdu=b"", fragment=FragmentHeader(frame.fragment.seq, FragmentType.ACK)
    )


class Reassembler:
    """Joins the APDU pieces of one fragmented transfer; ``add`` returns the whole APDU at the end."""

    def __init__(self, *, max_apdu: int = MAX_APDU) -> None:
        self.max_apdu = max_apdu
        self._parts: list[bytes] = []
        self._size = 0
        self._last: int | None = None
        self._peer: tuple[str, int, int] | None = None
        self.completed = 0
        self.abandoned = 0

    @property
    def in_progress(self) -> bool:
        return self._last is not None

    def _abandon(self, reason: str) -> ProtocolError:
        if self._last is not None:
            self.abandoned += 1
        self._parts, self._size, self._last, self._peer = [], 0, None, None
        return ProtocolError(reason, protocol=PROTOCOL)

    def add(self, frame: Frame) -> bytes | None:
        """Feed one frame. Unfragmented frames pass straight through; ack frames return None."""
        header = frame.fragment
        if header is None:
            return frame.apdu
        if header.kind is FragmentType.ACK:
            return None
        peer = (frame.sa, frame.ca, frame.control & 0x80)
        if header.kind is FragmentType.START:
            busy = self._last is not None
            error = self._abandon(f"start fragment {header.seq} abandons the transfer in progress")
            self._begin(frame, peer)
            if busy:
                raise error
            return None
        if self._last is None:
            raise self._abandon(f"{header.kind.name.lower()} fragment {header.seq} without a start fragment")
        if peer != self._peer:
            raise self._abandon(f"fragment {header.seq} from another address/direction mid-transfer")
        expected = (self._last + 1) & 0xFFF
        if header.seq != expected:
            what = "duplicate" if header.seq == self._last else "gap:"
            raise self._abandon(f"{what} fragment {header.seq}, expected {expected}")
        self._size += len(frame.apdu)
        if self._size > self.max_apdu:
            raise self._abandon(f"reassembled APDU exceeds {self.max_apdu} bytes")
        self._parts.append(frame.apdu)
        self._last = header.seq
        if header.kind is FragmentType.END:
            apdu = b"".join(self._parts)
            self._parts, self._size, self._last, self._peer = [], 0, None, None
            self.completed += 1
            return apdu
        return None

    def _begin(self, frame: Frame, peer: tuple[str, int, int]) -> None:
        assert frame.fragment is not None
        self._parts, self._size = [frame.apdu], len(frame.apdu)
        self._last, self._peer = frame.fragment.seq, peer


__all__ = ["MAX_APDU", "Reassembler", "ack_for", "split"]
