"""The acquisition app's ``acquisition.stats`` command answers a 2,000+ meter station area by part.

Each part's reply, through the real command dispatcher, must fit one upward message whatever the
meter ids are (64 characters at most), and ``ttu cloud acquisition stats`` (``cloud.fetch``) must
join every meter's row exactly once. Unpaged, 2,400 meters of long ids are a ~460 kB reply: the
dispatcher refuses it ``result_too_large``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from apps.acquisition.cloud import StatsError, fetch
from apps.acquisition.service import Acquisition, Settings
from hal.clock import LoopClock
from protocols.cloud import MAX_MESSAGE_BYTES, Command, json_size, sign_command
from runtime.container.manifest import load_manifest, resolve_config
from runtime.store import Store
from runtime.uplink._commands import CommandDispatcher

APPS = Path(__file__).resolve().parents[2] / "apps"
KEY = b"k" * 32
METERS = 2_400


def _service(clock: LoopClock) -> Acquisition:
    """The app's service as ``run_acquisition`` builds it (not started: its command is what is tested)."""
    config = resolve_config(load_manifest(APPS / "acquisition" / "app.toml"), {})
    terminal = SimpleNamespace(tz=ZoneInfo("Asia/Shanghai"), root=APPS, rs485_ports=("rs485-1",))
    ctx = SimpleNamespace(clock=clock, log=logging.getLogger("test.acquisition"))
    return Acquisition(ctx, Settings.from_config(config, APPS), terminal)  # type: ignore[arg-type]


async def test_stats_of_2400_meters_go_up_by_part_and_join_whole(tmp_path: Path) -> None:
    clock = LoopClock(start=1_767_225_600.0)
    service = _service(clock)
    # the longest ids a station model admits, every kind of read with a long-fraction success rate
    ids = [f"m-{i:05d}-{'x' * 56}" for i in range(METERS)]
    tracker = service.reader.tracker
    tracker.reset_meters(ids, {m: ("hplc" if i % 10 else "rs485-1") for i, m in enumerate(ids)})
    for i, meter in enumerate(ids):
        for k, kind in enumerate(("realtime", "curve", "freeze")):
            tracker.record(meter, kind, ok=(i + k) % 3 != 0, ts=clock.now() + i / 7)
    async with await Store.open(tmp_path / "t.sqlite", clock=clock) as store:
        dispatcher = CommandDispatcher(store=store, clock=clock, key=KEY)
        dispatcher.register("acquisition.stats", service._cmd_stats)
        sizes: list[int] = []
        sent = 0

        async def ask(arguments: dict[str, Any]) -> dict[str, Any]:
            nonlocal sent
            sent += 1
            command = sign_command(
                Command(f"c-{sent}", "acquisition.stats", dict(arguments), clock.now()), KEY
            )
            reply = await dispatcher.dispatch(command.encode())
            assert reply.ok, (reply.code, reply.message)
            sizes.append(json_size(reply.to_json()))
            assert reply.result is not None
            return reply.result

        replies = [await ask({})]
        replies += [await ask({"part": i}) for i in range(1, replies[0]["parts"])]
        refused = await dispatcher.dispatch(
            sign_command(
                Command("c-bad", "acquisition.stats", {"part": len(replies)}, clock.now()), KEY
            ).encode()
        )
    assert len(replies) > 1
    assert max(sizes) <= MAX_MESSAGE_BYTES
    assert (refused.ok, refused.code) == (False, "bad_args")
    # what ttu cloud acquisition stats prints: every meter once, the summary of part 0
    answers = iter(replies)
    joined = fetch(lambda arguments: next(answers))
    assert list(joined["meters"]) == ids
    assert joined["meters"] == tracker.per_meter()
    assert joined["station"]["meters_total"] == METERS
    assert "part" not in joined and "parts" not in joined


def test_a_reply_naming_no_sensible_parts_is_an_error_not_a_loop() -> None:
    with pytest.raises(StatsError, match="parts"):
        fetch(lambda arguments: {"meters": {}, "parts": 10**9})
    with pytest.raises(StatsError, match="part 1 holds no meter rows"):
        fetch(lambda arguments: {"meters": {}, "parts": 2} if not arguments else {"oops": 1})
