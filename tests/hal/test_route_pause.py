"""The terminal's own reads while the carrier module leads a round (路由主动抄表): AFN12 F2 pause,
the reads, AFN12 F3 resume -- the CCO driver (hal.hplc) against the virtual CCO (sim.hplc) over an
in-memory link, on virtual time, with the meters read through ``hal.meters`` on both sides.

The virtual CCO is a module that shares its carrier slots exactly: a read of the terminal's that
finds every slot taken by the route is refused (deny 109). So without the pause, a burst of reads
in a round is refused or waits on the route; with it the route stops asking, its frames under
way come back, the reads go, and the round goes on where it stopped.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hal.hplc.cco import RESUME_AFTER_S
from hal.meters import MeterClients, RouteTransport
from hal.meters.route import Job
from protocols import dlt645
from tests.hal._cco_harness import Pair, cco_pair, make_meters

ENERGY = 0x00010000
READS_PER_VISIT = 3


def read(address: str) -> bytes:
    return dlt645.encode(dlt645.read_request(address, ENERGY))


class Round:
    """What the module leads: every meter read ``READS_PER_VISIT`` times in one visit (a curve
    catch-up of several blocks), through a ``MeterClient`` on the route transport."""

    def __init__(self, p: Pair) -> None:
        self.route = RouteTransport(clock=p.clock, jobs=self.job)
        self._clients = MeterClients()
        self.reads: Counter[str] = Counter()
        self.done: set[str] = set()

    def job(self, address: str) -> Job | None:
        if address in self.done:
            return None
        client = self._clients.client(self.route, "dlt645", address)

        async def visit() -> bool:
            for _ in range(READS_PER_VISIT):
                await client.read_realtime(("energy",))
                self.reads[address] += 1
            self.done.add(address)
            return True

        return visit


async def start(p: Pair) -> Round:
    await p.cco.reset()
    await p.cco.sync_archive([m.address for m in p.meters])
    led = Round(p)
    p.cco.lead(led.route)
    await p.cco.route("restart")
    led.route.round_started()
    return led


def asks_while_paused(p: Pair) -> int:
    """AFN14 F1 asks the terminal received after the module confirmed a pause and before the
    terminal resumed it (the driver's frame trace, both directions in order)."""
    state, asks = "leading", 0
    for entry in p.cco.trace.entries():
        if entry.direction == "tx" and "route pause" in entry.note:
            state = "pausing"
        elif state == "pausing" and entry.direction == "rx" and entry.note.startswith("reply AFN00"):
            state = "paused"  # the module confirmed the pause
        elif entry.direction == "tx" and ("route resume" in entry.note or "route restart" in entry.note):
            state = "leading"
        elif state == "paused" and entry.note.startswith("module request AFN14 F1"):
            asks += 1
    return asks


@pytest.mark.looptime
async def test_reads_in_a_round_pause_it_go_promptly_and_the_round_goes_on_where_it_was() -> None:
    meters = make_meters(24)
    async with cco_pair(meters, concurrency=4, latency_s=(1.0, 3.0)) as p:
        led = await start(p)
        await p.clock.sleep(20.0)  # the round is well under way: every slot carries the route's frames
        assert 0 < len(led.done) < len(meters) and p.cco.statistics()["route_state"] == "leading"
        asks_before = p.sim.counters.route_requests
        # a burst of the terminal's own reads (an app's outage check, say) of 6 meters at once
        t0 = p.clock.monotonic()
        wanted = meters[-6:]
        replies = await asyncio.gather(
            *(p.cco.transact(m.address, read(m.address), timeout=20) for m in wanted)
        )
        took = p.clock.monotonic() - t0
        assert [dlt645.decode(r).address for r in replies] == [m.address for m in wanted]
        # one pause for the burst; the route's frames under way came back first (<= 3 s carrier
        # latency + reports), then the six reads at the module's concurrency of 4: two carries
        assert took < 3.0 + 2 * 3.0 + 2.0, took
        assert p.cco.counters.route_pauses == 1 and p.sim.counters.route_pauses == 1
        assert p.cco.counters.concurrency_denials == 0 and p.sim.counters.concurrency_denied == 0
        assert p.cco.counters.point_reads_in_round == 6
        assert p.cco.counters.point_read_max_s == pytest.approx(took, abs=0.5)
        # paused: the module asks nothing new ...
        assert p.cco.statistics()["route_state"] == "paused"
        asks_paused = p.sim.counters.route_requests
        assert asks_paused - asks_before <= 4  # at most the asks already on their way
        # ... until the burst has been quiet for RESUME_AFTER_S: then AFN12 F3
        await p.clock.sleep(RESUME_AFTER_S + 1.0)
        assert p.cco.counters.route_resumes == 1 and p.sim.counters.route_resumes == 1
        assert p.cco.statistics()["route_state"] == "leading"
        assert asks_while_paused(p) == 0 and p.sim.counters.route_asks_paused == 0
        async with p.clock.timeout(600):
            await led.route.wait_round()
        # the round went on where it was: one round, every meter read whole, none twice
        assert p.sim.counters.route_rounds == 1 and p.cco.counters.route_restarts == 1
        assert led.done == {m.address for m in meters}
        assert set(led.reads.values()) == {READS_PER_VISIT}
        assert led.route.jobs_failed == 0 and led.route.unanswered == 0


@pytest.mark.looptime
async def test_a_module_that_lost_its_place_while_paused_is_restarted_not_resumed() -> None:
    meters = make_meters(16)
    async with cco_pair(meters, concurrency=4, latency_s=(1.0, 3.0)) as p:
        led = await start(p)
        await p.clock.sleep(15.0)
        reads = [
            asyncio.create_task(p.cco.transact(m.address, read(m.address), timeout=20)) for m in meters[:8]
        ]
        await p.clock.sleep(4.0)  # paused, the reads under way
        assert p.cco.statistics()["route_state"] == "paused"
        await p.sim.restart()  # the module restarts: its round and the reads at it are gone
        replies = await asyncio.gather(*reads)  # each cut read is retried once after recovery
        assert len(replies) == 8 and p.cco.counters.module_resets == 1
        async with p.clock.timeout(600):
            await led.route.wait_round()
        # a resume would have found no round: the driver restarted it (AFN12 F1)
        assert p.cco.counters.route_lost == 1
        assert p.cco.counters.route_restarts == 2 and p.cco.counters.route_resumes == 0
        assert led.done == {m.address for m in meters}


@pytest.mark.looptime
async def test_a_read_refused_for_a_slot_the_route_still_holds_waits_and_keeps_the_modules_limit() -> None:
    # a module slower than it says: silent meters hold its two slots 30 s, it announces 5 s
    meters = make_meters(4)
    async with cco_pair(meters, concurrency=2, monitor_timeout_s=5, silent_s=30.0, latency_s=1.0) as p:
        await p.cco.reset()
        silent = ["990000000001", "990000000002"]  # archived, never heard: the round leads them first
        await p.cco.sync_archive([*silent, *(m.address for m in meters)])
        led = Round(p)
        p.cco.lead(led.route)
        await p.cco.route("restart")
        led.route.round_started()
        await p.clock.sleep(2.0)  # both slots carry a silent meter's frame
        reply = await p.cco.transact(meters[0].address, read(meters[0].address), timeout=20)
        assert dlt645.decode(reply).address == meters[0].address
        # the driver gave the route's frames up after 5 + 2 s and was refused: it waited for the
        # route instead of taking the refusal for a smaller module
        assert p.cco.counters.concurrency_denials >= 1 and p.sim.counters.busy_denied >= 1
        assert p.cco.concurrency == 2
