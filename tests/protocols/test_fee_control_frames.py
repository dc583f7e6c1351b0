"""Fee-control frames: DL/T 645 control command 1CH with every N1 code, DL/T 698.45 relay/alarm/
保电 methods (bytes checked by hand against the ACTION-Request layout), credit objects."""

from __future__ import annotations

import pytest

from protocols import dlt645, dlt698
from protocols.dlt698 import Control
from protocols.errors import ProtocolError

N1 = {
    dlt645.RelayAction.TRIP: 0x1A,
    dlt645.RelayAction.CLOSE_ALLOWED: 0x1B,
    dlt645.RelayAction.DIRECT_CLOSE: 0x1C,
    dlt645.RelayAction.ALARM: 0x2A,
    dlt645.RelayAction.ALARM_RELEASE: 0x2B,
    dlt645.RelayAction.KEEP_POWER: 0x3A,
    dlt645.RelayAction.KEEP_POWER_RELEASE: 0x3B,
}


@pytest.mark.parametrize("action", list(N1), ids=lambda a: a.name)
def test_645_control_command_round_trip(action: dlt645.RelayAction) -> None:
    frame = dlt645.relay_control_request("000000052086", action, "2026-07-01 15:41:24", password="02123456")
    raw = dlt645.encode(frame, preamble=0)
    decoded = dlt645.decode(raw)
    assert decoded.control == 0x1C and len(decoded.data) == 16
    assert (
        decoded.data[8] == N1[action] and decoded.data[9] == 0
    )  # N1, N2 (before +33H is removed on the wire)
    cmd = dlt645.parse_relay_control(decoded)
    assert (cmd.action, cmd.valid_until, cmd.auth.password) == (action, "2026-07-01 15:41:24", "02123456")
    assert raw[10 + 8] == (N1[action] + 0x33) & 0xFF  # +33H on the wire


def test_645_credit_registers() -> None:
    for di in (0x00900200, 0x00900201, 0x04001001, 0x04001002, 0x04001003, 0x04001004, 0x04001005):
        row = dlt645.lookup(di)
        assert row is not None and row.unit == "yuan"
        assert dlt645.decode_payload(di, dlt645.encode_values(di, [12.34])).values == (12.34,)
    write = dlt645.write_request("000000052086", 0x04001001, [20.0], password="02000000")
    parsed = dlt645.parse_write_request(dlt645.decode(dlt645.encode(write, preamble=0)))
    assert parsed.di == 0x04001001 and parsed.payload == bytes.fromhex("00200000")


def apdu_hex(control: Control) -> str:
    omd, data = dlt698.control_action(control)
    return dlt698.ActionRequestNormal(5, omd, data).encode().hex(" ").upper()


def test_698_trip_and_close_bytes() -> None:
    # ACTION-Request-Normal, PIID 5, OMD 80008100, array(1) of structure(4) {OAD F2050201,
    # unsigned 0, long-unsigned 0, bool false}, no time tag
    assert apdu_hex(Control.TRIP) == "07 01 05 80 00 81 00 01 01 02 04 51 F2 05 02 01 11 00 12 00 00 03 00 00"
    # OMD 80008200, array(1) of structure(2) {OAD F2050201, enum 0 = close allowed / 1 = direct}
    assert apdu_hex(Control.CLOSE_ALLOWED) == "07 01 05 80 00 82 00 01 01 02 02 51 F2 05 02 01 16 00 00"
    assert apdu_hex(Control.DIRECT_CLOSE) == "07 01 05 80 00 82 00 01 01 02 02 51 F2 05 02 01 16 01 00"
    assert apdu_hex(Control.ALARM) == "07 01 05 80 00 7F 00 00 00"
    assert apdu_hex(Control.KEEP_POWER_RELEASE) == "07 01 05 80 01 80 00 00 00"


@pytest.mark.parametrize("control", list(Control), ids=lambda c: c.name)
def test_698_control_round_trip(control: Control) -> None:
    omd, data = dlt698.control_action(control)
    apdu = dlt698.decode_apdu(dlt698.ActionRequestNormal(9, omd, data).encode())
    assert isinstance(apdu, dlt698.ActionRequestNormal)
    assert dlt698.parse_control(apdu.omd, apdu.data).control is control


def test_698_control_refuses_other_methods_and_shapes() -> None:
    with pytest.raises(ProtocolError, match="not a fee-control method"):
        dlt698.parse_control(dlt698.OMD(0x4000, 127, 0), dlt698.Data(dlt698.DataType.NULL, None))
    with pytest.raises(ProtocolError, match="non-empty array"):
        dlt698.parse_control(dlt698.OMD(0x8000, 129, 0), dlt698.Data(dlt698.DataType.NULL, None))


def test_698_credit_objects() -> None:
    limits = dlt698.money_structure(2000, 1000)
    assert dlt698.money_values(limits, 2) == (2000, 1000)
    named = dlt698.values(dlt698.ALARM_LIMITS, limits)
    assert named is not None and [(e["quantity"], e["value"]) for e in named] == [
        ("credit.alarm1", 20.0),
        ("credit.alarm2", 10.0),
    ]
    other = dlt698.values(dlt698.OTHER_LIMITS, dlt698.money_structure(1000, 200000, 200))
    assert other is not None and [e["value"] for e in other] == [10.0, 2000.0, 2.0]
    with pytest.raises(ProtocolError, match="does not fit"):
        dlt698.money_structure(-1)
    set_req = dlt698.SetRequestNormal(3, dlt698.OTHER_LIMITS, dlt698.money_structure(1000, 200000, 200))
    assert dlt698.decode_apdu(set_req.encode()) == set_req
