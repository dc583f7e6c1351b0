"""Streaming Q/GDW 1376.2 framer: bytes from the CCO UART in, frames and typed errors out.

Layer: protocols (sans-I/O). Must not import asyncio, serial, hal or runtime.

``feed`` hunts for 0x68, waits until the L bytes announce a whole frame, and checks CS and the
closing 0x16. A bad L / CS / end / DT yields a ``ProtocolError`` whose ``offset`` counts from the
first byte ever fed, then resynchronizes one byte after the rejected start; 0x68 bytes inside the
rejected frame's claimed extent (e.g. a carried DL/T 645 frame) are counted as skipped rather than
reported again. An incomplete candidate followed by a complete valid frame is rejected at once, so a
stray 0x68 with a huge L cannot hold back the frames behind it. Nothing is dropped silently.
"""

from __future__ import annotations

from protocols.errors import ProtocolError
from protocols.gdw1376_2._frame import MAX_FRAME, PROTOCOL, START, Frame, check, frame_at

DEFAULT_MAX_LENGTH = 4096  # CCOs announce 2048 in AFN03 F10; the standard allows 65535


class Framer:
    """Implements ``hal.interfaces.StreamDecoder`` for Q/GDW 1376.2."""

    def __init__(self, *, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if not 15 <= max_length <= MAX_FRAME:
            raise ValueError(f"max_length {max_length}: expected 15..{MAX_FRAME}")
        self._max = max_length
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self.frames = 0
        self.errors = 0
        self.skipped = 0  # noise bytes outside frames

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (e.g. after a link timeout); counted as skipped."""
        self.skipped += len(self._buf)
        self._base += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        self._buf += data
        buf = self._buf
        out: list[Frame | ProtocolError] = []
        pos = 0
        quiet_until = 0
        while True:
            start = buf.find(START, pos)
            if start < 0:
                self.skipped += len(buf) - pos
                pos = len(buf)
                break
            self.skipped += start - pos
            result = check(buf, start, max_length=self._max)
            if result is None:
                later = self._complete_after(start)
                if later is None:
                    pos = start
                    break
                result = ProtocolError(
                    f"incomplete frame superseded by a valid frame at offset {self._base + later}",
                    offset=start,
                    protocol=PROTOCOL,
                )
            frame: Frame | ProtocolError
            if isinstance(result, int):
                try:
                    frame = frame_at(buf, start)
                except ProtocolError as err:
                    frame = err
            else:
                frame = result
            if isinstance(frame, ProtocolError):
                pos = start + 1
                if start < quiet_until:
                    self.skipped += 1  # a 0x68 inside a frame already reported
                    continue
                self.errors += 1
                offset = None if frame.offset is None else frame.offset + self._base
                out.append(ProtocolError(frame.reason, offset=offset, protocol=frame.protocol))
                quiet_until = max(quiet_until, self._extent(start))
                continue
            out.append(frame)
            self.frames += 1
            assert isinstance(result, int)
            pos = result
        del buf[:pos]
        self._base += pos
        return out

    def _extent(self, start: int) -> int:
        """End of the frame a rejected candidate claims to be (just its 68 L L if L is absurd)."""
        buf = self._buf
        if start + 3 <= len(buf):
            length = buf[start + 1] | buf[start + 2] << 8
            if 15 <= length <= self._max:
                return start + length
        return start + 3

    def _complete_after(self, start: int) -> int | None:
        """Index of the first later 0x68 that starts a complete valid frame, if any."""
        buf = self._buf
        at = buf.find(START, start + 1)
        while at >= 0:
            if isinstance(check(buf, at, max_length=self._max), int):
                return at
            at = buf.find(START, at + 1)
        return None


__all__ = ["DEFAULT_MAX_LENGTH", "Framer"]
