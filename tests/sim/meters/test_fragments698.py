"""The sim DL/T 698.45 responder's fragmented replies, at the bytes level (``make_answer``)."""

from __future__ import annotations

import calendar

from protocols import dlt698
from sim.loads import HouseholdProfile
from sim.meters import Answer, VirtualMeter, make_answer

START = calendar.timegm((2026, 1, 9, 16, 0, 0)) * 1.0
NOW = START + 86400 + 10 * 3600
ADDRESS = "000000000698"


def _request(piid: int = 5) -> bytes:
    dt = dlt698.DataType
    rsd = dlt698.RSD(
        2,
        (
            dlt698.OAD.of(0x20210200),
            dlt698.Data(dt.DATE_TIME_S, dlt698.DateTimeS(2026, 1, 11, 0, 0, 0)),
            dlt698.Data(dt.DATE_TIME_S, dlt698.DateTimeS(2026, 1, 11, 6, 0, 0)),
            dlt698.Data(dt.TI, dlt698.TI(1, 15)),
        ),
    )
    columns = (dlt698.OAD.of(0x20210200), dlt698.OAD.of(0x00100201), dlt698.OAD.of(0x20000200))
    apdu = dlt698.GetRequestRecord(piid, dlt698.GetRecord(dlt698.OAD.of(0x50020200), rsd, columns)).encode()
    return dlt698.encode(dlt698.Frame(dlt698.CONTROL_CLIENT_REQUEST, ADDRESS, 0, apdu=apdu))


def _frame(raw: bytes | None) -> dlt698.Frame:
    assert raw is not None
    (frame,) = [f for f in dlt698.Framer().feed(raw) if isinstance(f, dlt698.Frame)]
    return frame


class StoppedClock:
    """Only ``now`` is used by ``make_answer``: a fixed instant, no event loop needed."""

    def now(self) -> float:
        return NOW


def _answer(max_apdu: int = 80) -> tuple[VirtualMeter, Answer]:
    meter = VirtualMeter(ADDRESS, profile=HouseholdProfile.for_customer(1, 1), start=START)
    return meter, make_answer(meter, "dlt698", clock=StoppedClock(), max_apdu=max_apdu)  # type: ignore[arg-type]


def test_pieces_come_one_per_ack_and_join_to_the_whole_reply() -> None:
    meter, answer = _answer()
    frame = _frame(answer(_request()))
    joiner = dlt698.Reassembler()
    assert frame.fragment is not None and frame.fragment.kind is dlt698.FragmentType.START
    assert len(frame.apdu) == 80
    whole = joiner.add(frame)
    pieces = 1
    while whole is None:
        frame = _frame(answer(dlt698.encode(dlt698.ack_for(frame))))
        pieces += 1
        whole = joiner.add(frame)
    reply = dlt698.decode_apdu(whole)
    assert isinstance(reply, dlt698.GetResponseRecord) and reply.piid == 5
    rows = reply.result.rows or ()
    assert len(rows) == len([p for p in meter.curve if START + 86400 <= p.ts < START + 86400 + 6 * 3600])
    assert pieces == -(-len(whole) // 80)
    # the end fragment needs no ack: one sent anyway is not answered
    assert answer(dlt698.encode(dlt698.ack_for(frame))) is None


def test_ack_of_another_sequence_is_ignored_and_a_new_request_restarts() -> None:
    _, answer = _answer()
    first = _frame(answer(_request(piid=7)))
    assert first.fragment is not None
    wrong = dlt698.Frame(
        0x23,
        ADDRESS,
        0,
        fragment=dlt698.FragmentHeader((first.fragment.seq + 9) & 0xFFF, dlt698.FragmentType.ACK),
    )
    assert answer(dlt698.encode(wrong)) is None
    again = _frame(answer(_request(piid=8)))  # abandons the first transfer
    assert again.fragment is not None and again.fragment.kind is dlt698.FragmentType.START
    assert again.apdu[2] == 8 and again.fragment.seq != first.fragment.seq
    assert answer(dlt698.encode(dlt698.ack_for(first))) is None  # the old transfer is gone


def test_small_replies_stay_whole() -> None:
    _, answer = _answer(max_apdu=200)
    apdu = dlt698.GetRequestNormal(3, dlt698.OAD.of(0x00100200)).encode()
    reply = _frame(answer(dlt698.encode(dlt698.Frame(dlt698.CONTROL_CLIENT_REQUEST, ADDRESS, 0, apdu=apdu))))
    assert reply.fragment is None
