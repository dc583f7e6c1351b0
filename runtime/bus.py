"""In-process publish/subscribe and request/reply between the runtime and its apps.

Layer: runtime. MQTT-style topics (``meter/+/reading``, ``runtime/#``), bounded
per-subscriber queues with a declared overflow policy, retained last values and
request/reply with timeouts. The bus lives on one event loop: ``publish`` is
synchronous and never blocks, so it is safe from any coroutine or callback of that
loop (other threads use ``loop.call_soon_threadsafe``). It must not know about
apps, manifests, MQTT clients or the store; the app-scoped, capability-checked
view lives in ``runtime.container.context``.

Retained values: one a topic, thousands of them per-meter (``meter/<id>/relay``); a flat dict
of scalars is kept packed (``_Kept``: a shared key tuple and the values) and delivered as an
equal dict, any other payload as the object published.

Topics: levels separated by ``/``, no empty level, no NUL, no ``+``/``#`` when
publishing. Patterns: ``+`` is one whole level, ``#`` the whole last level and
also matches the parent (``a/#`` matches ``a``), as in MQTT.

Overflow, per subscriber:

* ``DROP_OLDEST``  (default) a full queue loses its oldest message (counted);
* ``DROP_NEWEST``  a full queue refuses the new message (counted);
* ``KEEP_LATEST_PER_TOPIC``  conflating: at most one pending message per topic,
  a newer value replaces the pending one in place (counted as ``conflated``); when
  ``maxsize`` distinct topics are pending the oldest topic is dropped (counted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import itertools
import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self

from hal.clock import Clock
from runtime.errors import BusError, RequestTimeout

Handler = Callable[[Any], Awaitable[Any] | Any]
"""A responder: takes the request payload, returns (or awaits) the reply payload."""

_INVALID_CHARS = ("\x00",)


class Overflow(enum.Enum):
    """What a subscriber's full queue does with one more message."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    KEEP_LATEST_PER_TOPIC = "keep_latest_per_topic"


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered message; ``ts`` is the clock's UTC epoch at publish time."""

    topic: str
    payload: Any
    ts: float
    retained: bool = False


def validate_topic(topic: str) -> tuple[str, ...]:
    """Check a concrete topic (for publish/request); return its levels or raise ``BusError``."""
    levels = _split(topic, what="topic")
    for level in levels:
        if "+" in level or "#" in level:
            raise BusError(f"topic {topic!r}: wildcards are not allowed in a published topic")
    return levels


def validate_pattern(pattern: str) -> tuple[str, ...]:
    """Check a subscription pattern; return its levels or raise ``BusError``."""
    levels = _split(pattern, what="pattern")
    for i, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and i != len(levels) - 1:
                raise BusError(f"pattern {pattern!r}: '#' must be the last level")
            continue
        if "+" in level or "#" in level:
            raise BusError(f"pattern {pattern!r}: a wildcard must be a whole level, not {level!r}")
    return levels


