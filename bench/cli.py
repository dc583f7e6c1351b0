"""Start-up time of the ``ttu`` command line, and the memory of a real ``ttu run``.

Not a test: prints figures and ratios. ``.venv/bin/python bench/cli.py [--rounds N]``.

* wall and CPU seconds (median of N runs, the child's user + system time) of ``ttu --help``,
  ``ttu frame decode HEX``, ``ttu check`` and ``ttu sim --help``, next to a bare
  ``python -c pass`` of the same interpreter in the same run (goal: <= 0.3 s each);
* RSS of the real ``ttu run`` entry point (the console script, with the simulator extra installed
  in this environment) on a linux board of its own: one RS-485 port on a pty, the acquisition app
  reading two (silent) meters of a station archive, no uplink; sampled for a few seconds once the
  terminal is up (goal: <= 60 MB, heading for 40). Next to it, the RSS of a process that only
  builds the whole ``ttu`` parser with every command group imported -- what ``ttu run`` carried
  when every invocation imported every group (the simulator's pandapower, pandas, scipy).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TTU = str(BIN / "ttu")
FRAME = "6886200500000068910833333433A876B733E916"
GOAL_START_S = 0.3
GOAL_RSS_MB = 60.0

BOARD = """
[terminal]
id = "TTU-BENCH"
timezone = "Asia/Shanghai"

[hal]
backend = "linux"

[[rs485]]
name = "rs485-1"
device = "{pty}"
baud = 2400
parity = "E"

[store]
path = "{dir}/ttu.sqlite"

[station]
file = "{dir}/station.toml"

[apps.acquisition]
enabled = true

[apps.acquisition.config]
realtime_interval_s = 60
time_sync = false
"""

STATION = """
[[meters]]
id = "m-1"
address = "000000000001"
port = "rs485-1"

[[meters]]
id = "m-2"
address = "000000000002"
port = "rs485-1"
"""


def timed(cmd: list[str], rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``cmd`` (its exit status must be 0)."""
    walls, cpus = [], []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, cwd=REPO, check=False)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.decode()[-500:]}")
        walls.append(wall)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(walls), statistics.median(cpus)


def startup(rounds: int) -> None:
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs (wall times include waiting for a CPU)")
    base_wall, base_cpu = timed([sys.executable, "-c", "pass"], rounds)
    print(f"python -c pass                 wall {base_wall:5.3f} s  cpu {base_cpu:5.3f} s  (baseline)")
    commands = {
        "ttu --help": [TTU, "--help"],
        "ttu frame decode HEX": [TTU, "frame", "decode", FRAME],
        "ttu check": [TTU, "check"],
        "ttu sim --help": [TTU, "sim", "--help"],
    }
    for name, cmd in commands.items():
        wall, cpu = timed(cmd, rounds)
        verdict = "ok" if cpu <= GOAL_START_S else "OVER"
        ratio = cpu / base_cpu
        print(f"{name:<30} wall {wall:5.3f} s  cpu {cpu:5.3f} s  = {ratio:4.1f} x python -c pass", end="")
        print(f"  (goal {GOAL_START_S} s of CPU: {verdict})")


def rss_of_run(seconds: float) -> float:
    """Peak RSS (MB) of ``ttu run`` over ``seconds`` once the terminal said it is up."""
    folder = Path(tempfile.mkdtemp(prefix="ttu-bench-run-"))
    master, slave = os.openpty()
    try:
        (folder / "station.toml").write_text(STATION, encoding="utf-8")
        board = folder / "board.toml"
        board.write_text(BOARD.format(pty=os.ttyname(slave), dir=folder), encoding="utf-8")
        log = (folder / "run.log").open("w+b")
        proc = subprocess.Popen(
            [TTU, "-v", "run", "--board", str(board), "--apps-dir", str(REPO / "apps")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
        try:
            deadline = time.monotonic() + 60
            while b"up: runtime API" not in (folder / "run.log").read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"ttu run did not come up: {(folder / 'run.log').read_text()[-1500:]}")
                time.sleep(0.2)
            peak = 0.0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                peak = max(peak, psutil.Process(proc.pid).memory_info().rss / 2**20)
                time.sleep(0.2)
            return peak
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    finally:
        os.close(master)
        os.close(slave)
        shutil.rmtree(folder, ignore_errors=True)


def rss_of_old_parser() -> float:
    """A process that built the parser with what the ``sim`` group imported at module level before
    its imports moved into its handler (``sim.runner``: pandapower, pandas, scipy)."""
    code = (
        "import psutil, runtime.cli as c, sim.runner, sim.dashboard; c.build_parser(); "
        "print(psutil.Process().memory_info().rss / 2**20)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, check=True)
    return float(done.stdout.decode().split()[-1])


def rss_of_python() -> float:
    code = "import psutil; print(psutil.Process().memory_info().rss / 2**20)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, check=True)
    return float(done.stdout.decode().split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long ttu run is sampled")
    args = parser.parse_args()
    print("== start-up")
    startup(args.rounds)
    print("== memory")
    bare = rss_of_python()
    run = rss_of_run(args.seconds)
    old = rss_of_old_parser()
    verdict = "ok" if run <= GOAL_RSS_MB else "OVER"
    print(f"python (psutil imported)       RSS {bare:6.1f} MB  (baseline)")
    print(f"ttu run (acquisition, 1 port)  RSS {run:6.1f} MB  = {run / bare:4.1f} x baseline", end="")
    print(f"  (goal {GOAL_RSS_MB:g} MB: {verdict})")
    print(f"parser + simulator imported    RSS {old:6.1f} MB  = {old / run:4.1f} x ttu run (before)")


if __name__ == "__main__":
    main()
