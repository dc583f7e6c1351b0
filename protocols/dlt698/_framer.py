"""Streaming DL/T 698.45 framer: the shared framing loop over the DL/T 698.45 frame description.

Layer: protocols (sans-I/O). Must not import asyncio, serial, hal or runtime.

``protocols.framing.StreamFramer`` does the hunting, waiting, resynchronizing and counting;
this module only says what a DL/T 698.45 header and body are. The header (L range, HCS) is
checked as soon as its bytes are in, so a stray 0x68 in noise is rejected without waiting for
the L bytes it claims, and L is capped by ``max_length`` (which bounds the buffer). The body
is the FCS, the end 16 and the link-frame decode; a frame that cannot be decoded (e.g. an
address field too short for what AF announces) is a ``ProtocolError``, never an exception.
"""

from __future__ import annotations

from protocols.dlt698._frame import MAX_LENGTH, Frame, check_body, check_header, frame_at
from protocols.dlt698._wire import PROTOCOL
from protocols.errors import ProtocolError
from protocols.framing import StreamFramer


class Dlt698Spec:
    """The DL/T 698.45 link frame as ``protocols.framing.FrameSpec``."""

    protocol = PROTOCOL

    def __init__(self, *, max_length: int = MAX_LENGTH) -> None:
        self.max_length = max_length

    def header(self, buf: bytearray, start: int) -> int | ProtocolError | None:
        return check_header(buf, start, max_length=self.max_length)

    def body(self, buf: bytearray, start: int, end: int) -> Frame | ProtocolError:
        return check_body(buf, start, end) or frame_at(buf, start)


_SPEC = Dlt698Spec()  # no state but its maximum: one for every framer of the full length


class Framer(StreamFramer[Frame]):
    """Implements ``hal.interfaces.StreamDecoder`` for DL/T 698.45."""

    def __init__(self, *, max_length: int = MAX_LENGTH) -> None:
        if not 10 <= max_length <= MAX_LENGTH:
            raise ValueError(f"max_length {max_length}: expected 10..{MAX_LENGTH}")
        super().__init__(_SPEC if max_length == MAX_LENGTH else Dlt698Spec(max_length=max_length))
        self.max_length = max_length


__all__ = ["Dlt698Spec", "Framer"]
