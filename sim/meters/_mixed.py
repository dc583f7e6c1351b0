"""A stream framer for a line shared by DL/T 645 and DL/T 698.45 meters.

Layer: sim. Both protocols start a frame with 68H; a 645 frame has a second 68H at
offset 7 and a 1-byte data length at offset 9, a 698 frame a 14-bit length at offset 1.
At each 68H the candidate is tried as 645 first (when byte 7 is 68H), then as 698, each
with its own codec (``protocols.dlt645.decode`` / ``protocols.dlt698.decode``, checksums
and all). An incomplete candidate waits for more bytes unless a later 68H already starts a
complete frame (then it was noise); a rejected one is reported as a ``ProtocolError`` and the
hunt resumes one byte later. FE preamble and noise are counted in ``skipped``.
"""

from __future__ import annotations

from protocols import dlt645, dlt698
from protocols.errors import ProtocolError

START = 0x68
MAX_698 = 2048  # a virtual meter never receives more; bounds the wait on a noisy 68H

Frame = dlt645.Frame | dlt698.Frame


class MixedFramer:
    """``feed(bytes) -> [dlt645.Frame | dlt698.Frame | ProtocolError]``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self.skipped = 0
        self.frames = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _try(self, start: int) -> Frame | ProtocolError | int | None:
        """A frame, an error, None (need more bytes); int = frame length when complete."""
        buf = self._buf
        have = len(buf) - start
        if have < 3:
            return None
        waiting = False
        if have < 10 or buf[start + 7] == START:
            if have < 10:
                waiting = True
            else:
                n645 = 12 + buf[start + 9]
                if have < n645:
                    waiting = True
                else:
                    try:
                        return dlt645.decode(bytes(buf[start : start + n645]))
                    except ProtocolError:
                        pass
        n698 = ((buf[start + 1] | buf[start + 2] << 8) & 0x3FFF) + 2
        if 12 <= n698 <= MAX_698:
            if have < n698:
                return None
            try:
                return dlt698.decode(bytes(buf[start : start + n698]))
            except ProtocolError as err:
                if waiting:
                    return None
                return err
        if waiting:
            return None
        return ProtocolError("neither a DL/T 645 nor a DL/T 698.45 frame", offset=start)

    def _length(self, frame: Frame, start: int) -> int:
        if isinstance(frame, dlt645.Frame):
            return 12 + self._buf[start + 9]
        return ((self._buf[start + 1] | self._buf[start + 2] << 8) & 0x3FFF) + 2

    def _complete_after(self, start: int) -> bool:
        at = self._buf.find(START, start + 1)
        while at >= 0:
            got = self._try(at)
            if got is not None and not isinstance(got, ProtocolError):
                return True
            at = self._buf.find(START, at + 1)
        return False

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        return [item for item, _ in self.feed_marked(data)]

    def feed_marked(self, data: bytes) -> list[tuple[Frame | ProtocolError, int]]:
        """Like ``feed``, each item with the stream offset (bytes fed since the start) just past
        it: a frame's end, an error's first byte + 1. A line charges each request the bytes
        between two frames' ends without feeding byte by byte."""
        self._buf += data
        out: list[tuple[Frame | ProtocolError, int]] = []
        pos = 0
        while True:
            start = self._buf.find(START, pos)
            if start < 0:
                self.skipped += len(self._buf) - pos
                pos = len(self._buf)
                break
            self.skipped += start - pos
            got = self._try(start)
            if got is None:
                if not self._complete_after(start):
                    pos = start
                    break
                got = ProtocolError("incomplete frame superseded by a valid frame", offset=start)
            if isinstance(got, ProtocolError):
                self.errors += 1
                pos = start + 1
                out.append((got, self._base + pos))
                continue
            assert not isinstance(got, int)
            self.frames += 1
            pos = start + self._length(got, start)
            out.append((got, self._base + pos))
        del self._buf[:pos]
        self._base += pos
        return out


__all__ = ["MixedFramer"]
