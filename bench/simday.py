"""Benchmark: simulated days of the whole station area on virtual time (``ttu sim --speed max``).

Not a test. Runs the default station area (or ``--hplc-meters 2000`` and more) with every app
under apps/ enabled, on the virtual-time loop, and prints:

* wall time per simulated day and the achieved speed (simulated s per wall s);
* reads (terminal transactions: RS-485 + HPLC) per wall second;
* CPU per 1000 reads, split terminal side / simulator side / the rest (broker, cloud stub, asyncio):
  a sampling profiler (a thread looks at the loop thread's stack every ``SAMPLE_S``) files each
  sample under the innermost frame of the repository that decides it -- runtime/, apps/, hal/
  (terminal) or sim/ (simulator); protocols/ and the libraries go to whoever called them;
* peak RSS of the process (world + terminal + broker + cloud stub together) and its growth per
  simulated day, day by day (sampled on the virtual clock every simulated minute; flat memory means
  ~0 after the first day; a run shorter than two days gives the second half's growth per day);
* the terminal's own memory, estimated apart from the world's (``MemoryWatch``): the heap its
  ``Terminal`` object holds (reachability, at every simulated day's end and at the end) + the RSS
  of a fresh interpreter that imports what the terminal side of the run loaded (its modules of
  runtime/, apps/, hal/, protocols/ and every library terminal code asked for during the run:
  ``bench/_terminal_imports.py``) + its store's sqlite page cache; with ``--heap`` also the live
  heap filed by the code that allocated it (tracemalloc: terminal, simulator, broker, cloud
  stub), which costs ~10-25x the CPU: the CPU figures of a ``--heap`` run are not the terminal's cost;
* readings sent / at the cloud / queued / lost, 15-min curve completeness at the cloud;
* the ratio of the wall time per simulated day to that of a ``--speed 60`` run over real ptys
  (``--pty-minutes`` of it, the ``make sim`` time model), measured in the same run;
* the largest upward message of every stream (and message type) against the uplink's limit
  (``protocols.cloud.MAX_MESSAGE_BYTES``): a stream whose result grows with the station area must
  page it (``--hplc-meters 2000`` is the case that once killed the terminal at start).

Usage: .venv/bin/python -P bench/simday.py [--days 1] [--hplc-meters N] [--pty-minutes 5] [--apps acquisition]
       [--heap]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import gc
import itertools
import logging
import math
import resource
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
import types
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._terminal_imports import TerminalImports, baseline_kb, box_environment  # noqa: E402
from protocols.cloud import MAX_MESSAGE_BYTES, json_size  # noqa: E402
from runtime.store import PAGE_CACHE_KIB, Store  # noqa: E402
from sim.harness import DEFAULT_START  # noqa: E402
from sim.physics import DEFAULT_NETWORK  # noqa: E402
from sim.runner import PROFILES, VIRTUAL_TICK_S, SimOptions, SimRun, run_for, sim_board  # noqa: E402
from sim.vloop import run_virtual  # noqa: E402

SAMPLE_S = 0.005  # the sampler takes the GIL each time: every 2 ms cost the loop thread a few %
ROUND_S = 3600.0  # the acquisition app's module-led round (route_round_s)
FEEDER_CUSTOMERS = 55  # the IEEE European LV feeder
SIDES = {"runtime": "terminal", "apps": "terminal", "hal": "terminal", "sim": "simulator"}
#: at the bottom of every stack (they run the loop): they decide nothing
DRIVERS = {"sim/vloop.py", "sim/runner.py", "sim/harness.py"}
DAY_S = 86400.0
#: frames kept per allocation (--heap): enough for most allocations to reach the repository
#: frame that made them (a library or two sit below it); 32 costs ~25x the CPU, 12 ~20x, 4 ~8x
HEAP_FRAMES = 12
#: the bound of the page cache of the terminal store's one connection (PRAGMA cache_size, KiB)
SQLITE_CACHE_BYTES = PAGE_CACHE_KIB * 1024
#: the heap's sides (``_heap_side``), in print order
HEAP_SIDES = ("terminal", "simulator", "broker", "cloud stub", "other", "unattributed")


class Sampler:
    """Samples the loop thread's stack: which side of the world is the CPU working for."""

    def __init__(self, thread_id: int) -> None:
        self._thread = thread_id
        self._stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self._worker = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._worker.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            # no frame is held between samples: a frame kept alive keeps its locals alive, and a
            # memoryview among them would stop the loop thread's bytearray from being resized
            self.counts[_side(sys._current_frames().get(self._thread))] += 1

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values()) or 1
        return {side: self.counts[side] / total for side in ("terminal", "simulator", "other", "idle")}


