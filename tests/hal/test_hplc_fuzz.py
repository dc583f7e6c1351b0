"""Fuzzing the CCO driver's frame handling (hal.hplc) with hypothesis, in virtual time.

Random and mutated module frames -- well-formed 1376.2 up frames with random AFN / Fn / R /
addresses / data unit, truncated frames, flipped bytes, line noise -- are written to the driver
by the virtual CCO (``VirtualCco.inject``) over an in-memory link. Whatever arrives: no exception
escapes (the driver's tasks are alive and its link is not marked broken), every rejected item is
counted, nothing hangs (a virtual-time bound), and a point read through the same driver works
afterwards.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal.hplc import Cco
from protocols import dlt645
from protocols import gdw1376_2 as q
from tests.hal._cco_harness import Pair, cco_pair, make_meters

pytestmark = pytest.mark.looptime

ENERGY = 0x00010000
UP, PRM, HPLC = 0x80, 0x40, 0x03
# AFNs the driver treats specially (with the Fns it parses), plus anything else
KNOWN_FNS = {0x00: [1, 2], 0x03: [1, 4, 10], 0x06: [1, 2, 3, 4, 5, 6, 10], 0x10: [1, 2], 0x13: [1],
             0x14: [1, 2, 3], 0xF1: [1]}  # fmt: skip
AFNS = st.one_of(st.sampled_from(sorted(KNOWN_FNS)), st.integers(0, 255))
ADDRESS = st.text("0123456789", min_size=12, max_size=12)


@st.composite
def event_units(draw: st.DrawFn) -> bytes:
    """AFN06 F5-shaped units: device type | protocol | L | content, L right or wrong, content a
    power list (event type + 6-byte addresses, a state byte for collectors) or anything."""
    device = draw(st.sampled_from([0, 1, 2, 7, 255]))
    protocol = draw(st.sampled_from([1, 2, 3, 4, 5, 9]))
    if protocol == 4:
        per = 7 if device == 0 else 6
        content = bytes([draw(st.sampled_from([1, 2, 3]))]) + draw(st.binary(max_size=per * 5))
    else:
        content = draw(st.binary(max_size=60))
    length = draw(st.one_of(st.just(len(content)), st.integers(0, 255)))
    return bytes([device, protocol, length]) + content


@st.composite
def up_frames(draw: st.DrawFn) -> bytes:
    """A well-formed up frame (right L and CS) with random header fields and data unit."""
    flag = draw(st.booleans())
    relays = tuple(draw(st.lists(ADDRESS, max_size=2))) if flag else ()
    info = q.UpInfo(
        module_flag=int(flag), relay_level=len(relays), phase=draw(st.integers(0, 15)),
        event_flag=draw(st.integers(0, 1)), seq=draw(st.integers(0, 255)),
    )  # fmt: skip
    control = UP | (PRM if draw(st.integers(0, 3)) else 0) | draw(st.sampled_from([HPLC, HPLC, 1, 0x3F]))
    afn = draw(AFNS)
    fn = draw(st.one_of(st.sampled_from(KNOWN_FNS.get(afn, [1])), st.integers(1, 248)))
    frame = q.Frame(
        control, info, afn, fn, draw(st.one_of(event_units(), st.binary(max_size=80))),
        draw(ADDRESS) if flag else None, relays, draw(ADDRESS) if flag else None,
    )  # fmt: skip
    return q.encode(frame)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(up_frames()))
    how = draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        return bytes(raw[: draw(st.integers(1, len(raw) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(raw)
    return bytes(raw[: draw(st.integers(1, len(raw)))]) + draw(up_frames())


NOISE = st.binary(min_size=1, max_size=64)
STREAMS = st.lists(st.one_of(up_frames(), damaged(), NOISE), min_size=1, max_size=8)


def rejected(cco: Cco) -> int:
    c = cco.counters
    return c.decode_errors + c.bad_units + c.unsupported_frames + c.late_replies + c.duplicate_reports


def alive(p: Pair) -> None:
    tasks = p.cco._tasks
    assert tasks and not any(t.done() for t in tasks), [t for t in tasks if t.done()]
    assert p.cco._broken is None


async def read_energy(p: Pair) -> float:
    address = p.meters[0].address
    reply = await p.cco.transact(
        address, dlt645.encode(dlt645.read_request(address, ENERGY)), timeout=30, method="monitor"
    )
    decoded = dlt645.decode(reply)
    assert decoded.address == address
    value = dlt645.parse_read_response(decoded).values[0]
    assert isinstance(value, float)
    return value


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAMS, chunked=st.booleans())
async def test_module_frames_never_escape_the_driver_and_a_read_still_works(
    stream: list[bytes], chunked: bool
) -> None:
    async with cco_pair(make_meters(2), latency_s=(0.3, 0.6)) as p:
        await p.cco.reset()
        await p.cco.sync_archive([m.address for m in p.meters])
        before_rx, before_rejected = p.cco.counters.frames_rx, rejected(p.cco)
        before_skipped = int(p.cco.statistics()["framer_skipped_bytes"])  # type: ignore[call-overload]
        async with p.clock.timeout(600):  # no hang: bounded in virtual time
            for chunk in stream:
                if chunked:  # split across link reads, as a slow UART would deliver them
                    for i in range(0, len(chunk), 7):
                        await p.sim.inject(chunk[i : i + 7])
                else:
                    await p.sim.inject(chunk)
            await p.clock.sleep(2.0)
            alive(p)
            # the driver still reads a meter (after re-identifying, if a fake F10 said "restarted")
            value = await read_energy(p)
            assert value == pytest.approx(p.meters[0].registers(p.clock.now()).forward[0], abs=0.01)
            # every injected byte was taken as a frame, rejected (counted) or skipped (counted);
            # a partial frame held at the end is settled by the read's own reply frames
            skipped = int(p.cco.statistics()["framer_skipped_bytes"]) - before_skipped  # type: ignore[call-overload]
            assert p.cco.counters.frames_rx - before_rx + rejected(p.cco) - before_rejected + skipped > 0
            alive(p)


@pytest.mark.parametrize(
    "stream",
    [
        b"\x68\xff\xff" + b"\x00" * 40,  # a length that cannot be: the rest must not be swallowed
        b"\x68\x0f\x00\xc3" + bytes(6) + b"\x06\x10\x00",  # AFN06 F5 cut short before CS/16
        b"\x68" * 30,
        bytes(range(256)),
    ],
    ids=["absurd-length", "truncated-report", "all-starts", "every-byte"],
)
async def test_known_nasty_inputs_are_counted_and_the_next_read_works(stream: bytes) -> None:
    async with cco_pair(make_meters(1), latency_s=0.5) as p:
        await p.cco.reset()
        await p.cco.sync_archive([m.address for m in p.meters])
        skipped = int(p.cco.statistics()["framer_skipped_bytes"])  # type: ignore[call-overload]
        errors = p.cco.counters.decode_errors
        async with p.clock.timeout(120):
            await p.sim.inject(stream)
            await read_energy(p)
        alive(p)
        after = int(p.cco.statistics()["framer_skipped_bytes"])  # type: ignore[call-overload]
        assert after > skipped or p.cco.counters.decode_errors > errors


@settings(max_examples=60, deadline=None)
@given(stream=st.lists(st.one_of(up_frames(), damaged()), min_size=1, max_size=5))
async def test_random_reports_are_confirmed_or_rejected_and_events_are_typed(stream: list[bytes]) -> None:
    """AFN06 reports with random data units: each is confirmed (AFN00 F1 to the module) and
    published, or rejected and counted; published events carry str addresses and bytes."""
    async with cco_pair(make_meters(1), latency_s=0.5) as p:
        await p.cco.reset()
        events = p.cco.events()
        for chunk in stream:
            await p.sim.inject(chunk)
        await p.clock.sleep(2.0)
        alive(p)
        while (event := events.get_nowait()) is not None:
            assert isinstance(event.kind, str) and isinstance(event.payload, bytes)
            assert all(isinstance(a, str) for a in event.addresses)
        c = p.cco.counters
        assert c.confirms_sent >= c.reports - c.duplicate_reports >= 0
        await events.aclose()
