"""Fixtures of the cloud stub tests: a fresh stub on the `broker` fixture (amqtt and mosquitto)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hal.clock import LoopClock
from sim.cloud import CloudStub
from tests.brokers import AnyBroker

KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")


@pytest.fixture
async def stub(broker: AnyBroker, tmp_path: Path) -> AsyncIterator[CloudStub]:
    async with CloudStub(
        broker_url=broker.url, db_path=tmp_path / "cloud.sqlite", clock=LoopClock(), default_key=KEY
    ) as cloud:
        yield cloud
