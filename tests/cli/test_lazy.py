"""The command line imports only what the command line asks for: the parser never loads the
simulator's physics or the MQTT client, and ``ttu run`` loads nothing of the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "pandapower",
    "pandas",
    "scipy",
    "aiomqtt",
    "paho",
    "numpy",
    "sqlite3",
    "sim.runner",
    "runtime.terminal",
    "runtime.store",
)


def loaded_after(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after building the parser for ``argv``."""
    code = (
        "import json, sys, runtime.cli as c; "
        f"c.build_parser({argv!r}); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, check=True)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    "argv", [[], ["--help"], ["cloud", "--help"], ["sim", "--help"], ["frame"], ["check"]]
)
def test_building_the_parser_loads_nothing_heavy(argv: list[str]) -> None:
    modules = loaded_after(argv)
    assert not {m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")}
    # an app's ttu.cloud / ttu.dashboard entry point comes without the app that runs on the terminal
    assert not [m for m in modules if m.startswith("apps.") and m.split(".")[-1] == "service"]


def test_ttu_run_loads_nothing_of_the_simulator() -> None:
    modules = loaded_after(["run", "--board", "b.toml"])
    assert "runtime.cli.run" in modules
    assert not [m for m in modules if m == "sim" or m.startswith("sim.")]


def test_the_copies_the_parser_keeps_to_stay_light_agree_with_their_sources(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runtime.cli import main
    from runtime.container.manifest import HAL_CAPABILITIES
    from sim.cli import PROFILE_NAMES
    from sim.runner import PROFILES

    assert set(PROFILE_NAMES) == set(PROFILES)
    with pytest.raises(SystemExit):
        main(["app", "verify", "--help"])
    text = "".join(capsys.readouterr().out.split())
    assert ",".join(sorted(HAL_CAPABILITIES)) in text
