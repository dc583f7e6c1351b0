"""Streaming DL/T 698.45 framer: bytes in, frames and typed errors out.

Layer: protocols (sans-I/O). Must not import asyncio, serial, hal or runtime.

``feed`` skips FE preamble and line noise, hunts for 0x68, keeps a partial frame until
the rest arrives, and on a bad L / HCS / FCS / end 0x16 yields a ``ProtocolError`` whose
``offset`` counts from the first byte ever fed, then resynchronizes one byte after the
rejected start. The header is checked (L range, HCS) as soon as its bytes are in, so a
stray 0x68 in noise is rejected without waiting for the L bytes it claims; an incomplete
candidate followed by a complete, checksummed frame is rejected at once. L is capped by
``max_length``, which bounds the buffer. Nothing is dropped silently: every skipped byte
and rejected frame is counted; 0x68 bytes inside a frame whose header (HCS) was valid but
whose FCS or end byte was not are counted as skipped, not reported again as errors.
"""

from __future__ import annotations

from protocols.dlt698._frame import MAX_LENGTH, START, Frame, check, frame_at
from protocols.dlt698._wire import PROTOCOL
from protocols.errors import ProtocolError


class Framer:
    """Implements ``hal.interfaces.StreamDecoder`` for DL/T 698.45."""

    def __init__(self, *, max_length: int = MAX_LENGTH) -> None:
        self.max_length = max_length
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self.frames = 0
        self.errors = 0
        self.skipped = 0  # FE preamble and noise bytes outside frames

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
            result = check(buf, start, max_length=self.max_length)
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
            if isinstance(result, ProtocolError):
                pos = start + 1
                if start < quiet_until:
                    self.skipped += 1
                    continue
                self.errors += 1
                offset = None if result.offset is None else result.offset + self._base
                out.append(ProtocolError(result.reason, offset=offset, protocol=result.protocol))
                if "FCS" in result.reason or "end 0x16" in result.reason:
                    # The header checked out, so the frame's claimed extent is credible.
                    quiet_until = start + ((buf[start + 1] | (buf[start + 2] << 8)) & 0x3FFF) + 2
                continue
            out.append(frame_at(buf, start))
            self.frames += 1
            pos = result
        del buf[:pos]
        self._base += pos
        return out

    def _complete_after(self, start: int) -> int | None:
        """Index of the first later 0x68 that starts a complete valid frame, if any."""
        buf = self._buf
        at = buf.find(START, start + 1)
        while at >= 0:
            if isinstance(check(buf, at, max_length=self.max_length), int):
                return at
            at = buf.find(START, at + 1)
        return None


__all__ = ["Framer"]
