"""Benchmark: µs per decode / encode for each protocol codec, and reads/s through the simulated HPLC path.

Not a test: prints figures and ratios. Usage: .venv/bin/python bench/codecs.py [--reads N] [--speed S]
Codec figures use the vector files in tests/protocols/vectors/*.json. The HPLC figure runs the
``hal.hplc.Cco`` driver -> pty -> ``sim.hplc.VirtualCco`` -> virtual DL/T 645 meter path with a
scaled clock (``--speed``), at the module's concurrency and at concurrency 1 (point reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from protocols import dlt645, dlt698  # noqa: E402
from protocols import gdw1376_2 as q  # noqa: E402
from protocols.errors import ProtocolError  # noqa: E402

VECTORS = ROOT / "tests" / "protocols" / "vectors"


def _frames(name: str, decode: Callable[[bytes], object]) -> list[bytes]:
    out = []
    for entry in json.loads((VECTORS / name).read_text()):
        raw = bytes.fromhex(entry["hex"])
        try:
            decode(raw)
        except (ProtocolError, ValueError):
            continue
        out.append(raw)
    return out


def _per_call_us(fn: Callable[[], object], items: int, *, min_s: float = 0.3) -> float:
    n, t = 0, 0.0
    start = time.perf_counter()
    while t < min_s:
        fn()
        n += 1
        t = time.perf_counter() - start
    return t / (n * items) * 1e6


def codecs() -> None:
    rows = []
    for label, file, decode, encode in (
        ("dlt645", "dlt645.json", dlt645.decode, dlt645.encode),
        ("dlt698", "dlt698.json", dlt698.decode, getattr(dlt698, "encode", None)),
        ("gdw1376_2", "q1376_2.json", q.decode, q.encode),
    ):
        raws = _frames(file, decode)
        frames = [decode(r) for r in raws]
        dec = _per_call_us(lambda raws=raws, decode=decode: [decode(r) for r in raws], len(raws))
        enc = None
        if encode is not None:
            try:
                enc = _per_call_us(
                    lambda frames=frames, encode=encode: [encode(f) for f in frames], len(frames)
                )
            except Exception:  # an encoder that wants other arguments: report decode only
                enc = None
        rows.append((label, len(raws), dec, enc))
    print(f"{'codec':<10} {'frames':>6} {'decode µs':>10} {'encode µs':>10}")
    for label, n, dec, enc in rows:
        print(f"{label:<10} {n:>6} {dec:>10.1f} {f'{enc:.1f}' if enc is not None else '-':>10}")
    # the carried-frame cost on top of the outer frame: parse_unit of AFN13 F1 replies
    built = q.encode(
        q.make_frame(
            0x13, 1, q.MonitorReply(1, 2, bytes(20)), up=True, seq=1, src="000000000001", dst="000000000002"
        )
    )
    unit = _per_call_us(lambda: q.parse_unit(q.decode(built)), 1)
    print(f"gdw1376_2 built AFN13 F1 reply: decode + parse_unit {unit:.1f} µs")


async def _reads(
    n_meters: int, reads: int, *, speed: float, method: str, concurrency: int
) -> tuple[float, float]:
    from hal.clock import LoopClock
    from tests.hal._cco_harness import START, cco_pair, make_meters

    meters = make_meters(n_meters)
    clock = LoopClock(start=START, speed=speed)
    async with cco_pair(
        meters, clock=clock, pty=True, concurrency=concurrency, latency_s=(0.3, 3.0), seed=1
    ) as p:
        await p.cco.reset()
        await p.cco.sync_archive([m.address for m in meters])
        frames = [(m.address, dlt645.encode(dlt645.read_request(m.address, 0x00010000))) for m in meters]
        t_wall, t_sim = time.perf_counter(), clock.monotonic()
        await asyncio.gather(
            *(
                p.cco.transact(a, f, timeout=30, method=method)
                for a, f in (frames * (reads // n_meters + 1))[:reads]
            )  # type: ignore[arg-type]
        )
        return reads / (clock.monotonic() - t_sim), reads / (time.perf_counter() - t_wall)


def hplc(reads: int, speed: float) -> None:
    conc, conc_wall = asyncio.run(_reads(30, reads, speed=speed, method="concurrent", concurrency=5))
    one, one_wall = asyncio.run(_reads(30, reads, speed=speed, method="monitor", concurrency=5))
    print(f"HPLC reads (latency 0.3-3 s, {reads} reads, clock x{speed:g}):")
    print(f"  concurrency 5 (AFN F1 F1): {conc:6.2f} reads/s simulated ({conc_wall:.1f}/s wall)")
    print(f"  concurrency 1 (AFN13 F1): {one:6.2f} reads/s simulated ({one_wall:.1f}/s wall)")
    print(f"  ratio: {conc / one:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=60)
    ap.add_argument("--speed", type=float, default=50.0)
    args = ap.parse_args()
    codecs()
    hplc(args.reads, args.speed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
