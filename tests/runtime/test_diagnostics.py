"""``hal.trace``: argument checks and the answer built from the links' frame rings."""

from __future__ import annotations

import pytest

from hal.trace import FrameTrace
from runtime.diagnostics import MAX_FRAMES, trace_handler, validate_trace_args
from runtime.errors import CommandError


def traces() -> dict[str, FrameTrace]:
    a, b = FrameTrace(size=4), FrameTrace(size=4)
    for i in range(6):  # two fall off the ring
        a.record("tx" if i % 2 == 0 else "rx", bytes([0x68, i]), ts=100.0 + i, device="000000000001")
    b.record("rx", b"\xfe\x68", ts=1.0, device="hplc", note="decode error")
    return {"rs485-1": a, "hplc": b}


async def test_one_link_newest_frames_last() -> None:
    out = await trace_handler(traces)({"link": "rs485-1", "limit": 3})
    link = out["links"]["rs485-1"]
    assert link["total"] == 6
    assert [f["hex"] for f in link["frames"]] == ["68 03", "68 04", "68 05"]
    assert [f["direction"] for f in link["frames"]] == ["rx", "tx", "rx"]
    assert set(out["links"]) == {"rs485-1"}


async def test_every_link_by_default() -> None:
    out = await trace_handler(traces)({})
    assert sorted(out["links"]) == ["hplc", "rs485-1"]
    assert out["links"]["hplc"]["frames"][0]["note"] == "decode error"


async def test_unknown_link_names_the_known_ones() -> None:
    with pytest.raises(CommandError) as err:
        await trace_handler(traces)({"link": "rs485-9"})
    assert err.value.code == "bad_args" and "hplc, rs485-1" in err.value.reason


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": MAX_FRAMES + 1}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"limit": True}, "limit"),
        ({"link": ""}, "link"),
        ({"link": 3}, "link"),
        ({"port": "rs485-1"}, "unknown argument"),
    ],
)
def test_bad_args_name_the_key(args: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        validate_trace_args(args)  # type: ignore[arg-type]
    validate_trace_args({"link": "rs485-1", "limit": MAX_FRAMES})
