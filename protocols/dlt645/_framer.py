"""Streaming DL/T 645 framer: the shared framing loop over the DL/T 645 frame description.

Layer: protocols (sans-I/O). Must not import asyncio, serial, hal or runtime.

``protocols.framing.StreamFramer`` does the hunting, waiting, resynchronizing and counting;
this module only says what a DL/T 645 header and body are: a second 68 at offset 7 and
L <= 200 at offset 9 claim ``12 + L`` bytes, which must end with the right CS and 16.
FE preamble and line noise are skipped (counted in ``skipped``).
"""

from __future__ import annotations

from protocols.dlt645._frame import PROTOCOL, Frame, check_body, check_header, frame_at
from protocols.errors import ProtocolError
from protocols.framing import StreamFramer


class Dlt645Spec:
    """The DL/T 645 frame as ``protocols.framing.FrameSpec``."""

    protocol = PROTOCOL

    def header(self, buf: bytearray, start: int) -> int | ProtocolError | None:
        return check_header(buf, start)

    def body(self, buf: bytearray, start: int, end: int) -> Frame | ProtocolError:
        return check_body(buf, start, end) or frame_at(buf, start)


_SPEC = Dlt645Spec()  # no state: one for every framer


class Framer(StreamFramer[Frame]):
    """Implements ``hal.interfaces.StreamDecoder`` for DL/T 645."""

    def __init__(self) -> None:
        super().__init__(_SPEC)


__all__ = ["Dlt645Spec", "Framer"]
