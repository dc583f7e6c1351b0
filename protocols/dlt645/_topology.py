"""DL/T 645-2007 frames of the signature current (特征电流) for topology identification.

Layer: protocols (pure codec). Must not import asyncio, serial, hal or runtime.

Data items (``_di``): ``03080500`` count of result events, ``030805nn`` the n-th last result
event (``SignatureResults`` layout: up to 4 detections), ``04080001`` send at (write,
``YYMMDDhhmmss``; our choice, see ``_di``). Here: the write request, and the values of a result
record to and from ``protocols.signature.Detection``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from protocols.dlt645._di import SIGNATURE_RESULT_COUNT_DI, SIGNATURE_START_DI
from protocols.dlt645._formats import Value
from protocols.dlt645._frame import Frame
from protocols.dlt645._messages import write_request
from protocols.errors import ProtocolError
from protocols.signature import Detection

PROTOCOL = "dlt645"


def signature_result_di(last: int) -> int:
    """The DI of the ``last``-th most recent result event (1..10)."""
    if not 1 <= last <= 10:
        raise ValueError(f"signature result {last}: expected 1..10")
    return SIGNATURE_RESULT_COUNT_DI | last


def signature_start_request(
    address: str, at: datetime, *, password: str = "02000000", operator: str = "00000000"
) -> Frame:
    """Write the time (the meter's local clock) at which it sends its signature current."""
    return write_request(
        address, SIGNATURE_START_DI, [at.strftime("%Y-%m-%d %H:%M:%S")], password=password, operator=operator
    )


def detections_from_values(values: Sequence[Value]) -> list[Detection]:
    """A decoded result record (``SignatureResults`` values) as detections."""
    out = []
    for v in values:
        if not isinstance(v, tuple) or len(v) != 7:
            raise ProtocolError(f"signature detection {v!r}: expected 7 values", protocol=PROTOCOL)
        when, phase, s1, s2, noise, code, ext = v
        if not isinstance(phase, int) or not all(isinstance(x, int | float) for x in (s1, s2, noise)):
            raise ProtocolError(
                f"signature detection {v!r}: phase and strengths must be numbers", protocol=PROTOCOL
            )
        assert isinstance(s1, int | float) and isinstance(s2, int | float) and isinstance(noise, int | float)
        try:
            at = datetime.strptime(str(when), "%Y-%m-%d %H:%M:%S")
        except ValueError as err:
            raise ProtocolError(f"signature detection time {when!r}", protocol=PROTOCOL) from err
        out.append(
            Detection(
                at,
                int(phase),
                float(s1),
                float(s2),
                float(noise),
                bytes.fromhex(str(code)),
                bytes.fromhex(str(ext)),
            )
        )
    return out


def values_from_detections(detections: Sequence[Detection]) -> tuple[Value, ...]:
    """What a meter answers for a result record holding ``detections`` (at most 4)."""
    return tuple(
        (
            d.at.strftime("%Y-%m-%d %H:%M:%S"),
            d.phase,
            d.s1_a,
            d.s2_a,
            d.noise_a,
            d.code.hex().upper(),
            d.ext.hex().upper(),
        )
        for d in detections
    )


__all__ = [
    "detections_from_values",
    "signature_result_di",
    "signature_start_request",
    "values_from_detections",
]
