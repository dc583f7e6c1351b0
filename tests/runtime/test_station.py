"""The terminal's station model: file -> store -> bus, patches and proposals with provenance, change events.

A real ``Store`` (sqlite), the real ``Bus``; the uplink is a list of what was sent. Expected
values come from the archive documents written here, never from the code under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from protocols.station import (
    Correction,
    PatchOp,
    Provenance,
    StationChange,
    StationError,
    StationModel,
    dumps,
    loads,
)
from runtime.bus import Bus
from runtime.errors import CommandError
from runtime.station import CHANGED_TOPIC, MODEL_TOPIC, StationService
from runtime.store import Store

pytestmark = pytest.mark.looptime

T0 = 1_767_225_600.0
PORTS = ("rs485-1", "rs485-2")
ARCHIVE = """
[station]
id = "TA-1"

[[branches]]
id = "F1"

[[branches]]
id = "F2"

[[boxes]]
id = "X1"
branch = "F1"

[[boxes]]
id = "X2"
branch = "F2"

[[meters]]
id = "m-1"
address = "000000000001"
port = "rs485-1"
phase = "A"
branch = "F1"
box = "X1"

[[meters]]
id = "m-2"
address = "000000000002"
port = "rs485-2"
phase = "B"
branch = "F2"
box = "X2"
"""


@dataclass
class Terminal:
    clock: LoopClock
    store: Store
    bus: Bus
    service: StationService
    file: Path
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def stream(self, kind: str) -> list[dict[str, Any]]:
        return [b for s, b in self.sent if s == "station" and b["type"] == kind]


@asynccontextmanager
async def terminal(tmp_path: Path, *, text: str | None = ARCHIVE, **kw: Any) -> AsyncIterator[Terminal]:
    """A station service on ``tmp_path`` (the store survives between two uses: a reboot)."""
    clock = LoopClock(start=T0)
    file = tmp_path / "station.toml"
    if text is not None and not file.exists():
        file.write_text(text, encoding="utf-8")
    sent: list[tuple[str, dict[str, Any]]] = []

    async def send(stream: str, body: dict[str, Any]) -> str:
        sent.append((stream, body))
        return f"k{len(sent)}"

    async with await Store.open(tmp_path / "ttu.sqlite", clock=clock) as store:
        bus = Bus(clock=clock)
        service = StationService(
            store=store, bus=bus, clock=clock, file=file, send=send, known_ports=PORTS, **kw
        )
        t = Terminal(clock, store, bus, service, file, sent)
        await service.start()
        yield t


def meter(model: StationModel, meter_id: str) -> Any:
    found = model.meter(meter_id)
    assert found is not None
    return found


async def test_the_file_becomes_version_1_on_the_bus_in_the_store_and_at_the_cloud(tmp_path: Path) -> None:
    async with terminal(tmp_path) as t:
        model = t.service.model
        assert (
            model.version == 1 and model.updated_at == T0 and [m.id for m in model.meters] == ["m-1", "m-2"]
        )
        retained = t.bus.retained(MODEL_TOPIC)
        assert retained is not None and retained.payload is model
        (snapshot,) = t.stream("snapshot")
        assert snapshot["version"] == 1 and loads(dumps(model)).meters == model.meters
        assert [m["id"] for m in snapshot["model"]["meters"]] == ["m-1", "m-2"]
        (change,) = t.stream("change")
        assert (change["version"], change["previous"], change["cause"]) == (1, 0, "file")
    async with terminal(tmp_path) as again:  # a reboot: same file, the stored model stands
        assert again.service.version == 1 and again.stream("change") == [] and again.stream("snapshot") == []


async def test_a_patch_sets_confirmed_facts_and_publishes_before_and_after(tmp_path: Path) -> None:
    async with terminal(tmp_path) as t:
        sub = t.bus.subscribe(CHANGED_TOPIC)
        async with t.service.watch() as changes:
            prov = Provenance("confirmed", by="cloud", at=T0)
            await t.service.patch([PatchOp("set", "meter", "m-1", "phase", "C")], provenance=prov, by="cloud")
            change = await anext(changes)
        assert isinstance(change, StationChange) and change.version == 2 and change.cause == "patch"
        ((kind, mid, name, before, after),) = [
            (c.kind, c.id, c.field, c.before, c.after) for c in change.changes
        ]
        assert (kind, mid, name, before, after) == ("meter", "m-1", "phase", "A", "C")
        assert change.model is not None and meter(change.model, "m-1").source_of("phase") == prov
        assert (await sub.get()).payload is change
        body = t.stream("change")[-1]
        assert body["changes"][0]["provenance"]["source"] == "confirmed"
        assert body["changes"][0]["before"] == "A" and body["changes"][0]["after"] == "C"
    async with terminal(tmp_path) as again:  # the fact survives a reboot
        assert meter(again.service.model, "m-1").phase == "C"
        assert meter(again.service.model, "m-1").source_of("phase").source == "confirmed"


async def test_a_bad_patch_changes_nothing(tmp_path: Path) -> None:
    async with terminal(tmp_path) as t:
        prov = Provenance("confirmed", by="cloud")
        ops = [PatchOp("set", "meter", "m-1", "phase", "B"), PatchOp("set", "meter", "m-2", "box", "nowhere")]
        with pytest.raises(StationError, match="no box 'nowhere'"):
            await t.service.patch(ops, provenance=prov, by="cloud")
        with pytest.raises(StationError, match="not an RS-485 port"):
            await t.service.patch(
                [PatchOp("set", "meter", "m-1", "port", "rs485-9")], provenance=prov, by="x"
            )
        with pytest.raises(StationError, match="at v1, not v7"):
            await t.service.patch(ops[:1], provenance=prov, by="cloud", base_version=7)
        assert t.service.version == 1 and meter(t.service.model, "m-1").phase == "A"


async def test_auto_mode_applies_confident_corrections_as_identified(tmp_path: Path) -> None:
    async with terminal(tmp_path, proposals="auto", auto_min_confidence=0.9) as t:
        result = await t.service.propose(
            "topology",
            [
                Correction("meter", "m-1", "phase", "B", confidence=0.97, evidence={"corr": 0.95}),
                Correction("meter", "m-2", "box", "X1", confidence=0.95),
            ],
        )
        assert (result.status, result.version, result.refused) == ("applied", 2, ())
        m1, m2 = meter(t.service.model, "m-1"), meter(t.service.model, "m-2")
        assert (m1.phase, m2.box) == ("B", "X1")
        prov = m1.source_of("phase")
        assert (prov.source, prov.by, prov.confidence, dict(prov.evidence)) == (
            "identified", "topology", 0.97, {"corr": 0.95},
        )  # fmt: skip
        (proposal,) = t.stream("proposal")
        assert proposal["status"] == "applied" and proposal["app"] == "topology"
        # not confident enough: pending, nothing changes
        low = await t.service.propose("topology", [Correction("meter", "m-1", "phase", "C", confidence=0.6)])
        assert low.status == "pending" and meter(t.service.model, "m-1").phase == "B"


async def test_confirm_mode_waits_for_the_cloud(tmp_path: Path) -> None:
    async with terminal(tmp_path, proposals="confirm") as t:
        result = await t.service.propose(
            "topology", [Correction("meter", "m-2", "phase", "A", confidence=0.99)]
        )
        assert result.status == "pending" and t.service.version == 1
        assert [p.id for p in t.service.proposals(pending_only=True)] == [result.id]
        await t.service.confirm(result.id, by="operator-7")
        m2 = meter(t.service.model, "m-2")
        assert m2.phase == "A" and m2.source_of("phase").source == "confirmed"
        assert m2.source_of("phase").by == "operator-7" and m2.source_of("phase").confidence == 0.99
        assert t.service.proposals(pending_only=True) == []
        with pytest.raises(StationError, match="is confirmed"):
            await t.service.reject(result.id, by="cloud")
        other = await t.service.propose(
            "topology", [Correction("meter", "m-1", "box", "X2", confidence=0.99)]
        )
        await t.service.reject(other.id, by="cloud", reason="field check says X1")
        assert meter(t.service.model, "m-1").box == "X1"
        assert [p["status"] for p in t.stream("proposal")] == ["pending", "confirmed", "pending", "rejected"]


async def test_proposals_never_override_a_confirmed_fact_by_themselves(tmp_path: Path) -> None:
    async with terminal(tmp_path, proposals="auto") as t:
        prov = Provenance("confirmed", by="cloud")
        await t.service.patch([PatchOp("set", "meter", "m-1", "phase", "C")], provenance=prov, by="cloud")
        result = await t.service.propose(
            "topology", [Correction("meter", "m-1", "phase", "A", confidence=1.0)]
        )
        assert result.status == "pending" and meter(t.service.model, "m-1").phase == "C"


async def test_bad_corrections_are_refused_one_by_one(tmp_path: Path) -> None:
    async with terminal(tmp_path, proposals="auto") as t:
        result = await t.service.propose(
            "topology",
            [
                Correction("meter", "m-1", "phase", "Q", confidence=0.99),
                Correction("meter", "ghost", "phase", "A", confidence=0.99),
                Correction("meter", "m-2", "phase", "C", confidence=0.99),
                Correction("meter", "m-2", "phase", "A", confidence=7.0),
            ],
        )
        assert result.status == "applied" and [i for i, _ in result.refused] == [0, 1, 3]
        assert "not one of" in result.refused[0][1] and "no meter 'ghost'" in result.refused[1][1]
        assert meter(t.service.model, "m-2").phase == "C"


async def test_a_new_archive_file_keeps_facts_on_what_it_did_not_change(tmp_path: Path) -> None:
    async with terminal(tmp_path, proposals="auto") as t:
        await t.service.propose(
            "topology",
            [
                Correction("meter", "m-1", "phase", "B", confidence=0.99),
                Correction("meter", "m-2", "phase", "C", confidence=0.99),
            ],
        )
    # the utility fixes m-2's phase to A in its archive (and m-1's stays A): a new file
    (tmp_path / "station.toml").write_text(ARCHIVE.replace('phase = "B"', 'phase = "A"'), encoding="utf-8")
    async with terminal(tmp_path) as t:
        m1, m2 = meter(t.service.model, "m-1"), meter(t.service.model, "m-2")
        assert (m1.phase, m1.source_of("phase").source) == (
            "B",
            "identified",
        )  # archive unchanged: fact stays
        assert (m2.phase, m2.source_of("phase").source) == ("A", "archive")  # the archive's newer word
        assert t.stream("change")[-1]["cause"] == "file"


async def test_a_bad_file_is_refused_and_the_stored_model_stays(tmp_path: Path) -> None:
    async with terminal(tmp_path) as t:
        assert t.service.version == 1
    (tmp_path / "station.toml").write_text(
        ARCHIVE + '\n[[meters]]\nid = "m-3"\naddress = "12"\nport = "rs485-1"\n'
    )
    async with terminal(tmp_path) as t:
        assert t.service.version == 1 and [m.id for m in t.service.model.meters] == ["m-1", "m-2"]
        stats = t.service.statistics()
        assert stats["file_errors"] == 1 and "meters[2].address" in stats["last_error"]


async def test_no_file_and_no_store_is_an_empty_model(tmp_path: Path) -> None:
    async with terminal(tmp_path, text=None) as t:
        assert t.service.model.meters == () and t.service.version == 0
        assert "no station archive file" in t.service.statistics()["last_error"]


async def test_cloud_commands(tmp_path: Path) -> None:
    async with terminal(tmp_path, proposals="confirm") as t:
        commands: dict[str, Any] = {}
        t.service.register_commands(lambda name, handler: commands.__setitem__(name, handler))
        got = await commands["station.get"]({})
        assert got["version"] == 1 and len(got["model"]["meters"]) == 2
        reply = await commands["station.patch"](
            {
                "ops": [{"op": "set", "kind": "meter", "id": "m-2", "field": "box", "value": "X1"}],
                "by": "op-1",
            }
        )
        assert reply == {"version": 2, "changes": 1}
        with pytest.raises(CommandError) as bad:
            await commands["station.patch"]({"ops": [{"op": "set", "kind": "meter", "id": "m-2"}]})
        assert bad.value.code == "bad_args" and "ops[0].field" in bad.value.reason
        new = {"meters": [{"id": "m-9", "address": "000000000009", "port": "rs485-2"}]}
        assert (await commands["station.replace"]({"model": new}))["meters"] == 1
        assert [m.id for m in loads(t.file.read_text()).meters] == ["m-9"]  # the file follows
        with pytest.raises(CommandError):
            await commands["station.replace"]({"model": {"meters": [{"id": "x"}]}})
        pid = (await t.service.propose("topology", [Correction("meter", "m-9", "phase", "B", 0.9)])).id
        assert [
            p["id"] for p in (await commands["station.proposals"]({"pending_only": True}))["proposals"]
        ] == [pid]
        assert (await commands["station.confirm"]({"proposal": pid}))["version"] == t.service.version
        with pytest.raises(CommandError, match="no proposal 'p-99'"):
            await commands["station.reject"]({"proposal": "p-99"})
