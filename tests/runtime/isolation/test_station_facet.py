"""``ctx.station`` and ``ctx.uplink``'s declared streams behave the same for an app in process and
for an isolated one: the model at start, every change, proposals (refused unless declared), and
sends refused on streams the manifest does not declare -- counted and, for an isolated app,
reported by the bridge as a violation."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from hal.clock import LoopClock
from protocols.station import ARCHIVE, Correction, PatchOp
from runtime.bus import Bus
from runtime.container.supervisor import AppState
from runtime.station import StationService
from runtime.store import Store
from tests.runtime.isolation.conftest import Core, core

STATION = """
[[meters]]
id = "m-1"
address = "000000000001"
port = "rs485-1"
phase = "A"

[[meters]]
id = "m-2"
address = "000000000002"
channel = "hplc"
phase = "B"
"""


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, stream: str, body: dict[str, Any]) -> str:
        self.sent.append((stream, body))
        return f"k{len(self.sent)}"

    async def send_many(self, stream: str, bodies: Sequence[dict[str, Any]]) -> list[str]:
        return [await self.send(stream, body) for body in bodies]

    def register_command(self, name: str, handler: Any) -> None: ...


@asynccontextmanager
async def terminal(*, isolated: bool) -> AsyncIterator[tuple[Core, StationService, Outbox]]:
    tmp = Path(tempfile.mkdtemp(prefix="ttu-station-", dir="/tmp"))
    clock = LoopClock()
    (tmp / "station.toml").write_text(STATION, encoding="utf-8")
    outbox = Outbox()
    try:
        async with await Store.open(tmp / "station.sqlite", clock=clock) as store:
            service = StationService(
                store=store, bus=Bus(clock=clock), clock=clock, file=tmp / "station.toml", proposals="auto"
            )
            await service.start()
            apps = ("surveyor", "peeker")
            kw: dict[str, Any] = {"isolated": apps} if isolated else {"inproc": apps}
            async with core(**kw, clock=clock, station=service, uplink=outbox) as c:
                for name in apps:
                    assert await c.wait(name, AppState.RUNNING, AppState.CRASHED) is AppState.RUNNING, (
                        c.sup.status()
                    )
                yield c, service, outbox
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def ask(c: Core, topic: str, payload: Any) -> Any:
    return await c.bus.request(topic, payload, timeout=15)


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "isolated"])
async def test_the_station_facet_is_the_same_in_process_and_isolated(isolated: bool) -> None:
    async with terminal(isolated=isolated) as (c, service, outbox):
        model = c.bus.retained("survey/surveyor/model")
        assert model is not None and model.payload == {"version": 1, "meters": ["m-1", "m-2"]}
        async with c.bus.subscribe("survey/surveyor/changed") as changed:
            await service.patch([PatchOp("set", "meter", "m-1", "phase", "C")], provenance=ARCHIVE, by="test")
            async with c.clock.timeout(15):
                msg = await changed.get()
            assert msg.payload == {"version": 2, "phases": {"m-1": "C", "m-2": "B"}}
            proposal = Correction("meter", "m-2", "phase", "A", confidence=0.95, evidence={"why": "test"})
            result = await ask(c, "survey/surveyor/propose", proposal.to_doc())
            assert result["status"] == "applied" and result["version"] == 3
            async with c.clock.timeout(15):
                msg = await changed.get()
            assert msg.payload["phases"] == {"m-1": "C", "m-2": "A"}
        m2 = service.model.meter("m-2")
        assert m2 is not None and m2.source_of("phase").by == "surveyor"
        assert m2.source_of("phase").source == "identified" and dict(m2.source_of("phase").evidence) == {
            "why": "test"
        }

        # the read-only app: its proposal is refused where it is made, counted, and changes nothing
        refused = await ask(c, "survey/peeker/propose", proposal.to_doc())
        assert "CapabilityError" in refused["error"] and 'station = "propose"' in refused["error"]
        assert service.version == 3

        # declared streams: sent; undeclared: refused and counted
        assert "key" in await ask(c, "survey/surveyor/send", {"stream": "survey"})
        for app, stream in (("surveyor", "topology"), ("peeker", "survey")):
            answer = await ask(c, f"survey/{app}/send", {"stream": stream})
            assert (
                "CapabilityError" in answer["error"] and "not declared in [uplink] streams" in answer["error"]
            )
        assert (await ask(c, "survey/surveyor/send", {"stream": "survey", "many": 3}))["keys"] == [
            "k2",
            "k3",
            "k4",
        ]  # several bodies in one call, in order (over the bridge too)
        answer = await ask(c, "survey/peeker/send", {"stream": "survey", "many": 2})
        assert "not declared in [uplink] streams" in answer["error"]
        assert [(s, b) for s, b in outbox.sent] == [("survey", {"n": 1})] + [
            ("survey", {"n": n}) for n in range(3)
        ]
        if isolated:  # the bridge enforces and reports as well, whatever the host process did
            async with c.clock.timeout(15):
                while c.bridge.statistics()["violations"].get("peeker", 0) < 2:
                    await c.clock.sleep(0.05)
