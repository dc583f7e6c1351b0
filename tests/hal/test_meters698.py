"""DL/T 698.45 master and the one ``MeterClient`` against virtual meters on a real pty.

The meters (``sim.meters``) are served by ``MeterBus`` on a pty; the terminal side is the
linux hal (``PySerialLink`` on the slave) under ``Rs485Port`` -- the same stack as on a
board. A 645 and a 698 meter share the line. Expected values come from the virtual meters'
own state, never from the code under test.
"""

from __future__ import annotations

import asyncio
import calendar
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from hal.clock import LoopClock
from hal.errors import DeviceError, TransportTimeout
from hal.interfaces import SerialSettings
from hal.linux.serial import PySerialLink
from hal.meters import Dlt645Client, Dlt645Master, Dlt698Client, Dlt698Master, RelayCommand
from hal.rs485 import Rs485Port
from protocols import dlt698
from protocols.errors import ProtocolError
from sim.loads import HouseholdProfile
from sim.meters import MeterBus, VirtualMeter
from sim.pty import open_pty

pytestmark = pytest.mark.looptime

START = calendar.timegm((2026, 1, 9, 16, 0, 0)) * 1.0  # 2026-01-10 00:00 local (UTC+8)
NOW = START + 2 * 86400 + 10 * 3600 + 120  # 2026-01-12 10:02 local
A645, A698, A698_3P = "000000000645", "000000000698", "000000000699"
SETTINGS = SerialSettings()


def kwh(x: float) -> float:
    return math.floor(x * 100 + 1e-6) / 100


def local(meter_epoch: float) -> datetime:
    return datetime.fromtimestamp(meter_epoch + 8 * 3600, UTC).replace(tzinfo=None)


@dataclass
class Rig:
    clock: LoopClock
    bus: MeterBus
    port: Rs485Port
    meters: dict[str, VirtualMeter]
    c645: Dlt645Client
    c698: Dlt698Client
    c698_3p: Dlt698Client
    master: Dlt698Master


@asynccontextmanager
async def rig(**bus_kw: object) -> AsyncIterator[Rig]:
    clock = LoopClock(start=NOW)
    meters = {
        a: VirtualMeter(a, profile=HouseholdProfile.for_customer(3, i), start=START, phase=p)  # type: ignore[arg-type]
        for i, (a, p) in enumerate(((A645, "A"), (A698, "B"), (A698_3P, "ABC")))
    }
    for m in meters.values():
        m.advance(NOW)
    bus = MeterBus(
        list(meters.values()),
        clock=clock,
        settings=SETTINGS,
        protocols={A698: "dlt698", A698_3P: "dlt698"},
        **bus_kw,  # type: ignore[arg-type]
    )
    pty = open_pty("rs485-1")
    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(bus.serve(pty), name="test-meter-bus")
        try:
            link = PySerialLink(pty.slave_path, SETTINGS, name="rs485-1")
            async with Rs485Port(link, clock=clock, name="rs485-1") as port:
                master = Dlt698Master(port)
                yield Rig(
                    clock,
                    bus,
                    port,
                    meters,
                    Dlt645Client(Dlt645Master(port), A645),
                    Dlt698Client(master, A698),
                    Dlt698Client(master, A698_3P, three_phase=True),
                    master,
                )
        finally:
            serving.cancel()


async def test_realtime_in_one_exchange_matches_the_meter() -> None:
    async with rig() as r:
        items = ["energy", "voltage", "current", "power", "power_factor", "frequency"]
        before = r.port.statistics()["transactions"]
        got = await r.c698_3p.read_realtime(items)
        assert r.port.statistics()["transactions"] == int(before) + 1  # NormalList: one exchange
        meter = r.meters[A698_3P]
        reg = meter.registers(r.clock.now())
        assert got["energy.active.import.total"] == kwh(reg.forward[0])
        assert [got[f"energy.active.import.t{k}"] for k in (1, 2, 3, 4)] == [kwh(x) for x in reg.forward[1:]]
        inst = meter.instant(r.clock.now())
        for k, ph in enumerate("abc"):
            assert got[f"voltage.{ph}"] == pytest.approx(inst.voltage[k], abs=0.06)
            assert got[f"current.{ph}"] == pytest.approx(inst.current[k], abs=0.01)
        assert got["power.active.total"] == pytest.approx(inst.total_power_kw, abs=0.01)
        assert 49.5 < got["frequency"] < 50.5
        single = await r.c698.read_realtime(["voltage", "current"])
        assert set(single) == {"voltage.a", "current.a"}  # a single-phase meter reports in the A slot


