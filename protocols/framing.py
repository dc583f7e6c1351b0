"""One streaming framing loop for every 0x68-delimited protocol: bytes in, frames and typed errors out.

Layer: protocols (sans-I/O). Must not import asyncio, serial, hal or runtime.

A protocol describes its frame with a ``FrameSpec`` (two checks, no state); ``StreamFramer``
does the rest for DL/T 645, DL/T 698.45 and Q/GDW 1376.2 alike:

* every 0x68 is a *candidate*; its header is checked once, as soon as its few bytes are in
  (``FrameSpec.header``): a rejected header is a typed ``ProtocolError`` at that offset, an
  accepted one claims an end (its length field), bounded by the protocol's maximum;
* a candidate's body is checked once, when its claimed end has arrived (``FrameSpec.body``:
  checksums, end byte, decoding) -- never again, whatever comes later;
* results leave in stream order. A candidate still waiting for bytes while a later one is
  already a whole valid frame was line noise: it is rejected at once ("superseded"), so a
  stray 0x68 claiming a long frame cannot hold back the frames behind it;
* 0x68 bytes inside the claimed extent of a rejected frame whose header checked out are that
  frame's bytes: counted in ``skipped``, not reported again;
* at most ``MAX_CANDIDATES`` candidates overlap; one more first checks the bodies that are all
  in (a burst of whole frames fed at once loses none), then rejects the oldest. With that bound
  every byte is checked by a constant number of candidates: the work per byte fed is bounded by
  a constant, whatever the input (no re-scan of the buffer per feed), and the buffer never
  holds more than one maximum-length frame. Nothing reported is kept: a framer that has seen a
  million frames holds what one has seen none (the frames in flight aside).

``feed`` never raises. A check that raises anything but a ``ProtocolError`` (a decoder bug) is
reported as a ``ProtocolError`` too and counted in ``faults``, which the fuzz campaign
(``bench/fuzz.py``) requires to stay 0. Offsets in errors count from the first byte ever fed.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from protocols.errors import ProtocolError

START = 0x68
MAX_CANDIDATES = 16

F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)


class FrameSpec(Protocol[F_co]):
    """What the loop needs to know of one protocol's frame. Indexes are into ``buf``; error
    offsets too (the loop makes them stream offsets)."""

    @property
    def protocol(self) -> str: ...

    def header(self, buf: bytearray, start: int) -> int | ProtocolError | None:
        """The candidate at ``buf[start]`` (a 0x68): the end index it claims once its header
        checks out, a ``ProtocolError`` when it does not, ``None`` when more bytes are needed."""
        ...

    def body(self, buf: bytearray, start: int, end: int) -> F_co | ProtocolError:
        """The frame ``buf[start:end]`` (all in, header already checked), or why it is not one."""
        ...


@dataclass(slots=True, eq=False)
class _Candidate(Generic[F]):
    start: int  # stream offsets
    end: int
    result: F | ProtocolError | None = None
    order: int = field(default=0)


_Item = int  # a 0x68 whose header was rejected, by stream offset (its error is re-derived)

#: the items of a framer that never needed more than the one-step path (``_whole``): shared, empty,
#: never appended to (``feed`` gives a framer its own deque before its first step); a framer is made
#: per transaction and most never leave the one-step path: a deque each (~0.7 kB) adds up while
#: hundreds of transactions wait for their bus
_NO_ITEMS: deque[Any] = deque(maxlen=0)


class StreamFramer(Generic[F]):
    """Implements ``hal.interfaces.StreamDecoder`` over one ``FrameSpec``."""

    def __init__(self, spec: FrameSpec[F]) -> None:
        self._spec = spec
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._front = 0  # everything before it is resolved and reported
        self._scan = 0  # next stream offset to examine as a candidate
        self._items: deque[_Candidate[F] | _Item] = _NO_ITEMS  # by offset, from _front on
        self._open: list[_Candidate[F]] = []  # candidates whose body is not checked yet
        self._valid: list[tuple[int, int, _Candidate[F]]] = []  # heap of whole valid frames by start
        self._quiet = 0  # rejected-header 0x68s before this belong to a reported frame
        self._order = itertools.count()
        self.frames = 0
        self.errors = 0
        self.skipped = 0  # preamble, noise and the bytes of reported frames' rejected starts
        self.faults = 0  # checks that raised something else than ProtocolError (bugs)

    @property
    def protocol(self) -> str:
        return self._spec.protocol

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return self._base + len(self._buf) - self._front

    def reset(self) -> None:
        """Forget a partial frame (e.g. after a link timeout); its bytes count as skipped."""
        self.skipped += self.pending
        self._base += len(self._buf)
        self._buf.clear()
        self._front = self._scan = self._quiet = self._base
        self._items.clear()
        self._open.clear()
        self._valid.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[F | ProtocolError]:
        idle = not self._buf and not self._items and not self._open and self._quiet <= self._base
        self._buf += data
        if idle:
            whole = self._whole()
            if whole is not None:
                return [whole]
        if self._items is _NO_ITEMS:
            self._items = deque()
        out: list[F | ProtocolError] = []
        while True:
            self._examine()
            self._check_bodies()
            if not self._resolve(out):
                break
        self._compact()
        return out

    def _whole(self) -> F | None:
        """The common case, in one step: an idle framer fed one whole valid frame (after any
        preamble), e.g. a reply read at once. Gives what the three steps would: the frame, its
        preamble skipped, and the 0x68s inside it its own bytes -- when fewer than
        ``MAX_CANDIDATES`` of them could open a candidate; None (nothing changed) otherwise."""
        buf = self._buf
        start = buf.find(START)
        if start < 0 or buf.count(START, start + 1) >= MAX_CANDIDATES - 1:
            return None
        try:
            end = self._spec.header(buf, start)
            if end != len(buf):
                return None
            result = self._spec.body(buf, start, end)
        except Exception:  # the three steps report it (and count a fault)
            return None
        if isinstance(result, ProtocolError):
            return None
        self.skipped += start
        self.frames += 1
        self._base = self._front = self._scan = self._base + end
        buf.clear()
        return result

    # -- the three steps -------------------------------------------------------------------------

    def _examine(self) -> None:
        """Check the header of every new 0x68 (stops at one whose header is not all in yet)."""
        buf, base = self._buf, self._base
        end = base + len(buf)
        pos = max(self._scan, self._front)
        while pos < end:
            i = buf.find(START, pos - base)
            if i < 0:
                pos = end
                break
            claim = self._header(base + i)
            if claim is None:
                pos = base + i  # its header is not complete: wait here
                break
            if isinstance(claim, ProtocolError):
                self._items.append(base + i)
            else:
                cand: _Candidate[F] = _Candidate(base + i, claim, order=next(self._order))
                self._items.append(cand)
                self._open.append(cand)
                if len(self._open) > MAX_CANDIDATES:
                    self._check_bodies()  # whole frames already in are decided, not crowded out
                if len(self._open) > MAX_CANDIDATES:
                    oldest = self._open.pop(0)
                    oldest.result = ProtocolError(
                        f"more than {MAX_CANDIDATES} overlapping frame candidates: noise",
                        offset=oldest.start,
                        protocol=self._spec.protocol,
                    )
            pos = base + i + 1
        self._scan = pos

    def _check_bodies(self) -> None:
        """Check each candidate whose claimed end has arrived: once."""
        end = self._base + len(self._buf)
        for cand in [c for c in self._open if c.end <= end]:
            self._open.remove(cand)
            cand.result = self._body(cand)
            if not isinstance(cand.result, ProtocolError):
                heapq.heappush(self._valid, (cand.start, cand.order, cand))

    def _resolve(self, out: list[F | ProtocolError]) -> bool:
        """Report from the front, in stream order, what is decided; True if the front moved."""
        moved = False
        items = self._items
        while items:
            item = items[0]
            if isinstance(item, int):  # a 0x68 whose header was rejected
                items.popleft()
                self._skip_to(item)
                self._front = item + 1
                moved = True
                if item < self._quiet:
                    self.skipped += 1
                    continue
                error = self._header(item)
                if not isinstance(error, ProtocolError):  # pragma: no cover - checks are pure
                    self.faults += 1
                    error = ProtocolError("header check not repeatable", offset=item, protocol=self.protocol)
                self.errors += 1
                out.append(error)
                continue
            cand = item
            if cand.result is None:
                later = self._first_valid()
                if later is None:
                    break  # wait for its bytes
                self._open.remove(cand)
                cand.result = ProtocolError(
                    f"incomplete frame superseded by a valid frame at offset {later.start}",
                    offset=cand.start,
                    protocol=self.protocol,
                )
            items.popleft()
            self._skip_to(cand.start)
            moved = True
            if isinstance(cand.result, ProtocolError):
                if cand.start < self._quiet:
                    self.skipped += 1
                else:
                    self.errors += 1
                    out.append(cand.result)
                # its header checked out: the 0x68s it claims (up to the next real frame) are its bytes
                later = self._first_valid()
                limit = later.start if later is not None and later.start > cand.start else cand.end
                self._quiet = max(self._quiet, min(cand.end, limit))
                self._front = cand.start + 1
            else:
                self.frames += 1
                out.append(cand.result)
                self._front = cand.end
                while items and _offset(items[0]) < cand.end:  # its own bytes, not frames
                    inner = items.popleft()
                    if isinstance(inner, _Candidate) and inner.result is None:
                        self._open.remove(inner)
                self._first_valid()  # drop it (and any valid frame inside it) from the heap
        if not items and self._front < self._scan:
            self._skip_to(self._scan)
            moved = True
        return moved

    # -- helpers ---------------------------------------------------------------------------------

    def _header(self, offset: int) -> int | ProtocolError | None:
        """``FrameSpec.header`` at a stream offset; the claimed end as a stream offset."""
        base = self._base
        try:
            claim = self._spec.header(self._buf, offset - base)
        except ProtocolError as err:
            return self._rebased(err, base)
        except Exception as err:  # a checker bug: still an error value, but counted
            return self._fault(err, offset)
        if isinstance(claim, ProtocolError):
            return self._rebased(claim, base)
        return None if claim is None else base + claim

    def _body(self, cand: _Candidate[F]) -> F | ProtocolError:
        base = self._base
        try:
            result = self._spec.body(self._buf, cand.start - base, cand.end - base)
        except ProtocolError as err:
            return self._rebased(err, base)
        except Exception as err:
            return self._fault(err, cand.start)
        return self._rebased(result, base) if isinstance(result, ProtocolError) else result

    def _rebased(self, err: ProtocolError, base: int) -> ProtocolError:
        offset = None if err.offset is None else err.offset + base
        return ProtocolError(err.reason, offset=offset, protocol=err.protocol or self.protocol)

    def _fault(self, err: Exception, offset: int) -> ProtocolError:
        self.faults += 1
        return ProtocolError(
            f"decoder fault: {type(err).__name__}: {err}", offset=offset, protocol=self.protocol
        )

    def _skip_to(self, offset: int) -> None:
        if offset > self._front:
            self.skipped += offset - self._front
            self._front = offset

    def _first_valid(self) -> _Candidate[F] | None:
        """The earliest whole valid frame not yet reported (stale heap entries are dropped)."""
        heap = self._valid
        while heap and heap[0][0] < self._front:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def _compact(self) -> None:
        drop = self._front - self._base
        if drop > 0:
            del self._buf[:drop]
            self._base = self._front


def _offset(item: _Candidate[Any] | int) -> int:
    return item if isinstance(item, int) else item.start


__all__ = ["MAX_CANDIDATES", "START", "FrameSpec", "StreamFramer"]
