"""``ttu cloud ...`` on a database filled by a running stub, and commands through a real broker."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from hal.clock import LoopClock
from protocols.cloud import Command, state_topic
from sim.cloud import CloudStub, cli
from tests.brokers import AnyBroker

from .conftest import KEY
from .helpers import answer_commands, batch, mqtt, publish, reading

T = "ttu-0001"

# only the cloud group, with debug logging: other command groups may be half-built right now
SERVE_MAIN = """
import argparse, logging, sys
from sim.cloud import cli
logging.basicConfig(level=logging.DEBUG)
parser = argparse.ArgumentParser(prog="ttu")
cli.register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
raise SystemExit(args.handler(args))
"""


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ttu")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.fixture
async def filled_db(broker: AnyBroker, tmp_path: Path) -> Path:
    db = tmp_path / "cloud.sqlite"
    async with (
        CloudStub(broker_url=broker.url, db_path=db, clock=LoopClock(), default_key=KEY) as stub,
        mqtt(broker) as term,
    ):
        await term.publish(state_topic(T), "online", qos=1)
        await publish(term, T, "readings", batch(T, "readings", (1, {"readings": [
            reading("m-1", "voltage.a", 229.5, 1767225600.0),
            reading("m-2", "energy.active.import.total", 1234.5, 1767225600.0, unit="kWh"),
        ]}), (3, {"readings": [reading("m-1", "voltage.a", 230.0, 1767226500.0)]})))  # fmt: skip
        event = {
            "kind": "meter.power_down",
            "source": "m-2",
            "start": 1767225000.0,
            "end": None,
            "data": {},
        }
        await publish(term, T, "events", batch(T, "events", (1, event)))
        await publish(term, T, "readings", b"garbage")
        await stub.wait_until(lambda s: s.handled >= 4)
    return db


async def test_query_commands_print_tables_and_json(
    filled_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(filled_db)
    assert run_cli(["cloud", "terminals", "--db", db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["terminal", "state", "first"]
    assert out[2].split()[:2] == [T, "online"]

    assert run_cli(["cloud", "readings", "--db", db, "--device", "m-1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["device"], r["value"]) for r in rows] == [("m-1", 230.0), ("m-1", 229.5)]

    assert run_cli(["cloud", "readings", "--db", db, "--quantity", "energy.active.import.total"]) == 0
    out = capsys.readouterr().out
    assert "1234.5" in out and "kWh" in out and "2026-01-01 00:00:00" in out and "229.5" not in out

    assert run_cli(["cloud", "readings", "--db", db, "--limit", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1

    assert run_cli(["cloud", "events", "--db", db, "--terminal", T]) == 0
    out = capsys.readouterr().out
    assert "meter.power_down" in out and "m-2" in out

    assert run_cli(["cloud", "stats", "--db", db, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["counts"]["readings"] == 3 and stats["counts"]["rejected"] == 1
    assert stats["terminals"][T]["gaps"] == 1 and stats["terminals"][T]["missing"] == 1
    assert "not JSON" in stats["recent_rejected"][0]["error"]
    assert run_cli(["cloud", "stats", "--db", db]) == 0
    assert "not JSON" in capsys.readouterr().out


def test_missing_db_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["cloud", "readings", "--db", str(tmp_path / "nope.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.sqlite: no such database" in err
    (tmp_path / "other.sqlite").write_bytes(b"not sqlite at all" * 100)
    assert run_cli(["cloud", "terminals", "--db", str(tmp_path / "other.sqlite")]) == 2
    assert "not a cloud stub database" in capsys.readouterr().err


def test_bad_key_file_and_args_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "credentials.toml"
    keys.write_text('command_key = "zz"\n')
    base = ["cloud", "command", "--terminal", T, "--name", "echo", "--broker", "mqtt://127.0.0.1:1"]
    assert run_cli([*base, "--key-file", str(keys)]) == 2
    assert "command_key: not hex" in capsys.readouterr().err
    assert run_cli([*base, "--key-file", str(tmp_path / "none.toml")]) == 2
    assert "no such key file" in capsys.readouterr().err
    keys.write_text(f'command_key = "{KEY.hex()}"\n')
    assert run_cli([*base, "--key-file", str(keys), "--args", "[1]"]) == 2
    assert "--args: must be a JSON object" in capsys.readouterr().err


async def test_command_prints_the_reply(
    broker: AnyBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "credentials.toml"
    keys.write_text(f'command_key = "{KEY.hex()}"\n')
    base = ["cloud", "command", "--terminal", T, "--broker", broker.url, "--key-file", str(keys)]
    seen: list[Command] = []
    ready = asyncio.Event()
    async with mqtt(broker) as term, asyncio.TaskGroup() as tg:
        task = tg.create_task(answer_commands(term, T, KEY, seen=seen, ready=ready), name="fake-terminal")
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            # the CLI runs its own event loop (asyncio.run), so it goes to a worker thread
            code = await asyncio.to_thread(
                run_cli, [*base, "--name", "echo", "--args", '{"a": 1}', "--timeout", "10"]
            )
            assert code == 0
            assert json.loads(capsys.readouterr().out) == {
                "id": seen[0].id,
                "ok": True,
                "result": {"echo": {"a": 1}},
            }
            code = await asyncio.to_thread(run_cli, [*base, "--name", "reboot", "--timeout", "10"])
            assert code == 1
            assert json.loads(capsys.readouterr().out)["error"]["code"] == "unknown_command"
        finally:
            task.cancel()
    code = await asyncio.to_thread(run_cli, [*base, "--name", "echo", "--timeout", "0.2"])
    assert code == 2
    assert "no reply within 0.2 s" in capsys.readouterr().err


async def test_serve_stores_until_interrupted(
    broker: AnyBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "credentials.toml"
    keys.write_text(f'command_key = "{KEY.hex()}"\n')
    db = tmp_path / "served.sqlite"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE_MAIN,
        "cloud", "serve", "--broker", broker.url, "--db", str(db), "--key-file", str(keys),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(20):
            assert b"serving" in await proc.stdout.readline()
            while b"cloud stub connected" not in await proc.stderr.readline():
                pass
            async with mqtt(broker) as term:
                await publish(
                    term, T, "readings", batch(T, "readings", (1, {"readings": [reading("m-1", "v", 1, 2)]}))
                )
            while b"stored 1" not in (line := await proc.stderr.readline()):
                assert line, "serve exited early"
            proc.send_signal(signal.SIGINT)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert run_cli(["cloud", "readings", "--db", str(db), "--json"]) == 0
    assert [(r["terminal"], r["device"], r["value"]) for r in json.loads(capsys.readouterr().out)] == [
        (T, "m-1", 1.0)
    ]
