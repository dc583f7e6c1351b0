"""MeterResponder: each DL/T 645 function answered the way a meter would, checked through the codec."""

from __future__ import annotations

import calendar
from datetime import datetime

import pytest

from protocols.dlt645 import (
    Frame,
    RelayAction,
    broadcast_time_request,
    decode,
    freeze_request,
    load_curve_request,
    parse_error,
    parse_read_address_response,
    parse_read_response,
    read_address_request,
    read_followup_request,
    read_request,
    relay_control_request,
    write_request,
)
from sim.loads import ConstantProfile
from sim.meters.model import REPORT_BIT_POWER_DOWN, SW3_RELAY_OPEN, VirtualMeter
from sim.meters.responder import MeterResponder

MIDNIGHT = calendar.timegm((2024, 3, 3, 16, 0, 0)) * 1.0  # 2024-03-04 00:00 local (UTC+8)
ADDR = "000012345678"


def make(phase: str = "A", kw: float = 1.0) -> tuple[VirtualMeter, MeterResponder]:
    meter = VirtualMeter(
        ADDR, profile=ConstantProfile(kw=kw, kvar=0.0, volts=220.0), start=MIDNIGHT, phase=phase
    )  # type: ignore[arg-type]
    return meter, MeterResponder(meter)


def ask(resp: MeterResponder, req: Frame, now: float, *, alone: bool = False) -> Frame | None:
    raw = resp.handle(req, now=now, alone=alone)
    return None if raw is None else decode(raw)


def test_read_energy_block_and_tariff() -> None:
    _, resp = make(kw=2.0)
    reply = ask(resp, read_request(ADDR, 0x0001FF00), MIDNIGHT + 86400)
    assert reply is not None and reply.control == 0x91 and reply.address == ADDR
    res = parse_read_response(reply)
    assert res.values == pytest.approx(
        (48.0, 6.0, 12.0, 14.0, 16.0)
    )  # 3 h 尖, 6 h 峰, 7 h 平, 8 h 谷 at 2 kW


def test_single_phase_meter_ff_fills_b_and_c() -> None:
    _, resp = make()
    reply = ask(resp, read_request(ADDR, 0x0201FF00), MIDNIGHT + 60)
    assert reply is not None
    assert parse_read_response(reply).values == (220.0, None, None)
    assert reply.data[-4:] == b"\xff" * 4


def test_unknown_di_is_no_requested_data() -> None:
    _, resp = make()
    reply = ask(resp, read_request(ADDR, 0x0F0F0F0F), MIDNIGHT)
    assert reply is not None and reply.control == 0xD1
    assert parse_error(reply).bits == 0x02


def test_clock_and_broadcast_time_sync() -> None:
    meter, resp = make()
    meter.skew_s = 120.0
    reply = ask(resp, read_request(ADDR, 0x04000102), MIDNIGHT + 3600)
    assert reply is not None and parse_read_response(reply).values == ("01:02:00",)
    sync = broadcast_time_request(datetime(2024, 3, 4, 1, 0, 10))
    assert ask(resp, sync, MIDNIGHT + 3610) is None  # broadcast: never answered
    assert meter.skew_s == pytest.approx(0.0)


def test_load_curve_with_follow_up() -> None:
    meter, resp = make(kw=4.0)
    now = MIDNIGHT + 6 * 3600 + 5
    first = ask(resp, load_curve_request(ADDR, start="2024-03-04 01:00", count=8), now)
    assert first is not None and first.control == 0xB1  # follow-up flag: more records
    recs = parse_read_response(first).values
    assert len(recs) == 5
    assert recs[0][0] == "2024-03-04 01:00" and recs[0][1] == pytest.approx(4.0)  # type: ignore[index]
    assert recs[4][0] == "2024-03-04 02:00"  # type: ignore[index]
    nxt = ask(resp, read_followup_request(ADDR, 0x06000001, 1), now)
    assert nxt is not None and nxt.control == 0x92
    res = parse_read_response(nxt)
    assert res.seq == 1 and [r[0] for r in res.values] == [  # type: ignore[index]
        "2024-03-04 02:15",
        "2024-03-04 02:30",
        "2024-03-04 02:45",
    ]
    none = ask(resp, read_followup_request(ADDR, 0x06000001, 2), now)
    assert none is not None and parse_error(none).bits == 0x02
    assert len(meter.curve) == 25  # 6 h of points after the one the meter held at midnight


