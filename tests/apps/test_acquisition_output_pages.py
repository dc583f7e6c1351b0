"""The acquisition app's readings go up in chunks that always fit one upward message.

A module-led round of 2,000 carrier meters hands the output thousands of readings at once; each
``readings`` message must stay within ``MAX_MESSAGE_BYTES`` whatever the device names are, and
every reading must go up once, in order.
"""

from __future__ import annotations

from typing import Any

from apps.acquisition.output import UPLINK_CHUNK, Output
from protocols.cloud import MAX_MESSAGE_BYTES, json_size
from runtime.model import Reading


class Ctx:
    """The parts of the app context the output uses: the uplink enforces the limit like the outbox."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.store = self
        self.bus = self
        self.uplink = self

    async def write_readings(self, readings: list[Reading]) -> None:
        pass

    def publish(self, topic: str, payload: Any) -> None:
        pass

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        assert stream == "readings" and json_size(body) <= MAX_MESSAGE_BYTES
        self.sent.append(body)
        return str(len(self.sent))


async def test_readings_of_2000_meters_go_up_in_chunks_that_fit() -> None:
    ctx = Ctx()
    # nothing bounds a device name: with 1.5 kB names, 200 readings are ~330 kB, over the limit
    readings = [
        Reading(
            f"asset-{'x' * 1500}-{i:05d}", "energy.active.import.total", 1234.5678 + i, "kWh", 1.7e9 + 900 * i
        )
        for i in range(2_000)
    ]
    await Output(ctx, {}).readings(readings, kind="curve")  # type: ignore[arg-type]
    got = [r for body in ctx.sent for r in body["readings"]]
    assert got == [r.to_json() for r in readings]
    assert all(len(body["readings"]) <= UPLINK_CHUNK for body in ctx.sent)
    assert len(ctx.sent) > len(readings) // UPLINK_CHUNK  # the size, not only the count, cut them
