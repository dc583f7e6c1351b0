"""A virtual-time asyncio event loop: time jumps to the next timer whenever nothing is runnable.

Layer: sim. ``ttu sim --speed max`` runs the whole world (physics, virtual meters, virtual CCO,
terminal, broker, cloud stub) in one process on this loop; tests boot it the same way. Its
``time()`` is virtual: it starts at 0 and moves only when the loop has nothing to do, then
straight to the earliest scheduled timer. Every ``Clock`` built on the loop (``LoopClock``)
therefore runs on virtual time, and so does every ``asyncio.sleep``/``timeout`` the
terminal's code uses -- unchanged.

Three things the loop must get right so the world stays faithful:

* real sockets still flow: before jumping, the selector is polled with a zero timeout, so an
  in-process loopback MQTT exchange (embedded broker, terminal uplink, cloud stub) is delivered
  at the virtual instant it was sent. Only a loop with no timers at all waits for real I/O.
  I/O is taken only when nothing else can run (and in file-descriptor order), never between
  two ready callbacks, and time does not jump while a TCP socket of the loop has sent bytes its
  in-process peer has not received yet (``TCP_INFO`` of both ends): on a loaded machine the
  kernel may deliver a loopback packet late, and the loop waits for it instead of running ahead.
  So when the kernel delivers does not change what runs when, and runs stay deterministic.
  Timers due at the same instant fire in the order they were set (asyncio's heap alone does not
  keep that order, so how many other timers came and went -- e.g. one per MQTT packet read --
  could reorder two meter reads scheduled for the same second).
* executor jobs (the sqlite store and the cloud database run off-loop on worker threads on a
  real loop) finish before anything else happens: ``run_in_executor`` runs the job in place on
  the loop's thread, so the result is delivered in a fixed order and never overtakes a virtual
  timer. That keeps runs deterministic; a job's wall time costs wall time, not virtual time.
* MQTT keep-alive follows the loop: paho (under aiomqtt) measures keep-alive on its own clock,
  ``paho.mqtt.client.time_func``. ``virtual_paho_time`` points it at the loop, so clients ping
  every keep-alive of *virtual* time, as the broker (on this loop) expects.

Must not: sleep, run callbacks out of asyncio's order, or know anything about the simulator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import os
import selectors
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: a loop with no timer at all waits this long for real I/O per poll (a wake-up from another
#: thread or a signal arrives at once through the loop's self-pipe)
IDLE_POLL_S = 1.0
#: while bytes are in flight on a loopback socket, the loop polls this often (wall seconds)
IN_FLIGHT_POLL_S = 0.0005


class _VirtualSelector(selectors.BaseSelector):
    """The loop's selector, with ``select(timeout)`` that polls instead of waiting."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop
        self._tcp: dict[int, _Tcp | None] = {}  # fd -> its TCP socket (None: not a TCP socket)
        self._pairs: list[tuple[_Tcp, _Tcp]] | None = None  # both ends in the loop; None: to find

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        self._forget(key.fd)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self._forget(key.fd)
        return key

    def _forget(self, fd: int) -> None:
        self._pairs = None  # the registrations changed: pair the sockets up again when asked
        tcp = self._tcp.pop(fd, None)
        if tcp is not None:
            tcp.sock.close()

    def _in_flight(self) -> bool:
        """True while bytes one of the loop's TCP sockets sent have not reached its peer, when that
        peer is the loop's too (the in-process broker, uplink and cloud stub)."""
        if self._pairs is None:
            self._pairs = self._pair_up()
        seen: dict[int, tuple[int, int, int]] = {}
        for tcp, peer in self._pairs:
            sent, unsent, _ = seen.get(id(tcp)) or seen.setdefault(id(tcp), tcp.counters())
            if unsent > 0:
                return True
            received = (seen.get(id(peer)) or seen.setdefault(id(peer), peer.counters()))[2]
            if sent > received:
                return True
        return False

    def _pair_up(self) -> list[tuple[_Tcp, _Tcp]]:
        """(socket, its peer) for every TCP connection of which the loop holds both ends."""
        sockets: dict[tuple[object, object], _Tcp] = {}
        for key in self._real.get_map().values():
            if key.fd not in self._tcp:
                self._tcp[key.fd] = _Tcp.of(key.fd)
            tcp = self._tcp[key.fd]
            if tcp is not None:
                sockets[tcp.ends] = tcp
        pairs = []
        for (here, there), tcp in sockets.items():
            peer = sockets.get((there, here))
            if peer is not None:
                pairs.append((tcp, peer))
        return pairs

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout == 0:
            return []  # callbacks are ready: they run first, I/O waits until the loop is idle
        ready = self._real.select(0)
        while not ready and self._in_flight():  # the kernel is still delivering: wait for it
            self._loop.delivery_waits += 1
            ready = self._real.select(IN_FLIGHT_POLL_S)
        if not ready and timeout is None:  # no timer: only real I/O (a thread, a signal) can wake us
            ready = self._real.select(IDLE_POLL_S)
        if ready:
            return sorted(ready, key=lambda event: event[0].fd)
        if timeout is not None:
            self._loop._jump()
        return []

    def close(self) -> None:
        for fd in list(self._tcp):
            self._forget(fd)
        self._real.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Any:
        return self._real.get_map()


