"""Pytest plugin: whole simulated station areas on virtual time, for end-to-end tests of the apps.

Fixtures (use them from plain ``def test_...`` functions, not ``async def``: a run has its own
event loop):

* ``sim_world(**kwargs) -> WorldRun`` -- runs ``sim.harness.run_world`` in a fresh folder of
  this test (same keywords: hours, network, scenario, seed, start, customers_scale, hplc_meters,
  profile, apps, board);
* ``shared_world(**kwargs) -> WorldRun`` -- the same, but one run per distinct set of keywords
  for the whole pytest session: tests that only read the outcome of the same world share it.

    def test_topology_names_every_branch(shared_world):
        run = shared_world(hours=24, scenario="default")
        with run.cloud() as db: ...
        truth = run.truth("topology.csv")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sim.harness import WorldRun, run_world

WorldFactory = Callable[..., WorldRun]


@pytest.fixture
def sim_world(tmp_path: Path) -> WorldFactory:
    runs = 0

    def run(**kwargs: Any) -> WorldRun:
        nonlocal runs
        runs += 1
        return run_world(tmp_path / f"world-{runs}", **kwargs)

    return run


@pytest.fixture(scope="session")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> WorldFactory:
    done: dict[str, WorldRun] = {}

    def run(**kwargs: Any) -> WorldRun:
        key = json.dumps(kwargs, sort_keys=True, default=str)
        if key not in done:
            done[key] = run_world(tmp_path_factory.mktemp("world"), **kwargs)
        return done[key]

    return run


__all__ = ["WorldFactory", "shared_world", "sim_world"]
