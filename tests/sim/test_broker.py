"""The embedded broker's start-up: a port in use is one clear error, not a logged traceback."""

from __future__ import annotations

import logging

import pytest

from sim.broker import BrokerError, EmbeddedBroker


async def test_a_port_in_use_is_a_broker_error_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with EmbeddedBroker() as first:
        with pytest.raises(BrokerError, match=f"127.0.0.1:{first.port} did not start: .*in use"):
            async with EmbeddedBroker(port=first.port):
                pass
    assert [r.getMessage() for r in caplog.records if r.exc_info is not None] == []
