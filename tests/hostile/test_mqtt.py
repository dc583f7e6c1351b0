"""Hostile MQTT input through a real broker (mosquitto forwards anything) to a running terminal.

Issue 14 reproduction 1: 100,000 nested brackets on ``ttu/T/down/cmd`` killed the terminal
silently. Each attack here must get a clear error reply (or, for acks and chunks, a refusal),
move its counter, lose nothing, and leave the terminal reading meters.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiomqtt

from protocols.cloud import Command, ack_topic, chunk_topic, command_topic, sign_command
from sim.broker import MosquittoBroker
from sim.runner import SimRun

from .rig import KEY, TERMINAL, Attack, cloud_query, station, until, uplink

OTHER_KEY = bytes(range(32))


def rejected(run: SimRun) -> dict[str, int]:
    return dict(uplink(run).statistics()["commands_rejected"])


def replies(run: SimRun, code: str) -> int:
    return cloud_query(run, "SELECT COUNT(*) FROM replies WHERE code = ?", code)[0][0]


async def expect_reply(run: SimRun, client: aiomqtt.Client, payload: bytes, code: str) -> None:
    """Publish ``payload`` as a command; the terminal answers it with ``code`` and counts it."""
    counted, answered = rejected(run).get(code, 0), replies(run, code)
    await client.publish(command_topic(TERMINAL), payload, qos=1)
    await until(run, lambda: rejected(run).get(code, 0) == counted + 1, f"{code} counted")
    await until(run, lambda: replies(run, code) == answered + 1, f"a {code} reply at the cloud")


def signed(run: SimRun, cmd_id: str, name: str, args: dict[str, object], *, ts: float | None = None,
           key: bytes = KEY) -> bytes:  # fmt: skip
    return sign_command(Command(cmd_id, name, args, ts=run.clock.now() if ts is None else ts), key).encode()


async def test_hostile_commands_are_answered_counted_and_the_terminal_keeps_reading(
    tmp_path: Path, mosquitto_broker: MosquittoBroker
) -> None:
    async with (
        station(tmp_path, mosquitto_broker.url) as run,
        aiomqtt.Client(mosquitto_broker.host, mosquitto_broker.port, identifier="attacker") as attacker,
    ):
        attack = await Attack.begin(run)
        deep = b"[" * 100_000 + b"]" * 100_000  # 200,000 bytes: over the 64 KiB command limit
        await expect_reply(run, attacker, deep, "too_large")
        await expect_reply(run, attacker, b"[" * 30_000 + b"]" * 30_000, "too_complex")  # within the size
        await expect_reply(run, attacker, b"x" * (5 << 20), "too_large")  # 5 MB
        await expect_reply(run, attacker, b'{"v": 1, "id": "c-1", "name": ', "bad_json")
        await expect_reply(
            run, attacker, json.dumps({"v": 1, "id": 5, "name": "ping", "ts": 1}).encode(), "bad_command"
        )
        await expect_reply(run, attacker, signed(run, "c-2", "no.such.command", {}), "unknown_command")
        await expect_reply(run, attacker, signed(run, "c-3", "station.replace", {"model": 7}), "bad_args")
        await expect_reply(run, attacker, signed(run, "c-3b", "station.patch", {"ops": "all"}), "bad_args")
        await expect_reply(
            run, attacker, signed(run, "c-4", "ping", {}, ts=run.clock.now() - 3600), "expired"
        )
        await expect_reply(run, attacker, signed(run, "c-5", "ping", {}, key=OTHER_KEY), "unauthenticated")

        # a replayed signed command gets the cached reply: executed once
        ping = signed(run, "c-6", "ping", {})
        await attacker.publish(command_topic(TERMINAL), ping, qos=1)
        replayed = uplink(run).statistics()["commands_replayed"]
        await attacker.publish(command_topic(TERMINAL), ping, qos=1)
        await until(run, lambda: uplink(run).statistics()["commands_replayed"] == replayed + 1, "the replay")
        # both replies reach the cloud (the replay's goes up through the outbox after it is counted)
        six = "SELECT COUNT(*) FROM replies WHERE command_id = 'c-6' AND ok = 1"
        await until(run, lambda: cloud_query(run, six)[0][0] == 2, "both replies to c-6 at the cloud")
        assert uplink(run).statistics()["commands_replayed"] == replayed + 1  # executed once, answered twice

        # a command for another terminal never reaches this one (its topic is not ours)
        before = rejected(run)
        await attacker.publish(command_topic("TTU-OTHER-0002"), signed(run, "c-7", "ping", {}), qos=1)
        await expect_reply(run, attacker, signed(run, "c-8", "no.such.command", {}), "unknown_command")
        assert cloud_query(run, "SELECT COUNT(*) FROM replies WHERE command_id = 'c-7'")[0][0] == 0
        assert {k: v for k, v in rejected(run).items() if k != "unknown_command"} == {
            k: v for k, v in before.items() if k != "unknown_command"
        }

        # a forged ack would make the terminal forget undelivered readings: refused and counted
        bad = uplink(run).statistics()["bad_acks"]
        forged = json.dumps({"v": 1, "acks": {"readings": 10**9}, "seen": {}, "nacks": [], "auth": "00"})
        await attacker.publish(ack_topic(TERMINAL), forged.encode(), qos=1)
        await attacker.publish(ack_topic(TERMINAL), b"[" * 100_000, qos=1)
        await until(run, lambda: uplink(run).statistics()["bad_acks"] == bad + 2, "the forged acks refused")

        # garbage on the package-chunk topic: refused by the job runner, counted
        parts = run.terminal.parts
        assert parts is not None and parts.jobs is not None
        chunk_refusals = sum(parts.jobs.statistics()["rejected"].values())
        await attacker.publish(chunk_topic(TERMINAL), b"{" * 50_000, qos=1)
        await attacker.publish(chunk_topic(TERMINAL), b"\x00\xff" * 1000, qos=1)
        await until(
            run,
            lambda: sum(parts.jobs.statistics()["rejected"].values()) >= chunk_refusals + 2,  # type: ignore[union-attr]
            "the chunks refused",
        )

        await attack.still_reading()
