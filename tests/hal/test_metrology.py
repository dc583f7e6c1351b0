"""The DL/T 698.45 metrology client over a real pty (pyserial) against the virtual metrology unit.

Real I/O, so no looptime: a 10x clock keeps the wire/response delays short in wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from hal.clock import LoopClock
from hal.errors import DeviceError, TransportTimeout
from hal.interfaces import SerialSettings
from hal.linux.serial import PySerialLink
from hal.metrology import DltMetrology, Ratios
from protocols import dlt698
from sim.devices.metrology import ConstantSource, TransformerSample, VirtualMetrology
from sim.pty import open_pty

UART = SerialSettings(9600, "E")
PRIMARY = TransformerSample(
    voltage_v=(231.4, 229.8, 233.0),
    current_a=(412.0, 388.5, 405.2),
    p_kw=(90.1, 84.3, 88.8),
    q_kvar=(21.0, 19.5, 22.2),
    frequency_hz=49.98,
)


@contextlib.asynccontextmanager
async def served(
    unit: VirtualMetrology, ratios: Ratios, *, reply_timeout: float = 2.0
) -> AsyncIterator[DltMetrology]:
    clock = LoopClock(start=1_700_000_000.0, speed=10.0)
    pty = open_pty("metrology")
    client = DltMetrology(
        PySerialLink(pty.slave_path, UART, name="metrology"),
        clock=clock,
        ratios=ratios,
        timeout=reply_timeout,
    )
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(unit.serve(pty, clock=clock), name="virtual-metrology")
            async with client:
                yield client
            task.cancel()
    finally:
        pty.close()


def test_request_uses_wildcard_sa_with_logical_address_1() -> None:
    raw = DltMetrology(PySerialLink("/dev/null", UART), clock=LoopClock()).request(5)
    frame = dlt698.decode(raw)
    assert raw[4 + 4] == 0x55  # AF after FE x4, 68, L, L, C
    assert frame.logical == 1 and frame.sa_type == dlt698.AddressType.WILDCARD
    apdu = dlt698.decode_apdu(frame.apdu)
    assert isinstance(apdu, dlt698.GetRequestNormalList)
    assert dlt698.OAD.of(0x20000200) in apdu.oads and dlt698.OAD.of(0x00200200) in apdu.oads


async def test_snapshot_applies_scalers_and_ct_pt_ratios() -> None:
    unit = VirtualMetrology(ConstantSource(PRIMARY), ct_ratio=200, pt_ratio=1, energy_import_kwh=123456.0)
    async with served(unit, Ratios(ct=200, pt=1)) as client:
        snap = await client.snapshot()
    # secondaries are ~2 A: the 1 mA resolution of 2001 bounds the error at 200 x 0.5 mA
    assert snap.current.a == pytest.approx(412.0, abs=0.101)
    assert snap.current.b == pytest.approx(388.5, abs=0.101)
    assert snap.voltage.c == pytest.approx(233.0, abs=0.05)
    assert snap.active_power_kw.a == pytest.approx(90.1, abs=0.02)
    assert snap.reactive_power_kvar.c == pytest.approx(22.2, abs=0.02)
    assert snap.frequency_hz == pytest.approx(49.98)
    assert snap.energy_import_kwh == pytest.approx(123456.0, rel=1e-4)
    assert snap.power_factor.a == pytest.approx(90.1 / (90.1**2 + 21.0**2) ** 0.5, abs=1e-3)
    assert client.last_values["power.active.total"] == pytest.approx(sum(PRIMARY.p_kw), abs=0.05)
    assert unit.replies == 1


async def test_pt_ratio_scales_voltage_and_power() -> None:
    unit = VirtualMetrology(ConstantSource(PRIMARY), ct_ratio=100, pt_ratio=10)
    async with served(unit, Ratios(ct=100, pt=10)) as client:
        snap = await client.snapshot()
    assert snap.voltage.a == pytest.approx(231.4, abs=0.5)
    assert snap.active_power_kw.b == pytest.approx(84.3, abs=0.1)


async def test_wrong_ct_ratio_fault_scales_primary_values() -> None:
    unit = VirtualMetrology(ConstantSource(PRIMARY), ct_ratio=200, ct_ratio_actual=250)
    async with served(unit, Ratios(ct=200)) as client:
        snap = await client.snapshot()
    assert snap.current.a == pytest.approx(412.0 * 200 / 250, abs=0.2)
    assert snap.voltage.a == pytest.approx(231.4, abs=0.05)  # the PT is right


async def test_dar_is_a_device_error_naming_the_object() -> None:
    unit = VirtualMetrology(ConstantSource(PRIMARY), dar={0x20010200: 3})
    async with served(unit, Ratios()) as client:
        with pytest.raises(DeviceError) as info:
            await client.snapshot()
    assert info.value.code == 3
    assert "2001" in info.value.reason and "denied" in info.value.reason


async def test_silent_unit_times_out_and_is_counted() -> None:
    unit = VirtualMetrology(ConstantSource(PRIMARY), silent=True)
    async with served(unit, Ratios(), reply_timeout=0.5) as client:
        with pytest.raises(TransportTimeout, match="metrology"):
            await client.snapshot()
        assert client.port.health("metrology").timeouts == 1
    assert unit.requests == 1 and unit.replies == 0


def test_ratios_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ratios(ct=0)
