"""Profiles from the real UCI data (diversity, determinism) and the meter error model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.physics import Metering, StationNetwork, build_profiles, solve

START = 1717200000.0  # 2024-06-01 00:00 UTC


def test_profiles_are_deterministic_and_diverse(ieee: StationNetwork, uci_cache: Path) -> None:
    a = build_profiles(ieee, start=START, steps=192, seed=11, pv_share=0.3, cache_dir=uci_cache)
    b = build_profiles(ieee, start=START, steps=192, seed=11, pv_share=0.3, cache_dir=uci_cache)
    c = build_profiles(ieee, start=START, steps=192, seed=12, pv_share=0.3, cache_dir=uci_cache)
    for name in ("p_kw", "q_kvar", "mv_pu", "pv_kw"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.p_kw, c.p_kw)
    corr = np.corrcoef(a.load_kw.T)[np.triu_indices(ieee.n_customers, 1)]
    assert corr.max() < 0.9 and abs(corr.mean()) < 0.5
    assert 0.2 < a.load_kw.mean() < 0.8
    assert a.prosumer.sum() == round(0.3 * ieee.n_customers)
    assert (a.pv_kw[:, ~a.prosumer] == 0).all() and a.pv_kw[:, a.prosumer].max() > 1.0
    assert a.mv_pu.std() > 0.001  # real upstream variation
    ha, hb = solve(ieee, a), solve(ieee, b)
    np.testing.assert_array_equal(ha.voltage_v, hb.voltage_v)
    np.testing.assert_array_equal(ha.line_loss, hb.line_loss)


def test_metering_resolution_noise_and_determinism() -> None:
    m = Metering(4, seed=1, accuracy_pct=0.5)
    v = np.full(4, 230.04)
    r1, r2 = m.voltage(v, t=100.0), m.voltage(v, t=100.0)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(np.round(r1, 1), r1)
    assert not np.array_equal(r1, m.voltage(v, t=1000.0))
    assert np.abs(r1 - v).max() < 230 * 0.01
    i = m.current(np.array([1.23456, 0.0, 5.0, 10.0]), t=5.0)
    np.testing.assert_array_equal(np.round(i, 3), i)
    assert i[1] == 0.0
    e = m.energy(np.array([10.0, 10.0, 10.0, 10.0]))
    np.testing.assert_array_equal(np.floor(e * 100 + 1e-6) / 100, e)
    assert (m.energy(np.full(4, 10.5)) >= e).all()  # registers stay monotone
    exact = Metering(4, seed=1, accuracy_pct=0.0)
    assert exact.voltage(v, t=1.0)[0] == pytest.approx(230.0)