class _Tcp:
    """A TCP socket of the loop, seen through a duplicate of its descriptor (``TCP_INFO``)."""

    # struct tcp_info (linux/tcp.h): tcpi_bytes_received u64 @128, tcpi_notsent_bytes u32 @144,
    # tcpi_bytes_sent u64 @200, tcpi_bytes_retrans u64 @208 (Linux >= 4.19): one unpack
    _SIZE = 216
    _FIELDS = struct.Struct("=128xQ8xI52xQQ")

    def __init__(self, sock: socket.socket, ends: tuple[object, object]) -> None:
        self.sock = sock
        self.ends = ends

    @classmethod
    def of(cls, fd: int) -> _Tcp | None:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                return None
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            return None
        try:
            if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                raise OSError("not TCP")
            return cls(sock, (sock.getsockname(), sock.getpeername()))
        except OSError:  # not TCP, or listening (no peer)
            sock.close()
            return None

    def counters(self) -> tuple[int, int, int]:
        """(bytes sent once, bytes not yet sent, bytes received)."""
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, self._SIZE)
        except OSError:
            return 0, 0, 0
        if len(info) < self._SIZE:
            return 0, 0, 0
        received, unsent, sent, retrans = self._FIELDS.unpack(info)
        return sent - retrans, unsent, received


class _OrderedTimer(asyncio.TimerHandle):
    """A timer that sorts after every earlier-set timer due at the same time."""

    __slots__ = ("_order",)

    def __init__(self, order: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._order = order

    def __lt__(self, other: object) -> bool:
        # every timer of the loop is one of these (``call_at`` makes them all): the heap compares
        # two of them ~10 times per timer, so no isinstance and no tuples here
        when: float = other._when  # type: ignore[attr-defined]
        return self._when < when or (self._when == when and self._order < other._order)  # type: ignore[attr-defined]


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``asyncio.Runner(loop_factory=VirtualTimeLoop)``: an event loop on virtual time.

    ``jumps`` counts the times time moved; ``delivery_waits`` the polls spent waiting for the
    kernel to deliver loopback bytes (a client that leaves Nagle's algorithm on makes many: see
    ``runtime.uplink.send_at_once``); ``wall_started`` is ``time.perf_counter()`` at
    creation, for the achieved speed (virtual seconds per wall second).
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        self._timers = 0
        self.jumps = 0
        self.delivery_waits = 0
        self.executor_jobs = 0
        self.wall_started = time.perf_counter()
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self._now

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        """asyncio's ``call_at`` with timers kept in the order they were set (see the docstring)."""
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()  # type: ignore[attr-defined]
        self._timers += 1
        timer = _OrderedTimer(self._timers, when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True
        return timer

    def _jump(self) -> None:
        """Move time to the earliest live timer (asyncio pops cancelled ones before polling)."""
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if scheduled:
            when = scheduled[0].when()
            if when > self._now:
                self._now = when
                self.jumps += 1

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run ``func`` here and now, on the loop's thread: the result is ready before the loop runs
        anything else, at the same virtual instant. (Handing it to ``executor`` and waiting, as
        before, gave the same order at the cost of two thread switches per job -- on a loaded
        machine, milliseconds of wall time each. The loop thread is the only thread that runs any
        job, so a job's thread-bound state -- a sqlite connection -- stays on one thread.)"""
        self._check_closed()  # type: ignore[attr-defined]
        self.executor_jobs += 1
        future: asyncio.Future[T] = self.create_future()
        try:
            result = func(*args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except concurrent.futures.CancelledError:
            future.cancel()
        except BaseException as err:  # delivered to the awaiting task, as asyncio would
            future.set_exception(err)
        else:
            future.set_result(result)
        return future

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.wall_started


@contextlib.contextmanager
def virtual_paho_time(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Let paho's keep-alive bookkeeping read ``loop.time()`` while inside (see the docstring)."""
    import paho.mqtt.client as paho

    saved = paho.time_func
    paho.time_func = loop.time
    try:
        yield
    finally:
        paho.time_func = saved


def run_virtual(main: Callable[[], Any]) -> Any:
    """``asyncio.run(main())`` on a ``VirtualTimeLoop`` (with paho on its time)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner, virtual_paho_time(runner.get_loop()):
        return runner.run(main())


def running_virtual_loop() -> VirtualTimeLoop | None:
    """The running loop if it is a ``VirtualTimeLoop``, else None."""
    loop = asyncio.get_running_loop()
    return loop if isinstance(loop, VirtualTimeLoop) else None


__all__ = ["IDLE_POLL_S", "VirtualTimeLoop", "run_virtual", "running_virtual_loop", "virtual_paho_time"]
