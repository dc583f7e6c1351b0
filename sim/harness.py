"""One call that runs a whole simulated station area on virtual time: the entry point of end-to-end tests.

Layer: sim. ``run_world(workdir, hours=6)`` boots the physics world, the virtual meters and CCO,
the field devices, the terminal with its apps, the embedded broker and the cloud stub on a
``sim.vloop.VirtualTimeLoop``, runs them for the simulated time asked, drains the uplink and
returns a ``WorldRun``: the run report, the cloud database (what the master station stored) and
the ground-truth folder (``sim.truth``). Deterministic: the same arguments give byte-identical
cloud readings. A synchronous function (it runs its own event loop), so call it from a plain
test function, not from inside a running loop; ``tests/simworld.py`` wraps it as a fixture.

    run = run_world(tmp_path, hours=6, scenario="default", apps={"topology": {"window_h": 6}})
    with run.cloud() as db:
        rows = db.readings(device="m-0001", quantity="voltage.a", limit=10_000)
    truth = run.truth("topology.csv")   # list of dicts, one per row

Must not import the runtime: it goes through ``sim.runner`` like ``ttu sim``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.cloud.db import CloudDb
from sim.physics import DEFAULT_NETWORK
from sim.runner import PROFILES, SimOptions, SimRun, run_for, sim_board
from sim.vloop import run_virtual

REPO = Path(__file__).resolve().parents[1]
#: 2024-06-01 00:00 Asia/Shanghai: a fixed start keeps runs reproducible
DEFAULT_START = 1717171200.0


@dataclass(frozen=True, slots=True)
class WorldRun:
    """What a run left behind. ``report`` is ``ttu sim --report``'s JSON as a dict."""

    report: dict[str, Any]
    workdir: Path
    cloud_db: Path
    truth_dir: Path
    start: float
    end: float

    @contextlib.contextmanager
    def cloud(self) -> Iterator[CloudDb]:
        """The master station's database, read-only (``sim.cloud.db.CloudDb``: readings, events ...)."""
        db = CloudDb(self.cloud_db, readonly=True)
        try:
            yield db
        finally:
            db.close()

    def truth(self, name: str) -> list[dict[str, str]]:
        """The rows of one ground-truth file (``topology.csv``, ``intervals.csv`` ...), as dicts."""
        with (self.truth_dir / name).open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))


def run_world(
    workdir: Path,
    *,
    hours: float = 2.0,
    network: str = DEFAULT_NETWORK,
    scenario: str = "quiet",
    seed: int = 1,
    start: float = DEFAULT_START,
    customers_scale: int = 1,
    hplc_meters: int | None = None,
    profile: str = "analytics",
    apps: Mapping[str, Mapping[str, Any]] | None = None,
    board: Path | None = None,
    only_apps: Collection[str] | None = None,
    on_tick: Callable[[SimRun], Any] | None = None,
) -> WorldRun:
    """Run the station area of ``network`` x ``customers_scale`` under ``scenario`` for ``hours``
    simulated hours from ``start`` on virtual time; everything goes to ``workdir`` (wiped first).

    ``hplc_meters``: customer meters behind the virtual CCO (default: the board's [sim] count).
    ``profile``: ``"analytics"`` (15-min realtime snapshot and event poll: fast) or ``"standard"``.
    ``apps``: per app, config keys over the board's (an app the board lacks is added, enabled).
    ``board``: a simulated board.toml (default: the repository's).
    ``only_apps``: run only these of the board's apps (and those ``apps`` adds).
    ``on_tick(run)``: called (and awaited when it returns a coroutine) every simulated minute,
    e.g. to send a command from the master station over the broker (``run.cloud.send_command``).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: one of {', '.join(sorted(PROFILES))}")
    if not hours > 0:
        raise ValueError(f"hours must be positive, not {hours}")
    app_config = {name: dict(keys) for name, keys in PROFILES[profile].items()}
    for name, keys in (apps or {}).items():
        app_config[name] = {**app_config.get(name, {}), **keys}
    truth_dir = workdir / "truth"
    loaded = sim_board(board or REPO / "board.toml")
    if only_apps is not None:
        kept = {name: app for name, app in loaded.apps.items() if name in only_apps}
        loaded = dataclasses.replace(loaded, apps=kept)
    options = SimOptions(
        board=loaded,
        workdir=workdir,
        speed=math.inf,
        meters_per_bus=1,
        seed=seed,
        start=start,
        duration_s=hours * 3600.0,
        network=network,
        scenario=scenario,
        customers_scale=customers_scale,
        truth_dir=truth_dir,
        hplc_meters=hplc_meters,
        app_config=app_config,
    )
    report = run_virtual(lambda: run_for(options, on_tick=on_tick))
    return WorldRun(
        report=report,
        workdir=workdir,
        cloud_db=workdir / "cloud.sqlite",
        truth_dir=truth_dir,
        start=start,
        end=start + hours * 3600.0,
    )


__all__ = ["DEFAULT_START", "WorldRun", "run_world"]
