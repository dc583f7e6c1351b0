"""``describe`` for DL/T 645-2007: one frame as a JSON-able dict (the 645 row of ``protocols.inspect``).

Layer: protocols (pure function, no I/O). Must not import asyncio, serial, hal or runtime.
Never raises for bad input: returns ``{"ok": false, "error", "offset"}`` (offset into ``raw``).
"""

from __future__ import annotations

from typing import Any

from protocols import dlt645
from protocols.errors import ProtocolError
from protocols.quantities import QUANTITIES

Description = dict[str, Any]


def _di(di: int) -> str:
    return f"0x{di:08X}"


def _element(name: str, value: dlt645.Value, unit: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "value": value, "unit": unit}
    if name == "status_word_3" and isinstance(value, int):
        out["bits"] = list(dlt645.STATUS_WORD_3.names(value))
    elif name in ("status_word", "reset_mask") and isinstance(value, int):
        out["value"] = f"0x{value:024X}"
        word = value if name == "status_word" else ~value & ((1 << 96) - 1)
        out["bits" if name == "status_word" else "clear_bits"] = list(dlt645.ACTIVE_REPORT_WORD.names(word))
    elif isinstance(value, tuple):
        out["value"] = list(value)
    return out


def _read_values(result: dlt645.ReadResult) -> Description:
    out: Description = {"di": _di(result.di), "item": result.item}
    row = dlt645.lookup(result.di)
    if row is not None and row.di == dlt645.LOAD_CURVE_DI:
        out["records"] = [
            dict(zip(result.names, record, strict=True))
            for record in result.values
            if isinstance(record, tuple)
        ]
        out["units"] = dict(zip(result.names, result.units, strict=True))
        return out
    elements = [_element(n, v, u) for n, v, u in zip(result.names, result.values, result.units, strict=True)]
    if len(elements) == 1:
        out.update(elements[0])
        out["quantity" if elements[0]["name"] in QUANTITIES else "field"] = out.pop("name")
    else:
        out["values"] = elements
        out["unit"] = result.unit
    return out


def _request_fields(frame: dlt645.Frame) -> Description:
    code = frame.code
    C = dlt645.Control  # noqa: N806 - reads like the standard's table
    out: Description = {}
    if code in (C.READ_DATA, C.READ_FOLLOWUP):
        req = dlt645.parse_read_request(frame)
        out["di"] = _di(req.di)
        row = dlt645.lookup(req.di)
        out["item"] = row.item if row else "unknown data identifier"
        if req.seq is not None:
            out["seq"] = req.seq
        elif req.di == dlt645.LOAD_CURVE_DI and req.extra:
            query = dlt645.parse_load_curve_query(req.extra)
            out.update(count=query.count, start=query.start)
        elif req.extra:
            out["extra"] = req.extra.hex(" ").upper()
    elif code == C.WRITE_DATA:
        write = dlt645.parse_write_request(frame)
        out.update(di=_di(write.di), password=write.auth.password, operator=write.auth.operator)
        row = dlt645.lookup(write.di)
        if row is not None:
            result = dlt645.decode_payload(write.di, write.payload, offset=22)
            out.update({k: v for k, v in _read_values(result).items() if k != "di"})
        else:
            out["payload"] = write.payload.hex(" ").upper()
    elif code == C.BROADCAST_TIME:
        out["datetime"] = dlt645.parse_broadcast_time(frame)
    elif code == C.CHANGE_BAUD:
        out.update(
            baud_word=f"0x{frame.data[0]:02X}" if frame.data else None, baud_bps=dlt645.parse_baud(frame)
        )
    elif code == C.RELAY_CONTROL:
        cmd = dlt645.parse_relay_control(frame)
        action = cmd.action
        out.update(
            action=action.name.lower()
            if isinstance(action, dlt645.RelayAction)
            else f"unknown_0x{action:02X}",
            n1=f"0x{int(action):02X}",
            valid_until=cmd.valid_until,
            password=cmd.auth.password,
            operator=cmd.auth.operator,
        )
    elif code == C.WRITE_ADDRESS and len(frame.data) == 6:
        out["new_address"] = dlt645.address_from_wire(frame.data)
    elif code == C.FREEZE and len(frame.data) == 4:
        out["freeze_at"] = "mm hh DD MM = " + " ".join(f"{b:02X}" for b in frame.data)
    elif code == C.EVENT_CLEAR and len(frame.data) >= 12:
        out["event_di"] = _di(dlt645.di_from_wire(frame.data[8:12]))
    return out


def _response_fields(frame: dlt645.Frame) -> Description:
    if frame.is_abnormal:
        err = dlt645.parse_error(frame)
        return {"error_word": f"0x{err.bits:02X}", "error_bits": list(err.names)}
    code = frame.code
    if code in (dlt645.Control.READ_DATA, dlt645.Control.READ_FOLLOWUP) and frame.data:
        result = dlt645.parse_read_response(frame)
        out = _read_values(result)
        if result.seq is not None:
            out["seq"] = result.seq
        return out
    if code == dlt645.Control.READ_ADDRESS and frame.data:
        return {"address_in_data": dlt645.parse_read_address_response(frame)}
    if code == dlt645.Control.CHANGE_BAUD and frame.data:
        return {"baud_word": f"0x{frame.data[0]:02X}", "baud_bps": dlt645.parse_baud(frame)}
    return {}


def describe_dlt645(raw: bytes) -> Description:
    out: Description = {"protocol": dlt645.PROTOCOL}
    preamble = dlt645.count_preamble(raw)
    try:
        frame = dlt645.decode(raw)
    except ProtocolError as err:
        return {**out, "ok": False, "error": err.reason, "offset": err.offset}
    out.update(
        ok=True,
        roundtrip=dlt645.encode(frame, preamble=preamble) == raw,
        preamble=preamble,
        address=frame.address,
        control=frame.control,
        function=frame.function,
        direction="response" if frame.is_response else "request",
        abnormal=frame.is_abnormal,
        follow_up=frame.has_follow_up,
        length=len(frame.data),
        data=frame.data.hex(" ").upper(),
    )
    try:
        out.update(_response_fields(frame) if frame.is_response else _request_fields(frame))
    except ProtocolError as err:
        offset = None if err.offset is None else err.offset + preamble
        return {**out, "ok": False, "error": err.reason, "offset": offset}
    return out


__all__ = ["describe_dlt645"]
