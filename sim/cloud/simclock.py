"""The simulator's clock on MQTT, so tools outside ``ttu sim`` can stamp commands in its time.

Layer: sim (cloud stub). A simulated terminal runs in simulated time (×N, from a chosen start),
and its downlink check refuses commands stamped more than ten minutes off its clock. So
``ttu sim`` publishes, retained on ``SIM_CLOCK_TOPIC``, where its clock stands against the wall
clock; ``ttu cloud command`` / ``ttu cloud app ...`` read it once and stamp their commands with
the terminal's time. Without a simulator on the broker they use the wall clock, as against a
real terminal. This module only reads and writes that one topic; it must not weaken the
terminal's freshness check.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt

from hal.cancellation import cancel_requests, keep_cancel, raise_if_cancelled_since
from hal.clock import LoopClock
from sim.cloud.stub import BrokerAddress

SIM_CLOCK_TOPIC = "ttu-sim/clock"
PUBLISH_EVERY_S = 1.0  # wall seconds
VIRTUAL_CHECK_S = 60.0  # simulated seconds between wall-clock checks under virtual time
DISCOVER_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class SimClockBeacon:
    """One reading of the simulator's clock: ``now`` (sim epoch) at ``wall`` (wall epoch), ×``speed``."""

    now: float
    wall: float
    speed: float

    def to_json(self) -> dict[str, float]:
        return {"now": self.now, "wall": self.wall, "speed": self.speed}

    @classmethod
    def from_json(cls, body: Any) -> SimClockBeacon | None:
        """None for anything that is not a well-formed beacon (the topic is open to anyone)."""
        if not isinstance(body, dict):
            return None
        try:
            beacon = cls(float(body["now"]), float(body["wall"]), float(body["speed"]))
        except (KeyError, TypeError, ValueError):
            return None
        return beacon if beacon.speed > 0 else None

    def time_source(self, wall: Callable[[], float] = time.time) -> Callable[[], float]:
        """The simulator's time from now on, extrapolated from this reading."""
        return lambda: self.now + (wall() - self.wall) * self.speed


class _Publisher(Protocol):
    async def publish_retained(self, topic: str, body: Mapping[str, Any]) -> None: ...


async def publish_beacons(
    stub: _Publisher, clock: LoopClock, *, speed: Callable[[], float] | None = None
) -> None:
    """Publish the simulator's clock every ``PUBLISH_EVERY_S`` wall seconds until cancelled.

    ``speed`` gives the achieved speed of a run on virtual time (``ttu sim --speed max``): its
    clock has no fixed rate against the wall, so the loop wakes every simulated ``VIRTUAL_CHECK_S``
    and publishes once a wall second has passed since the last beacon.
    """
    if speed is None:
        while True:
            beacon = SimClockBeacon(clock.now(), time.time(), clock.speed)
            await stub.publish_retained(SIM_CLOCK_TOPIC, beacon.to_json())
            await clock.sleep(PUBLISH_EVERY_S * clock.speed)
    last = -math.inf
    while True:
        if time.monotonic() - last >= PUBLISH_EVERY_S:
            last = time.monotonic()
            beacon = SimClockBeacon(clock.now(), time.time(), max(speed(), 1e-6))
            await stub.publish_retained(SIM_CLOCK_TOPIC, beacon.to_json())
        await clock.sleep(VIRTUAL_CHECK_S)


async def discover(broker_url: str, *, timeout: float = DISCOVER_TIMEOUT_S) -> SimClockBeacon | None:  # noqa: ASYNC109
    """The retained beacon on ``broker_url``, or None when no simulator publishes one (or no broker)."""
    address = BrokerAddress.parse(broker_url)
    try:
        async with asyncio.timeout(timeout):
            requests = cancel_requests()
            async with aiomqtt.Client(address.host, address.port) as client:
                raise_if_cancelled_since(requests)  # the timeout that came with the CONNACK
                await keep_cancel(client.subscribe(SIM_CLOCK_TOPIC, qos=1))
                async for message in client.messages:
                    if not message.topic.matches(SIM_CLOCK_TOPIC):
                        continue  # amqtt 0.12 hands a new subscriber other topics' retained messages
                    try:
                        body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    except (TypeError, ValueError):
                        return None
                    return SimClockBeacon.from_json(body)
    except (TimeoutError, aiomqtt.MqttError, OSError):
        return None
    return None


async def terminal_time(
    broker_url: str,
    *,
    timeout: float = DISCOVER_TIMEOUT_S,  # noqa: ASYNC109
) -> Callable[[], float] | None:
    """The simulator's time source when one publishes on ``broker_url``, else None (wall clock)."""
    beacon = await discover(broker_url, timeout=timeout)
    return None if beacon is None else beacon.time_source()


__all__ = [
    "DISCOVER_TIMEOUT_S",
    "PUBLISH_EVERY_S",
    "SIM_CLOCK_TOPIC",
    "SimClockBeacon",
    "discover",
    "publish_beacons",
    "terminal_time",
]
