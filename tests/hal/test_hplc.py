"""The CCO driver (hal.hplc) against the virtual CCO (sim.hplc) over a real pty, in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from hal.clock import LoopClock
from hal.hplc import ModuleDenied, NodeTimeout
from hal.interfaces import CarrierModule
from protocols import dlt645
from protocols import gdw1376_2 as q
from tests.hal._cco_harness import START, Pair, cco_pair, make_meters

ENERGY = 0x00010000


def read(address: str) -> bytes:
    return dlt645.encode(dlt645.read_request(address, ENERGY))


def energy(reply: bytes) -> float:
    value = dlt645.parse_read_response(dlt645.decode(reply)).values[0]
    assert isinstance(value, float)
    return value


async def ready(p: Pair) -> None:
    await p.cco.reset()
    await p.cco.sync_archive([m.address for m in p.meters])


async def settle(p: Pair, seconds: float = 1.0) -> None:
    await p.clock.sleep(seconds)


@pytest.mark.looptime
async def test_identify_reads_the_running_mode() -> None:
    async with cco_pair(make_meters(2), concurrency=7, monitor_timeout_s=25, vendor="XY") as p:
        assert isinstance(p.cco, CarrierModule)
        await p.cco.reset()
        info = p.cco.info
        assert info is not None
        assert (info.vendor, info.concurrency, info.monitor_timeout_s) == ("XY", 7, 25)
        assert p.cco.concurrency == 7
        assert p.sim.reports_enabled  # AFN05 F2 allow reports was sent
        kinds = [(f.afn, f.fn) for f in p.sim.received]
        # hardware init, the confirm of the module's own F10 announcement, then the query
        assert kinds[:3] == [(0x01, 1), (0x00, 1), (0x03, 10)]
        assert len(p.cco.trace) >= 6  # every frame both ways is in the ring


@pytest.mark.looptime
async def test_archive_sync_deletes_extras_and_adds_missing() -> None:
    meters = make_meters(40)
    async with cco_pair(meters) as p:
        await p.cco.reset()
        stale = ["990000000001", "990000000002"]
        p.sim.table.update(dict.fromkeys(stale, q.DLT645_2007))
        p.sim.table[meters[0].address] = q.DLT645_2007
        p.sim.table[meters[1].address] = q.DLT698  # wrong protocol: replaced
        await p.cco.sync_archive([m.address for m in meters])
        result = p.cco.last_sync
        assert result is not None
        assert set(result.deleted) == {*stale, meters[1].address}
        assert set(result.added) == {m.address for m in meters[1:]}
        assert set(p.sim.table) == {m.address for m in meters}
        adds = [f for f in p.sim.received if (f.afn, f.fn) == (0x11, 1)]
        assert len(adds) == 3  # 39 nodes in batches of 16
        # a second sync changes nothing
        await p.cco.sync_archive([m.address for m in meters])
        assert p.cco.last_sync is not None and not p.cco.last_sync.added and not p.cco.last_sync.deleted


@pytest.mark.looptime
async def test_point_read_returns_the_meters_reply_within_the_latency_model() -> None:
    meters = make_meters(3)
    meters[1].advance(meters[1].time + 3600)
    async with cco_pair(meters, latency_s=(0.5, 0.5)) as p:
        await ready(p)
        t0 = p.clock.monotonic()
        reply = await p.cco.transact(meters[1].address, read(meters[1].address), timeout=30, method="monitor")
        took = p.clock.monotonic() - t0
        assert dlt645.decode(reply).address == meters[1].address
        assert energy(reply) == pytest.approx(meters[1].registers(p.clock.now()).forward[0], abs=0.01)
        assert 0.5 <= took < 1.0  # carrier latency plus two frames at 9600 baud
        assert p.cco.counters.reads_ok == 1


@pytest.mark.looptime
async def test_concurrent_reads_fill_the_modules_limit_and_never_exceed_it() -> None:
    meters = make_meters(12)
    async with cco_pair(meters, concurrency=4, latency_s=(1.0, 2.0)) as p:
        await ready(p)
        t0 = p.clock.monotonic()
        replies = await asyncio.gather(
            *(p.cco.transact(m.address, read(m.address), timeout=30) for m in meters)
        )
        took = p.clock.monotonic() - t0
        assert [dlt645.decode(r).address for r in replies] == [m.address for m in meters]
        assert p.sim.counters.peak_in_flight == 4
        assert p.cco.counters.peak_in_flight == 4
        assert p.sim.counters.concurrency_denied == 0
        assert took < 12 * 1.0  # faster than one at a time could ever be


@pytest.mark.looptime
async def test_a_module_holding_less_than_it_announced_lowers_the_limit() -> None:
    meters = make_meters(6)
    async with cco_pair(meters, concurrency=4, latency_s=1.0) as p:
        await ready(p)
        p.sim.concurrency = 2  # the module now refuses the third read in flight (deny 109)
        replies = await asyncio.gather(
            *(p.cco.transact(m.address, read(m.address), timeout=30) for m in meters)
        )
        assert len(replies) == 6
        assert p.sim.counters.concurrency_denied >= 1
        assert p.cco.counters.concurrency_denials == p.sim.counters.concurrency_denied
        assert p.cco.concurrency <= 2


@pytest.mark.looptime
async def test_a_silent_node_is_a_node_timeout() -> None:
    meters = make_meters(2)
    async with cco_pair(meters, silent_s=5.0) as p:
        await ready(p)
        meters[0].power_off(p.clock.now())
        with pytest.raises(NodeTimeout, match=meters[0].address):
            await p.cco.transact(meters[0].address, read(meters[0].address), timeout=30, method="monitor")
        with pytest.raises(NodeTimeout):  # concurrent read: the module answers with an empty frame
            await p.cco.transact(meters[0].address, read(meters[0].address), timeout=30, method="concurrent")
        assert p.cco.counters.reads_failed == 2
        # the other meter still reads
        await p.cco.transact(meters[1].address, read(meters[1].address), timeout=30)


@pytest.mark.looptime
async def test_a_full_node_table_is_a_denial_naming_the_command() -> None:
    meters = make_meters(3)
    async with cco_pair(meters, max_nodes=2) as p:
        await p.cco.reset()
        with pytest.raises(ModuleDenied, match="add nodes") as err:
            await p.cco.sync_archive([m.address for m in meters])
        assert err.value.code == 1
        assert p.cco.counters.denials == 1


@pytest.mark.looptime
async def test_late_answer_is_counted_and_not_taken_for_the_next_reply() -> None:
    meters = make_meters(2)
    async with cco_pair(meters, latency_s=0.5) as p:
        await ready(p)
        p.sim.nodes[meters[0].address].latency_s = 20.0  # answers long after the driver gave up
        with pytest.raises(NodeTimeout):
            await p.cco.transact(meters[0].address, read(meters[0].address), timeout=5, method="concurrent")
        reply = await p.cco.transact(meters[1].address, read(meters[1].address), timeout=30)
        assert dlt645.decode(reply).address == meters[1].address
        await settle(p, 20.0)  # the late reply arrives now
        assert p.cco.counters.late_replies == 1
        reply = await p.cco.transact(meters[1].address, read(meters[1].address), timeout=30)
        assert dlt645.decode(reply).address == meters[1].address


@pytest.mark.looptime
async def test_garbage_on_the_line_is_counted_and_skipped() -> None:
    meters = make_meters(3)
    async with cco_pair(meters, latency_s=0.3, seed=3) as p:
        await ready(p)
        await p.sim.inject(bytes.fromhex("68 FF 00 43 00 68 10 00 83 00 00 00 00 00 00 00 16 E5 E5"))
        p.sim.garbage_rate = 1.0
        for m in meters:
            reply = await p.cco.transact(m.address, read(m.address), timeout=30)
            assert dlt645.decode(reply).address == m.address
        await settle(p)
        assert p.cco.counters.decode_errors >= 1
        assert any("decode error" in e.note for e in p.cco.trace.entries())


@pytest.mark.looptime
async def test_module_reset_mid_read_is_recovered_and_the_archive_resynced() -> None:
    meters = make_meters(4)
    async with cco_pair(meters, latency_s=3.0) as p:
        await ready(p)
        events = p.cco.events()
        read_task = asyncio.ensure_future(
            p.cco.transact(meters[0].address, read(meters[0].address), timeout=30, method="concurrent")
        )
        await settle(p, 1.0)
        await p.sim.restart(wipe=True)  # loses the read in flight and its node table
        reply = await read_task
        assert dlt645.decode(reply).address == meters[0].address
        event = await anext(events)
        assert event.kind == "module_reset"
        assert p.cco.counters.module_resets == 1
        assert p.cco.counters.identifies == 2
        assert set(p.sim.table) == {m.address for m in meters}  # resynced
        assert p.sim.reports_enabled
        await events.aclose()


async def test_over_a_real_pty_with_pyserial() -> None:
    """The linux backend end to end (real I/O, so a fast clock instead of looptime)."""
    meters = make_meters(6)
    clock = LoopClock(start=START, speed=20.0)
    async with cco_pair(meters, clock=clock, pty=True, concurrency=3, latency_s=(0.3, 3.0)) as p:
        await ready(p)
        assert set(p.sim.table) == {m.address for m in meters}
        replies = await asyncio.gather(
            *(p.cco.transact(m.address, read(m.address), timeout=30) for m in meters)
        )
        assert [dlt645.decode(r).address for r in replies] == [m.address for m in meters]
        assert p.sim.counters.peak_in_flight <= 3
        reply = await p.cco.transact(meters[2].address, read(meters[2].address), timeout=30, method="monitor")
        assert dlt645.decode(reply).address == meters[2].address