def test_daily_freeze_and_power_down_records() -> None:
    meter, resp = make(kw=1.0)
    meter.power_off(MIDNIGHT + 86400 + 3600)
    assert ask(resp, read_request(ADDR, 0x00010000), MIDNIGHT + 86400 + 3700) is None  # off: silent
    meter.power_on(MIDNIGHT + 86400 + 7200)
    now = MIDNIGHT + 86400 + 7300
    frz = ask(resp, read_request(ADDR, 0x05060101), now)
    assert frz is not None and parse_read_response(frz).values[0] == pytest.approx(24.0)
    when = ask(resp, read_request(ADDR, 0x05060001), now)
    assert when is not None and parse_read_response(when).values == ("2024-03-05 00:00",)
    count = ask(resp, read_request(ADDR, 0x03110000), now)
    assert count is not None and parse_read_response(count).values == (1,)
    rec = ask(resp, read_request(ADDR, 0x03110001), now)
    assert rec is not None
    assert parse_read_response(rec).values == ("2024-03-05 01:00:00", "2024-03-05 02:00:00")
    report = ask(resp, read_request(ADDR, 0x04001501), now)
    assert report is not None
    word, counts = parse_read_response(report).values
    assert isinstance(word, int) and word >> REPORT_BIT_POWER_DOWN & 1 and counts == (1,)
    # the terminal clears the reported bit with 04001503 (0 bits are cleared)
    mask = ((1 << 96) - 1) & ~(1 << REPORT_BIT_POWER_DOWN)
    ok = ask(resp, write_request(ADDR, 0x04001503, [mask], password="02000000", operator="12345678"), now)
    assert ok is not None and ok.control == 0x94 and ok.data == b""
    assert meter.report_status == 0


def test_write_with_wrong_password_is_refused() -> None:
    meter, resp = make()
    meter.report_status = 1 << REPORT_BIT_POWER_DOWN
    bad = ask(resp, write_request(ADDR, 0x04001503, [0], password="02123456"), MIDNIGHT)
    assert bad is not None and bad.control == 0xD4 and parse_error(bad).bits == 0x04
    assert meter.report_status != 0


def test_relay_trip_and_close() -> None:
    meter, resp = make(kw=1.0)
    until = datetime(2024, 3, 4, 12, 0, 0)
    ack = ask(resp, relay_control_request(ADDR, RelayAction.TRIP, until), MIDNIGHT + 60)
    assert ack is not None and ack.control == 0x9C and ack.data == b""
    assert meter.instant(MIDNIGHT + 120).total_power_kw == 0.0
    sw3 = ask(resp, read_request(ADDR, 0x04000503), MIDNIGHT + 120)
    assert sw3 is not None and parse_read_response(sw3).values[0] & SW3_RELAY_OPEN  # type: ignore[operator]
    power = ask(resp, read_request(ADDR, 0x02030000), MIDNIGHT + 120)
    assert power is not None and parse_read_response(power).values == (0.0,)
    expired = ask(
        resp, relay_control_request(ADDR, RelayAction.DIRECT_CLOSE, "2024-03-03 00:00:00"), MIDNIGHT
    )
    assert expired is not None and expired.control == 0xDC
    assert ask(resp, relay_control_request(ADDR, RelayAction.DIRECT_CLOSE, until), MIDNIGHT + 180) is not None
    assert meter.relay_closed
    bad = ask(resp, relay_control_request(ADDR, RelayAction.TRIP, until, password="02999999"), MIDNIGHT + 200)
    assert bad is not None and parse_error(bad).bits == 0x04 and meter.relay_closed


def test_freeze_command_and_read_address() -> None:
    meter, resp = make()
    ack = ask(resp, freeze_request(ADDR, 99, 99, 99, 99), MIDNIGHT + 600)
    assert ack is not None and ack.control == 0x96
    assert meter.instant_freezes[0].ts == MIDNIGHT + 600
    assert ask(resp, read_address_request(), MIDNIGHT, alone=False) is None
    reply = ask(resp, read_address_request(), MIDNIGHT, alone=True)
    assert reply is not None and parse_read_address_response(reply) == ADDR
