"""Virtual CCO outage reports (last gasp) through the real driver, and the timing model alone."""

from __future__ import annotations

import asyncio

import pytest

from hal.interfaces import CarrierEvent
from sim.hplc import POWER_OFF, POWER_ON, LastGaspTiming, OutageModel, SimNode
from sim.scenarios import POWER_DOWN_JUDGEMENT_S
from tests.hal._cco_harness import Pair, cco_pair, make_meters

TIMING = LastGaspTiming()


async def ready(p: Pair) -> None:
    await p.cco.reset()
    await p.cco.sync_archive([m.address for m in p.meters])


def test_model_defaults_are_the_worlds_timing() -> None:
    from sim.world import LASTGASP_AGGREGATION_S, LASTGASP_STA_DELAY_S

    assert TIMING.judgement_s == POWER_DOWN_JUDGEMENT_S
    assert TIMING.sta_delay_s == LASTGASP_STA_DELAY_S
    assert TIMING.off_window_s == LASTGASP_AGGREGATION_S


def test_model_aggregates_one_window_and_reports_only_the_difference() -> None:
    model = OutageModel(seed=4)
    a = [f"00000000000{i}" for i in range(1, 6)]
    model.power_off(a[:3], 100.0)
    model.power_off(a[3:], 120.0)  # still inside the first window (opened at ~103)
    assert model.due(150.0) == []
    (report,) = model.due(200.0)
    assert report.kind == POWER_OFF and set(report.addresses) == set(a)
    lo, hi = (
        100.0 + TIMING.judgement_s + TIMING.sta_delay_s[0],
        100.0 + TIMING.judgement_s + TIMING.sta_delay_s[1],
    )
    assert lo <= report.first_frame <= hi
    assert report.at == pytest.approx(report.first_frame + TIMING.off_window_s)
    model.power_off(a, 300.0)  # already off: nothing new
    assert model.due(1000.0) == []
    model.power_on(a[:2], 1000.0)
    (back,) = model.due(1100.0)
    assert back.kind == POWER_ON and set(back.addresses) == set(a[:2])
    assert back.at <= 1000.0 + TIMING.restore_delay_s[1] + TIMING.restore_aggregation_s


def test_a_dip_shorter_than_the_judgement_sends_nothing() -> None:
    model = OutageModel(seed=1)
    model.power_off(["000000000001"], 10.0)
    model.power_on(["000000000001"], 11.5)
    assert model.due(500.0) == []
    assert model.dips == 1


def test_a_power_on_never_overtakes_its_power_off() -> None:
    model = OutageModel(seed=2)
    model.power_off(["000000000001"], 0.0)
    model.power_on(["000000000001"], 10.0)  # back before the off window closes
    reports = model.due(1000.0)
    assert [r.kind for r in reports] == [POWER_OFF, POWER_ON]


@pytest.mark.looptime
async def test_power_off_and_on_lists_reach_the_terminal_with_last_gasp_timing() -> None:
    meters = make_meters(50)
    async with cco_pair(meters, seed=7) as p:
        await ready(p)
        events = p.cco.events()
        t0 = p.clock.now()
        for m in meters:
            m.power_off(t0)
        p.sim.node_power([m.address for m in meters], False, at=t0)
        off: list[CarrierEvent] = []
        while sum(len(e.addresses) for e in off) < 50:
            event = await anext(events)
            assert event.kind == "power_off"
            off.append(event)
        assert len(off) == 2  # 50 addresses do not fit one 255-byte list (42 max)
        assert {a for e in off for a in e.addresses} == {m.address for m in meters}
        earliest = t0 + TIMING.judgement_s + TIMING.sta_delay_s[0] + TIMING.off_window_s
        latest = t0 + TIMING.judgement_s + TIMING.sta_delay_s[1] + TIMING.off_window_s + 1.0
        assert all(earliest <= e.ts <= latest for e in off)
        await p.clock.sleep(1.0)  # the last confirmation reaches the module
        assert all(r.confirmed_at is not None and r.sends == 1 for r in p.sim.sent)
        t1 = p.clock.now() + 100
        await p.clock.sleep(100)
        for m in meters[:10]:
            m.power_on(t1)
        p.sim.node_power([m.address for m in meters[:10]], True, at=t1)
        on = await anext(events)
        assert on.kind == "power_on" and set(on.addresses) == {m.address for m in meters[:10]}
        assert on.ts - t1 <= TIMING.restore_delay_s[1] + TIMING.restore_aggregation_s + 1.0
        assert on.ts - t1 <= 300.0  # the interop test's 5-minute bound
        await events.aclose()