async def test_mixed_line_645_and_698_meters_answer_only_their_protocol() -> None:
    async with rig() as r:
        e645 = await r.c645.read_realtime(["energy"])
        e698 = await r.c698.read_realtime(["energy"])
        t = r.clock.now()
        assert e645["energy.active.import.total"] == kwh(r.meters[A645].registers(t).forward[0])
        assert e698["energy.active.import.total"] == kwh(r.meters[A698].registers(t).forward[0])
        wrong = Dlt698Client(r.master, A645)  # the 645 meter must not answer a 698 frame
        with pytest.raises(TransportTimeout):
            await wrong.read_realtime(["energy"])
        assert r.bus.counters.garbage == 0


async def test_curve_records_match_meter_memory() -> None:
    async with rig() as r:
        for client in (r.c698, r.c698_3p):
            meter = r.meters[client.address]
            since = datetime(2026, 1, 12, 8, 0)
            records = await client.read_curve(since, client.curve_batch)
            expected = [p for p in meter.curve if local(p.ts) >= since][: client.curve_batch]
            assert [rec.at for rec in records] == [local(p.ts) for p in expected]
            for rec, p in zip(records, expected, strict=True):
                assert rec.values["energy.active.import.total"] == kwh(p.forward_total)
                assert rec.values["voltage.a"] == round(p.instant.voltage[0] or 0.0, 1)
                assert rec.values["power.active.total"] == pytest.approx(p.instant.total_power_kw, abs=1e-4)


async def test_daily_freeze_and_catch_up_of_older_days() -> None:
    async with rig() as r:
        meter = r.meters[A698]
        for n in (1, 2):
            rec = await r.c698.read_daily_freeze(n)
            frozen = meter.daily_freezes[n - 1]
            assert rec is not None and rec.at == local(frozen.ts)
            assert rec.values["energy.active.import.total"] == kwh(frozen.registers.forward[0])
            assert rec.values["energy.active.export.total"] == kwh(frozen.registers.reverse[0])
        assert await r.c698.read_daily_freeze(30) is None  # the meter has no such freeze


async def test_power_down_records_relay_state_and_relay_action() -> None:
    async with rig() as r:
        meter = r.meters[A698]
        t = r.clock.now()
        meter.power_off(t - 600)
        meter.power_on(t - 300)
        assert await r.c698.read_power_down_count() == 1
        (rec,) = await r.c698.read_power_down_records(5)
        assert rec.start == local(math.floor(meter.power_downs[0].start))
        assert rec.end == local(math.floor(meter.power_downs[0].end or 0))
        assert await r.c698.read_relay_state() is False
        await r.c698.relay(RelayCommand.TRIP, valid_until=datetime(2026, 1, 12, 11, 0))
        assert meter.relay_closed is False and await r.c698.read_relay_state() is True
        await r.c698.relay(RelayCommand.KEEP_POWER, valid_until=datetime(2026, 1, 12, 11, 0))
        with pytest.raises(DeviceError) as refused:  # keep-power: the meter refuses a trip
            await r.c698.relay(RelayCommand.TRIP, valid_until=datetime(2026, 1, 12, 11, 0))
        assert refused.value.code == 3 and refused.value.device == A698
        await r.c698.relay(RelayCommand.CLOSE_ALLOWED, valid_until=datetime(2026, 1, 12, 11, 0))
        status = await r.c698.read_relay_status()
        assert status is not None and status.satisfies(RelayCommand.CLOSE_ALLOWED) and status.open
        await r.clock.sleep(meter.button_delay_s or 0)  # the customer presses the meter's button
        assert await r.c698.read_relay_state() is False and meter.relay_closed is True


@pytest.mark.parametrize("which", ["c645", "c698"])
async def test_fee_control_commands_with_read_back(which: str) -> None:
    async with rig() as r:
        client = getattr(r, which)
        meter = r.meters[client.address]
        until = datetime(2026, 1, 12, 11, 0)
        sequence = [
            (RelayCommand.ALARM, {"alarm": True}),
            (RelayCommand.TRIP, {"open": True, "trip_commanded": True, "alarm": True}),
            (RelayCommand.ALARM_RELEASE, {"alarm": False, "open": True}),
            (RelayCommand.DIRECT_CLOSE, {"open": False, "trip_commanded": False}),
            (RelayCommand.KEEP_POWER, {"keep_power": True}),
            (RelayCommand.KEEP_POWER_RELEASE, {"keep_power": False}),
        ]
        for command, expected in sequence:
            await client.relay(command, valid_until=until)
            status = await client.read_relay_status()
            assert status is not None and status.satisfies(command), command
            assert {k: getattr(status, k) for k in expected} == expected, command
        assert meter.relay_closed and not meter.alarm and not meter.keep_power
        await client.relay(RelayCommand.KEEP_POWER, valid_until=until)
        with pytest.raises(DeviceError):  # 保电: the meter itself refuses to trip
            await client.relay(RelayCommand.TRIP, valid_until=until)
        assert meter.relay_closed


