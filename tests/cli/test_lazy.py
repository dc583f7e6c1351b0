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


CODECS = {"dlt645": "protocols.dlt645", "dlt698": "protocols.dlt698", "gdw1376.2": "protocols.gdw1376_2"}
FRAMES = {  # one real frame of each (tests/protocols/vectors)
    "dlt645": "6886200500000068910833333433A876B733E916",
    "dlt698": "68 17 00 43 05 02 00 00 00 00 00 10 48 5E 05 01 15 F1 01 02 00 00 1A 00 16",
}


def loaded_after_decoding(args: list[str]) -> tuple[dict[str, object], set[str]]:
    """The first JSON line ``ttu frame decode ARGS`` prints, and the modules it had loaded."""
    code = (
        "import contextlib, io, json, sys, runtime.cli as c; out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out): c.main(['frame', 'decode', *sys.argv[1:]])\n"
        "print(json.dumps([out.getvalue().splitlines()[0], sorted(sys.modules)]))"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, cwd=REPO, check=True)
    line, modules = json.loads(done.stdout)
    return json.loads(line), set(modules)


@pytest.mark.parametrize("protocol", sorted(FRAMES))
@pytest.mark.parametrize("named", [False, True])
def test_frame_decode_imports_only_the_codec_of_the_frame(protocol: str, named: bool) -> None:
    args = [f"--protocol={protocol}"] if named else []
    result, modules = loaded_after_decoding([*args, FRAMES[protocol]])
    assert result["ok"] and result["protocol"] == protocol
    assert CODECS[protocol] in modules
    others = [CODECS[p] for p in CODECS if p != protocol]
    assert not [m for m in modules for o in others if m == o or m.startswith(o + ".")]


def test_the_protocol_names_inspect_keeps_to_stay_light_are_the_codecs_own() -> None:
    from protocols import dlt645, dlt698, gdw1376_2, inspect

    assert inspect.PROTOCOLS == (dlt645.PROTOCOL, dlt698.PROTOCOL, gdw1376_2.PROTOCOL)