@pytest.mark.looptime
async def test_an_unconfirmed_report_is_resent_and_delivered_once() -> None:
    meters = make_meters(3)
    async with cco_pair(meters, resend_s=10.0) as p:
        await ready(p)
        events = p.cco.events()
        confirms = p.cco.counters.confirms_sent
        p.sim.drop_confirms = 2  # the module misses two confirmations: it sends the report 3 times
        p.sim.node_power([meters[0].address], False)
        event = await anext(events)
        assert event.kind == "power_off" and event.addresses == (meters[0].address,)
        await p.clock.sleep(60)
        (record,) = p.sim.sent
        assert record.sends == 3 and record.confirmed_at is not None
        assert p.cco.counters.reports == 3
        assert p.cco.counters.duplicate_reports == 2
        assert p.cco.counters.confirms_sent - confirms == 3
        assert events.get_nowait() is None  # delivered once
        await events.aclose()


@pytest.mark.looptime
async def test_collector_reports_carry_the_powered_state() -> None:
    meters = make_meters(1)
    collector = SimNode("200000000001", answer=lambda frame, now: None, collector=True)
    async with cco_pair(meters, extra_nodes=[collector]) as p:
        await p.cco.reset()
        await p.cco.sync_archive([meters[0].address, collector.address])
        events = p.cco.events()
        p.sim.node_power([collector.address], False)
        event = await anext(events)
        assert event.kind == "power_off"
        assert event.extra["collector"] is True
        assert event.extra["powered"] == {collector.address: False}
        assert event.extra["device_type"] == 0
        await events.aclose()


@pytest.mark.looptime
async def test_meter_event_report_names_the_meter() -> None:
    from protocols import dlt645

    meters = make_meters(2)
    async with cco_pair(meters) as p:
        await ready(p)
        events = p.cco.events()
        status = dlt645.encode(dlt645.read_response(meters[1].address, 0x04001501, bytes(12)))
        await p.sim.report_meter_event(meters[1].address, status)
        event = await anext(events)
        assert event.kind == "meter_event"
        assert event.addresses == (meters[1].address,)
        assert event.payload == status
        await events.aclose()


@pytest.mark.looptime
async def test_module_led_reading_answers_asks_and_hands_replies_to_the_reader() -> None:
    from hal.interfaces import RouteAnswer, RouteAsk
    from protocols import dlt645

    meters = make_meters(3)
    async with cco_pair(meters, latency_s=0.5) as p:
        await ready(p)
        asked: list[str] = []
        replies: list[tuple[str, bytes]] = []
        finished = asyncio.Event()
        given: set[str] = set()

        class Reader:
            async def ask(self, ask: RouteAsk) -> RouteAnswer:
                asked.append(ask.address)
                if ask.address == meters[1].address or ask.address in given:
                    return RouteAnswer(ok=True)  # nothing (more) to read at this one
                given.add(ask.address)
                return RouteAnswer(dlt645.encode(dlt645.read_request(ask.address, 0x00010000)))

            def data(self, address: str, frame: bytes, *, duration_s: float) -> None:
                replies.append((address, frame))

            def finished(self) -> None:
                finished.set()

        p.cco.lead(Reader())
        events = p.cco.events()
        await p.cco.route("restart")
        await asyncio.wait_for(finished.wait(), 60)
        # each node until it is done: asked again after its reply came back
        a, b, c = (m.address for m in meters)
        assert sorted(asked) == sorted([a, a, b, c, c])
        assert sorted(a for a, _ in replies) == sorted([meters[0].address, meters[2].address])
        assert all(dlt645.decode(frame).address == address for address, frame in replies)
        route = await anext(events)  # the replies went to the reader, not to the event stream
        assert route.kind == "route_change" and route.extra["task"] == 1
        assert p.cco.counters.route_data == 2
        await events.aclose()
