"""Streaming DL/T 645 framer: bytes in, frames and typed errors out.

Layer: protocols (sans-I/O). Must not import asyncio, serial, hal or runtime.

``feed`` skips FE preamble and line noise, hunts for 0x68, keeps a partial frame
until the rest arrives, and on a bad second 0x68 / over-long L / bad CS / bad end
0x16 yields a ``ProtocolError`` whose ``offset`` counts from the first byte ever fed,
then resynchronizes one byte after the rejected start. An incomplete candidate
followed by a complete, checksummed frame is rejected as noise at once, so a stray
0x68 in line noise cannot hold back the valid frame behind it. Nothing is dropped silently:
every skipped byte and rejected frame is counted.
"""

from __future__ import annotations

from protocols.dlt645._frame import PROTOCOL, START, Frame, check, frame_at
from protocols.errors import ProtocolError


class Framer:
    """Implements ``hal.interfaces.StreamDecoder`` for DL/T 645."""

    def __init__(self) -> None:
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
            result = check(buf, start)
            if result is None:
                later = self._complete_after(start)
                if later is None:
                    pos = start
                    break
                # A whole checksummed frame follows an incomplete candidate: the candidate
                # was a stray 0x68 in line noise, not the start of a frame.
                result = ProtocolError(
                    f"incomplete frame superseded by a valid frame at offset {self._base + later}",
                    offset=start,
                    protocol=PROTOCOL,
                )
            if isinstance(result, ProtocolError):
                pos = start + 1
                if start < quiet_until and result.offset == start + 7:
                    # A 0x68 inside a frame just rejected (e.g. its own second 0x68) that
                    # does not even start a header is part of that frame, not a new error.
                    self.skipped += 1
                    continue
                self.errors += 1
                offset = None if result.offset is None else result.offset + self._base
                out.append(ProtocolError(result.reason, offset=offset, protocol=result.protocol))
                quiet_until = max(quiet_until, self._extent(start))
                continue
            out.append(frame_at(buf, start))
            self.frames += 1
            pos = result
        del buf[:pos]
        self._base += pos
        return out

    def _extent(self, start: int) -> int:
        """End of the frame a candidate at ``start`` claims to be (its header if L is unknown)."""
        buf = self._buf
        if start + 9 < len(buf) and buf[start + 7] == START:
            return start + 12 + buf[start + 9]
        return start + 8

    def _complete_after(self, start: int) -> int | None:
        """Index of the first later 0x68 that starts a complete valid frame, if any."""
        buf = self._buf
        at = buf.find(START, start + 1)
        while at >= 0:
            if isinstance(check(buf, at), int):
                return at
            at = buf.find(START, at + 1)
        return None


__all__ = ["Framer"]