def _side(frame: FrameType | None) -> str:
    try:
        return _side_of(frame)
    finally:
        del frame


def _side_of(frame: FrameType | None) -> str:
    if frame is None:
        return "idle"
    innermost = frame.f_code.co_filename
    if innermost.endswith("selectors.py") and frame.f_code.co_name == "select":
        return "idle"
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(str(ROOT)) and "/.venv/" not in path:
            rel = Path(path).relative_to(ROOT)
            if rel.as_posix() in DRIVERS:
                return "other"  # broker, cloud stub, asyncio itself
            top = rel.parts[0]
            if top in SIDES:
                return SIDES[top]
        frame = frame.f_back
    return "other"


class MemoryWatch:
    """RSS by simulated time, and what the terminal holds at every simulated day's end and at the end.

    ``tick`` runs on the loop every simulated minute (``run_for``'s ``on_tick``). RSS is read
    from /proc. The terminal's heap is measured twice over, two ways that fail differently:

    * held (always; ``terminal_held``): the objects reachable from the running ``Terminal``
      object, by ``gc.get_referents``, summed with ``sys.getsizeof``, the walk stopping at code,
      classes, modules, the event loop and any object of the simulator (a class of sim/ or
      amqtt): what the terminal keeps alive, whoever allocated it. It misses memory that
      ``getsizeof`` does not see (allocator slack, sqlite's own pages: added apart) and objects
      only the loop holds (a callback scheduled but held by nobody else);
    * allocated (``heap``, tracemalloc: ~10-25x the run's CPU, for short runs): every allocation
      from the start with its last ``frames`` frames; the live ones are filed by ``_heap_side``:
      the innermost frame of the repository that made the allocation decides -- runtime/, apps/,
      hal/ are the terminal, sim/ the simulator (sim/broker.py and amqtt the broker, sim/cloud/
      the cloud stub); protocols/ and the libraries go to whoever called them. An allocation with
      no repository frame in its last frames (module code imported during the run, asyncio's
      buffers) is "unattributed", shown by library.
    """

    def __init__(self, duration_s: float, *, heap: bool, frames: int = HEAP_FRAMES) -> None:
        self.duration_s = duration_s
        self.heap = heap
        self.frames = frames
        self.rss: list[tuple[float, int]] = []  # (simulated s since the start, RSS kB)
        self.cpu: list[tuple[float, float]] = []  # (simulated s since the start, process CPU s)
        self.heaps: list[HeapFigures] = []
        self.held: list[Held] = []
        self._next_heap = min(DAY_S, duration_s)

    def __enter__(self) -> MemoryWatch:
        if self.heap:
            tracemalloc.start(self.frames)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.heap:
            tracemalloc.stop()

    def tick(self, run: SimRun) -> None:
        t = run.clock.monotonic() - run.started_monotonic
        self.rss.append((t, _rss_kb()))
        self.cpu.append((t, time.process_time()))
        if t >= self._next_heap - 1e-6:
            self.held.append(terminal_held(run, t))
            if self.heap:
                self.heaps.append(heap_figures(t))
            self._next_heap = min(self._next_heap + DAY_S, self.duration_s)
            if t >= self.duration_s - 1e-6:
                self._next_heap = math.inf

    def rss_at(self, t: float) -> int:
        """RSS (kB) at the last sample at or before simulated second ``t`` (the first after, if none)."""
        before = [kb for s, kb in self.rss if s <= t + 1e-6]
        return before[-1] if before else self.rss[0][1]

    def daily_growth_mb(self) -> list[float]:
        """RSS growth of each whole simulated day (the first from the first sample)."""
        if not self.rss:
            return []
        days = int((self.rss[-1][0] + 1e-6) // DAY_S)
        marks = [self.rss[0][0]] + [d * DAY_S for d in range(1, days + 1)]
        return [(self.rss_at(b) - self.rss_at(a)) / 1024 for a, b in itertools.pairwise(marks)]

    def daily_cpu_s(self) -> list[float]:
        """CPU seconds of the whole process spent on each whole simulated day (the terminal's
        daily walk of what it holds included; the start-up before the first tick not)."""
        days = int((self.cpu[-1][0] + 1e-6) // DAY_S) if self.cpu else 0
        marks = [self.cpu[0][0]] + [d * DAY_S for d in range(1, days + 1)] if days else []

        def at(t: float) -> float:
            return [c for s, c in self.cpu if s <= t + 1e-6][-1]

        return [at(b) - at(a) for a, b in itertools.pairwise(marks)]

    def growth_per_day_mb(self) -> float:
        """RSS growth per simulated day after the first day (the first holds the start-up), or over
        the second half of a run shorter than two days."""
        if len(self.rss) < 2:
            return 0.0
        end = self.rss[-1][0]
        since = DAY_S if end >= 2 * DAY_S - 1e-6 else end / 2
        return (self.rss_at(end) - self.rss_at(since)) / 1024 * DAY_S / max(end - since, 1e-9)


@dataclasses.dataclass(frozen=True)
class Held:
    """What the terminal keeps alive at one instant (``terminal_held``)."""

    at_s: float  # simulated seconds since the start
    bytes: int
    objects: int
    by_type: list[tuple[str, int]]  # the largest types, bytes
    by_owner: list[tuple[str, int]]  # the largest owners (packages), bytes


#: the walk from the terminal does not go through these: shared code and machinery, not its heap
_NOT_HELD = (
    type, types.ModuleType, types.CodeType, types.FrameType, types.TracebackType,
    types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType, asyncio.AbstractEventLoop,
    logging.Logger, logging.Manager, threading.Thread,
)  # fmt: skip
_OTHER_SIDES = ("sim.", "amqtt.", "bench.", "__main__")


def terminal_held(run: SimRun, at_s: float) -> Held:
    """The bytes of the objects the running terminal keeps alive (see ``MemoryWatch``), by type and
    by owner: the package (``apps.lineloss``, ``runtime.uplink``, ``hal.meters``...) of the nearest
    object of the repository on the path the walk first reached it by."""
    gc.collect()
    seen: set[int] = {id(run), id(run.clock)}
    stack: list[tuple[object, str]] = [(run.terminal, "runtime.terminal")]
    total = count = 0
    by_type: Counter[str] = Counter()
    by_owner: Counter[str] = Counter()
    while stack:
        obj, owner = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj)
        module = kind.__module__
        if isinstance(obj, _NOT_HELD) or module.startswith(_OTHER_SIDES):
            continue
        if module.startswith(_TERMINAL_PACKAGES):
            owner = ".".join(module.split(".")[:2])
        size = sys.getsizeof(obj)
        total += size
        count += 1
        by_type[kind.__qualname__] += size
        by_owner[owner] += size
        if isinstance(obj, types.FunctionType):  # its closure and defaults, not its module
            refs: list[object] = [_cell(c) for c in obj.__closure__ or ()]
            refs += [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
        else:
            refs = gc.get_referents(obj)
        stack.extend((r, owner) for r in refs)
    return Held(at_s, total, count, by_type.most_common(8), by_owner.most_common(10))


_TERMINAL_PACKAGES = ("runtime.", "apps.", "hal.", "protocols.")


def _cell(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


@dataclasses.dataclass(frozen=True)
class HeapFigures:
    """The live heap at one instant, by side (bytes), with the terminal's largest sites."""

    at_s: float  # simulated seconds since the start
    sides: dict[str, int]
    unattributed: dict[str, int]  # by library (innermost frame)
    terminal_sites: list[tuple[str, int]]  # (file:line of the terminal's deciding frame, bytes)
    tracemalloc_bytes: int  # tracemalloc's own memory (in the RSS, not in the heap)


def heap_figures(at_s: float) -> HeapFigures:
    """File every live traced allocation under its side (``_heap_side``)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    sides: Counter[str] = Counter()
    unattributed: Counter[str] = Counter()
    sites: Counter[str] = Counter()
    for stat in snapshot.statistics("traceback"):
        side, where = _heap_side(stat.traceback)
        sides[side] += stat.size
        if side == "unattributed":
            unattributed[where] += stat.size
        elif side == "terminal":
            sites[where] += stat.size
    del snapshot
    return HeapFigures(
        at_s, {k: sides[k] for k in HEAP_SIDES}, dict(unattributed.most_common(4)), sites.most_common(8),
        tracemalloc.get_tracemalloc_memory(),
    )  # fmt: skip


def _heap_side(traceback: tracemalloc.Traceback) -> tuple[str, str]:
    """(side, where): the innermost repository frame that decides, as ``_side_of`` does for CPU."""
    root = str(ROOT) + "/"
    for frame in reversed(traceback):  # the newest frame first
        path = frame.filename
        if "/site-packages/amqtt/" in path:
            return "broker", "amqtt"
        if not path.startswith(root) or "/.venv/" in path:
            continue
        rel = path[len(root) :]
        where = f"{rel}:{frame.lineno}"
        top = rel.split("/", 1)[0]
        if rel in DRIVERS or top == "bench":
            return "other", where
        if rel == "sim/broker.py":
            return "broker", where
        if rel.startswith("sim/cloud/"):
            return "cloud stub", where
        if top in SIDES:
            return SIDES[top], where
    innermost = traceback[-1].filename if len(traceback) else "?"
    return "unattributed", _library(innermost)


def _library(path: str) -> str:
    """A short name for the package or stdlib module of ``path``."""
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0]
    parts = Path(path).parts
    if "asyncio" in parts:
        return "asyncio"
    return Path(path).stem


class MessageSizes:
    """The largest message the terminal queued per (stream, type), measured as the outbox does."""

    def __init__(self) -> None:
        self.largest: dict[tuple[str, str], int] = {}
        self.count: Counter[tuple[str, str]] = Counter()
        self._original = Store.outbox_append_many  # every append goes through it

    def __enter__(self) -> MessageSizes:
        original, largest, count = self._original, self.largest, self.count

        async def measured(store: Store, stream: str, bodies: Any, **kw: Any) -> Any:
            for body in bodies:
                kind = body.get("type") if isinstance(body.get("type"), str) else ""
                key = (stream, str(kind))
                largest[key] = max(largest.get(key, 0), json_size(body))
                count[key] += 1
            return await original(store, stream, bodies, **kw)

        Store.outbox_append_many = measured  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Store.outbox_append_many = self._original  # type: ignore[method-assign]


def _rss_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _every_app(board_apps: set[str]) -> dict[str, dict[str, Any]]:
    """Every app folder with a manifest, enabled (the board's config kept for those it lists)."""
    return {
        p.parent.name: {}
        for p in sorted((ROOT / "apps").glob("*/app.toml"))
        if p.parent.name not in board_apps
    }


def _options(args: argparse.Namespace, workdir: Path, *, speed: float, duration_s: float) -> SimOptions:
    board = sim_board(ROOT / "board.toml")
    hplc = args.hplc_meters if args.hplc_meters is not None else (board.sim.hplc_meters if board.sim else 0)
    scale = args.customers_scale or max(4, math.ceil((hplc + args.rs485_customers) / FEEDER_CUSTOMERS))
    app_config: dict[str, dict[str, Any]] = {k: dict(v) for k, v in PROFILES[args.profile].items()}
    if args.all_apps:
        app_config.update(_every_app(set(board.apps)))
    if args.apps:  # only these (the per-transaction cost of acquisition alone: --apps acquisition)
        wanted = set(args.apps.split(","))
        apps = {k: dataclasses.replace(a, enabled=k in wanted) for k, a in board.apps.items()}
        board = dataclasses.replace(board, apps=apps)
        app_config = {k: v for k, v in app_config.items() if k in wanted}
    return SimOptions(
        board=board, workdir=workdir, speed=speed, meters_per_bus=1, seed=args.seed, start=args.start,
        duration_s=duration_s, network=DEFAULT_NETWORK, scenario=args.scenario, customers_scale=scale,
        hplc_meters=hplc, app_config=app_config,
    )  # fmt: skip


def _store_bytes(workdir: Path) -> int:
    """Bytes of the terminal's store (sqlite file with its WAL) at the end of the run."""
    return sum(p.stat().st_size for p in workdir.glob("ttu.sqlite*") if p.is_file())


@dataclasses.dataclass(frozen=True)
class Curve:
    """The 15-min energy points of the customer meters at the cloud, against those expected."""

    got: int  # at the cloud (good or caught up), of the points the meters hold
    expected: int  # every meter of the archive x quarter-hour, minus ``off``
    off: int  # quarter-hours a meter was without supply (truth events.csv): it records no point
    latest_s: float  # the longest a point took from its quarter-hour to the cloud

    def percent(self) -> float:
        return 100.0 * self.got / max(self.expected, 1)


def _off_points(truth: Path, start: float, end: float) -> set[tuple[str, int]]:
    """(meter, quarter-hour) where the simulator's truth has the meter without supply: a meter
    off at the boundary (or coming back on it) records no point there, so none can be read."""
    path = truth / "events.csv"
    if not path.exists():
        return set()
    off: set[tuple[str, int]] = set()
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] != "outage":
                continue
            t0 = datetime.fromisoformat(row["start"]).timestamp()
            t1 = min(datetime.fromisoformat(row["end"]).timestamp(), end) if row["end"] else end
            slots = range(int(max(t0, start) // 900 * 900), int(t1) + 1, 900)
            for meter in row["meters"].split(";"):
                if meter.startswith("m-"):
                    off.update((meter, ts) for ts in slots if start < ts <= end and t0 <= ts)
    return off


def _curve_completeness(workdir: Path, start: float, end: float) -> Curve:
    """The customer meters' 15-min points in (start, end] at the cloud at the end of the run."""
    conn = sqlite3.connect(workdir / "cloud.sqlite")
    try:
        rows = conn.execute(
            "SELECT r.device, CAST(r.ts AS INTEGER), MIN(m.received - r.ts) FROM readings r "
            "JOIN messages m ON m.id = r.message_id "
            "WHERE r.quantity = 'energy.active.import.total' AND r.quality IN ('good', 'catch_up') "
            "AND r.device LIKE 'm-%' AND r.ts > ? AND r.ts <= ? AND CAST(r.ts AS INTEGER) % 900 = 0 "
            "GROUP BY r.device, CAST(r.ts AS INTEGER)",
            (start, end),
        ).fetchall()
        meters = conn.execute(
            "SELECT COUNT(DISTINCT device) FROM readings WHERE device LIKE 'm-%'"
        ).fetchone()[0]
    finally:
        conn.close()
    off = _off_points(workdir / "truth", start, end)
    got = [delay for device, ts, delay in rows if (device, ts) not in off]
    expected = int(meters) * int((end - start) // 900) - len(off)
    return Curve(len(got), expected, len(off), max(got, default=0.0))


def virtual_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    options = _options(args, workdir, speed=math.inf, duration_s=args.days * 86400.0)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with (
        MemoryWatch(options.duration_s or 0.0, heap=args.heap, frames=args.heap_frames) as memory,
        Sampler(threading.get_ident()) as sampler,
        MessageSizes() as sizes,
        TerminalImports() as imports,
    ):
        report = run_virtual(lambda: run_for(options, on_tick=memory.tick, tick_s=VIRTUAL_TICK_S))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    counters = report.get("counters", {})
    hplc = report.get("hplc") or {}
    reads = int(counters.get("reads_ok", 0)) + int(counters.get("reads_failed", 0))
    start = args.start
    end = start + args.days * 86400.0
    curve = _curve_completeness(workdir, start, end)
    (workdir / "terminal_imports.txt").write_text("".join(f"{m}\n" for m in imports.modules()))
    # module-led reading brings a round's points with the next round: completeness up to the last one
    settled = _curve_completeness(workdir, start, end - ROUND_S)
    return {
        "settled": settled, "store_bytes": _store_bytes(workdir),
        "report": report, "wall": wall, "cpu": cpu, "reads": reads, "hplc_reads": hplc.get("reads", 0),
        "shares": sampler.shares(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "memory": memory, "baseline_kb": baseline_kb(imports.modules()), "imports": imports.modules(),
        "curve": curve, "meters": report.get("meters"), "sizes": sizes,
    }  # fmt: skip


def pty_run(args: argparse.Namespace, workdir: Path) -> float:
    """Wall seconds per simulated day at x60 over real ptys (the ``make sim`` time model)."""
    options = _options(args, workdir, speed=60.0, duration_s=args.pty_minutes * 60.0)
    wall0 = time.perf_counter()
    asyncio.run(run_for(options))
    wall = time.perf_counter() - wall0
    return wall * 86400.0 / (args.pty_minutes * 60.0)


def print_memory(v: dict[str, Any], args: argparse.Namespace) -> None:
    memory: MemoryWatch = v["memory"]
    mb = 1 / 1048576
    note = ""
    if memory.heaps:
        note = f"; tracemalloc's own {memory.heaps[-1].tracemalloc_bytes * mb:.0f} MB included"
    print(
        f"  peak RSS             {v['peak_rss_mb']:.0f} MB (whole process: world, terminal, broker, "
        f"cloud stub{note})"
    )
    days = memory.daily_growth_mb()
    per_day = memory.growth_per_day_mb()
    since = "after the first day" if len(days) >= 2 else "over the 2nd half"
    by_day = ", ".join(f"day {d} {g:+.1f}" for d, g in enumerate(days, 1)) or "no whole day"
    print(f"  RSS growth           {per_day:+.1f} MB per simulated day {since} (by day, MB: {by_day})")
    cpu_days = memory.daily_cpu_s()
    if cpu_days:
        print("  CPU by day           " + ", ".join(f"day {d} {c:.1f} s" for d, c in enumerate(cpu_days, 1)))
    if not memory.held:
        return
    held = memory.held[-1]
    baseline = v["baseline_kb"] * 1024
    estimate = baseline + held.bytes + SQLITE_CACHE_BYTES
    meters = int(v["meters"] or 0)
    print(
        f"  terminal memory      ~{estimate * mb:.1f} MB estimated with {meters} meters (goal <= 80 MB at "
        f"2,200) = interpreter with the terminal's code {baseline * mb:.1f} MB + heap it holds "
        f"{held.bytes * mb:.1f} MB + store page cache <= {SQLITE_CACHE_BYTES * mb:.1f} MB"
    )
    print(
        "                       (interpreter: RSS of a fresh process importing what the terminal side of the "
        "run loaded: bench/_terminal_imports.py;\n                        run as the box runs `ttu run`: "
        f"{' '.join(f'{k}={v}' for k, v in box_environment().items())} (hal/linux/ttu.service), modules "
        "from compiled bytecode, through "
        "ttu run's own parser;\n                        heap: sys.getsizeof of the objects "
        "reachable from the Terminal object, not through code, modules, the loop or the simulator's objects)"
    )
    tops = sorted({m.split(".")[0] for m in v["imports"]})
    print(f"    interpreter imports {len(v['imports'])} modules; top-level: {', '.join(tops)}")
    series = ", ".join(f"{h.at_s / DAY_S:.2f} d {h.bytes * mb:.1f} MB" for h in memory.held)
    print(f"  terminal heap held   {series}; {held.objects} objects at the end")
    print("    by owner, MB       " + ", ".join(f"{k} {b * mb:.1f}" for k, b in held.by_owner))
    for h in memory.held[:-1]:  # what grows from day to day, and whose it is
        owners = ", ".join(f"{k} {b * mb:.1f}" for k, b in h.by_owner)
        print(f"      at {h.at_s / DAY_S:.2f} d      {owners}")
    print("    by type, MB        " + ", ".join(f"{k} {b * mb:.1f}" for k, b in held.by_type[:6]))
    if not memory.heaps:
        return
    end = memory.heaps[-1]
    sides = ", ".join(f"{k} {b * mb:.1f}" for k, b in end.sides.items())
    libs = ", ".join(f"{k} {b * mb:.1f}" for k, b in end.unattributed.items())
    print(f"  heap by allocator    MB (tracemalloc, {memory.frames} frames): {sides}")
    print(f"    unattributed by library: {libs}")
    if len(memory.heaps) > 1:
        series = ", ".join(f"{h.at_s / DAY_S:.2f} d {h.sides['terminal'] * mb:.1f}" for h in memory.heaps)
        print(f"    terminal-allocated MB at: {series}")
    print("    the terminal's largest allocation sites:")
    for where, size in end.terminal_sites:
        print(f"    {size * mb:7.2f} MB  {where}")


def _instant(text: str) -> float:
    """An ISO 8601 instant with its UTC offset, as epoch seconds."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give the UTC offset, e.g. 2024-05-31T22:00+08:00")
    return when.timestamp()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--hplc-meters", type=int, default=None)
    ap.add_argument(
        "--rs485-customers", type=int, default=190, help="customers left on RS-485 (sizes the area)"
    )
    ap.add_argument("--customers-scale", type=int, default=None)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="analytics")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pty-minutes", type=float, default=5.0, help="length of the x60 pty run (0: skip)")
    ap.add_argument("--no-all-apps", dest="all_apps", action="store_false", help="only the board's apps")
    ap.add_argument("--apps", default="", help="only these apps, comma-separated (e.g. acquisition)")
    ap.add_argument(
        "--start", type=_instant, default=DEFAULT_START,
        help="simulated start, ISO 8601 with its offset (default 2024-06-01T00:00+08:00), e.g. "
        "2024-05-31T22:00+08:00 with --days 0.375: line loss (00:30), billing (01:00), topology (06:00)",
    )  # fmt: skip
    ap.add_argument(
        "--workdir", type=Path, default=None,
        help="keep the virtual run's folder here (wiped first) for ttu cloud ... --db <workdir>/cloud.sqlite;"
        " terminal_imports.txt in it lists what the terminal's interpreter figure imports",
    )  # fmt: skip
    ap.add_argument(
        "--heap", action="store_true", help="also the heap by allocating code (tracemalloc: ~10-25x the CPU)"
    )
    ap.add_argument("--heap-frames", type=int, default=HEAP_FRAMES, help="frames per allocation (--heap)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        v = virtual_run(args, args.workdir or Path(tmp) / "max")
        pty_day = pty_run(args, Path(tmp) / "pty") if args.pty_minutes > 0 else None
    r = v["report"]
    readings = r["readings"]
    days = args.days
    shares = v["shares"]
    busy = shares["terminal"] + shares["simulator"] + shares["other"] or 1.0
    per_k = 1000.0 * v["cpu"] / max(v["reads"], 1)
    nodes = r["hplc"]["nodes"] if r["hplc"] else 0
    apps = ", ".join(a["name"] for a in r["apps"])
    print(f"simday: {days:g} simulated day(s), {v['meters']} meters ({nodes} HPLC), profile {args.profile}")
    print(f"  scenario {args.scenario}, apps: {apps}")
    states = ", ".join(f"{a['name']} {a['state']} ({a['restarts']} restarts)" for a in r["apps"])
    print(f"  failures {r['failures']}; at the end: {states}")
    print(
        f"  wall time            {v['wall']:.1f} s = {v['wall'] / days:.1f} s per simulated day "
        f"(achieved x{r['achieved_speed']:.0f})"
    )
    counters = r.get("counters", {})
    print(
        f"  reads                {v['reads']} terminal transactions ({v['hplc_reads']} over HPLC), "
        f"{v['reads'] / v['wall']:.0f} per wall s; failed {counters.get('reads_failed', 0)}"
    )
    print(
        f"  CPU                  {v['cpu']:.1f} s: {per_k:.3f} s per 1000 reads = terminal "
        f"{per_k * shares['terminal'] / busy:.3f} + simulator {per_k * shares['simulator'] / busy:.3f} "
        f"+ broker/cloud/loop {per_k * shares['other'] / busy:.3f}"
    )
    print_memory(v, args)
    curve: Curve = v["curve"]
    settled: Curve = v["settled"]
    cycle, bound = r["cycle_seconds"] or 0.0, r["wire_bound_seconds"] or 0.0
    print(
        f"  readings             sent {readings['sent']}, at the cloud {readings['delivered']}, "
        f"queued {readings['queued']}, lost {readings['lost']}"
    )
    print(
        f"  15-min curve points  {curve.got} of {curve.expected} customer-meter quarter-hours the meters "
        f"hold at the cloud ({curve.percent():.1f} %); {curve.off} more fell while a meter was "
        f"without supply (truth events.csv: no point recorded)"
    )
    print(
        f"  ... up to 1 h before the end (the last module-led round's points come with the next): "
        f"{settled.got} of {settled.expected} ({settled.percent():.1f} %); the slowest point reached the "
        f"cloud {settled.latest_s / 60:.0f} min after its quarter-hour"
    )
    sim_s = days * 86400.0
    terminal_cpu = v["cpu"] * shares["terminal"] / busy
    print(
        f"  terminal CPU         {terminal_cpu:.1f} s = {100.0 * terminal_cpu / sim_s:.2f} % of a core at x1 "
        f"(runtime/apps/hal samples; protocols and libraries go to their caller)"
    )
    meters = int(v["meters"] or 1)
    print(
        f"  terminal store       {v['store_bytes'] / 1e6:.1f} MB = "
        f"{v['store_bytes'] / meters / max(days, 1e-9) / 1024:.1f} kB per meter-day"
    )
    route = r.get("hplc") or {}
    if route.get("route_rounds"):
        print(
            f"  module-led reading   {route['route_rounds']} rounds, {route['route_reads']} carried reads "
            f"({route['route_reads_lost']} lost), peak {route['peak_in_flight']} in flight"
        )
        ours = route.get("terminal") or {}
        print(
            f"  ... terminal's own   {ours.get('point_reads_in_round')} HPLC reads in rounds: "
            f"{ours.get('route_pauses')} pauses (AFN12 F2), {ours.get('route_resumes')} resumes, "
            f"{ours.get('route_restarts')} restarts, {ours.get('route_lost')} lost places; longest read "
            f"{ours.get('point_read_max_s') or 0:.1f} s; route paused "
            f"{ours.get('route_paused_s') or 0:.0f} s in all; {route.get('route_rounds_finished')} rounds "
            f"finished, {route.get('busy_denied')} reads refused busy"
        )
    print(f"  realtime cycle       {cycle:.1f} s vs wire bound {bound:.1f} s ({cycle / (bound or 1):.3f}x)")
    sizes: MessageSizes = v["sizes"]
    print(f"  largest message per stream (limit {MAX_MESSAGE_BYTES} B):")
    for (stream, kind), size in sorted(sizes.largest.items(), key=lambda kv: -kv[1]):
        name = f"{stream}/{kind}" if kind else stream
        flag = "  OVER" if size > MAX_MESSAGE_BYTES else ""
        print(
            f"    {name:<28} {size:>9} B = {size / MAX_MESSAGE_BYTES:5.2f} of the limit "
            f"({sizes.count[(stream, kind)]} messages){flag}"
        )
    if pty_day is not None:
        print(
            f"  vs x60 over ptys     {pty_day:.0f} s per simulated day ({args.pty_minutes:g} min measured): "
            f"virtual time is {pty_day / (v['wall'] / days):.1f}x faster"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
