"""An outage of the whole station area (2,400 meters) reaches the master station whole, in messages
that each fit the uplink.

The report lists its meters, the ones lit again and the ones still dark; with ids as long as the
station model allows (64 characters) one report of 2,400 meters is ~480 kB, over
``MAX_MESSAGE_BYTES``. The app's own ``publish`` sends it; the cloud's outage list and dashboard
join the parts; a part missing leaves that revision out rather than showing it cut.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from apps.outage.classify import Outage
from apps.outage.cloud import outage_list
from apps.outage.dashboard import outages
from apps.outage.evidence import Window
from apps.outage.members import Group
from apps.outage.service import OutageService
from protocols.cloud import MAX_MESSAGE_BYTES, StoredResult, json_size

T0 = 1_717_171_200.0
IDS = [f"{i:05d}-{'x' * 58}" for i in range(2_400)]  # 64-character meter ids


class Up:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        assert json_size(body) <= MAX_MESSAGE_BYTES, "the outbox would refuse this message"
        self.sent.append(body)
        return str(len(self.sent))

    async def send_many(self, stream: str, bodies: list[dict[str, Any]]) -> list[str]:
        return [await self.send(stream, body) for body in bodies]


async def sent_reports(outage: Outage) -> list[dict[str, Any]]:
    up = Up()
    clock = SimpleNamespace(now=lambda: T0 + 60)
    bus = SimpleNamespace(publish=lambda topic, body: None)
    service = SimpleNamespace(
        _ctx=SimpleNamespace(clock=clock, uplink=up, bus=bus),
        counters={"reports": 0},
        _log=logging.getLogger("t"),
    )
    await OutageService.publish(service, [outage])  # type: ignore[arg-type]
    return up.sent


def rows(bodies: list[dict[str, Any]]) -> list[StoredResult]:
    return [StoredResult("T", "outage", f"T:outage:{i}", i, T0, T0 + i, b) for i, b in enumerate(bodies, 1)]


async def test_a_station_wide_outage_of_2400_meters_goes_up_paged_and_comes_back_whole() -> None:
    outage = Outage(
        "o-1", Group("station", "TA"), Window(T0, T0 - 1, T0 + 1), tuple(IDS), ("metrology",), T0 + 30,
        status="restored", end=Window(T0 + 600, T0 + 599, T0 + 601), still_dark=tuple(IDS[:1000]),
        lit=tuple(IDS[1000:]), revision=2,
    )  # fmt: skip
    bodies = await sent_reports(outage)
    assert len(bodies) > 1
    (listed,) = outage_list(rows(list(reversed(bodies))))
    assert listed["meters"] == IDS and listed["level"] == "station"
    (shown,), _ = outages(rows(bodies))
    assert shown["id"] == "o-1"
    assert outage_list(rows(bodies[1:])) == []  # a part missing: not shown cut


async def test_a_small_outage_is_one_message_as_before() -> None:
    outage = Outage("o-2", Group("box", "X1"), Window(T0, T0, T0), tuple(IDS[:6]), ("hplc",), T0 + 30)
    (body,) = await sent_reports(outage)
    assert "parts" not in body and body["meters"] == IDS[:6]
