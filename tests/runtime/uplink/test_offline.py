"""A board without [uplink]: messages still land in the durable outbox, commands are only remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from hal.clock import LoopClock
from runtime.store import Store
from runtime.uplink import OutboxOnlyUplink

T0 = 1_767_225_600.0


async def test_sends_are_kept_in_the_outbox_in_order(tmp_path: Path) -> None:
    clock = LoopClock(start=T0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        uplink = OutboxOnlyUplink(store, terminal_id="T1")
        keys = [await uplink.send("readings", {"n": i}) for i in range(3)]
        await uplink.send("events", {"kind": "meter.power_down"})
        assert len(set(keys)) == 3
        assert await store.outbox_backlog() == {"readings": 3, "events": 1}
        pending = await store.outbox_pending("readings")
        assert [e.body["n"] for e in pending] == [0, 1, 2]
        assert uplink.statistics() == {"connected": False, "configured": False, "queued": 4}


async def test_commands_are_remembered_and_bad_streams_refused(tmp_path: Path) -> None:
    clock = LoopClock(start=T0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        uplink = OutboxOnlyUplink(store, terminal_id="T1")

        async def handler(args: dict[str, object]) -> dict[str, object]:
            return {}

        uplink.register_command("archive.replace", handler)
        assert uplink.commands() == ["archive.replace"]
        with pytest.raises(ValueError, match="not a valid topic level"):
            await uplink.send("a/b", {})
        assert await store.outbox_backlog() == {}