@pytest.mark.parametrize("which", ["c645", "c698"])
async def test_credit_limits_written_and_read_back(which: str) -> None:
    from hal.meters import CreditLimits

    async with rig() as r:
        client = getattr(r, which)
        limits = CreditLimits(2000, 1000, 1000, 200000, 200)
        await client.write_credit_limits(limits)
        assert await client.read_credit_limits() == limits
        assert r.meters[client.address].credit_limits["credit.max_stored"] == 2000.0
        assert await client.read_remaining_credit() is None  # not a locally prepaid meter


async def test_dar_errors_become_device_errors() -> None:
    async with rig() as r:
        with pytest.raises(DeviceError) as err:
            await r.master.get_one(A698, dlt698.OAD.of(0x43000200))  # no such object in this meter
        assert err.value.code == 6 and "does not exist" in err.value.reason
        with pytest.raises(DeviceError) as rec:
            await r.master.get_record(A698, dlt698.OAD.of(0x50020200), dlt698.RSD(9, (1,)), [])
        assert rec.value.code == 5
        results = await r.master.get(A698, [dlt698.OAD.of(0x00100200), dlt698.OAD.of(0x43000200)])
        assert results[0].data is not None and results[1].dar == 6  # per-OAD DAR in a list


async def test_broadcast_time_sync_sets_698_meter_clocks() -> None:
    async with rig() as r:
        meter = r.meters[A698]
        meter.skew_s = 90.0
        when = local(r.clock.now())
        await r.master.broadcast_time(when)
        await r.clock.sleep(0.5)
        assert abs(meter.meter_time(r.clock.now()) - r.clock.now()) < 2.0


async def test_security_wrapped_replies_are_accepted() -> None:
    async with rig() as r:
        r.bus.responders698[A698].secure_replies = True
        got = await r.c698.read_realtime(["energy"])
        assert got["energy.active.import.total"] == kwh(r.meters[A698].registers(r.clock.now()).forward[0])


async def test_garbage_on_the_line_is_counted_and_the_next_read_succeeds() -> None:
    async with rig() as r:
        link = r.port.link
        await link.write(b"\x68\x17\x00\x43\x05garbage\x16" + bytes(range(0x60, 0x70)))
        await r.clock.sleep(1.0)
        got = await r.c698.read_realtime(["energy"])
        assert "energy.active.import.total" in got
        assert r.bus.counters.garbage >= 1


def test_ciphertext_security_reply_is_refused() -> None:
    apdu = dlt698.SecurityResponse(1, b"\x01\x02\x03").encode()
    with pytest.raises(ProtocolError):
        dlt698.decode_apdu(apdu).inner()  # type: ignore[attr-defined]


async def test_signature_current_is_ordered_and_heard_through_both_protocols() -> None:
    """``start_signature`` reaches the meter as its own local time (645 write 04080001, 698 ACTION
    4E08 method 127); what a unit heard comes back newest first (645 0308 05nn, 698 GET 4E0802)."""
    from protocols.signature import Detection

    async with rig() as r:
        at = local(r.clock.now() + 600).replace(microsecond=0)
        await r.c645.start_signature(at)
        await r.c698.start_signature(at)
        due = r.clock.now() + 600
        for address in (A645, A698):
            (sent,) = r.meters[address].signature.sends
            assert abs(sent - due) < 1.0
        # the same meter may not send again within 3 minutes: the order is taken, nothing sent
        await r.c698.start_signature(at)
        assert len(r.meters[A698].signature.sends) == 1 and r.meters[A698].signature.refused == 1
        heard = [
            Detection(datetime(2026, 1, 12, 10, 15, s), phase, 0.3 + s / 100, 0.25, 0.02)
            for s, phase in ((1, 1), (40, 3))
        ]
        for unit in (A645, A698_3P):
            for k, d in enumerate(heard):
                r.meters[unit].signature.hear(d, r.clock.now() + k)
        got645 = await r.c645.read_signature_results(last=2)
        got698 = await r.c698_3p.read_signature_results()
        assert [(d.at, d.phase) for d in got698] == [(heard[1].at, 3), (heard[0].at, 1)]
        assert sorted((d.at, d.phase) for d in got645) == sorted((d.at, d.phase) for d in heard)
        assert abs(got698[0].s1_a - 0.70) < 1e-3 and abs(got645[0].s1_a - heard[0].s1_a) < 1e-4
        assert await r.c645.read_signature_results() == got645  # no further events: stops at the first empty
