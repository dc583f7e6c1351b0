"""``describe`` for DL/T 698.45: one frame as a JSON-able dict (the 698 row of ``protocols.inspect``).

Layer: protocols (pure function, no I/O). Must not import asyncio, serial, hal or runtime.
Never raises for bad input: returns ``{"ok": false, "error", "offset"}`` (offset into ``raw``).
"""

from __future__ import annotations

from typing import Any

from protocols.dlt698 import _apdu as A  # noqa: N812 - short, reads like a namespace
from protocols.dlt698._axdr import OAD, Data, dar_name, plain
from protocols.dlt698._frame import FUNCTIONS, count_preamble, decode, encode
from protocols.dlt698._objects import values
from protocols.dlt698._wire import PROTOCOL
from protocols.errors import EncodeError, ProtocolError

Description = dict[str, Any]
_LINK_KINDS = {0: "login", 1: "heartbeat", 2: "logout"}


def _data(oad: OAD, data: Data) -> Any:
    named = values(oad, data)
    return named if named is not None else plain(data)


def _result(res: A.ResultNormal) -> Description:
    if res.dar is not None:
        return {"oad": str(res.oad), "dar": res.dar, "dar_name": dar_name(res.dar)}
    assert res.data is not None
    return {"oad": str(res.oad), "data": _data(res.oad, res.data)}


def _record(res: A.ResultRecord) -> Description:
    out: Description = {
        "oad": str(res.oad),
        "rcsd": [plain(c) if not isinstance(c, OAD) else str(c) for c in res.rcsd],
    }
    if res.dar is not None:
        out.update(dar=res.dar, dar_name=dar_name(res.dar))
    else:
        assert res.rows is not None
        out["records"] = [[plain(d) for d in row] for row in res.rows]
    return out


def _results(out: Description, results: tuple[Any, ...]) -> None:
    items = [_result(r) if isinstance(r, A.ResultNormal) else _record(r) for r in results]
    out["oads"] = [item["oad"] for item in items]
    out["results"] = items
    if len(items) == 1 and "data" in items[0]:
        out["data"] = items[0]["data"]


