"""Pytest plugin: real MQTT brokers for tests (embedded amqtt and mosquitto).

Fixtures: ``amqtt_broker``, ``mosquitto_broker`` (skipped only when the mosquitto binary is
absent; CI installs it) and ``broker``, parametrized over both. Each yields a started
broker with ``.url``, ``.host`` and ``.port`` and stops it (no leaked task or process).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sim.broker import EmbeddedBroker, MosquittoBroker, mosquitto_binary

AnyBroker = EmbeddedBroker | MosquittoBroker


@pytest.fixture
async def amqtt_broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
async def mosquitto_broker() -> AsyncIterator[MosquittoBroker]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto binary not installed (apt install mosquitto); `make test` installs it")
    async with MosquittoBroker() as broker:
        yield broker


@pytest.fixture(params=["amqtt", "mosquitto"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[AnyBroker]:
    if request.param == "mosquitto":
        if mosquitto_binary() is None:
            pytest.skip("mosquitto binary not installed (apt install mosquitto); `make test` installs it")
        async with MosquittoBroker() as mosq:
            yield mosq
    else:
        async with EmbeddedBroker() as emb:
            yield emb
