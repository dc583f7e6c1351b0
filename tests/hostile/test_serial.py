"""Garbage and half frames on every serial line of a running terminal (RS-485 meter buses and the
Modbus line, the HPLC module's UART, the metrology unit): counted, resynchronized, nothing lost,
and the terminal reads its meters afterwards."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import sim.runner
from hal.interfaces import SerialLink, SerialSettings
from protocols import dlt645, dlt698
from protocols import gdw1376_2 as q
from sim.broker import EmbeddedBroker
from sim.runner import SimRun
from sim.wiring import PtyWiring, TerminalEnd

from .rig import Attack, station, until

TAPS: dict[str, SerialLink] = {}


class TappedWiring(PtyWiring):
    """The simulator's wiring, keeping each line's device end so the test can talk on it too."""

    def line(self, name: str, settings: SerialSettings) -> tuple[SerialLink, TerminalEnd]:
        device, terminal = super().line(name, settings)
        TAPS[name] = device
        return device, terminal


def half_frames() -> list[bytes]:
    """The first half of a valid frame of each protocol, and a header claiming a long frame."""
    read645 = dlt645.encode(dlt645.read_response("000000000001", 0x00010000, [1.0]))
    read698 = dlt698.encode(
        dlt698.Frame(dlt698.CONTROL_SERVER_RESPONSE, "000000000001", 0x10, apdu=b"\x85\x01\x01")
    )
    frame1376 = q.encode(q.Frame(0xC3, q.UpInfo(seq=1), 0x03, 1))
    return [f[: len(f) // 2] for f in (read645, read698, frame1376)] + [bytes([0x68, 0xFF, 0x0F, 0x43])]


def decode_errors(run: SimRun) -> int:
    """Every decode error, stray byte and unmatched frame the terminal counted on its lines."""
    parts = run.terminal.parts
    assert parts is not None
    total = 0
    for stats in parts.hal.statistics().values():
        if isinstance(stats, dict):
            total += sum(int(stats.get(k, 0)) for k in ("decode_errors", "stray_bytes", "unmatched_frames"))
    return total


def ports(run: SimRun) -> dict[str, dict[str, Any]]:
    parts = run.terminal.parts
    assert parts is not None
    return {p: s for p, s in parts.hal.statistics().items() if isinstance(s, dict)}


@pytest.fixture
def tapped(monkeypatch: pytest.MonkeyPatch) -> dict[str, SerialLink]:
    TAPS.clear()
    monkeypatch.setattr(sim.runner, "PtyWiring", TappedWiring)
    return TAPS


async def test_garbage_and_half_frames_on_every_line(
    tmp_path: Path, amqtt_broker: EmbeddedBroker, tapped: dict[str, Any]
) -> None:
    rng = random.Random(14)
    async with station(tmp_path, amqtt_broker.url) as run:
        assert {"rs485-1", "rs485-2", "rs485-3", "rs485-4", "hplc"} <= set(tapped)
        attack = await Attack.begin(run)
        before = decode_errors(run)
        done = {port: s["transactions"] for port, s in ports(run).items() if port.startswith("rs485")}
        for _, link in sorted(tapped.items()):
            await link.write(rng.randbytes(2048))  # line noise
            for piece in half_frames():
                await link.write(piece)  # then silence: the terminal must not wait for the rest
            await link.write(b"\x68" * 4096)  # a flood of start bytes
        await until(run, lambda: decode_errors(run) > before, "the garbage counted")
        await attack.still_reading()
        await until(
            run,
            lambda: all(ports(run)[p]["transactions"] >= n + 2 for p, n in done.items()),
            "two more transactions on every RS-485 line",
        )
        for port in done:
            seen = ports(run)[port]
            assert seen["decode_errors"] + seen["stray_bytes"] + seen["unmatched_frames"] > 0, (port, seen)
