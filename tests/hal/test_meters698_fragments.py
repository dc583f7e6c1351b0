"""DL/T 698.45 fragmented (分帧) replies: the master's reassembly over a real pty, and the reassembler.

The virtual meters (``sim.meters``) fragment replies longer than their ``max_apdu``; the
terminal side is the linux hal (``PySerialLink`` on the pty slave) under ``Rs485Port``.
Misbehaving meters (gaps, duplicates, endless transfers) are scripted peers on a pty that
speak frames built with the codec. Expected values come from the virtual meters' state and
from the frames the peers sent, never from the code under test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.clock import LoopClock
from hal.linux.serial import PySerialLink
from hal.meters import Dlt698Master
from hal.meters.dlt698 import FragmentError
from hal.rs485 import Rs485Port
from protocols import dlt698
from protocols.errors import ProtocolError
from tests.hal._peers import PtyPeer
from tests.hal.test_meters698 import A698, A698_3P, NOW, SETTINGS, kwh, local, rig

pytestmark = pytest.mark.looptime


def _sent_frames(port: Rs485Port) -> list[dlt698.Frame]:
    out: list[dlt698.Frame] = []
    for entry in port.trace.entries():
        if entry.direction == "tx":
            out.extend(f for f in dlt698.Framer().feed(entry.data) if isinstance(f, dlt698.Frame))
    return out


# ---------------------------------------------------------------------------------------- round trip


async def test_fragmented_curve_read_round_trip_over_a_pty() -> None:
    async with rig() as r:
        client = r.c698
        responder = r.bus.responders698[A698]
        meter = r.meters[A698]
        since = datetime(2026, 1, 12, 6, 0)
        count = client.curve_batch
        assert count > 3  # more than the 3 records an unfragmented reply held
        r.port.trace.clear()
        records = await client.read_curve(since, count)
        expected = [p for p in meter.curve if since <= local(p.ts) < since + timedelta(minutes=15 * count)]
        assert len(expected) == count
        assert [rec.at for rec in records] == [local(p.ts) for p in expected]
        for rec, p in zip(records, expected, strict=True):
            assert rec.values["energy.active.import.total"] == kwh(p.forward_total)
            assert rec.values["voltage.a"] == round(p.instant.voltage[0] or 0.0, 1)
        # the meter really fragmented it, and the master acknowledged every piece but the last
        assert responder.transfers == 1 and responder.fragments_sent >= 3
        assert r.master.fragmented_replies == 1 and r.master.fragments == responder.fragments_sent
        sent = _sent_frames(r.port)
        acks = [f for f in sent if f.fragment is not None]
        assert len(sent) == 1 + len(acks) and len(acks) == responder.fragments_sent - 1
        assert all(f.fragment is not None and f.fragment.kind is dlt698.FragmentType.ACK for f in acks)
        assert [f.fragment.seq for f in acks if f.fragment] == list(range(len(acks)))  # first transfer: 0..
        assert all(f.sa == A698 and not f.from_server and f.apdu == b"" for f in acks)


async def test_three_phase_curve_and_realtime_still_whole_frames() -> None:
    async with rig() as r:
        responder = r.bus.responders698[A698_3P]
        got = await r.c698_3p.read_realtime(["energy", "voltage", "current"])
        assert "voltage.c" in got and responder.transfers == 0  # small replies are not fragmented
        records = await r.c698_3p.read_curve(datetime(2026, 1, 12, 7, 0), r.c698_3p.curve_batch)
        meter = r.meters[A698_3P]
        expected = [p for p in meter.curve if local(p.ts) >= datetime(2026, 1, 12, 7, 0)]
        assert [x.at for x in records] == [local(p.ts) for p in expected[: r.c698_3p.curve_batch]]
        assert responder.transfers == 1
        assert records[-1].values["current.c"] == pytest.approx(
            expected[len(records) - 1].instant.current[2] or 0, abs=1e-3
        )


async def test_lost_middle_fragment_is_a_typed_error_and_a_retry_succeeds() -> None:
    async with rig() as r:
        responder = r.bus.responders698[A698]
        responder.lose_fragment(1)
        since = datetime(2026, 1, 12, 6, 0)
        started = r.clock.monotonic()
        with pytest.raises(FragmentError) as err:
            await r.c698.read_curve(since, 12)
        assert isinstance(err.value, ProtocolError) and err.value.device == A698
        assert "no fragment after" in str(err.value)
        assert responder.fragments_lost == 1 and r.master.fragment_errors == 1
        assert r.clock.monotonic() - started < 6.0  # one per-fragment timeout, not a hang
        records = await r.c698.read_curve(since, 12)  # the meter dropped the old transfer
        assert len(records) == 12 and responder.transfers == 2


# ---------------------------------------------------------------------------------------- scripted meters

Script = Callable[[dlt698.Frame, int], list[dlt698.Frame]]


def _pieces(apdu: bytes, size: int, *, first_seq: int = 0) -> list[dlt698.Frame]:
    whole = dlt698.Frame(dlt698.CONTROL_SERVER_RESPONSE, A698, 0, apdu=apdu)
    return dlt698.split(whole, size, first_seq=first_seq)


def _record_reply(piid: int, rows: int) -> bytes:
    dt = dlt698.DataType
    oad = dlt698.OAD.of(0x50020200)
    rcsd = (dlt698.OAD.of(0x20210200), dlt698.OAD.of(0x00100201))
    data = tuple(
        (
            dlt698.Data(dt.DATE_TIME_S, dlt698.DateTimeS(2026, 1, 12, i // 4, 15 * (i % 4), 0)),
            dlt698.Data(dt.DOUBLE_LONG_UNSIGNED, 1000 + i),
        )
        for i in range(rows)
    )
    return dlt698.GetResponseRecord(piid, dlt698.ResultRecord(oad, rcsd, rows=data)).encode()


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[Dlt698Master, list[dlt698.Frame]]]:
    """A pty whose far end answers each frame from ``script(frame, n)`` (n = frames so far)."""
    clock = LoopClock(start=NOW)
    peer = PtyPeer()
    received: list[dlt698.Frame] = []

    async def serve() -> None:
        framer = dlt698.Framer()
        while True:
            for frame in framer.feed(await peer.receive_some()):
                if isinstance(frame, dlt698.Frame):
                    received.append(frame)
                    await clock.sleep(0.05)
                    for reply in script(frame, len(received)):
                        await peer.send(dlt698.encode(reply))

    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(serve(), name="test-scripted-meter")
        try:
            link = PySerialLink(os.ttyname(peer._slave), SETTINGS, name="rs485-s")
            async with Rs485Port(link, clock=clock, name="rs485-s") as port:
                peer.release_slave()
                yield Dlt698Master(port, timeout=1.0), received
        finally:
            serving.cancel()
            await peer.aclose()


def _piid_of(frame: dlt698.Frame) -> int:
    return frame.apdu[2] & 0x3F


RECORD = (dlt698.OAD.of(0x50020200), dlt698.RSD(9, (1,)), [dlt698.OAD.of(0x20210200)])


async def test_well_formed_scripted_transfer_reassembles() -> None:
    state: dict[str, list[dlt698.Frame]] = {}

    def script(frame: dlt698.Frame, n: int) -> list[dlt698.Frame]:
        if frame.fragment is None:
            state["pieces"] = _pieces(_record_reply(_piid_of(frame), 20), 64, first_seq=4094)  # wraps
        pieces = state["pieces"]
        return [pieces.pop(0)] if pieces else []

    async with scripted(script) as (master, received):
        result = await master.get_record(A698, *RECORD)
        assert result.rows is not None and len(result.rows) == 20
        assert [row[1].value for row in result.rows] == [1000 + i for i in range(20)]
        seqs = [f.fragment.seq for f in received if f.fragment is not None]
        assert seqs[:3] == [4094, 4095, 0]  # acks follow the wrapped sequence numbers


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        ([0, 2], "gap"),  # a middle piece skipped
        ([0, 0], "abandons the transfer"),  # the start sent again
        ([0, 1, 1], "duplicate"),  # a piece sent twice
    ],
)
async def test_out_of_order_fragments_raise_fragment_error(order: list[int], reason: str) -> None:
    state: dict[str, list[dlt698.Frame]] = {}

    def script(frame: dlt698.Frame, n: int) -> list[dlt698.Frame]:
        if frame.fragment is None:
            state["pieces"] = _pieces(_record_reply(_piid_of(frame), 12), 40)
            state["order"] = list(order)
        if not state["order"]:
            return []
        return [state["pieces"][state["order"].pop(0)]]

    async with scripted(script) as (master, _):
        with pytest.raises(FragmentError) as err:
            await master.get_record(A698, *RECORD)
        assert reason in str(err.value) and err.value.device == A698
        assert master.fragment_errors == 1 and master.fragmented_replies == 0


async def test_endless_transfer_is_cut_at_max_fragments() -> None:
    def script(frame: dlt698.Frame, n: int) -> list[dlt698.Frame]:
        kind = dlt698.FragmentType.START if frame.fragment is None else dlt698.FragmentType.MIDDLE
        seq = 0 if frame.fragment is None else (frame.fragment.seq + 1) & 0xFFF
        piece = _pieces(
            b"\x85\x03" + bytes([_piid_of(frame) if frame.fragment is None else 0]) + b"\x00" * 9, 6
        )[0]
        return [
            dlt698.Frame(piece.control, A698, 0, apdu=piece.apdu, fragment=dlt698.FragmentHeader(seq, kind))
        ]

    async with scripted(script) as (master, received):
        master.max_fragments = 5
        with pytest.raises(FragmentError) as err:
            await master.get_record(A698, *RECORD)
        assert "more than 5 fragments" in str(err.value)
        assert len(received) == 5  # the request and 4 acks; no 5th ack is sent


# ---------------------------------------------------------------------------------------- property


def _model(order: list[int], n: int) -> list[str]:
    """What a strict reassembler must say per piece: "wait", "done" or "error"."""
    out: list[str] = []
    at: int | None = None
    for i in order:
        if i == 0:
            out.append("wait" if at is None else "error")
            at = 0
        elif at is None or i != at + 1:
            out.append("error")
            at = None
        elif i == n - 1:
            out.append("done")
            at = None
        else:
            out.append("wait")
            at = i
    return out


@settings(max_examples=300, deadline=None)
@given(
    apdu=st.binary(min_size=2, max_size=300),
    size=st.integers(1, 64),
    first_seq=st.integers(0, 0xFFF),
    data=st.data(),
)
def test_reassembler_accepts_only_in_order_runs(
    apdu: bytes, size: int, first_seq: int, data: st.DataObject
) -> None:
    pieces = _pieces(apdu, size, first_seq=first_seq)
    n = len(pieces)
    if n < 2:
        return
    in_order = list(range(n))
    order = data.draw(
        st.one_of(
            st.permutations(in_order),
            st.lists(st.integers(0, n - 1), max_size=3 * n),  # duplicates, gaps, anything
            st.just(in_order + in_order),  # two good transfers back to back
        )
    )
    joiner = dlt698.Reassembler()
    said: list[str] = []
    for i in order:
        try:
            got = joiner.add(pieces[i])
        except ProtocolError:
            said.append("error")
            continue
        if got is None:
            said.append("wait")
        else:
            assert got == apdu  # never anything but the original bytes
            said.append("done")
    assert said == _model(list(order), n)
    assert joiner.completed == said.count("done")
