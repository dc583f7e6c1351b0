"""Streaming Q/GDW 1376.2 framer: the shared framing loop over the Q/GDW 1376.2 frame description.

Layer: protocols (sans-I/O). Must not import asyncio, serial, hal or runtime.

``protocols.framing.StreamFramer`` does the hunting, waiting, resynchronizing and counting;
this module only says what a Q/GDW 1376.2 header and body are: L (the whole frame, 15 up to
``max_length``) and, with the module flag, room for the address field; then CS, the end 16 and
a valid DT. 0x68 bytes inside a rejected frame's claimed extent (e.g. a carried DL/T 645
frame) are counted as skipped rather than reported again.
"""

from __future__ import annotations

from protocols.errors import ProtocolError
from protocols.framing import StreamFramer
from protocols.gdw1376_2._frame import MAX_FRAME, PROTOCOL, Frame, check_body, check_header, frame_at

DEFAULT_MAX_LENGTH = 4096  # CCOs announce 2048 in AFN03 F10; the standard allows 65535


class Gdw13762Spec:
    """The Q/GDW 1376.2 frame as ``protocols.framing.FrameSpec``."""

    protocol = PROTOCOL

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.max_length = max_length

    def header(self, buf: bytearray, start: int) -> int | ProtocolError | None:
        return check_header(buf, start, max_length=self.max_length)

    def body(self, buf: bytearray, start: int, end: int) -> Frame | ProtocolError:
        return check_body(buf, start, end) or frame_at(buf, start)


class Framer(StreamFramer[Frame]):
    """Implements ``hal.interfaces.StreamDecoder`` for Q/GDW 1376.2."""

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if not 15 <= max_length <= MAX_FRAME:
            raise ValueError(f"max_length {max_length}: expected 15..{MAX_FRAME}")
        super().__init__(Gdw13762Spec(max_length=max_length))


__all__ = ["DEFAULT_MAX_LENGTH", "Framer", "Gdw13762Spec"]
