"""A station area of 2,000 carrier meters: the station stream's messages fit the uplink, the cloud joins them.

The terminal side is the real ``StationService`` over a real ``Store`` whose outbox refuses any
message over ``MAX_MESSAGE_BYTES`` (the uplink's own check); the cloud side is the real ``CloudDb``
and ``ttu cloud station``'s view. Before paging, the snapshot of this model was one message of
~900 kB and the terminal died at start.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from protocols.cloud import MAX_MESSAGE_BYTES, UpBatch, UpMessage, json_size
from protocols.station import (
    MAX_EVIDENCE_BYTES,
    Correction,
    StationModel,
    change_messages,
    join_snapshot,
    model_to_doc,
    snapshot_messages,
)
from runtime.bus import Bus
from runtime.station import StationService
from runtime.store import Store
from sim.cloud.db import CloudDb
from sim.cloud.station_cli import view

pytestmark = pytest.mark.looptime

T = "TTU-BIG"
METERS = 2_000
TARIFFS = ("residential-tou", "commercial-flat")


def archive(meters: int, *, shift: int = 0) -> str:
    """A station area archive: 8 branches, a box per 10 meters, ``meters`` carrier meters;
    ``shift`` changes every meter's phase, customer and tariff."""
    lines = ['[station]\nid = "TA-BIG"\nname = "a big station area (台区)"\n']
    lines += [f'[[branches]]\nid = "F{b}"\n' for b in range(8)]
    lines += [f'[[boxes]]\nid = "X{x:04d}"\nbranch = "F{x % 8}"\n' for x in range(meters // 10)]
    for i in range(meters):
        lines.append(
            f'[[meters]]\nid = "m-{i:04d}"\naddress = "{i + 1:012d}"\nchannel = "hplc"\n'
            f'phase = "{"ABC"[(i + shift) % 3]}"\nbranch = "F{(i // 10) % 8}"\nbox = "X{i // 10:04d}"\n'
            f'customer = "C-{i + shift * 10_000:06d}"\ntariff = "{TARIFFS[shift % 2]}"\n'
        )
    return "\n".join(lines)


class Uplink:
    """What the terminal sends, through the real outbox's size check, and the cloud's copy of it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.bodies: list[dict[str, Any]] = []

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        entry = await self.store.outbox_append(stream, body, terminal=T, max_bytes=MAX_MESSAGE_BYTES)
        self.bodies.append(body)
        return entry.key

    def cloud_view(self, tmp_path: Path) -> dict[str, Any]:
        db = CloudDb(tmp_path / "cloud.sqlite")
        try:
            messages = tuple(UpMessage(f"{T}:station:{i}", i, 0.0, b) for i, b in enumerate(self.bodies, 1))
            db.ingest_batch(topic=f"ttu/{T}/up/station", batch=UpBatch(T, "station", messages), now=1.0)
            return view(db.results("station", terminal=T, limit=10_000))
        finally:
            db.close()


def evidence(seed: int) -> dict[str, Any]:
    """Evidence as big as a correction may carry."""
    text = random.Random(seed).randbytes((MAX_EVIDENCE_BYTES - 40) // 2).hex()
    return {"method": "voltage", "trace": text}


async def test_a_2000_meter_model_reaches_the_cloud_in_parts_that_each_fit(tmp_path: Path) -> None:
    clock = LoopClock(start=1_767_225_600.0)
    file = tmp_path / "station.toml"
    file.write_text(archive(METERS), encoding="utf-8")
    async with await Store.open(tmp_path / "t.sqlite", clock=clock) as store:
        up = Uplink(store)
        service = StationService(
            store=store, bus=Bus(clock=clock), clock=clock, file=file, send=up.send, proposals="confirm"
        )
        await service.start()  # the snapshot: died here with MessageTooLarge before paging
        snapshots = [b for b in up.bodies if b["type"] == "snapshot"]
        assert len(snapshots) > 1 and {b["parts"] for b in snapshots} == {len(snapshots)}

        # every meter's phase, customer and tariff change: one change event of 6,000 changes
        file.write_text(archive(METERS, shift=1), encoding="utf-8")
        await service.reload_file()
        changes = [b for b in up.bodies if b["type"] == "change" and b["version"] == service.version]
        assert sum(len(b["changes"]) for b in changes) == 3 * METERS and len(changes) > 1

        # a proposal of 2,000 corrections, each with the largest evidence allowed (~8 MB)
        corrections = [
            Correction("meter", f"m-{i:04d}", "phase", "ABC"[i % 3], 0.8, evidence(i)) for i in range(METERS)
        ]
        result = await service.propose("topology", corrections)
        assert result.status == "pending"
        truth = service.model

        assert max(json_size(b) for b in up.bodies) <= MAX_MESSAGE_BYTES
        got = up.cloud_view(tmp_path)

    assert got["version"] == truth.version and got["stale"] is False
    want = model_to_doc(truth)
    assert got["model"]["meters"] == want["meters"] and got["model"]["boxes"] == want["boxes"]
    (pending,) = got["proposals"]
    assert pending["id"] == result.id and len(pending["corrections"]) == METERS
    assert pending["corrections"][-1]["evidence"] == evidence(METERS - 1)


async def test_station_get_answers_the_model_part_by_part(tmp_path: Path) -> None:
    clock = LoopClock(start=1_767_225_600.0)
    file = tmp_path / "station.toml"
    file.write_text(archive(METERS), encoding="utf-8")
    async with await Store.open(tmp_path / "t.sqlite", clock=clock) as store:
        service = StationService(store=store, bus=Bus(clock=clock), clock=clock, file=file)
        await service.start()
        commands: dict[str, Any] = {}
        service.register_commands(lambda name, handler: commands.__setitem__(name, handler))
        first = await commands["station.get"]({})
        replies = [first] + [await commands["station.get"]({"part": i}) for i in range(1, first["parts"])]
        assert first["parts"] > 1 and max(json_size(r) for r in replies) < MAX_MESSAGE_BYTES
        assert join_snapshot(replies) == model_to_doc(service.model)


def test_a_missing_part_leaves_the_snapshot_unjoined_and_repeats_do_not_matter() -> None:
    from protocols.station import loads

    model: StationModel = loads(archive(600))
    messages = snapshot_messages(model, {"type": "snapshot", "version": 1}, limit=30_000)
    assert len(messages) > 3 and all(json_size(m) <= 30_000 for m in messages)
    shuffled = list(reversed(messages)) + messages[:2]
    assert join_snapshot(shuffled) == model_to_doc(model)
    assert join_snapshot(messages[:1] + messages[2:]) is None


def test_a_change_is_paged_with_its_head_in_every_part() -> None:
    from protocols.station import StationChange, diff, loads

    before, after = loads(archive(600)), loads(archive(600, shift=1))
    change = StationChange(2, 1, 0.0, "file", "station.toml", tuple(diff(before, after)))
    messages = change_messages(change, limit=20_000)
    assert len(messages) > 2 and all(json_size(m) <= 20_000 for m in messages)
    assert all((m["type"], m["version"], m["previous"]) == ("change", 2, 1) for m in messages)
    assert sum(len(m["changes"]) for m in messages) == len(change.changes) == 3 * 600


async def test_a_reply_too_big_for_the_uplink_is_refused_by_name_not_lost(tmp_path: Path) -> None:
    from protocols.cloud import Command, sign_command
    from runtime.uplink._commands import CommandDispatcher

    clock = LoopClock(start=1_767_225_600.0)
    async with await Store.open(tmp_path / "t.sqlite", clock=clock) as store:
        dispatcher = CommandDispatcher(store=store, clock=clock, key=b"k" * 32)

        async def everything(args: dict[str, Any]) -> dict[str, Any]:
            return {"rows": ["x" * 1000] * args["n"]}

        dispatcher.register("dump", everything)
        small = sign_command(Command("c-1", "dump", {"n": 10}, clock.now()), b"k" * 32)
        big = sign_command(Command("c-2", "dump", {"n": 300}, clock.now()), b"k" * 32)
        ok, refused = await dispatcher.dispatch(small.encode()), await dispatcher.dispatch(big.encode())
        assert ok.ok and ok.result is not None and len(ok.result["rows"]) == 10
        assert (refused.ok, refused.code) == (False, "result_too_large")
        assert refused.message is not None and "dump" in refused.message
        # the refusal itself goes up: the outbox takes it
        await store.outbox_append("reply", refused.to_json(), terminal=T, max_bytes=MAX_MESSAGE_BYTES)
