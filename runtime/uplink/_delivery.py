"""What the uplink sends next, and what the cloud's acks and nacks mean: the delivery state, no I/O.

Layer: runtime (uplink internals). Pure bookkeeping over sequence numbers; the uplink reads rows
from the store, publishes, and feeds acks back. It must not touch MQTT, the store or the clock
(times are passed in, in loop seconds).

Per stream: ``acked`` (the cloud stored everything up to it: those rows are delivered), ``sent``
(published in this connection, ``>= acked``), ``last`` (the newest row in the outbox) and the
batches in flight. The next batch is always taken from the most urgent stream that has rows
past ``sent`` and room in its window (``window_bytes`` and ``window`` batches in flight), so an
urgent message never waits behind a backlog of bulk ones, and small urgent batches do not wait
for acks of the ones before them. A stream is rewound to ``acked`` (its unacknowledged rows
are sent again; the cloud de-duplicates on the key) when

* the connection is new (the broker may have lost what was in flight),
* the oldest batch in flight got no ack within ``ack_timeout_s``,
* an ack shows a gap (the cloud ``seen`` a later seq than its contiguous ``acks``, and nothing in
  flight starts right after ``acks``, or the ack answers a batch sent after an unacknowledged one),
* the cloud nacked a batch: ``too_large`` halves the batch size for that range (down to one
  message; a single message it still refuses leaves the stream *blocked*, retried every
  ``ack_timeout_s`` and reported); any other code retries after ``ack_timeout_s``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from protocols.cloud import NACK_TOO_LARGE, Ack, Nack, StreamPriority


@dataclass(slots=True)
class Flight:
    first: int
    last: int
    at: float  # loop time it was published
    size: int = 0  # bytes


@dataclass(slots=True)
class StreamState:
    name: str
    priority: StreamPriority
    acked: int = 0
    sent: int = 0
    last: int = 0
    inflight: deque[Flight] = field(default_factory=deque)
    split_limit: int | None = None  # messages per batch while a too-large range is re-sent
    split_until: int = 0
    not_before: float = 0.0  # after a nack: no batch before this loop time
    blocked: str | None = None  # a single message the cloud refuses: why
    turn: int = 0  # when it last had a batch sent: equal priorities take turns

    @property
    def inflight_bytes(self) -> int:
        return sum(f.size for f in self.inflight)

    @property
    def backlog(self) -> int:
        """Rows in the outbox the cloud has not acknowledged."""
        return self.last - self.acked

    def rewind(self) -> None:
        self.sent = self.acked
        self.inflight.clear()


@dataclass(frozen=True, slots=True)
class NextBatch:
    stream: str
    after: int  # rows with seq > after
    max_messages: int


class Delivery:
    """The delivery state of every stream of one terminal."""

    def __init__(
        self,
        *,
        max_messages: int,
        window_bytes: int = 1 << 20,
        window: int = 64,
        ack_timeout_s: float = 30.0,
        priorities: dict[str, StreamPriority] | None = None,
    ) -> None:
        if max_messages < 1 or window < 1 or window_bytes < 1 or ack_timeout_s <= 0:
            raise ValueError("max_messages, window, window_bytes and ack_timeout_s must be positive")
        self.max_messages = max_messages
        self.window = window
        self.window_bytes = window_bytes
        self.ack_timeout_s = ack_timeout_s
        self._priorities = dict(priorities or {})
        self.streams: dict[str, StreamState] = {}
        self._turns = 0
        self.resends = 0  # rewinds (timeouts, gaps, nacks, reconnects with rows in flight)
        self.nacks = 0
        self.acks = 0

    # -- the streams ----------------------------------------------------------------------------

    def declare(self, name: str, priority: StreamPriority) -> None:
        """Set how urgent ``name`` is (before or after its first row)."""
        self._priorities[name] = priority
        if name in self.streams:
            self.streams[name].priority = priority

    def priority(self, name: str) -> StreamPriority:
        return self._priorities.get(name, StreamPriority.NORMAL)

    def stream(self, name: str) -> StreamState:
        state = self.streams.get(name)
        if state is None:
            state = self.streams[name] = StreamState(name, self.priority(name))
        return state

    def restore(self, name: str, *, acked: int, last: int) -> None:
        """The stream as the store holds it at start: rows ``acked+1 .. last`` are undelivered."""
        state = self.stream(name)
        state.acked = state.sent = acked
        state.last = max(last, acked)

    def appended(self, name: str, seq: int) -> None:
        state = self.stream(name)
        state.last = max(state.last, seq)

    def backlog(self) -> dict[str, int]:
        return {s.name: s.backlog for s in self.streams.values() if s.backlog > 0}

    # -- sending --------------------------------------------------------------------------------

    def next_batch(self, now: float) -> NextBatch | None:
        """The most urgent stream's next batch (streams of equal priority take turns), or None
        (nothing to send, or every window full)."""
        best: StreamState | None = None
        for state in self.streams.values():
            if state.last <= state.sent or now < state.not_before or self._window_full(state):
                continue
            if best is None or (state.priority, state.turn) < (best.priority, best.turn):
                best = state
        if best is None:
            return None
        self._turns += 1
        best.turn = self._turns
        limit = self.max_messages
        if best.split_limit is not None:
            if best.sent >= best.split_until:
                best.split_limit = None
            else:
                limit = min(limit, best.split_limit, best.split_until - best.sent)
        return NextBatch(best.name, best.sent, limit)

    def _window_full(self, state: StreamState) -> bool:
        return len(state.inflight) >= self.window or state.inflight_bytes >= self.window_bytes

    def sent(self, name: str, first: int, last: int, now: float, size: int = 0) -> None:
        state = self.stream(name)
        state.sent = max(state.sent, last)
        state.inflight.append(Flight(first, last, now, size))

    def reconnected(self) -> None:
        """A new connection: whatever was in flight may be lost; send it all again."""
        for state in self.streams.values():
            if state.inflight or state.sent > state.acked:
                self.resends += 1
            state.rewind()
            state.not_before = 0.0

    # -- the cloud's answers --------------------------------------------------------------------

    def advances(self, ack: Ack) -> dict[str, int]:
        """The streams whose ``acked`` ``ack`` moves, and where to (to mark the rows delivered first)."""
        out: dict[str, int] = {}
        for name, seq in ack.acks.items():
            state = self.streams.get(name)
            if state is not None and min(seq, state.last) > state.acked:
                out[name] = min(seq, state.last)
        return out

    def on_ack(self, ack: Ack, now: float) -> dict[str, int]:
        """Apply an ack; return the streams whose ``acked`` moved (to mark rows delivered)."""
        self.acks += 1
        moved: dict[str, int] = {}
        for name, seq in ack.acks.items():
            state = self.streams.get(name)
            if state is None:
                continue
            seq = min(seq, state.last)  # never beyond what we have (a confused or old cloud)
            if seq > state.acked:
                state.acked = seq
                state.sent = max(state.sent, seq)
                state.blocked = None
                while state.inflight and state.inflight[0].last <= seq:
                    state.inflight.popleft()
                moved[name] = seq
            seen = ack.seen.get(name, 0)
            covered = bool(state.inflight) and state.inflight[0].first <= state.acked + 1
            if (
                seen > state.acked
                and state.sent > state.acked
                and (not covered or self._overtaken(state, ack))
            ):
                self.resends += 1  # a gap the cloud cannot fill by waiting
                state.rewind()
        for nack in ack.nacks:
            self._on_nack(nack, now)
        return moved

    @staticmethod
    def _overtaken(state: StreamState, ack: Ack) -> bool:
        """The ack answers a batch sent after one still unacknowledged: that one was lost (one
        connection, one topic: MQTT delivers in order)."""
        if ack.batch is None or ack.batch[0] != state.name:
            return False
        _, first, last = ack.batch
        for i, flight in enumerate(state.inflight):
            if (flight.first, flight.last) == (first, last):
                return any(f.last > state.acked for f in list(state.inflight)[:i])
        return False

    def _on_nack(self, nack: Nack, now: float) -> None:
        state = self.streams.get(nack.stream)
        if state is None:
            return
        self.nacks += 1
        first = nack.first if nack.first is not None else state.acked + 1
        last = nack.last if nack.last is not None else state.sent
        if last <= state.acked:
            return  # already acknowledged meanwhile
        self.resends += 1
        state.rewind()
        if nack.code == NACK_TOO_LARGE:
            count = max(1, last - first + 1)
            if count == 1:
                state.blocked = f"seq {first}: {nack.reason}"
                state.not_before = now + self.ack_timeout_s
            else:
                state.split_limit = max(1, count // 2)
                state.split_until = max(state.split_until, last)
        else:
            state.not_before = now + self.ack_timeout_s

    def expire(self, now: float) -> list[str]:
        """Rewind the streams whose oldest batch in flight waited ``ack_timeout_s``; their names."""
        expired = []
        for state in self.streams.values():
            if state.inflight and now - state.inflight[0].at >= self.ack_timeout_s:
                self.resends += 1
                state.rewind()
                expired.append(state.name)
        return expired

    def next_deadline(self) -> float | None:
        """The loop time of the next ack timeout or nack retry, if any."""
        times = [s.inflight[0].at + self.ack_timeout_s for s in self.streams.values() if s.inflight]
        times += [s.not_before for s in self.streams.values() if s.not_before and s.last > s.sent]
        return min(times) if times else None

    def blocked(self) -> dict[str, str]:
        return {s.name: s.blocked for s in self.streams.values() if s.blocked}


__all__ = ["Delivery", "Flight", "NextBatch", "StreamState"]
