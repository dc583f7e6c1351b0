"""What apps contribute to the master station: ``ttu cloud`` subcommands through entry points, the
runtime's ``station`` view rebuilt from what the terminal really sends, result streams listed.

The station messages come from a real ``runtime.station.StationService`` and go into the stub's
database as the uplink would deliver them (``UpBatch`` on stream ``station``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from protocols.cloud import StoredResult, UpBatch, UpMessage
from protocols.station import ARCHIVE, PatchOp, Provenance
from runtime.bus import Bus
from runtime.cli import main
from runtime.station import StationService
from runtime.store import Store
from sim.cloud import plugins
from sim.cloud.db import CloudDb
from sim.cloud.station_cli import parse_sets, view

pytestmark = pytest.mark.looptime

T = "TTU-VIEW"
ARCHIVE_TOML = """
[[boxes]]
id = "X1"

[[boxes]]
id = "X2"

[[meters]]
id = "m-1"
address = "000000000001"
port = "rs485-1"
phase = "A"
box = "X1"
"""


async def station_messages(tmp_path: Path) -> list[dict[str, Any]]:
    """Bodies a terminal sends on stream ``station``: a snapshot, then three changes."""
    clock = LoopClock(start=1_767_225_600.0)
    (tmp_path / "station.toml").write_text(ARCHIVE_TOML, encoding="utf-8")
    sent: list[dict[str, Any]] = []

    async def send(stream: str, body: dict[str, Any]) -> str:
        assert stream == "station"
        sent.append(body)
        return str(len(sent))

    async with await Store.open(tmp_path / "t.sqlite", clock=clock) as store:
        service = StationService(
            store=store, bus=Bus(clock=clock), clock=clock, file=tmp_path / "station.toml", send=send
        )
        await service.start()
        confirmed = Provenance("confirmed", by="op-1", at=clock.now())
        await service.patch([PatchOp("set", "meter", "m-1", "phase", "B")], provenance=confirmed, by="op-1")
        new = {"id": "m-2", "address": "000000000002", "channel": "hplc", "box": "X2"}
        await service.patch([PatchOp("add", "meter", "m-2", None, new)], provenance=ARCHIVE, by="op-1")
        await service.patch([PatchOp("set", "meter", "m-1", "box", "X2")], provenance=ARCHIVE, by="op-1")
        assert service.version == 4
        truth = service.model
    return [*sent, {"truth": truth}]


def store(
    db: CloudDb, bodies: list[dict[str, Any]], *, stream: str = "station", skip: int | None = None
) -> None:
    messages = tuple(
        UpMessage(f"{T}:{stream}:{i}", i, 1_767_225_600.0 + i, body)
        for i, body in enumerate(bodies, start=1)
        if i != skip
    )
    db.ingest_batch(topic=f"ttu/{T}/up/{stream}", batch=UpBatch(T, stream, messages), now=1_767_300_000.0)


async def test_the_station_view_is_the_terminals_model(tmp_path: Path) -> None:
    *bodies, last = await station_messages(tmp_path)
    truth = last["truth"]
    assert [b["type"] for b in bodies] == ["change", "snapshot", "change", "change", "change"]
    db = CloudDb(tmp_path / "cloud.sqlite")
    try:
        store(db, bodies)
        got = view(db.results("station", terminal=T))
    finally:
        db.close()
    assert got["version"] == 4 and got["stale"] is False
    meters = {m["id"]: m for m in got["model"]["meters"]}
    assert (meters["m-1"]["phase"], meters["m-1"]["box"]) == ("B", "X2")
    assert meters["m-1"]["provenance"]["phase"]["source"] == "confirmed"
    assert meters["m-1"]["provenance"]["phase"]["by"] == "op-1"
    assert meters["m-2"]["channel"] == "hplc"
    assert [m.id for m in truth.meters] == list(meters)


async def test_a_lost_change_makes_the_view_stale_at_the_last_version_it_can_vouch_for(
    tmp_path: Path,
) -> None:
    *bodies, _ = await station_messages(tmp_path)
    db = CloudDb(tmp_path / "cloud.sqlite")
    try:
        store(db, bodies, skip=4)  # the v3 change never arrived
        got = view(db.results("station", terminal=T))
    finally:
        db.close()
    assert got["stale"] is True and got["version"] == 2


async def test_ttu_cloud_station_prints_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    *bodies, _ = await station_messages(tmp_path)
    db = CloudDb(tmp_path / "cloud.sqlite")
    store(db, bodies)
    db.close()
    assert main(["cloud", "station", "--db", str(tmp_path / "cloud.sqlite"), "--terminal", T, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["terminal"] == T and printed["version"] == 4
    assert main(["cloud", "station", "--db", str(tmp_path / "cloud.sqlite"), "--terminal", "nobody"]) == 1
    assert "no station model received yet" in capsys.readouterr().out
    assert main(["cloud", "station", "--db", str(tmp_path / "missing.sqlite"), "--terminal", T]) == 2
    assert "no such database" in capsys.readouterr().err


def test_patch_arguments() -> None:
    assert parse_sets(["m-1.phase=B", "box:X1.branch=F2", 'm-2.flags=["prepaid"]']) == [
        {"op": "set", "kind": "meter", "id": "m-1", "field": "phase", "value": "B"},
        {"op": "set", "kind": "box", "id": "X1", "field": "branch", "value": "F2"},
        {"op": "set", "kind": "meter", "id": "m-2", "field": "flags", "value": ["prepaid"]},
    ]
    for bad in ("m-1.phase", "phase=B", "kettle:k.x=1"):
        with pytest.raises(ValueError, match="expected"):
            parse_sets([bad])


class FakeEntryPoint:
    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self._value = value

    def load(self) -> Any:
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


def test_an_apps_subcommand_and_stream_need_no_edit_of_the_stub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new app ("demo", stream ``demo``): its results get a table of their own when they arrive,
    ``ttu cloud streams`` lists it, and the subcommand it contributes reads them through the tools."""

    def register(subparsers: Any, tools: Any) -> None:
        parser = subparsers.add_parser("demo", help="the demo app's newest result")
        tools.add_query_options(parser, terminal_required=True)

        def show(args: Any) -> int:
            with tools.reader(args) as results:
                newest: StoredResult | None = results.latest("demo", terminal=args.terminal)
            tools.print_json({"terminal": args.terminal, "result": None if newest is None else newest.body})
            return 0

        parser.set_defaults(handler=tools.guard(show))

    real = plugins.entry_points

    def entry_points(*, group: str) -> list[Any]:
        if group == plugins.CLOUD_GROUP:
            return [
                *real(group=group),
                FakeEntryPoint("demo", register),
                FakeEntryPoint("broken", ImportError("no")),
            ]
        return list(real(group=group))

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    db = CloudDb(tmp_path / "cloud.sqlite")
    store(db, [{"computed_at": 1.0, "value": 41}, {"computed_at": 2.0, "value": 42}], stream="demo")
    db.close()
    path = str(tmp_path / "cloud.sqlite")
    assert main(["cloud", "demo", "--db", path, "--terminal", T]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"terminal": T, "result": {"computed_at": 2.0, "value": 42}}
    assert "subcommand 'broken' is unavailable: ImportError: no" in out.err
    assert main(["cloud", "streams", "--db", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"demo": {T: 2}}
    assert main(["cloud", "results", "--db", path, "--stream", "demo", "--json"]) == 0
    assert [r["body"]["value"] for r in json.loads(capsys.readouterr().out)] == [42, 41]
