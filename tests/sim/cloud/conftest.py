"""Fixtures of the cloud stub tests: a real broker (mosquitto child process) and a fresh stub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.clock import LoopClock
from sim.broker import MosquittoBroker, mosquitto_binary
from sim.cloud import CloudStub

KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")


@pytest.fixture
async def mosquitto() -> AsyncIterator[MosquittoBroker]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    async with MosquittoBroker() as broker:
        yield broker


@pytest.fixture
async def stub(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[CloudStub]:
    async with CloudStub(
        broker_url=mosquitto.url, db_path=tmp_path / "cloud.sqlite", clock=LoopClock(), default_key=KEY
    ) as cloud:
        yield cloud