def _split(text: str, *, what: str) -> tuple[str, ...]:
    if not isinstance(text, str) or not text:
        raise BusError(f"{what} must be a non-empty string, not {text!r}")
    if any(c in text for c in _INVALID_CHARS):
        raise BusError(f"{what} {text!r}: contains NUL")
    levels = tuple(text.split("/"))
    if any(level == "" for level in levels):
        raise BusError(f"{what} {text!r}: empty level")
    return levels


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches ``pattern`` (both validated)."""
    return _match(validate_pattern(pattern), validate_topic(topic))


def pattern_covers(outer: str, inner: str) -> bool:
    """Whether every topic matched by pattern ``inner`` is also matched by ``outer``."""
    q = validate_pattern(outer)
    p = validate_pattern(inner)
    for i, ql in enumerate(q):
        if ql == "#":
            return True
        if i >= len(p):
            return False
        pl = p[i]
        if pl == "#":
            return False
        if ql == "+":
            continue
        if pl != ql:
            return False
    return len(p) == len(q)


def _match(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    for i, pl in enumerate(pattern):
        if pl == "#":
            return True
        if i >= len(topic):
            return False
        if pl != "+" and pl != topic[i]:
            return False
    return len(pattern) == len(topic)


def payload_to_json(obj: Any, *, path: str = "payload") -> Any:
    """Turn a bus payload into a JSON-able value (dict/list/str/int/float/bool/None).

    Dataclasses with ``to_json()`` use it; other dataclasses become dicts of their
    fields; enums their value; tuples lists. NaN/inf and non-string keys are
    refused with a ``BusError`` naming the offending path (``payload.values[3]``).
    """
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise BusError(f"{path}: {obj!r} is not representable in JSON")
        return obj
    if isinstance(obj, enum.Enum):
        return payload_to_json(obj.value, path=path)
    to_json = getattr(obj, "to_json", None)
    if callable(to_json):
        return payload_to_json(to_json(), path=path)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: payload_to_json(getattr(obj, f.name), path=f"{path}.{f.name}")
            for f in dataclasses.fields(obj)
        }
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise BusError(f"{path}: key {key!r} is not a string")
            out[key] = payload_to_json(value, path=f"{path}.{key}")
        return out
    if isinstance(obj, list | tuple):
        return [payload_to_json(v, path=f"{path}[{i}]") for i, v in enumerate(obj)]
    raise BusError(f"{path}: {type(obj).__name__} is not JSON-able (give it a to_json())")


def _check_payload(payload: Any) -> None:
    # A shallow check keeps publish cheap; payload_to_json does the deep one at the edges.
    if payload is None or isinstance(payload, bool | str | int | float | list | tuple | Mapping):
        return
    if callable(getattr(payload, "to_json", None)) or (
        dataclasses.is_dataclass(payload) and not isinstance(payload, type)
    ):
        return
    raise BusError(f"payload {type(payload).__name__} is not JSON-able (give it a to_json())")


@dataclass(slots=True)
class _SubStats:
    delivered: int = 0
    dropped: int = 0
    conflated: int = 0
    high_water: int = 0


class Subscription:
    """A subscriber's queue: an async iterator of ``Message`` and an async context manager.

    Registered on the bus as soon as ``Bus.subscribe`` returns (retained values are
    already queued); ``close()`` (or leaving the ``async with``) unregisters it,
    discards what is still pending and ends iteration at once.
    """

    def __init__(self, bus: Bus, pattern: str, *, maxsize: int, overflow: Overflow, name: str | None) -> None:
        self._bus = bus
        self.pattern = pattern
        self._levels = validate_pattern(pattern)
        self.maxsize = maxsize
        self.overflow = overflow
        self.name = name or pattern
        self._queue: deque[Message] = deque()
        self._latest: OrderedDict[str, Message] = OrderedDict()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.stats = _SubStats()

    @property
    def closed(self) -> bool:
        return self._closed

    def depth(self) -> int:
        """Messages waiting to be read."""
        return len(self._latest) if self.overflow is Overflow.KEEP_LATEST_PER_TOPIC else len(self._queue)

    def matches(self, levels: tuple[str, ...]) -> bool:
        return _match(self._levels, levels)

    def _put(self, msg: Message) -> None:
        if self._closed:
            return
        if self.overflow is Overflow.KEEP_LATEST_PER_TOPIC:
            if msg.topic in self._latest:
                self._latest[msg.topic] = msg  # replaced in place: keeps its turn
                self.stats.conflated += 1
            else:
                if len(self._latest) >= self.maxsize:
                    self._latest.popitem(last=False)
                    self.stats.dropped += 1
                self._latest[msg.topic] = msg
        elif len(self._queue) >= self.maxsize:
            self.stats.dropped += 1
            if self.overflow is Overflow.DROP_NEWEST:
                return
            self._queue.popleft()
            self._queue.append(msg)
        else:
            self._queue.append(msg)
        self.stats.high_water = max(self.stats.high_water, self.depth())
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Message | None:
        """The next pending message, or None if the queue is empty."""
        if self.overflow is Overflow.KEEP_LATEST_PER_TOPIC:
            if not self._latest:
                return None
            _, msg = self._latest.popitem(last=False)
        else:
            if not self._queue:
                return None
            msg = self._queue.popleft()
        self.stats.delivered += 1
        return msg

    async def get(self) -> Message:
        """Wait for the next message; raises ``BusError`` once the subscription is closed."""
        while True:
            msg = self.get_nowait()
            if msg is not None:
                return msg
            if self._closed:
                raise BusError(f"subscription {self.name!r} is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Unregister from the bus; a pending ``get``/iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._latest.clear()
        self._bus._unsubscribe(self)
        self._wake()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.get()
        except BusError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def statistics(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pattern": self.pattern,
            "overflow": self.overflow.value,
            "maxsize": self.maxsize,
            "delivered": self.stats.delivered,
            "dropped": self.stats.dropped,
            "conflated": self.stats.conflated,
            "depth": self.depth(),
            "high_water": self.stats.high_water,
        }


class Service:
    """A registered responder; a (sync or async) context manager that unregisters on exit."""

    def __init__(self, bus: Bus, pattern: str, handler: Handler) -> None:
        self._bus = bus
        self.pattern = pattern
        self.levels = validate_pattern(pattern)
        self.handler = handler
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._unserve(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: the value types a retained flat dict may hold to be kept packed (immutable: a copy is the same)
_SCALARS = frozenset({str, int, float, bool, type(None)})
#: a flat dict with at most this many keys shares its key tuple with the others of the same keys,
#: while the bus knows fewer than ``_SHARED_KEY_SETS`` key tuples (a bound, whatever is published)
_SHARED_KEYS_MAX = 16
_SHARED_KEY_SETS = 256


class _Kept(NamedTuple):
    """A topic's retained value. A flat dict of scalars (most per-device retained values:
    ``{"open": ..., "at": ..., "cause": ...}``) is kept as its key tuple, shared by every
    payload with the same keys, and its values -- ~0.13 kB less a topic than the message and
    its dict; what a subscriber gets is an equal dict, made when it is delivered."""

    ts: float
    payload: Any  # the payload, or a flat dict's keys
    values: tuple[Any, ...] | None  # a flat dict's values (None: ``payload`` is the payload)

    def message(self, topic: str) -> Message:
        payload = self.payload if self.values is None else dict(zip(self.payload, self.values, strict=True))
        return Message(topic, payload, self.ts, True)


@dataclass(slots=True)
class _BusStats:
    """Counters only: no set of the topics ever published (~8,500 per-meter topics held ~1 MB at
    2,400 meters for one diagnostic figure nobody read)."""

    published: int = 0
    requests_ok: int = 0
    requests_timeout: int = 0
    requests_error: int = 0
    requests_no_responder: int = 0


class Bus:
    """The in-process bus. One per terminal, handed to components; never a global."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._subs: list[Subscription] = []
        self._retained: dict[str, _Kept] = {}
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}  # flat dicts' shared key tuples
        self._services: list[Service] = []
        self._stats = _BusStats()
        self._ids = itertools.count(1)

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        """Queue ``payload`` for every matching subscriber; never blocks.

        With ``retain=True`` the message becomes the topic's retained value (``None``
        clears it, as an empty retained message does in MQTT).
        """
        levels = validate_topic(topic)
        _check_payload(payload)
        msg = Message(topic, payload, self._clock.now(), False)
        self._stats.published += 1
        if retain:
            if payload is None:
                self._retained.pop(topic, None)
            else:
                self._retained[topic] = self._keep(payload, msg.ts)
        for sub in list(self._subs):
            if sub.matches(levels):
                sub._put(msg)

    def subscribe(
        self,
        pattern: str,
        *,
        maxsize: int = 1000,
        overflow: Overflow = Overflow.DROP_OLDEST,
        name: str | None = None,
    ) -> Subscription:
        """Register a subscriber now; retained values that match are queued at once."""
        if maxsize < 1:
            raise BusError(f"subscription {pattern!r}: maxsize must be >= 1, not {maxsize}")
        sub = Subscription(self, pattern, maxsize=maxsize, overflow=overflow, name=name)
        if name is None:
            sub.name = f"{pattern}#{next(self._ids)}"
        self._subs.append(sub)
        for topic, kept in list(self._retained.items()):
            if sub.matches(tuple(topic.split("/"))):
                sub._put(kept.message(topic))
        return sub

    def _keep(self, payload: Any, ts: float) -> _Kept:
        """``payload`` as a topic's retained value (a flat dict of scalars packed: ``_Kept``)."""
        if type(payload) is not dict or not all(
            type(k) is str and type(v) in _SCALARS for k, v in payload.items()
        ):
            return _Kept(ts, payload, None)
        keys = tuple(payload)
        if len(keys) <= _SHARED_KEYS_MAX and (keys in self._keys or len(self._keys) < _SHARED_KEY_SETS):
            keys = self._keys.setdefault(keys, keys)
        return _Kept(ts, keys, tuple(payload.values()))

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def retained(self, topic: str) -> Message | None:
        """The retained message of ``topic``, if any."""
        kept = self._retained.get(topic)
        return None if kept is None else kept.message(topic)

    def serve(self, pattern: str, handler: Handler) -> Service:
        """Answer requests on topics matching ``pattern``; one responder per pattern."""
        service = Service(self, pattern, handler)
        if any(s.pattern == pattern for s in self._services):
            raise BusError(f"pattern {pattern!r} already has a responder")
        self._services.append(service)
        return service

    def _unserve(self, service: Service) -> None:
        if service in self._services:
            self._services.remove(service)

    def _responder(self, levels: tuple[str, ...]) -> Service | None:
        # Prefer the most specific pattern: an exact topic beats '+' beats '#'.
        best: Service | None = None
        best_rank: tuple[int, int] = (-1, -1)
        for s in self._services:
            if _match(s.levels, levels):
                rank = (sum(level not in ("+", "#") for level in s.levels), -int(s.levels[-1] == "#"))
                if rank > best_rank:
                    best, best_rank = s, rank
        return best

    async def request(self, topic: str, payload: Any, *, timeout: float) -> Any:  # noqa: ASYNC109 (timeout in clock seconds, part of the bus contract)
        """Ask the responder of ``topic`` and return its reply.

        Raises ``BusError("no responder ...")``, ``RequestTimeout`` after ``timeout``
        clock seconds, or ``BusError`` chained to the handler's exception. The handler
        runs in the requester's task, inside the requester's timeout.
        """
        levels = validate_topic(topic)
        _check_payload(payload)
        service = self._responder(levels)
        if service is None:
            self._stats.requests_no_responder += 1
            raise BusError(f"request {topic}: no responder")
        try:
            async with self._clock.timeout(timeout):
                result = service.handler(payload)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError as err:
            self._stats.requests_timeout += 1
            raise RequestTimeout(f"request {topic}: no reply within {timeout:g} s") from err
        except BusError as err:
            self._stats.requests_error += 1
            raise BusError(f"request {topic}: responder failed: {err}") from err
        except Exception as err:
            self._stats.requests_error += 1
            raise BusError(f"request {topic}: responder raised {type(err).__name__}: {err}") from err
        self._stats.requests_ok += 1
        return result

    def statistics(self) -> dict[str, Any]:
        """Counters for diagnostics: per subscriber, topics, retained, requests."""
        return {
            "published": self._stats.published,
            "retained": len(self._retained),
            "subscribers": [s.statistics() for s in self._subs],
            "services": [s.pattern for s in self._services],
            "requests": {
                "ok": self._stats.requests_ok,
                "timeouts": self._stats.requests_timeout,
                "errors": self._stats.requests_error,
                "no_responder": self._stats.requests_no_responder,
            },
        }


__all__ = [
    "Bus",
    "Handler",
    "Message",
    "Overflow",
    "Service",
    "Subscription",
    "pattern_covers",
    "payload_to_json",
    "topic_matches",
    "validate_pattern",
    "validate_topic",
]
