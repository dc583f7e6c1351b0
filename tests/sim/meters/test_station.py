"""Station: seeded meters with unique addresses, the archive file, and serving every bus on a pty."""

from __future__ import annotations

import asyncio
import calendar
import tomllib
from pathlib import Path

import pytest
import serial

from hal.clock import LoopClock
from protocols.dlt645 import Frame, Framer, encode, parse_read_response, read_request
from sim.archive import read_station
from sim.station import build_station

START = calendar.timegm((2024, 3, 3, 16, 0, 0)) * 1.0


def test_station_is_seeded_and_addresses_unique() -> None:
    a = build_station(buses=["rs485-1", "rs485-2"], meters_per_bus=20, seed=5, start=START)
    b = build_station(buses=["rs485-1", "rs485-2"], meters_per_bus=20, seed=5, start=START)
    addrs = [m.meter.address for m in a.meters]
    assert len(addrs) == 40 and len(set(addrs)) == 40
    assert all(len(x) == 12 and x.isdigit() for x in addrs)
    assert addrs == [m.meter.address for m in b.meters]
    assert [m.meter.phase for m in a.meters] == [m.meter.phase for m in b.meters]
    assert {m.meter.phase for m in a.meters} >= {"A", "B", "C"}
    t = START + 86400
    assert a.meters[3].meter.registers(t) == b.meters[3].meter.registers(t)
    c = build_station(buses=["rs485-1", "rs485-2"], meters_per_bus=20, seed=6, start=START)
    assert addrs != [m.meter.address for m in c.meters]


def test_archive_file_format(tmp_path: Path) -> None:
    station = build_station(buses=["rs485-1", "rs485-2"], meters_per_bus=3, seed=1, start=START)
    path = tmp_path / "station.toml"
    station.write_archive(path)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    first = data["meters"][0]
    assert set(first) == {
        "id",
        "address",
        "protocol",
        "channel",
        "port",
        "baud",
        "phase",
        "customer",
        "tariff",
    }
    assert first["id"] == "m-0001" and first["protocol"] == "dlt645" and first["baud"] == 2400
    assert first["customer"] == "C0001" and first["tariff"] == "residential" and first["channel"] == "rs485"
    assert [m["port"] for m in data["meters"]] == ["rs485-1"] * 3 + ["rs485-2"] * 3
    assert list(read_station(path).meters) == station.archive()
    assert station.meter("m-0004").address == data["meters"][3]["address"]


@pytest.mark.looptime
async def test_serve_every_bus_on_its_own_pty() -> None:
    station = build_station(buses=["rs485-1", "rs485-2"], meters_per_bus=2, seed=3, start=START)
    clock = LoopClock(start=START + 3600)
    loop = asyncio.get_running_loop()
    async with station.serve(clock=clock) as ports:
        assert set(ports) == {"rs485-1", "rs485-2"}
        for name, path in ports.items():
            target = station.buses[name][1].meter
            got: asyncio.Queue[Frame] = asyncio.Queue()
            framer = Framer()
            with serial.Serial(path, 2400, parity="E", timeout=0) as port:

                def on_readable(port: serial.Serial = port, framer: Framer = framer, got=got) -> None:  # type: ignore[no-untyped-def]
                    for item in framer.feed(port.read(4096)):
                        if isinstance(item, Frame):
                            got.put_nowait(item)

                loop.add_reader(port.fileno(), on_readable)
                try:
                    port.write(encode(read_request(target.address, 0x00010000)))
                    async with clock.timeout(2.0):
                        reply = await got.get()
                finally:
                    loop.remove_reader(port.fileno())
            assert reply.address == target.address
            (kwh,) = parse_read_response(reply).values
            assert kwh == pytest.approx(target.registers(clock.now()).forward[0], abs=0.011)
        assert station.running["rs485-1"].counters.replies == 1
    assert station.running == {}