def apdu_fields(apdu: A.Apdu) -> Description:
    out: Description = {"service": apdu.service}
    piid = getattr(apdu, "piid", None)
    if piid is not None:
        out["piid"] = piid
    if isinstance(apdu, A.GetRequestNormal | A.GetRequestMD5):
        out["oad"] = str(apdu.oad)
    elif isinstance(apdu, A.GetRequestNormalList | A.ReportResponseList | A.ReportResponseRecordList):
        out["oads"] = [str(o) for o in apdu.oads]
    elif isinstance(apdu, A.GetRequestRecord | A.ProxyGetRequestRecord):
        rec = apdu.record
        out.update(oad=str(rec.oad), rsd=plain(rec.rsd), rcsd=[plain(c) for c in rec.rcsd])
    elif isinstance(apdu, A.GetRequestRecordList):
        out["oads"] = [str(rec.oad) for rec in apdu.records]
    elif isinstance(apdu, A.GetResponseNormal):
        out.update(_result(apdu.result))
    elif isinstance(apdu, A.GetResponseRecord):
        out.update(_record(apdu.result))
    elif isinstance(
        apdu,
        A.GetResponseNormalList
        | A.GetResponseRecordList
        | A.ReportNotificationList
        | A.ReportNotificationRecordList,
    ):
        _results(out, apdu.results)
    elif isinstance(apdu, A.SetRequestNormal):
        out.update(oad=str(apdu.oad), data=_data(apdu.oad, apdu.data))
    elif isinstance(apdu, A.SetRequestNormalList):
        out["oads"] = [str(o) for o, _ in apdu.items]
        out["results"] = [{"oad": str(o), "data": _data(o, d)} for o, d in apdu.items]
    elif isinstance(apdu, A.SetResponseNormal):
        out.update(oad=str(apdu.oad), dar=apdu.dar, dar_name=dar_name(apdu.dar))
    elif isinstance(apdu, A.SetResponseNormalList):
        out["oads"] = [str(o) for o, _ in apdu.results]
        out["results"] = [{"oad": str(o), "dar": d, "dar_name": dar_name(d)} for o, d in apdu.results]
    elif isinstance(apdu, A.ActionRequestNormal):
        out.update(omd=str(apdu.omd), data=plain(apdu.data))
    elif isinstance(apdu, A.ActionResponseNormal):
        out.update(omd=str(apdu.omd), dar=apdu.dar, dar_name=dar_name(apdu.dar))
        out["data"] = None if apdu.data is None else plain(apdu.data)
    elif isinstance(apdu, A.ActionRequestNormalList):
        out["omds"] = [str(o) for o, _ in apdu.items]
    elif isinstance(apdu, A.ActionResponseNormalList):
        out["omds"] = [str(o) for o, _, _ in apdu.results]
        out["results"] = [{"omd": str(o), "dar": d, "dar_name": dar_name(d)} for o, d, _ in apdu.results]
    elif isinstance(apdu, A.GetResponseNext):
        out.update(last_block=apdu.last, block=apdu.block)
        if apdu.choice == 0:
            out.update(dar=apdu.payload, dar_name=dar_name(apdu.payload))
        else:
            _results(out, apdu.payload)
    elif isinstance(apdu, A.LinkRequest):
        out.update(
            request_type=_LINK_KINDS.get(apdu.kind, apdu.kind),
            heartbeat_s=apdu.heartbeat,
            time=str(apdu.time),
        )
    elif isinstance(apdu, A.LinkResponse):
        out.update(result=apdu.result & 0x07, clock_trusted=bool(apdu.result & 0x80))
    elif isinstance(apdu, A.ConnectRequest | A.ConnectResponse):
        out.update(protocol_version=apdu.version, apdu_max=apdu.apdu_max, connect_timeout_s=apdu.timeout)
        if isinstance(apdu, A.ConnectRequest):
            out["auth_mechanism"] = apdu.mechanism.kind
        else:
            out["connect_result"] = apdu.result
    elif isinstance(apdu, A.ProxyGetRequestList):
        out["targets"] = [{"tsa": t.address, "oads": [str(o) for o in oads]} for t, _, oads in apdu.targets]
    elif isinstance(apdu, A.ProxyGetResponseList):
        out["targets"] = [{"tsa": t.address, "results": [_result(r) for r in rs]} for t, rs in apdu.targets]
    elif isinstance(apdu, A.SecurityRequest | A.SecurityResponse):
        out["verify"] = plain(getattr(apdu, "verify", None) or getattr(apdu, "mac", None))
        plaintext = isinstance(apdu, A.SecurityRequest) and not apdu.ciphered
        plaintext = plaintext or (isinstance(apdu, A.SecurityResponse) and apdu.kind == 0)
        out["plaintext"] = plaintext
        if plaintext:
            out["inner"] = apdu_fields(apdu.inner())
            for key in ("piid", "oad", "oads", "data", "results"):
                if key in out["inner"]:
                    out[key] = out["inner"][key]
        elif isinstance(apdu, A.SecurityResponse) and apdu.dar is not None:
            out.update(dar=apdu.dar, dar_name=dar_name(apdu.dar))
    elif isinstance(apdu, A.ErrorResponse):
        out["error_type"] = apdu.error
    return out


def describe_dlt698(raw: bytes) -> Description:
    out: Description = {"protocol": PROTOCOL}
    preamble = count_preamble(raw)
    try:
        frame = decode(raw)
    except ProtocolError as err:
        return {**out, "ok": False, "error": err.reason, "offset": err.offset}
    try:
        roundtrip: bool | str = encode(frame, preamble=preamble) == raw
    except EncodeError as err:  # received with a reserved bit set: accepted, never re-sent
        roundtrip = f"not re-encodable: {err.reason}"
    out.update(
        ok=True,
        roundtrip=roundtrip,
        preamble=preamble,
        length=len(raw) - preamble - 2,
        control=f"0x{frame.control:02X}",
        direction=frame.direction,
        prm=frame.prm,
        function=FUNCTIONS.get(frame.function, f"function_{frame.function}"),
        scrambled=frame.scrambled,
        fragment=None
        if frame.fragment is None
        else {"seq": frame.fragment.seq, "type": frame.fragment.kind.name.lower()},
        sa=frame.sa,
        sa_type=frame.sa_type.name.lower(),
        logical_address=frame.logical,
        ca=f"0x{frame.ca:02X}",
        apdu=frame.apdu.hex(" ").upper(),
    )
    if frame.fragment is not None:
        return out  # a piece of an APDU: reassemble before decoding
    apdu_at = len(raw) - 3 - len(frame.apdu)
    try:
        apdu = A.decode_apdu(frame.apdu, base=apdu_at)
        out.update(apdu_fields(apdu))
    except ProtocolError as err:
        return {**out, "ok": False, "error": err.reason, "offset": err.offset}
    return out


__all__ = ["apdu_fields", "describe_dlt698"]
