"""Measurement realism: every device of the world measures with its class's gain error, noise and
resolution -- seeded, so analytics cannot cheat on perfect instruments, and runs stay reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from sim.devices.station import build_devices
from sim.physics.measure import ACCURACY, DeviceErrors, normals
from sim.scenarios import parse_scenario
from sim.world import World, build_world

START = 1717200000.0
BUSES = ["rs485-1", "rs485-2", "rs485-3", "rs485-4"]


def _world(error_scale: float = 1.0, seed: int = 3) -> World:
    scenario = parse_scenario(
        {"scenario": {"pv_share": 0.0}, "monitoring": {"box_terminals": "all"},
         "metering": {"error_scale": error_scale}},
        name="m", source="test",
    )  # fmt: skip
    return build_world(buses=BUSES, scenario=scenario, seed=seed, start=START, duration_s=3600.0)


@pytest.fixture(scope="module")
def world() -> World:
    return _world()


@pytest.fixture(scope="module")
def ideal() -> World:
    return _world(error_scale=0.0)


def test_every_device_carries_its_class(world: World) -> None:
    kinds = {m.kind: m.meter.errors for m in world.meters.values()}
    assert set(kinds) == {"customer", "branch_unit", "box_terminal", "assessment"}
    for m in world.meters.values():
        errors = m.meter.errors
        assert errors is not None and errors.scale == 1.0
        expected = {"customer": "household", "assessment": "assessment"}.get(m.kind, "three_phase")
        assert errors.accuracy == ACCURACY[expected], m.id
    gains = np.array([m.meter.errors.energy_gain for m in world.customers()])  # type: ignore[union-attr]
    assert len(set(gains.round(9))) == len(gains)  # per device
    assert 0.002 < gains.std() < 0.012 and np.all(np.abs(gains - 1) <= 0.02)  # class 2: sigma 2/3 %


def test_meter_voltages_have_gain_noise_and_are_seeded(world: World, ideal: World) -> None:
    t = START + np.arange(40) * 60.0 + 7.0
    hz = world.grid.horizon
    relative, ideal_relative = [], []
    for m, m0 in list(zip(world.customers(), ideal.customers(), strict=True))[:20]:
        k = world.grid.steps_of(t)
        true = hz.voltage_v[k, m.customer]
        seen = np.array([m.meter.instant(x).voltage[0] for x in t])
        assert m0.meter.errors is not None and m0.meter.errors.scale == 0.0
        exact = np.array([m0.meter.instant(x).voltage[0] for x in t])
        relative.append(seen / true - 1)
        ideal_relative.append(exact / true - 1)
    rel = np.array(relative)
    assert np.abs(np.array(ideal_relative)).max() < 1e-12  # error_scale 0: ideal instruments
    bias, noise = rel.mean(axis=1), rel.std(axis=1)
    assert 0.0003 < bias.std() < 0.004  # gain: class 0.5 -> sigma 0.17 % per device
    assert np.all((noise > 0.0002) & (noise < 0.002))  # noise: sigma 0.08 % per reading
    # the same reading is the same whoever reads it, and the seed decides
    m = world.customers()[0]
    assert m.meter.errors is not None
    assert m.meter.instant(START + 100).voltage == m.meter.instant(START + 100).voltage
    same = DeviceErrors(int(m.meter.address), 3, ACCURACY["household"])
    other = DeviceErrors(int(m.meter.address), 4, ACCURACY["household"])
    assert same.energy_gain == m.meter.errors.energy_gain != other.energy_gain


def test_energy_registers_keep_their_device_gain(world: World, ideal: World) -> None:
    for m, m0 in list(zip(world.customers(), ideal.customers(), strict=True))[:10]:
        t1 = START + 3600.0
        used = m.meter.registers(t1).forward[0] - m.meter.registers(START).forward[0]
        used0 = m0.meter.registers(t1).forward[0] - m0.meter.registers(START).forward[0]
        assert m.meter.errors is not None
        assert used == pytest.approx(used0 * m.meter.errors.energy_gain, rel=1e-9)


def test_metrology_unit_measures_with_its_class(world: World) -> None:
    devices = build_devices(station=world.station, world=world, port="rs485-4", seed=3)
    unit = devices.metrology
    assert unit is not None and unit.errors is not None
    assert unit.errors.accuracy == ACCURACY["metrology"]
    t = START + 1234.0
    true = world.grid.horizon.trafo_v[world.grid.steps_of(np.array([t]))[0]]
    seen = [v.value / 10 for v in unit.objects(t)[0x20000200].value]  # 0.1 V resolution
    rel = np.array(seen) / true - 1
    assert np.all(np.abs(rel) < 0.006) and np.any(np.abs(rel) > 1e-5)


def test_noise_is_a_standard_normal_keyed_by_device_and_time() -> None:
    z = normals(7, 123, np.arange(50_000) * 0.25, 1)
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    assert np.array_equal(z[:10], normals(7, 123, np.arange(10) * 0.25, 1))
    assert not np.array_equal(z[:10], normals(7, 124, np.arange(10) * 0.25, 1))
    with pytest.raises(Exception, match="error_scale"):
        DeviceErrors(1, 1, ACCURACY["household"], scale=-1.0)
