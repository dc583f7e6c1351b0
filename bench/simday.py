"""Benchmark: simulated days of the whole station area on virtual time (``ttu sim --speed max``).

Not a test. Runs the default station area (or ``--hplc-meters 2000`` and more) with every app
under apps/ enabled, on the virtual-time loop, and prints:

* wall time per simulated day and the achieved speed (simulated s per wall s);
* reads (terminal transactions: RS-485 + HPLC) per wall second;
* CPU per 1000 reads, split terminal side / simulator side / the rest (broker, cloud stub, asyncio):
  a sampling profiler (a thread looks at the loop thread's stack every ``SAMPLE_S``) files each
  sample under the innermost frame of the repository that decides it -- runtime/, apps/, hal/
  (terminal) or sim/ (simulator); protocols/ and the libraries go to whoever called them;
* peak RSS of the process (world + terminal + broker + cloud stub together) and its growth over the
  second half of the run (flat memory means ~0);
* readings sent / at the cloud / queued / lost, 15-min curve completeness at the cloud;
* the ratio of the wall time per simulated day to that of a ``--speed 60`` run over real ptys
  (``--pty-minutes`` of it, the ``make sim`` time model), measured in the same run;
* the largest upward message of every stream (and message type) against the uplink's limit
  (``protocols.cloud.MAX_MESSAGE_BYTES``): a stream whose result grows with the station area must
  page it (``--hplc-meters 2000`` is the case that once killed the terminal at start).

Usage: .venv/bin/python -P bench/simday.py [--days 1] [--hplc-meters N] [--pty-minutes 5] [--apps acquisition]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocols.cloud import MAX_MESSAGE_BYTES, json_size  # noqa: E402
from runtime.store import Store  # noqa: E402
from sim.harness import DEFAULT_START  # noqa: E402
from sim.physics import DEFAULT_NETWORK  # noqa: E402
from sim.runner import PROFILES, SimOptions, run_for, sim_board  # noqa: E402
from sim.vloop import run_virtual  # noqa: E402

SAMPLE_S = 0.005  # the sampler takes the GIL each time: every 2 ms cost the loop thread a few %
ROUND_S = 3600.0  # the acquisition app's module-led round (route_round_s)
FEEDER_CUSTOMERS = 55  # the IEEE European LV feeder
SIDES = {"runtime": "terminal", "apps": "terminal", "hal": "terminal", "sim": "simulator"}
#: at the bottom of every stack (they run the loop): they decide nothing
DRIVERS = {"sim/vloop.py", "sim/runner.py", "sim/harness.py"}


class Sampler:
    """Samples the loop thread's stack: which side of the world is the CPU working for."""

    def __init__(self, thread_id: int) -> None:
        self._thread = thread_id
        self._stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.rss: list[tuple[float, int]] = []  # (wall s, kB)
        self._worker = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._worker.join()

    def _run(self) -> None:
        t0 = time.perf_counter()
        last_rss = 0.0
        while not self._stop.wait(SAMPLE_S):
            # no frame is held between samples: a frame kept alive keeps its locals alive, and a
            # memoryview among them would stop the loop thread's bytearray from being resized
            self.counts[_side(sys._current_frames().get(self._thread))] += 1
            now = time.perf_counter()
            if now - last_rss >= 1.0:
                last_rss = now
                self.rss.append((now - t0, _rss_kb()))

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


def _curve_completeness(cloud_db: Path, start: float, end: float) -> tuple[int, int]:
    """(15-min curve points at the cloud, points expected: every meter of the archive x quarter-hour)."""
    conn = sqlite3.connect(cloud_db)
    try:
        got = conn.execute(
            "SELECT COUNT(DISTINCT device || '@' || ts) FROM readings "
            "WHERE quantity = 'energy.active.import.total' AND quality IN ('good', 'catch_up') "
            "AND device LIKE 'm-%' "
            "AND ts > ? AND ts <= ? AND CAST(ts AS INTEGER) % 900 = 0",
            (start, end),
        ).fetchone()[0]
        meters = conn.execute(
            "SELECT COUNT(DISTINCT device) FROM readings WHERE device LIKE 'm-%'"
        ).fetchone()[0]
    finally:
        conn.close()
    return int(got), int(meters) * int((end - start) // 900)


def virtual_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    options = _options(args, workdir, speed=math.inf, duration_s=args.days * 86400.0)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    with Sampler(threading.get_ident()) as sampler, MessageSizes() as sizes:
        report = run_virtual(lambda: run_for(options))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    counters = report.get("counters", {})
    hplc = report.get("hplc") or {}
    reads = int(counters.get("reads_ok", 0)) + int(counters.get("reads_failed", 0))
    rss = sampler.rss
    half = [kb for t, kb in rss if t >= rss[-1][0] / 2] if rss else []
    start = args.start
    end = start + args.days * 86400.0
    got, expected = _curve_completeness(workdir / "cloud.sqlite", start, end)
    # module-led reading brings a round's points with the next round: completeness up to the last one
    settled = _curve_completeness(workdir / "cloud.sqlite", start, end - ROUND_S)
    return {
        "settled": settled, "store_bytes": _store_bytes(workdir),
        "report": report, "wall": wall, "cpu": cpu, "reads": reads, "hplc_reads": hplc.get("reads", 0),
        "shares": sampler.shares(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mb": (half[-1] - half[0]) / 1024 if len(half) > 1 else 0.0,
        "curve": (got, expected), "meters": report.get("meters"), "sizes": sizes,
    }  # fmt: skip


def pty_run(args: argparse.Namespace, workdir: Path) -> float:
    """Wall seconds per simulated day at x60 over real ptys (the ``make sim`` time model)."""
    options = _options(args, workdir, speed=60.0, duration_s=args.pty_minutes * 60.0)
    wall0 = time.perf_counter()
    asyncio.run(run_for(options))
    wall = time.perf_counter() - wall0
    return wall * 86400.0 / (args.pty_minutes * 60.0)


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
        help="keep the virtual run's folder here (wiped first) for ttu cloud ... --db <workdir>/cloud.sqlite",
    )  # fmt: skip
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
    print(
        f"  peak RSS             {v['peak_rss_mb']:.0f} MB (whole process); growth over the 2nd half "
        f"{v['rss_growth_mb']:+.1f} MB"
    )
    got, expected = v["curve"]
    cycle, bound = r["cycle_seconds"] or 0.0, r["wire_bound_seconds"] or 0.0
    print(
        f"  readings             sent {readings['sent']}, at the cloud {readings['delivered']}, "
        f"queued {readings['queued']}, lost {readings['lost']}"
    )
    print(
        f"  15-min curve points  {got} of {expected} customer-meter quarter-hours at the cloud "
        f"({100.0 * got / max(expected, 1):.1f} %)"
    )
    sgot, sexp = v["settled"]
    print(
        f"  ... up to 1 h before the end (the last module-led round's points come with the next): "
        f"{sgot} of {sexp} ({100.0 * sgot / max(sexp, 1):.1f} %)"
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
