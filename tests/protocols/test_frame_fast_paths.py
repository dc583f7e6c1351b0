"""The hand-assembled link-frame paths (``encode``, ``decode``) of DL/T 645, DL/T 698.45 and
Q/GDW 1376.2 make and read exactly what their construct definitions (``FRAME``: ``build``,
``parse``) do: on every conformance vector, and on any frame hypothesis can make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import dlt645, dlt698, gdw1376_2
from protocols.dlt645 import _frame as f645
from protocols.dlt698 import _frame as f698
from protocols.errors import ProtocolError
from protocols.gdw1376_2 import _frame as f1376

VECTORS = Path(__file__).parent / "vectors"


def _vectors(name: str) -> list[dict[str, Any]]:
    return [v for v in json.loads((VECTORS / name).read_text()) if v["checksum_verified"]]


def _decodable(decode: Any, vectors: list[dict[str, Any]]) -> list[bytes]:
    out = []
    for v in vectors:
        try:
            decode(bytes.fromhex(v["hex"]))
        except ProtocolError:
            continue
        out.append(bytes.fromhex(v["hex"]))
    return out


V645 = _decodable(dlt645.decode, _vectors("dlt645.json"))
V698 = _decodable(dlt698.decode, _vectors("dlt698.json"))
V1376 = _decodable(gdw1376_2.decode, _vectors("q1376_2.json"))


def test_the_vectors_are_loaded() -> None:
    assert len(V645) >= 25 and len(V698) >= 20 and len(V1376) >= 20


@pytest.mark.parametrize("raw", V645, ids=lambda r: r.hex()[:24])
def test_dlt645_vectors_read_and_rewrite_as_construct_does(raw: bytes) -> None:
    frame = dlt645.decode(raw)
    assert frame == f645.parse(raw)
    pre = dlt645.count_preamble(raw)
    assert dlt645.encode(frame, preamble=pre) == f645.build(frame, preamble=pre) == raw


@pytest.mark.parametrize("raw", V698, ids=lambda r: r.hex()[:24])
def test_dlt698_vectors_read_and_rewrite_as_construct_does(raw: bytes) -> None:
    frame = dlt698.decode(raw)
    assert frame == f698.parse(raw)
    if not frame.length_reserved and (frame.fragment is None or not frame.fragment.reserved):
        pre = dlt698.count_preamble(raw)
        assert dlt698.encode(frame, preamble=pre) == f698.build(frame, preamble=pre)


@pytest.mark.parametrize("raw", V1376, ids=lambda r: r.hex()[:24])
def test_gdw1376_2_vectors_rewrite_as_construct_does(raw: bytes) -> None:
    frame = gdw1376_2.decode(raw)
    assert gdw1376_2.encode(frame) == f1376.build(frame) == raw[gdw1376_2.count_preamble(raw) :]


DIGITS = st.text("0123456789", min_size=12, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    address=st.one_of(DIGITS, st.just("AAAAAAAAAAAA"), st.just("999999999999")),
    control=st.integers(0, 255),
    data=st.binary(max_size=dlt645.MAX_DATA),
    preamble=st.integers(0, 16),
)
def test_dlt645_any_frame(address: str, control: int, data: bytes, preamble: int) -> None:
    frame = dlt645.Frame(address, control, data)
    raw = dlt645.encode(frame, preamble=preamble)
    assert raw == f645.build(frame, preamble=preamble)
    assert dlt645.decode(raw) == f645.parse(raw) == frame


@settings(max_examples=300, deadline=None)
@given(
    sa=st.binary(min_size=1, max_size=15).map(lambda b: b.hex().upper()),
    control=st.sampled_from([0x01, 0x03, 0x43, 0x81, 0x83, 0xC3, 0x63, 0xE3]),
    ca=st.integers(0, 255),
    apdu=st.binary(max_size=600),
    ext=st.one_of(st.none(), st.integers(2, 255)),
    logical=st.integers(0, 1),
    seq=st.integers(0, 0xFFF),
    kind=st.sampled_from(list(dlt698.FragmentType)),
    preamble=st.integers(0, 16),
)
def test_dlt698_any_frame(
    sa: str, control: int, ca: int, apdu: bytes, ext: int | None, logical: int, seq: int,
    kind: dlt698.FragmentType, preamble: int,
) -> None:  # fmt: skip
    fragment = dlt698.FragmentHeader(seq, kind) if control & 0x20 else None
    frame = dlt698.Frame(control, sa, ca, apdu, logical_address=logical, ext_logical=ext, fragment=fragment)
    raw = dlt698.encode(frame, preamble=preamble)
    assert raw == f698.build(frame, preamble=preamble)
    assert dlt698.decode(raw) == f698.parse(raw) == frame


@settings(max_examples=200, deadline=None)
@given(
    afn=st.integers(0, 255),
    fn=st.integers(1, 248),
    unit=st.binary(max_size=300),
    seq=st.integers(0, 255),
    addressed=st.booleans(),
    relays=st.lists(DIGITS, max_size=3),
    src=DIGITS,
    dst=DIGITS,
)
def test_gdw1376_2_any_frame(
    afn: int, fn: int, unit: bytes, seq: int, addressed: bool, relays: list[str], src: str, dst: str
) -> None:
    level = len(relays) if addressed else 0
    info = gdw1376_2.DownInfo(module_flag=int(addressed), relay_level=level, seq=seq)
    if addressed:
        frame = gdw1376_2.Frame(0x41, info, afn, fn, unit, src, tuple(relays), dst)
    else:
        frame = gdw1376_2.Frame(0x41, info, afn, fn, unit)
    raw = gdw1376_2.encode(frame)
    assert raw == f1376.build(frame)
    assert gdw1376_2.decode(raw) == frame
