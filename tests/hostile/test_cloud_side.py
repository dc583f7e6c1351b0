"""The same input limits on the other side of the wire: the embedded broker forwards nothing the
terminal or the master station would refuse, and the cloud stub answers a hostile upward batch
with a nack naming it, counts it, and keeps storing what comes after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from hal.clock import LoopClock
from protocols.cloud import (
    MAX_BATCH_BYTES,
    NACK_BAD_BATCH,
    NACK_TOO_LARGE,
    Ack,
    ack_topic,
    command_topic,
    up_topic,
)
from sim.broker import EmbeddedBroker, MosquittoBroker
from sim.cloud import CloudStub
from tests.sim.cloud.helpers import batch, reading

T = "TTU-HOSTILE"
KEY = bytes(range(32))
DEEP = b"[" * 100_000 + b"]" * 100_000
WAIT_S = 20.0  # real seconds: real brokers


async def test_the_embedded_broker_forwards_nothing_either_end_would_refuse(
    amqtt_broker: EmbeddedBroker,
) -> None:
    async with (
        aiomqtt.Client(amqtt_broker.host, amqtt_broker.port, identifier="watcher") as watcher,
        aiomqtt.Client(amqtt_broker.host, amqtt_broker.port, identifier="attacker") as attacker,
    ):
        await watcher.subscribe("ttu/#", qos=1)
        await attacker.publish(command_topic(T), DEEP, qos=1)  # over the command limit
        await attacker.publish(command_topic(T), b"[" * 1000 + b"]" * 1000, qos=1)  # small, too deep
        await attacker.publish(up_topic(T, "readings"), b"x" * (5 << 20), qos=1)  # 5 MB
        await attacker.publish(ack_topic(T), DEEP[:20_000], qos=1)
        good = batch(T, "readings", (1, {"readings": [reading("m-1", "voltage.a", 230.0, 1.0)]}))
        await attacker.publish(up_topic(T, "readings"), good, qos=1)  # the same connection still works
        async with asyncio.timeout(WAIT_S):
            message = await anext(aiter(watcher.messages))
    assert message.payload == good  # the first message forwarded is the good one
    assert dict(amqtt_broker.refused) == {"cmd": 2, "readings": 1, "ack": 1}


async def test_the_cloud_stub_nacks_hostile_batches_and_keeps_storing(
    mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """mosquitto forwards anything: the stub's own limits are what is tested."""
    async with (
        CloudStub(
            broker_url=mosquitto_broker.url, db_path=tmp_path / "cloud.sqlite", clock=LoopClock(),
            default_key=KEY, terminal=T,
        ) as stub,
        aiomqtt.Client(mosquitto_broker.host, mosquitto_broker.port, identifier=T) as terminal,
    ):  # fmt: skip
        await terminal.subscribe(ack_topic(T), qos=1)
        hostile = [
            DEEP,  # 100,000-deep nesting
            b"x" * (5 << 20),  # 5 MB
            b"[" * 200 + b"]" * 200,  # within the size, too deep
            b'{"terminal": "' + b"a" * (MAX_BATCH_BYTES + 10) + b'"}',  # over the batch limit
        ]
        for payload in hostile:
            await terminal.publish(up_topic(T, "readings"), payload, qos=1)
        good = batch(T, "readings", (1, {"readings": [reading("m-1", "voltage.a", 230.0, 1.0)]}))
        await terminal.publish(up_topic(T, "readings"), good, qos=1)
        answers: list[Ack] = []
        async with asyncio.timeout(WAIT_S):
            async for message in terminal.messages:
                assert isinstance(message.payload, bytes)
                ack = Ack.decode(message.payload)
                assert ack.verify(KEY)
                answers.append(ack)
                if len(answers) == len(hostile) + 1:
                    break
        counts = await stub.counts()
        readings = await stub.readings(terminal=T)
    nacks = [a.nacks[0] for a in answers[:-1]]
    assert all(n.stream == "readings" for n in nacks)
    assert [n.code for n in nacks] == [NACK_BAD_BATCH, NACK_TOO_LARGE, NACK_BAD_BATCH, NACK_TOO_LARGE]
    assert "nested deeper than 32 levels" in nacks[0].reason and "nested deeper" in nacks[2].reason
    assert "5242880 bytes" in nacks[1].reason
    assert answers[-1].acks == {"readings": 1} and not answers[-1].nacks  # the good batch: stored, acked
    assert stub.nacks_sent == len(hostile) and counts["rejected"] == len(hostile)
    assert [r.device for r in readings] == ["m-1"]
